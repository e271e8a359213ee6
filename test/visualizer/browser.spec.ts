/**
 * The inspector page in a real headless Chromium, watching a live swarm on
 * the in-memory network (wall clock): peers appear, a forced close shows up,
 * the graph is drawn, and the page is checked the way a person would look at
 * it, at 1280x800, 1920x1080 and 800 px wide: agents by name, headings not
 * cut off, the header's counts equal to the metrics bars and to the engines'
 * snapshots, nothing overflowing its box, the graph's edges told apart and
 * its labels inside the drawing and apart from each other. Screenshots are
 * kept under test-output/ for a person to look at.
 * Needs Debian's `chromium` at /usr/bin/chromium; skipped (with the reason)
 * where it is missing.
 */
import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { MemoryNetwork } from '../../adapters/memory/index.js';
import { connectionMachine } from '../../machines/connection-machine.js';
import { systemClock } from '../../runtime/index.js';
import { machineGraph } from '../../visualizer/graph.js';
import { startLiveSwarm, type LiveSwarm } from '../../visualizer/live-swarm.js';
import { startVisualizer, type Visualizer } from '../../visualizer/server.js';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
const OUT = fileURLToPath(new URL('../../test-output/', import.meta.url));
const PROTOCOL = '/inspect-demo/echo/1';
/** A deadline for page conditions, not a timing expectation: generous for a loaded machine. */
const DEADLINE_MS = 20_000;

const VIEWPORTS = [
  { width: 1280, height: 800 },
  { width: 1920, height: 1080 },
  { width: 800, height: 900 },
] as const;

/** Peer machines by state the way the page counts them: live ones by state, finished ones as `closed`. */
interface Counts {
  [state: string]: number;
}

/** What the page shows: header chips, metrics bars (for all engines), and the engines' headings. */
function readPage(): { chips: Counts; bars: Counts; heads: Record<string, { name: string; count: string }> } {
  const chips: Counts = {};
  for (const chip of document.querySelectorAll<HTMLElement>('#summary .chip')) chips[chip.dataset.state!] = Number(chip.querySelector('b')!.textContent);
  const bars: Counts = {};
  for (const n of document.querySelectorAll<HTMLElement>('#state-bars .n')) bars[n.dataset.state!] = Number(n.textContent);
  const heads: Record<string, { name: string; count: string }> = {};
  for (const section of document.querySelectorAll<HTMLElement>('#peer-list section.engine')) {
    heads[section.dataset.engine!] = {
      name: section.querySelector('h3 .name')!.textContent!,
      count: section.querySelector('h3 .count')!.textContent!,
    };
  }
  return { chips, bars, heads };
}

/**
 * Everything a person would call cut off or spilling over, as readable lines:
 * an element whose content is wider than its box (without a scroll bar for
 * it), an element poking out of the box that clips or scrolls it (sideways;
 * up and down too when that box does not scroll), or out of the window.
 */
function overflowProblems(): string[] {
  const problems: string[] = [];
  const name = (e: Element): string => {
    const id = e.id === '' ? '' : `#${e.id}`;
    const cls = typeof e.className === 'string' && e.className !== '' ? `.${e.className.trim().split(/\s+/).join('.')}` : '';
    return `${e.tagName.toLowerCase()}${id}${cls} "${(e.textContent ?? '').trim().slice(0, 40)}"`;
  };
  const doc = document.documentElement;
  if (doc.scrollWidth > window.innerWidth + 1) problems.push(`page is ${doc.scrollWidth}px wide in a ${window.innerWidth}px window`);
  for (const e of document.body.querySelectorAll('*')) {
    if (e.closest('svg') !== null || e.closest('select') !== null) continue;
    const style = getComputedStyle(e);
    if (style.display === 'none' || style.visibility === 'hidden') continue;
    const rect = e.getBoundingClientRect();
    if (rect.width === 0 && rect.height === 0) continue;
    const html = e as HTMLElement;
    if (style.display !== 'inline' && html.clientWidth > 0) {
      const scrolls = style.overflowX === 'auto' || style.overflowX === 'scroll';
      if (!scrolls && html.scrollWidth > html.clientWidth + 1) problems.push(`${name(e)}: content ${html.scrollWidth}px wide in a ${html.clientWidth}px box`);
    }
    if (rect.left < -1 || rect.right > window.innerWidth + 1) problems.push(`${name(e)}: outside the window (${Math.round(rect.left)}..${Math.round(rect.right)})`);
    // The nearest ancestor that clips or scrolls.
    let box: Element | null = e.parentElement;
    while (box !== null && box !== document.body && getComputedStyle(box).overflowX === 'visible' && getComputedStyle(box).overflowY === 'visible') box = box.parentElement;
    if (box === null || box === document.body) continue;
    const outer = box.getBoundingClientRect();
    const boxStyle = getComputedStyle(box);
    if (rect.left < outer.left - 1 || rect.right > outer.right + 1) problems.push(`${name(e)}: sticks out of ${name(box)} sideways`);
    const scrollsY = boxStyle.overflowY === 'auto' || boxStyle.overflowY === 'scroll';
    if (!scrollsY && (rect.top < outer.top - 1 || rect.bottom > outer.bottom + 1)) problems.push(`${name(e)}: cut off by ${name(box)}`);
  }
  return problems;
}

