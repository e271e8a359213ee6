import { strict as assert } from 'node:assert';
import { setup } from 'xstate';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeDiagram } from '../../bin/diagram.js';
import { connectionMachine } from '../../machines/connection-machine.js';
import { diagramSources } from '../../visualizer/diagram.js';
import { activeStateIds, describeValue, machineGraph } from '../../visualizer/graph.js';
import { layoutMachine } from '../../visualizer/layout.js';
import { mermaidId } from '../../visualizer/mermaid.js';
import { escapeXml, renderSvg } from '../../visualizer/svg.js';

interface NodeLike {
  id: string;
  states: Record<string, NodeLike>;
  transitions: Map<string, { target?: NodeLike[] }[]>;
  always?: { target?: NodeLike[] }[];
}

/** Every state node id and every (source, target) pair with a transition, read straight from the machine. */
function fromMachine(): { states: string[]; edges: number } {
  const states: string[] = [];
  let edges = 0;
  const walk = (node: NodeLike): void => {
    states.push(node.id);
    for (const list of node.transitions.values()) for (const t of list) edges += t.target?.length ?? 0;
    for (const t of node.always ?? []) edges += t.target?.length ?? 0;
    Object.values(node.states).forEach(walk);
  };
  walk(connectionMachine.root as unknown as NodeLike);
  return { states, edges };
}

