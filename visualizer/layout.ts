/**
 * Places a machine graph on a plane with ELK's layered algorithm (the layout
 * engine Stately's own editor uses): nested states become boxes inside their
 * parent, transitions become orthogonal edges with their labels placed beside
 * them. The result is in absolute coordinates, ready to draw.
 *
 * Transitions between the same two states share one edge whose label lists
 * them one per line, so every transition label is drawn and none overlap.
 */
import ElkBundle from 'elkjs/lib/elk.bundled.js';
import type { ELK as ElkApi, ELKConstructorArguments, ElkExtendedEdge, ElkLabel, ElkNode } from 'elkjs/lib/elk-api.js';
import type { GraphState, GraphTransition, MachineGraph, StateKind } from './graph.js';
import { checkBoolean, checkObject } from '../protocol/arguments.js';
import { checkGraph } from './checks.js';

export interface LaidOutState {
  readonly id: string;
  readonly key: string;
  readonly kind: StateKind;
  /** Drawn as a region of a parallel state (dashed, no own transitions). */
  readonly region: boolean;
  /** Nesting depth: top-level states are 1. */
  readonly depth: number;
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
  readonly internal: readonly string[];
}

export interface LaidOutInitial {
  /** Id of the state whose initial child this marks (the machine id for the root). */
  readonly parent: string;
  readonly target: string;
  readonly x: number;
  readonly y: number;
  readonly r: number;
  readonly points: readonly Point[];
}

export interface Point {
  readonly x: number;
  readonly y: number;
}

export interface LaidOutEdge {
  readonly id: string;
  readonly source: string;
  readonly target: string;
  /** The transitions drawn by this edge, one label line each. */
  readonly transitions: readonly GraphTransition[];
  readonly points: readonly Point[];
  /** Where the label box sits; `shown` false when the layout left no room for labels. */
  readonly label: { readonly shown: boolean; readonly x: number; readonly y: number; readonly width: number; readonly height: number; readonly lines: readonly string[] };
}

export interface MachineLayout {
  readonly machineId: string;
  readonly width: number;
  readonly height: number;
  /** Transition labels have room in this layout. */
  readonly labels: boolean;
  readonly states: readonly LaidOutState[];
  readonly initials: readonly LaidOutInitial[];
  readonly edges: readonly LaidOutEdge[];
}

/** Text metrics the drawing uses; the layout reserves room by them. */
export const TEXT = {
  /** Edge labels: monospace, so widths are known without a browser. */
  labelFont: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace',
  labelSize: 11,
  labelCharWidth: 6.7,
  labelLineHeight: 14,
  stateFont: 'system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Helvetica, Arial, sans-serif',
  stateSize: 13,
  /** Generous average for a bold sans at 13px, so names never overflow their box. */
  stateCharWidth: 8.2,
} as const;

// elkjs is CommonJS: its constructor is `module.exports` (typed as the module's default export).
type ElkConstructor = new (args?: ELKConstructorArguments) => ElkApi;
const bundle = ElkBundle as unknown as ElkConstructor | { default: ElkConstructor };
const ELK: ElkConstructor = typeof bundle === 'function' ? bundle : bundle.default;

const INITIAL_R = 6;
const HEADER = 30;

function labelBox(lines: readonly string[]): { width: number; height: number } {
  const longest = Math.max(...lines.map((l) => l.length));
  return { width: Math.ceil(longest * TEXT.labelCharWidth) + 10, height: lines.length * TEXT.labelLineHeight + 6 };
}

function stateWidth(state: GraphState): number {
  return Math.max(96, Math.ceil(state.key.length * TEXT.stateCharWidth) + 32);
}

/** Lowest state containing both `a` and `b` (a state contains itself). */
function commonAncestor(byId: Map<string, GraphState>, a: string, b: string): string {
  const chain = new Set<string>();
  for (let s = byId.get(a); s !== undefined; s = s.parent === undefined ? undefined : byId.get(s.parent)) chain.add(s.id);
  for (let s = byId.get(b); s !== undefined; s = s.parent === undefined ? undefined : byId.get(s.parent)) {
    if (chain.has(s.id)) return s.id;
  }
  return [...chain].pop()!;
}

