/**
 * The transitions the peer connection machine defines, read from the machine
 * itself (never from a hand-kept list), and a recorder that marks the ones a
 * running actor takes, fed by XState's inspection events.
 *
 * A transition is one entry of a state node's transition table: an event
 * (`on`), a delay (`after`), an invoked actor's `onDone`/`onError`, or an
 * eventless `always` entry. Guarded alternatives for the same event are
 * separate transitions (`REQUEST #0`, `REQUEST #1`, ...), in the order the
 * machine tries them. Root handlers count once, whatever state took them.
 */
import type { AnyStateMachine, InspectionEvent } from 'xstate';
import { getStateNodes } from 'xstate/graph';
import { connectionMachine } from '../../machines/connection-machine.js';

/** One entry of the machine's transition tables. */
export interface DefinedTransition {
  /** Stable key: `<source> <event> #<index>`, e.g. `ready REQUEST #2`. */
  readonly key: string;
  /** State node path without the machine id, e.g. `connecting.dialing`; `(root)` for root handlers. */
  readonly source: string;
  /** Short event label: `REQUEST`, `after connectTimeout`, `done dial`, `error dial`, `always`. */
  readonly event: string;
  /** The raw event type as XState names it ('' for always). */
  readonly eventType: string;
  readonly index: number;
  /** Target state paths, or `(self)` when the transition stays. */
  readonly target: string;
  /** Guard name, `inline` for an inline guard, '' when unguarded. */
  readonly guard: string;
}

/** Minimal shapes of XState's internal transition objects (stable since v5.0). */
interface StateNodeLike {
  readonly id: string;
  readonly machine: AnyStateMachine;
  readonly transitions: Map<string, TransitionLike[]>;
  readonly always?: TransitionLike[];
  readonly invoke: ReadonlyArray<{ readonly id: string; readonly src: unknown }>;
}

interface TransitionLike {
  readonly source: StateNodeLike;
  readonly target?: ReadonlyArray<{ readonly id: string }>;
  readonly eventType: string;
  readonly guard?: unknown;
}

function path(id: string, machineId: string): string {
  if (id === machineId) return '(root)';
  return id.startsWith(`${machineId}.`) ? id.slice(machineId.length + 1) : id;
}

function guardName(guard: unknown): string {
  if (guard === undefined) return '';
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'function') return 'inline';
  if (typeof guard === 'object' && guard !== null && 'type' in guard) {
    const g = guard as { type: unknown; params?: unknown };
    if (typeof g.type === 'string') {
      const inner = (g as { guards?: unknown[] }).guards;
      if (Array.isArray(inner)) return `${g.type.replace('xstate.', '')}(${inner.map(guardName).join(', ')})`;
      return g.type;
    }
  }
  return 'inline';
}

/** A readable label for an XState event type in the context of its source node. */
export function eventLabel(eventType: string, source: StateNodeLike): string {
  if (eventType === '') return 'always';
  const after = /^xstate\.after\.(.+?)\.(.+)$/.exec(eventType);
  if (after !== null && after[2] === source.id) return `after ${after[1]}`;
  const actor = /^xstate\.(done|error)\.actor\.(.+)$/.exec(eventType);
  if (actor !== null) {
    const invoke = source.invoke.find((i) => i.id === actor[2]);
    const src = typeof invoke?.src === 'string' ? invoke.src : (actor[2] ?? '?');
    return `${actor[1]} ${src}`;
  }
  return eventType;
}

function describe(t: TransitionLike, index: number): DefinedTransition {
  const machineId = t.source.machine.id;
  const source = path(t.source.id, machineId);
  const event = eventLabel(t.eventType, t.source);
  return {
    key: `${source} ${event} #${index}`,
    source,
    event,
    eventType: t.eventType,
    index,
    target: t.target === undefined || t.target.length === 0 ? '(self)' : t.target.map((x) => path(x.id, machineId)).join(','),
    guard: guardName(t.guard),
  };
}

/** Every transition `machine` defines, in document order (root first). */
export function definedTransitions(machine: AnyStateMachine = connectionMachine): DefinedTransition[] {
  const root = machine.root as unknown as StateNodeLike;
  const nodes = [root, ...(getStateNodes(machine.root) as unknown as StateNodeLike[])];
  const out: DefinedTransition[] = [];
  for (const node of nodes) {
    for (const list of node.transitions.values()) list.forEach((t, i) => out.push(describe(t, i)));
    (node.always ?? []).forEach((t, i) => out.push(describe(t, i)));
  }
  return out;
}

/**
 * The key of a transition object a running actor took. The actor may run a
 * `machine.provide(...)` copy of the machine (the engine does): its state nodes
 * are other objects, so the key is found by position in the copy's own tables.
 */
export function keyOf(t: TransitionLike): string {
  const list = t.eventType === '' ? (t.source.always ?? []) : (t.source.transitions.get(t.eventType) ?? []);
  const index = list.indexOf(t);
  return describe(t, index).key;
}

/** Counts the transitions taken by every actor whose inspection events it sees. */
export class TransitionRecorder {
  readonly taken = new Map<string, number>();
  /** Which test first took each transition (for the report). */
  readonly firstBy = new Map<string, string>();
  /** The label given to transitions taken from now on. */
  current = '';
  /** What caused the transitions taken from now on (a test step's kind). */
  cause = '';
  /** For each transition, the causes that took it. */
  readonly causes = new Map<string, Set<string>>();

  /** Pass as (or call from) an `inspect` option. */
  readonly inspect = (event: InspectionEvent): void => {
    if (event.type !== '@xstate.microstep') return;
    const transitions = (event as unknown as { _transitions?: TransitionLike[] })._transitions;
    if (transitions === undefined) return;
    for (const t of transitions) this.mark(keyOf(t));
  };

  mark(key: string): void {
    this.taken.set(key, (this.taken.get(key) ?? 0) + 1);
    if (!this.firstBy.has(key)) this.firstBy.set(key, this.current);
    const causes = this.causes.get(key) ?? new Set<string>();
    causes.add(this.cause);
    this.causes.set(key, causes);
  }

  merge(other: TransitionRecorder): void {
    for (const [key, n] of other.taken) {
      this.taken.set(key, (this.taken.get(key) ?? 0) + n);
      if (!this.firstBy.has(key)) this.firstBy.set(key, other.firstBy.get(key) ?? '');
      const causes = this.causes.get(key) ?? new Set<string>();
      for (const c of other.causes.get(key) ?? []) causes.add(c);
      this.causes.set(key, causes);
    }
  }
}