describe('visualizer: machine graph and static export', () => {
  const graph = machineGraph(connectionMachine);

  it('reads every state and every targeted transition from the machine definition', () => {
    const truth = fromMachine();
    assert.deepEqual(graph.states.map((s) => s.id), truth.states);
    assert.equal(graph.transitions.length, truth.edges);
    const tops = graph.states.filter((s) => s.path.length === 1).map((s) => s.key);
    assert.deepEqual(tops, ['start', 'connecting', 'handshaking', 'ready', 'draining', 'forceClosed', 'errored', 'closed', 'gaveUp']);
    const labels = (source: string, target: string): string[] =>
      graph.transitions.filter((t) => t.source === `peerConnection.${source}` && t.target === `peerConnection.${target}`).map((t) => t.label);
    assert.deepEqual(labels('connecting.dialing', 'errored'), ['error: dial', 'after connectTimeout']);
    assert.deepEqual(labels('connecting.dialing', 'handshaking'), ['CONNECTION.INBOUND', 'done: dial']);
    assert.deepEqual(labels('errored', 'closed'), [
      'PRUNE [!isPinned && !hasWaiting]',
      'DRAIN',
      'FORCE_CLOSE',
      'SHUTDOWN',
      'after retryBackoff',
      'always [!canRetry && !holdsBackoff]',
    ]);
    assert.deepEqual(labels('errored', 'gaveUp'), ['always [gaveUpNow]']);
    assert.deepEqual(labels('errored', 'connecting'), ['after retryBackoff [canRetry]', 'after retryBackoff [hasWaiting]']);
    assert.deepEqual(labels('draining', 'errored'), ['CONNECTION.CLOSED [isCurrent && pinnedRemoteDrain]', 'always [pinnedRemoteDrain && isSettled]']);
    assert.deepEqual(labels('handshaking', 'handshaking'), ['CONNECTION.INBOUND']);
    assert.equal(graph.states.find((s) => s.key === 'ready')!.kind, 'compound');
    assert.equal(graph.states.find((s) => s.key === 'closed')!.kind, 'final');
    assert.ok(graph.states.find((s) => s.key === 'ready')!.internal.includes('REQUEST'));
    // The heartbeat is the runtime's: `ready` has no heartbeat states, one transition for its failure.
    assert.deepEqual(
      graph.states.filter((s) => s.path[0] === 'ready').map((s) => s.id),
      ['peerConnection.ready', 'peerConnection.ready.busy', 'peerConnection.ready.idle'],
    );
    assert.deepEqual(labels('ready', 'errored'), ['HEARTBEAT.FAILED [isCurrent]', 'CONNECTION.CLOSED [isCurrent]']);
    assert.deepEqual(activeStateIds('peerConnection', { ready: 'busy' }), ['peerConnection', 'peerConnection.ready', 'peerConnection.ready.busy']);
    assert.equal(describeValue({ ready: 'idle' }), 'ready (idle)');
  });

  it('draws parallel regions (a machine with a parallel state)', async () => {
    const machine = setup({}).createMachine({
      id: 'toy',
      initial: 'on',
      states: {
        on: {
          type: 'parallel',
          states: {
            light: { initial: 'dim', states: { dim: { on: { UP: 'bright' } }, bright: {} } },
            fan: { initial: 'slow', states: { slow: { after: { 1000: 'fast' } }, fast: {} } },
          },
          on: { OFF: 'off' },
        },
        off: { type: 'final' },
      },
    });
    const toy = machineGraph(machine);
    assert.equal(toy.states.find((s) => s.key === 'on')!.kind, 'parallel');
    assert.deepEqual(activeStateIds('toy', { on: { light: 'dim', fan: 'fast' } }), [
      'toy',
      'toy.on',
      'toy.on.light',
      'toy.on.light.dim',
      'toy.on.fan',
      'toy.on.fan.fast',
    ]);
    assert.equal(describeValue({ on: { light: 'dim', fan: 'fast' } }), 'on (light.dim, fan.fast)');
    const { svg, mermaid } = await diagramSources(machine, 'toy');
    assert.ok(mermaid.split('\n').some((l) => l.trim() === '--'), 'parallel regions are separated');
    assert.match(svg, /<g class="pl-state [^"]*\bpl-region\b[^"]*" data-state="toy\.on\.light"/, 'regions are drawn as regions');
    for (const id of ['toy.on.light.dim', 'toy.on.fan.fast']) assert.ok(svg.includes(`data-state="${id}"`), id);
  });

  it('exports Mermaid stateDiagram-v2 with every state and every transition label', async () => {
    const { mermaid } = await diagramSources();
    const lines = mermaid.split('\n');
    assert.ok(lines.includes('stateDiagram-v2'));
    const byId = new Map(graph.states.map((s) => [s.id, s]));
    for (const state of graph.states.slice(1)) {
      assert.ok(lines.some((l) => l.trim() === `state "${state.key}" as ${mermaidId(state)}`), `state ${state.id} missing`);
    }
    for (const t of graph.transitions) {
      const line = `${mermaidId(byId.get(t.source)!)} --> ${mermaidId(byId.get(t.target)!)} : ${t.label}`;
      assert.ok(lines.some((l) => l.trim() === line), `transition missing: ${line}`);
    }
    assert.ok(lines.some((l) => l.trim() === '[*] --> start'));
    assert.ok(lines.some((l) => l.trim() === 'closed --> [*]'));
    // Composite blocks are balanced.
    assert.equal(lines.filter((l) => l.trim().endsWith('{')).length, lines.filter((l) => l.trim() === '}').length);
  });

  it('exports an SVG with a node for every state and every transition label', async () => {
    const { svg } = await diagramSources();
    assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
    assert.ok(svg.trimEnd().endsWith('</svg>'));
    assert.equal((svg.match(/<g\b/g) ?? []).length, (svg.match(/<\/g>/g) ?? []).length, 'unbalanced groups');
    assert.doesNotMatch(svg, /<script|href="http/, 'the SVG must be self-contained');
    for (const state of graph.states.slice(1)) {
      assert.ok(svg.includes(`data-state="${state.id}"`), `no node for ${state.id}`);
      const name = escapeXml(state.key);
      assert.ok(svg.includes(`>${name}</text>`) || svg.includes(`>${name}<tspan`), `no name for ${state.id}`);
    }
    for (const t of graph.transitions) {
      assert.ok(svg.includes(`data-transition="${escapeXml(t.id)}">${escapeXml(t.label)}</text>`), `no label for ${t.id}`);
    }
    // The compact variant (for the live page) keeps every transition as a tooltip.
    const compact = renderSvg(await layoutMachine(graph, { labels: false }), { badges: true });
    for (const t of graph.transitions) assert.ok(compact.includes(escapeXml(t.label)), `no tooltip for ${t.id}`);
    assert.equal((compact.match(/class="pl-badge"/g) ?? []).length, 9);
  });

  it('writeDiagram writes both files, and docs/ holds the current ones', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'peerline-diagram-'));
    try {
      const files = await writeDiagram(dir);
      const sources = await diagramSources();
      assert.equal(await readFile(files.svg, 'utf8'), sources.svg);
      assert.equal(await readFile(files.mermaid, 'utf8'), sources.mermaid);
      const stale = 'docs/diagram.* are stale: regenerate with `npx tsx bin/diagram.ts docs` (or `peerline diagram --out docs`)';
      assert.equal(await readFile('docs/diagram.svg', 'utf8'), sources.svg, stale);
      assert.equal(await readFile('docs/diagram.mmd', 'utf8'), sources.mermaid, stale);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
