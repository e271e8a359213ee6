/**
 * The shape of a state machine, read from its definition (`machine.root`):
 * every state node and every transition that has a target. This is what the
 * SVG, the Mermaid export and the live page draw; nothing here is hand-kept,
 * so a change to the machine changes the drawings.
 */
import { and, not, or, type AnyStateMachine } from 'xstate';
import { checkString } from '../adapters/arguments.js';
import { checkMachine } from './checks.js';

// The combinators' check functions identify `and([...])`, `or([...])` and `not(...)` guards.
const checkOf = (guard: unknown): unknown => (guard as { check?: unknown }).check;
const CHECK_AND = checkOf(and([]));
const CHECK_OR = checkOf(or([]));
const CHECK_NOT = checkOf(not('x'));

export type StateKind = 'atomic' | 'compound' | 'parallel' | 'final' | 'history';

export interface GraphState {
  /** The state node's id, e.g. `peerConnection.connecting.dialing` (what a snapshot value resolves to). */
  readonly id: string;
  /** The last segment of the path, e.g. `pinging`. */
  readonly key: string;
  /** Keys from the root, e.g. `['connecting', 'dialing']` (empty for the root). */
  readonly path: readonly string[];
  readonly kind: StateKind;
  /** Id of the parent state; undefined for the root. */
  readonly parent: string | undefined;
  /** Ids of the child states, in definition order. */
  readonly children: readonly string[];
  /** Id of the initial child of a compound state. */
  readonly initial: string | undefined;
  /** Events this state handles without leaving (no target): shown as a note, not as edges. */
  readonly internal: readonly string[];
  /** Children that run in parallel (the regions of a parallel state). */
  readonly regions: boolean;
}

export type TransitionKind = 'event' | 'after' | 'always' | 'done' | 'error';

export interface GraphTransition {
  /** Unique within the graph, stable for a given machine. */
  readonly id: string;
  readonly source: string;
  readonly target: string;
  readonly kind: TransitionKind;
  /** The event type as XState names it (e.g. `xstate.after.connectTimeout.peerConnection.connecting.dialing`). */
  readonly eventType: string;
  /** What a person reads: `CONNECTION.CLOSED [isCurrent]`, `after connectTimeout`, `done: dial`, `always [isSettled]`. */
  readonly label: string;
  /** Name of the guard, when it has one. */
  readonly guard: string | undefined;
  readonly reenter: boolean;
}

export interface MachineGraph {
  readonly machineId: string;
  /** Root first, then depth-first in definition order. */
  readonly states: readonly GraphState[];
  readonly transitions: readonly GraphTransition[];
}

// XState's state node, reduced to what is read here (its public runtime shape).
interface NodeLike {
  readonly id: string;
  readonly key: string;
  readonly path: readonly string[];
  readonly type: string;
  readonly parent?: NodeLike;
  readonly states: Record<string, NodeLike>;
  readonly initial?: { readonly target: readonly NodeLike[] } | undefined;
  readonly transitions: Map<string, readonly TransitionLike[]>;
  readonly always?: readonly TransitionLike[];
  readonly invoke: readonly { readonly id: string; readonly src: unknown }[];
}

interface TransitionLike {
  readonly eventType: string;
  readonly target?: readonly NodeLike[] | undefined;
  readonly guard?: unknown;
  readonly reenter?: boolean;
}

/** The name of a guard: a named guard's type, `a && b` for `and([...])`, `!a` for `not(a)`. */
export function guardName(guard: unknown): string | undefined {
  if (guard === undefined || guard === null) return undefined;
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'object' && 'type' in guard && typeof (guard as { type: unknown }).type === 'string') {
    return (guard as { type: string }).type;
  }
  if (typeof guard === 'function') {
    const combined = (guard as { guards?: unknown }).guards;
    const check = (guard as { check?: unknown }).check;
    if (Array.isArray(combined) && check !== undefined) {
      const names = combined.map(guardName);
      if (names.some((n) => n === undefined)) return undefined;
      if (check === CHECK_NOT && names.length === 1) return `!${names[0]!}`;
      if (check === CHECK_AND) return names.join(' && ');
      if (check === CHECK_OR) return names.join(' || ');
    }
  }
  // An inline function: it has no name worth showing.
  return undefined;
}

function invokeSrc(node: NodeLike, invokeId: string): string {
  for (let n: NodeLike | undefined = node; n !== undefined; n = n.parent) {
    const found = n.invoke.find((i) => i.id === invokeId);
    if (found !== undefined) return typeof found.src === 'string' ? found.src : invokeId;
  }
  return invokeId;
}