export interface LayoutOptions {
  /** Reserve room for transition labels (false: a compact graph, labels only as tooltips). @default true */
  readonly labels?: boolean;
  /** ELK layout options to override, e.g. `{ 'elk.direction': 'RIGHT' }`. */
  readonly elk?: Readonly<Record<string, string>>;
}

const cache = new WeakMap<MachineGraph, Map<string, Promise<MachineLayout>>>();

/** Lays `graph` out. The same graph with the same options gets the same, cached, layout. */
export function layoutMachine(graph: MachineGraph, options: LayoutOptions = {}): Promise<MachineLayout> {
  try {
    checkGraph('graph', graph);
    checkObject('options', options);
    checkBoolean('options.labels', options.labels);
    if (options.elk !== undefined) checkObject('options.elk', options.elk);
  } catch (error) {
    return Promise.reject(error);
  }
  const labels = options.labels ?? true;
  const elkOptions = options.elk ?? {};
  const key = JSON.stringify([labels, elkOptions]);
  let byOptions = cache.get(graph);
  if (byOptions === undefined) {
    byOptions = new Map();
    cache.set(graph, byOptions);
  }
  let pending = byOptions.get(key);
  if (pending === undefined) {
    pending = compute(graph, labels, elkOptions);
    byOptions.set(key, pending);
  }
  return pending;
}