/** Headings and names that must read in full: their text fits their box. */
function truncatedNames(): string[] {
  const out: string[] = [];
  for (const e of document.querySelectorAll<HTMLElement>('#peer-list h3, #peer-list h3 > *, li.peer .pid > *, .peer-title, .peer-title *, #engines td, #graph-caption')) {
    if (e.scrollWidth > e.clientWidth + 1 && e.clientWidth > 0) out.push(`"${e.textContent}" needs ${e.scrollWidth}px, has ${e.clientWidth}px`);
  }
  return out;
}

/** The labelled graph, shown whole: labels inside the drawing, apart from each other and from state names; edges in several colours, all with contrast. */
function graphProblems(): { problems: string[]; labels: number; edgeColors: number } {
  const problems: string[] = [];
  const svg = document.querySelector<SVGSVGElement>('#graph svg')!;
  const [vx, vy, vw, vh] = svg.getAttribute('viewBox')!.split(/\s+/).map(Number) as [number, number, number, number];
  const inUser = (e: SVGGraphicsElement): DOMRect => {
    // Boxes in the svg's own coordinates (the drawing sits in a translated group).
    const b = e.getBBox();
    const root = svg.getScreenCTM()!.inverse().multiply(e.getScreenCTM()!);
    const p1 = new DOMPoint(b.x, b.y).matrixTransform(root);
    const p2 = new DOMPoint(b.x + b.width, b.y + b.height).matrixTransform(root);
    return new DOMRect(Math.min(p1.x, p2.x), Math.min(p1.y, p2.y), Math.abs(p2.x - p1.x), Math.abs(p2.y - p1.y));
  };
  const labels = [...svg.querySelectorAll<SVGGElement>('.pl-edge-label')].map((g) => ({ g, box: inUser(g), text: g.textContent ?? '' }));
  const names = [...svg.querySelectorAll<SVGTextElement>('.pl-state > text.pl-name')].map((t) => ({ box: inUser(t), text: t.textContent ?? '' }));
  const hit = (a: DOMRect, b: DOMRect): boolean => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  for (const l of labels) {
    if (l.box.left < vx || l.box.top < vy || l.box.right > vx + vw || l.box.bottom > vy + vh) problems.push(`label "${l.text}" outside the viewBox`);
  }
  for (let i = 0; i < labels.length; i++) {
    for (let j = i + 1; j < labels.length; j++) if (hit(labels[i]!.box, labels[j]!.box)) problems.push(`labels "${labels[i]!.text}" and "${labels[j]!.text}" overlap`);
    for (const n of names) if (hit(labels[i]!.box, n.box)) problems.push(`label "${labels[i]!.text}" covers state name "${n.text}"`);
  }
  // WCAG contrast against the white background: 3:1 for lines, 4.5:1 for text.
  const luminance = (color: string): number => {
    const probe = document.createElement('canvas').getContext('2d')!;
    probe.fillStyle = '#fff';
    probe.fillRect(0, 0, 1, 1);
    probe.fillStyle = color;
    probe.fillRect(0, 0, 1, 1);
    const [r, g, b] = [...probe.getImageData(0, 0, 1, 1).data].map((c) => {
      const s = c / 255;
      return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    }) as [number, number, number];
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const contrast = (color: string): number => 1.05 / (luminance(color) + 0.05);
  const colors = new Set<string>();
  for (const path of svg.querySelectorAll<SVGPathElement>('.pl-edge[data-source] > path:not(.pl-hit):not(.pl-head)')) {
    const stroke = getComputedStyle(path).stroke;
    colors.add(stroke);
    if (contrast(stroke) < 3) problems.push(`edge ${path.parentElement!.dataset.source} -> ${path.parentElement!.dataset.target} in ${stroke}: contrast ${contrast(stroke).toFixed(2)} < 3`);
  }
  for (const text of svg.querySelectorAll<SVGTextElement>('text')) {
    if (text.closest('.pl-badge') !== null) continue;
    const fill = getComputedStyle(text).fill;
    if (contrast(fill) < 4.5) problems.push(`text "${text.textContent}" in ${fill}: contrast ${contrast(fill).toFixed(2)} < 4.5`);
  }
  return { problems, labels: labels.length, edgeColors: colors.size };
}

describe('visualizer: the page in headless Chromium', function () {
  this.timeout(120_000);
  let browser: Browser | undefined;
  let swarm: LiveSwarm | undefined;
  let viz: Visualizer | undefined;
  const pages: Page[] = [];
  const problems: string[] = [];

  const open = async (viewport: { width: number; height: number }): Promise<Page> => {
    const page = await browser!.newPage({ viewport });
    pages.push(page);
    page.setDefaultTimeout(DEADLINE_MS);
    // tsx compiles this file keeping function names with a `__name` helper, which the functions sent to the page call.
    await page.addInitScript({ content: 'globalThis.__name = (fn) => fn;' });
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });
    page.on('requestfailed', (request) => problems.push(`request failed: ${request.url()}`));
    await page.goto(viz!.url);
    await page.waitForSelector('#conn[data-status="live"]');
    return page;
  };

  /** The engines' snapshots counted as the page counts: live peers by state, plus the finished machines the page keeps as `closed`. */
  const expectedCounts = async (page: Page): Promise<Counts> => {
    const counts: Counts = {};
    for (const engine of swarm!.engines) {
      for (const peer of engine.snapshot().peers) counts[peer.state] = (counts[peer.state] ?? 0) + 1;
    }
    counts.closed = (counts.closed ?? 0) + (await page.locator('#peer-list li.peer:not([data-status="active"])').count());
    return counts;
  };

  /** Waits (bounded) until the header shows what the engines report; retried as the swarm may move meanwhile. */
  const countsSettle = async (page: Page): Promise<Counts> => {
    const deadline = Date.now() + DEADLINE_MS;
    for (;;) {
      const expected = await expectedCounts(page);
      try {
        await page.waitForFunction(
          (want) => {
            const got: Record<string, number> = {};
            for (const chip of document.querySelectorAll<HTMLElement>('#summary .chip')) got[chip.dataset.state!] = Number(chip.querySelector('b')!.textContent);
            return Object.entries(want).every(([state, n]) => got[state] === n) && Object.entries(got).every(([state, n]) => n === (want[state] ?? 0));
          },
          expected,
          { timeout: 2000 },
        );
        return expected;
      } catch (error) {
        if (Date.now() > deadline) throw error;
      }
    }
  };

  before(async function () {
    if (!existsSync(CHROMIUM)) {
      console.log(`    skipped: no Chromium at ${CHROMIUM} (install it with: apt-get install -y chromium)`);
      this.skip();
    }
    mkdirSync(OUT, { recursive: true });
    // alice and bob are left out of the random traffic: the test drives that pair.
    const network = new MemoryNetwork({ clock: systemClock, latencyMs: 2 });
    swarm = await startLiveSwarm({
      network,
      agents: 15,
      requestIntervalMs: 25,
      chaosIntervalMs: 0,
      quiet: ['alice/bob'],
      // Every pair stays up until the test closes one, even on a slow machine.
      engine: { idleTimeoutMs: 300_000, heartbeat: { intervalMs: 5000, timeoutMs: 4000, misses: 3 } },
    });
    // Connect every pair once, so all 210 machines exist from the start.
    const { names } = swarm;
    const opens: Promise<unknown>[] = [];
    for (let i = 0; i < names.length; i++) {
      for (let j = i + 1; j < names.length; j++) opens.push(swarm.engine(names[i]!).openStream(swarm.peerId(names[j]!), PROTOCOL, { timeoutMs: 10_000 }));
    }
    const streams = await Promise.all(opens);
    for (const stream of streams) (stream as { abort(reason?: string): void }).abort('warm-up done');
    viz = await startVisualizer({ inspector: swarm.inspector, engines: swarm.engines, names: swarm.displayNames, metricsIntervalMs: 250 });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: DEADLINE_MS });
  });

  after(async () => {
    for (const page of pages) await page.close().catch(() => {});
    await browser?.close().catch(() => {});
    await viz?.close();
    await swarm?.stop();
  });

  it('shows 200+ live peers by name, a forced close, the machine graph and metrics', async () => {
    const s = swarm!;
    const page = await open({ width: 1600, height: 1000 });
    const alice = s.peerId('alice');
    const bob = s.peerId('bob');
    const pair = `${alice}/${bob}`;

    // Peers appear: every machine of every engine, each engine under its name.
    const machines = s.names.length * (s.names.length - 1);
    await page.waitForFunction((n) => document.querySelectorAll('#peer-list li.peer').length >= n, machines);
    await page.waitForSelector(`li.peer[data-key="${pair}"][data-state="ready"]`);
    const { heads } = await page.evaluate(readPage);
    assert.deepEqual(Object.values(heads).map((h) => h.name).sort(), [...s.names].sort());
    assert.equal(heads[alice]?.name, 'alice');
    // A peer row shows the name; the full id is its tooltip.
    const row = page.locator(`li.peer[data-key="${pair}"] .pid`);
    assert.equal(await row.locator('.name').textContent(), 'bob');
    assert.match((await row.getAttribute('title'))!, new RegExp(`^bob\\n${bob}\\n`));
    // No 52-character id is written out anywhere but in the selected peer's details.
    const longIds = await page.evaluate(
      (ids) => [...document.querySelectorAll('body *:not(script)')].filter((e) => e.childElementCount === 0 && ids.some((id) => e.textContent!.includes(id))).length,
      s.engines.map((e) => e.peerId),
    );
    assert.equal(longIds, 0);

    // The graph: a node for every state of the machine.
    const graph = machineGraph(connectionMachine);
    await page.waitForSelector('#graph svg .pl-state');
    const drawn = await page.$$eval('#graph svg .pl-state', (nodes) => nodes.map((n) => (n as SVGGElement).dataset.state));
    assert.deepEqual(new Set(drawn), new Set(graph.states.slice(1).map((x) => x.id)));
    assert.ok((await page.locator('#graph svg .pl-edge[data-source]').count()) > 20);

    // Select the pair: its state is highlighted, its timeline shown, the full ids given.
    await page.click(`li.peer[data-key="${pair}"]`);
    await page.waitForSelector('#graph svg .pl-state.pl-active[data-state="peerConnection.ready"]');
    await page.waitForSelector('#timeline tbody tr[data-state="ready"]');
    assert.equal((await page.textContent('#detail .peer-title .pair'))!.replace(/\s+/g, ' '), 'alice → bob');
    assert.equal(await page.textContent('#detail dd[data-field="peer"]'), bob);
    assert.equal(await page.textContent('#detail dd[data-field="engine"]'), alice);
    assert.equal((await page.textContent('#graph-caption .pair'))!.replace(/\s+/g, ' '), 'alice → bob');

    // A forced close shows on the page.
    await s.engine('alice').forceClose(bob, 'closed from the browser test');
    await page.waitForSelector('#timeline tbody tr[data-state="forceClosed"][data-event="FORCE_CLOSE"]');
    await page.waitForSelector(`li.peer[data-key="${pair}"][data-state="closed"]`);
    await page.waitForSelector('#graph svg .pl-state.pl-active[data-state="peerConnection.closed"]');
    await page.waitForSelector(`li.peer[data-key="${bob}/${alice}"][data-state="closed"]`);

    // Counters from the engines' metrics.
    await page.waitForFunction(() => Number(document.querySelector('#requests tr[data-key="opened"] td:last-child')?.textContent) >= 105);
    await page.waitForFunction(() => Number(document.querySelector('#state-bars .n[data-state="ready"]')?.textContent) > 0);

    // A resumable stream shows in the sessions table, on both sides.
    const resumable = (await s.engine('carol').openStream(s.peerId('dave'), PROTOCOL, { resumable: true, timeoutMs: 10_000 })) as {
      sessionId: string;
      abort(reason?: string): void;
    };
    await page.waitForFunction(
      (id) => [...document.querySelectorAll('#sessions tbody tr')].filter((tr) => (tr as HTMLElement).dataset.session === id && tr.textContent?.includes('open')).length === 2,
      resumable.sessionId,
    );
    await page.waitForFunction(() => Number(document.querySelector('#resume tr[data-key="live"] td:last-child')?.textContent) >= 2);
    const sessionRow = await page.$eval(`#sessions tbody tr[data-session="${resumable.sessionId}"]`, (tr) => [...tr.children].slice(0, 2).map((td) => td.textContent));
    assert.ok(['carol', 'dave'].includes(sessionRow[0]!) && ['carol', 'dave'].includes(sessionRow[1]!), `session row: ${sessionRow.join(', ')}`);

    await page.screenshot({ path: `${OUT}inspector-live-1600x1000.png` });
    console.log(`    screenshot: ${OUT}inspector-live-1600x1000.png`);
    resumable.abort('done');
    assert.deepEqual(problems, []);
    assert.equal(s.inspector.stats().unattributed, 0);
  });

  for (const viewport of VIEWPORTS) {
    const size = `${viewport.width}x${viewport.height}`;
    it(`at ${size}: names in full, header counts = metrics bars = the engines' snapshots, nothing clipped`, async () => {
      const s = swarm!;
      const page = await open(viewport);
      const machines = s.names.length * (s.names.length - 1);
      await page.waitForFunction((n) => document.querySelectorAll('#peer-list li.peer').length >= n, machines);
      const key = `${s.peerId('carol')}/${s.peerId('erin')}`;
      await page.click(`li.peer[data-key="${key}"]`);
      await page.waitForSelector('#timeline tbody tr[data-state="ready"]');

      // Counts: the header equals what the engines report, and in the same frame the bars equal the header.
      const expected = await countsSettle(page);
      const shown = await page.evaluate(readPage);
      assert.deepEqual(shown.bars, shown.chips);
      assert.equal(shown.chips.ready, expected.ready);
      assert.ok(shown.chips.closed! >= 2, 'the forced close is counted');
      // Each engine's heading counts its live peers, as its snapshot does.
      for (const engine of s.engines) {
        const live = engine.snapshot().peers.length;
        assert.match(shown.heads[engine.peerId]!.count, new RegExp(`^${live} active · running$`));
      }
      assert.equal(Object.values(shown.chips).reduce((a, b) => a + b, 0), await page.locator('#peer-list li.peer').count());

      // Names, headings and the caption read in full; nothing spills or is cut off.
      assert.deepEqual(await page.evaluate(truncatedNames), []);
      assert.deepEqual(await page.evaluate(overflowProblems), []);
      await page.screenshot({ path: `${OUT}inspector-${size}.png`, fullPage: true });

      // The labelled graph opens with labels at a readable size; shown whole, they sit inside the drawing, apart.
      await page.check('#labels');
      await page.waitForSelector('#graph svg .pl-edge-label');
      const labelPx = await page.$eval('#graph svg .pl-edge-label text', (t) => parseFloat(getComputedStyle(t).fontSize) * (t as SVGTextElement).getScreenCTM()!.a);
      assert.ok(labelPx >= 9.9, `labels shown at ${labelPx.toFixed(1)}px`);
      await page.screenshot({ path: `${OUT}inspector-${size}-labels.png` });
      await page.click('#fit');
      const drawing = await page.evaluate(graphProblems);
      assert.deepEqual(drawing.problems, []);
      assert.ok(drawing.labels > 20, `${drawing.labels} labels`);
      // Edges take the colour of the state they leave: one per top-level state with transitions.
      assert.ok(drawing.edgeColors >= 6, `${drawing.edgeColors} edge colours`);
      assert.deepEqual(await page.evaluate(overflowProblems), []);
      console.log(`    screenshots: ${OUT}inspector-${size}.png, ${OUT}inspector-${size}-labels.png`);
      assert.deepEqual(problems, []);
    });
  }

  it('draws a state it does not know (a newer machine\'s) in the header, the bars and the list', async () => {
    const page = await open({ width: 1280, height: 800 });
    // A machine in a state this page's graph does not have, from another process.
    swarm!.inspector.ingest(
      {
        type: '@xstate.actor',
        sessionId: 'x:0',
        name: 'peerConnection',
        snapshot: { status: 'active', value: 'gaveUp', context: { peerId: 'zz7pqkr3nd5wy2ulmfhgsxe6oiacbtvjkd4rnq2a7e3ylpw5sdqa', localPeerId: 'remote-agent' } },
      },
      'other',
    );
    await page.waitForSelector('li.peer[data-state="gaveUp"]');
    await page.waitForSelector('#summary .chip[data-state="gaveUp"]');
    const shown = await page.evaluate(readPage);
    assert.equal(shown.chips.gaveUp, 1);
    assert.deepEqual(shown.bars, shown.chips);
    // An unnamed id is shortened, the whole of it in the tooltip.
    const pid = page.locator('li.peer[data-state="gaveUp"] .pid');
    assert.equal(await pid.textContent(), 'zz7pqk…sdqa');
    assert.match((await pid.getAttribute('title'))!, /^zz7pqkr3nd5wy2ulmfhgsxe6oiacbtvjkd4rnq2a7e3ylpw5sdqa\n/);
    assert.deepEqual(await page.evaluate(overflowProblems), []);
    assert.deepEqual(problems, []);
  });
});