/** Reads an XState event type as a person would: `after connectTimeout`, `done: dial`. */
function describe(node: NodeLike, eventType: string): { kind: TransitionKind; text: string } {
  if (eventType.startsWith('xstate.after.')) {
    // `xstate.after.<delay>.<id of the state that set the timer>`.
    const rest = eventType.slice('xstate.after.'.length);
    const delay = rest.endsWith(`.${node.id}`) ? rest.slice(0, -(node.id.length + 1)) : rest.split('.')[0]!;
    return { kind: 'after', text: /^\d+$/.test(delay) ? `after ${delay}ms` : `after ${delay}` };
  }
  if (eventType.startsWith('xstate.done.actor.')) {
    return { kind: 'done', text: `done: ${invokeSrc(node, eventType.slice('xstate.done.actor.'.length))}` };
  }
  if (eventType.startsWith('xstate.error.actor.')) {
    return { kind: 'error', text: `error: ${invokeSrc(node, eventType.slice('xstate.error.actor.'.length))}` };
  }
  if (eventType.startsWith('xstate.done.state.')) return { kind: 'done', text: 'done' };
  return { kind: 'event', text: eventType };
}

const graphs = new WeakMap<AnyStateMachine, MachineGraph>();

/** Every state and every targeted transition of `machine`, in definition order (computed once per machine). */
export function machineGraph(machine: AnyStateMachine): MachineGraph {
  checkMachine('machine', machine);
  let graph = graphs.get(machine);
  if (graph === undefined) {
    graph = readGraph(machine);
    graphs.set(machine, graph);
  }
  return graph;
}

function readGraph(machine: AnyStateMachine): MachineGraph {
  const root = machine.root as unknown as NodeLike;
  const states: GraphState[] = [];
  const transitions: GraphTransition[] = [];
  const seen = new Map<string, number>();

  const add = (node: NodeLike, t: TransitionLike, always: boolean): boolean => {
    const targets = t.target ?? [];
    if (targets.length === 0) return false;
    const guard = guardName(t.guard);
    const { kind, text } = always ? { kind: 'always' as const, text: 'always' } : describe(node, t.eventType);
    for (const target of targets) {
      const base = `${node.id}->${target.id}:${always ? 'always' : t.eventType}`;
      const n = seen.get(base) ?? 0;
      seen.set(base, n + 1);
      transitions.push({
        id: n === 0 ? base : `${base}#${n}`,
        source: node.id,
        target: target.id,
        kind,
        eventType: always ? '' : t.eventType,
        label: guard === undefined ? text : `${text} [${guard}]`,
        guard,
        reenter: t.reenter === true,
      });
    }
    return true;
  };

  const walk = (node: NodeLike): void => {
    const internal: string[] = [];
    for (const [eventType, list] of node.transitions) {
      let targetless = false;
      for (const t of list) if (!add(node, t, false)) targetless = true;
      if (targetless && !internal.includes(eventType)) internal.push(eventType);
    }
    for (const t of node.always ?? []) add(node, t, true);
    const children = Object.values(node.states);
    states.push({
      id: node.id,
      key: node.key,
      path: [...node.path],
      kind: (['atomic', 'compound', 'parallel', 'final', 'history'].includes(node.type) ? node.type : 'atomic') as StateKind,
      parent: node.parent?.id,
      children: children.map((c) => c.id),
      initial: node.type === 'compound' ? node.initial?.target[0]?.id : undefined,
      internal,
      regions: node.type === 'parallel',
    });
    for (const child of children) walk(child);
  };
  walk(root);
  return { machineId: root.id, states, transitions };
}

/** Ids of the state nodes a snapshot value is in, e.g. `{ ready: 'idle' }`. */
export function activeStateIds(machineId: string, value: unknown): string[] {
  checkString('machineId', machineId);
  const ids: string[] = [machineId];
  const visit = (prefix: string, v: unknown): void => {
    if (typeof v === 'string') {
      ids.push(`${prefix}.${v}`);
      return;
    }
    if (v === null || typeof v !== 'object') return;
    for (const [key, sub] of Object.entries(v as Record<string, unknown>)) {
      ids.push(`${prefix}.${key}`);
      visit(`${prefix}.${key}`, sub);
    }
  };
  visit(machineId, value);
  return ids;
}

/** The top-level state of a snapshot value: `'ready'` for `{ ready: { ... } }`. */
export function topLevelState(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object') return Object.keys(value)[0];
  return undefined;
}

/** A snapshot value as one line: `ready (idle)`; a parallel state's regions comma-separated: `on (light.dim, fan.fast)`. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value === null || typeof value !== 'object') return String(value);
  const leaves = (v: unknown, prefix: string): string[] => {
    if (typeof v === 'string') return [prefix === '' ? v : `${prefix}.${v}`];
    if (v === null || typeof v !== 'object') return [];
    return Object.entries(v as Record<string, unknown>).flatMap(([k, sub]) => leaves(sub, prefix === '' ? k : `${prefix}.${k}`));
  };
  const [top, sub] = Object.entries(value as Record<string, unknown>)[0] ?? [];
  if (top === undefined) return '';
  const inner = leaves(sub, '');
  return inner.length === 0 ? top : `${top} (${inner.join(', ')})`;
}
