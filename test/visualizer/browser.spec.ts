/**
 * The inspector page in a real headless Chromium, watching a live swarm on
 * the in-memory network (wall clock): peers appear, a forced close shows up,
 * the graph is drawn, and a screenshot is kept for a person to look at.
 * Needs Debian's `chromium` at /usr/bin/chromium; skipped (with the reason)
 * where it is missing.
 */
import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
const SCREENSHOT = join(tmpdir(), 'peerline-inspector.png');

describe('visualizer: the page in headless Chromium', function () {
  this.timeout(60_000);
  let browser: Browser | undefined;
  let page: Page | undefined;
  let swarm: LiveSwarm | undefined;
  let viz: Visualizer | undefined;

  before(function () {
    if (!existsSync(CHROMIUM)) {
      console.log(`    skipped: no Chromium at ${CHROMIUM} (install it with: apt-get install -y chromium)`);
      this.skip();
    }
  });

  after(async () => {
    await page?.close().catch(() => {});
    await browser?.close().catch(() => {});
    await viz?.close();
    await swarm?.stop();
  });

  it('shows 200+ live peers, a forced close, the machine graph and metrics', async () => {
    // Agent 1 and agent 2 are left out of the random traffic: the test drives that pair.
    const network = new MemoryNetwork({ clock: systemClock, latencyMs: 2 });
    swarm = await startLiveSwarm({
      network,
      agents: 15,
      requestIntervalMs: 25,
      chaosIntervalMs: 0,
      quiet: ['agent-1/agent-2'],
      // The quiet pair must stay up until the test closes it, even on a slow machine.
      engine: { idleTimeoutMs: 120_000, heartbeat: { intervalMs: 3000, timeoutMs: 2000, misses: 3 } },
    });
    const names = swarm.engines.map((e) => e.peerId);
    // Connect every pair once, so all 210 machines exist from the start.
    const opens: Promise<unknown>[] = [];
    for (let i = 0; i < names.length; i++) {
      for (let j = i + 1; j < names.length; j++) opens.push(swarm.engine(names[i]!).openStream(names[j]!, '/inspect-demo/echo/1', { timeoutMs: 5000 }));
    }
    const streams = await Promise.all(opens);
    for (const stream of streams) (stream as { abort(reason?: string): void }).abort('warm-up done');
    viz = await startVisualizer({ inspector: swarm.inspector, engines: swarm.engines, metricsIntervalMs: 250 });

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 15_000 });
    page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    page.setDefaultTimeout(5000);
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });
    page.on('requestfailed', (request) => problems.push(`request failed: ${request.url()}`));
    await page.goto(viz.url);
    await page.waitForSelector('#conn[data-status="live"]');

    // Peers appear: every machine of every engine.
    const machines = names.length * (names.length - 1);
    await page.waitForFunction((n) => document.querySelectorAll('#peer-list li.peer').length >= n, machines);
    await page.waitForSelector('li.peer[data-key="agent-1/agent-2"][data-state="ready"]');
    assert.equal(await page.locator('#peer-list section.engine').count(), names.length);

    // The graph: a node for every state of the machine.
    const graph = machineGraph(connectionMachine);
    await page.waitForSelector('#graph svg .pl-state');
    const drawn = await page.$$eval('#graph svg .pl-state', (nodes) => nodes.map((n) => (n as SVGGElement).dataset.state));
    assert.deepEqual(new Set(drawn), new Set(graph.states.slice(1).map((s) => s.id)));
    assert.ok((await page.locator('#graph svg .pl-edge[data-source]').count()) > 20);

    // Select the pair: its state is highlighted and its timeline shown.
    await page.click('li.peer[data-key="agent-1/agent-2"]');
    await page.waitForSelector('#graph svg .pl-state.pl-active[data-state="peerConnection.ready"]');
    await page.waitForSelector('#timeline tbody tr[data-state="ready"]');
    assert.match((await page.textContent('#detail'))!, /agent-1\/agent-2/);

    // A forced close shows on the page.
    await swarm.engine('agent-1').forceClose('agent-2', 'closed from the browser test');
    await page.waitForSelector('#timeline tbody tr[data-state="forceClosed"][data-event="FORCE_CLOSE"]');
    await page.waitForSelector('li.peer[data-key="agent-1/agent-2"][data-state="closed"]');
    await page.waitForSelector('#graph svg .pl-state.pl-active[data-state="peerConnection.closed"]');
    await page.waitForSelector('li.peer[data-key="agent-2/agent-1"][data-state="closed"]');

    // Counters from the engines' metrics.
    await page.waitForFunction(() => Number(document.querySelector('#requests tr[data-key="opened"] td:last-child')?.textContent) >= 105);
    await page.waitForFunction(() => Number(document.querySelector('#state-bars .n[data-state="ready"]')?.textContent) > 0);

    // A resumable stream shows in the sessions table, on both sides.
    const resumable = (await swarm.engine('agent-3').openStream('agent-4', '/inspect-demo/echo/1', { resumable: true, timeoutMs: 5000 })) as {
      sessionId: string;
      abort(reason?: string): void;
    };
    await page.waitForFunction(
      (id) => [...document.querySelectorAll('#sessions tbody tr')].filter((tr) => (tr as HTMLElement).dataset.session === id && tr.textContent?.includes('open')).length === 2,
      resumable.sessionId,
    );
    await page.waitForFunction(() => Number(document.querySelector('#resume tr[data-key="live"] td:last-child')?.textContent) >= 2);

    // Let some live traffic flow, then keep a picture.
    await page.waitForTimeout(500);
    await page.screenshot({ path: SCREENSHOT });
    console.log(`    screenshot: ${SCREENSHOT}`);
    resumable.abort('done');
    assert.deepEqual(problems, []);
    assert.equal(swarm.inspector.stats().unattributed, 0);
  });
});