async function compute(graph: MachineGraph, withLabels: boolean, elkOptions: Readonly<Record<string, string>>): Promise<MachineLayout> {
  const byId = new Map(graph.states.map((s) => [s.id, s]));
  const root = byId.get(graph.machineId);
  if (root === undefined) throw new Error(`graph has no root state ${graph.machineId}`);
  const elkNodes = new Map<string, ElkNode>();

  const toElk = (state: GraphState): ElkNode => {
    const children = state.children.map((id) => toElk(byId.get(id)!));
    const node: ElkNode = { id: state.id, edges: [] };
    if (children.length > 0) {
      if (state.initial !== undefined) {
        children.unshift({ id: `${state.id}#initial`, width: INITIAL_R * 2, height: INITIAL_R * 2 });
      }
      node.children = children;
      node.layoutOptions = {
        'elk.padding': `[top=${HEADER + 6},left=16,bottom=16,right=16]`,
        'elk.nodeLabels.placement': 'INSIDE V_TOP H_LEFT',
      };
      // A header wide enough for the name; ELK grows the box around the children.
      node.labels = [{ text: state.key, width: stateWidth(state), height: HEADER - 8 }];
    } else {
      node.width = stateWidth(state);
      node.height = 38;
    }
    elkNodes.set(state.id, node);
    return node;
  };
  const top = toElk(root);
  top.id = '#root';
  elkNodes.set(graph.machineId, top);
  top.layoutOptions = {
    'elk.algorithm': 'layered',
    'elk.direction': 'DOWN',
    'elk.hierarchyHandling': 'INCLUDE_CHILDREN',
    'elk.edgeRouting': 'ORTHOGONAL',
    'elk.layered.considerModelOrder.strategy': 'NODES_AND_EDGES',
    // States are defined in lifecycle order: edges against it are the back edges.
    'elk.layered.cycleBreaking.strategy': 'MODEL_ORDER',
    'elk.layered.crossingMinimization.forceNodeModelOrder': 'false',
    'elk.layered.nodePlacement.strategy': 'NETWORK_SIMPLEX',
    'elk.layered.spacing.nodeNodeBetweenLayers': '46',
    'elk.layered.spacing.edgeNodeBetweenLayers': '18',
    'elk.layered.spacing.edgeEdgeBetweenLayers': '12',
    'elk.spacing.nodeNode': '36',
    'elk.spacing.edgeNode': '18',
    'elk.spacing.edgeEdge': '12',
    'elk.spacing.edgeLabel': '4',
    'elk.edgeLabels.placement': 'CENTER',
    // Labels in the layer right below their source: a transition reads next to the state it leaves.
    'elk.layered.edgeLabels.centerLabelPlacementStrategy': 'TAIL_LAYER',
    'elk.layered.edgeLabels.sideSelection': 'SMART_DOWN',
    'elk.json.shapeCoords': 'ROOT',
    'elk.json.edgeCoords': 'ROOT',
    'elk.padding': '[top=16,left=16,bottom=16,right=16]',
    ...elkOptions,
  };

  // One edge per (source, target); its label lists the transitions.
  const groups = new Map<string, GraphTransition[]>();
  for (const t of graph.transitions) {
    const key = `${t.source}\u0000${t.target}`;
    const list = groups.get(key);
    if (list === undefined) groups.set(key, [t]);
    else list.push(t);
  }
  const edgeGroups = new Map<string, GraphTransition[]>();
  let n = 0;
  for (const list of groups.values()) {
    const { source, target } = list[0]!;
    const id = `e${n++}`;
    edgeGroups.set(id, list);
    const lines = list.map((t) => t.label);
    const box = labelBox(lines);
    const label: ElkLabel = { id: `${id}#label`, text: lines.join('\n'), width: box.width, height: box.height };
    const edge: ElkExtendedEdge = { id, sources: [source], targets: [target], ...(withLabels ? { labels: [label] } : {}) };
    let container = commonAncestor(byId, source, target);
    // An edge from a compound state to its own child is contained by the compound's parent.
    if (container === source || container === target) container = byId.get(container)?.parent ?? graph.machineId;
    elkNodes.get(container)!.edges!.push(edge);
  }
  for (const state of graph.states) {
    if (state.initial === undefined) continue;
    elkNodes.get(state.id)!.edges!.push({
      id: `${state.id}#initial-edge`,
      sources: [`${state.id}#initial`],
      targets: [state.initial],
    });
  }

  const elk = new ELK();
  const out = await elk.layout(top);

  const states: LaidOutState[] = [];
  const initials: LaidOutInitial[] = [];
  const edges: LaidOutEdge[] = [];
  const placed = new Map<string, ElkNode>();
  const visit = (node: ElkNode, depth: number): void => {
    placed.set(node.id, node);
    for (const child of node.children ?? []) visit(child, depth + 1);
    for (const edge of node.edges ?? []) {
      const section = edge.sections?.[0];
      const points: Point[] =
        section === undefined ? [] : [section.startPoint, ...(section.bendPoints ?? []), section.endPoint].map((p) => ({ x: p.x, y: p.y }));
      const list = edgeGroups.get(edge.id);
      if (list === undefined) continue;
      const label = edge.labels?.[0];
      edges.push({
        id: edge.id,
        source: list[0]!.source,
        target: list[0]!.target,
        transitions: list,
        points,
        label: {
          shown: label !== undefined,
          x: label?.x ?? 0,
          y: label?.y ?? 0,
          width: label?.width ?? 0,
          height: label?.height ?? 0,
          lines: list.map((t) => t.label),
        },
      });
    }
  };
  visit(out, 0);
  const depthOf = (s: GraphState): number => s.path.length;
  for (const state of graph.states) {
    if (state.id === graph.machineId) continue;
    const node = placed.get(state.id);
    if (node === undefined) continue;
    const parent = state.parent === undefined ? undefined : byId.get(state.parent);
    states.push({
      id: state.id,
      key: state.key,
      kind: state.kind,
      region: parent?.kind === 'parallel',
      depth: depthOf(state),
      x: node.x ?? 0,
      y: node.y ?? 0,
      width: node.width ?? 0,
      height: node.height ?? 0,
      internal: state.internal,
    });
  }
  const initialEdges = new Map<string, Point[]>();
  const collect = (node: ElkNode): void => {
    for (const edge of node.edges ?? []) {
      if (!edge.id.endsWith('#initial-edge')) continue;
      const section = edge.sections?.[0];
      if (section !== undefined) {
        initialEdges.set(edge.id, [section.startPoint, ...(section.bendPoints ?? []), section.endPoint].map((p) => ({ x: p.x, y: p.y })));
      }
    }
    for (const child of node.children ?? []) collect(child);
  };
  collect(out);
  for (const state of graph.states) {
    if (state.initial === undefined) continue;
    const dot = placed.get(`${state.id}#initial`);
    if (dot === undefined) continue;
    initials.push({
      parent: state.id,
      target: state.initial,
      x: (dot.x ?? 0) + INITIAL_R,
      y: (dot.y ?? 0) + INITIAL_R,
      r: INITIAL_R,
      points: initialEdges.get(`${state.id}#initial-edge`) ?? [],
    });
  }
  return { machineId: graph.machineId, width: out.width ?? 0, height: out.height ?? 0, labels: withLabels, states, initials, edges };
}
