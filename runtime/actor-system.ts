/**
 * One XState actor system shared by all the peer machines of an engine.
 *
 * `createActor(machine)` without a parent builds a new actor system for every
 * actor: about fifteen closures, two Maps, a WeakMap, a Set and two
 * dictionary-mode objects for its timers, about 2 KB per peer, and every
 * inspection event is copied once more for the system's observers. A hub
 * holding 100,000 idle peers pays that 100,000 times.
 *
 * Here every peer actor is created with a stand-in parent, an `ActorHost`
 * (the peer's record in the engine's registry), whose `system` is this one. XState takes the
 * system from the parent, so all peer actors and their children share it.
 * This system differs from XState's own where sharing would cost:
 *
 * - timers are kept per actor (a short list on the host), so stopping one
 *   actor cancels its own timers without looking at anybody else's (XState's
 *   `cancelAll` walks every timer of the system);
 * - a root peer actor is stopped with `stopRootActor`, as `stop()` refuses
 *   actors that have a parent;
 * - its done and error events, which XState relays to the parent, reach the
 *   host's `hostEvent` callback instead of an observer per actor;
 * - microsteps of root peer actors go straight to one `microstep` callback,
 *   and inspection events are built for `inspect` only when one is given.
 *   They have XState's shape (`rootId` is the peer actor's session id), and
 *   the stand-in parent never shows: a root actor's first event has no
 *   `sourceRef`, and its done and error events are not inspection events,
 *   exactly as for an actor created without a parent.
 *
 * It relies on the parts of XState's `Actor` (xstate 5.33) that use the
 * system: `parent.system`, `_bookId`, `_register`, `_unregister`, `_set`,
 * `_relay`, `_sendInspectionEvent`, `scheduler`, `_clock`, `_logger`.
 * `createRootActor` checks that the actor took this system and throws if an
 * XState release ever stops doing so.
 */
import { createActor, type Actor, type ActorOptions, type ActorSystem, type AnyActorLogic, type AnyActorRef, type EventObject, type InspectionEvent } from 'xstate';
import type { Clock } from '../protocol/time.js';

/** What this system reads of XState's actors. */
interface ActorRefLike {
  readonly sessionId: string;
  readonly _parent?: ActorRefLike | ActorHost | undefined;
  _send(event: unknown): void;
}

/** The systems XState's actors run in: what `SharedActorSystem` implements (checked by the compiler). */
type XStateSystem = ActorSystem<{ actors: Record<string, AnyActorRef> }>;

/** Pending delayed events, in the shape of XState's system snapshot. */
type ScheduledSnapshot = ReturnType<XStateSystem['getSnapshot']>;

interface ScheduledEvent {
  readonly source: ActorRefLike;
  readonly target: ActorRefLike;
  readonly event: unknown;
  readonly delay: number;
  readonly id: string;
  /** `clock.now()` when it was scheduled (XState's snapshot carries it). */
  readonly startedAt: number;
  handle: unknown;
  /** The next timer of the same source actor. */
  next: ScheduledEvent | undefined;
}

/**
 * The stand-in parent of a root actor. XState reads `system` from it when the
 * actor is created and relays the actor's done and error events to `_send`.
 */
export class ActorHost {
  readonly system: SharedActorSystem;
  /** @internal The root actor's pending timers (a list through `next`). */
  _timers: ScheduledEvent | undefined = undefined;

  constructor(system: SharedActorSystem) {
    this.system = system;
  }

  /** @internal Called by XState with the actor's done or error event. */
  _send(event: { readonly type: string }): void {
    this.system.hostEvent(this, event);
  }
}

export interface SharedActorSystemOptions<H extends ActorHost> {
  readonly clock: Clock;
  /** Every microstep of a root actor: its host, the actor, the snapshot it reached, the event that caused it. */
  readonly microstep: (host: H, actorRef: unknown, snapshot: unknown, eventType: string) => void;
  /** The root actor of `host` is done (`xstate.done.actor.*`) or failed (`xstate.error.actor.*`, with `error`). */
  readonly hostEvent: (host: H, event: { readonly type: string; readonly error?: unknown }) => void;
  /** Receives every inspection event, in XState's shape. Without it none is built. */
  readonly inspect?: ((event: InspectionEvent) => void) | undefined;
  /** The hosts whose actors are alive, for `getSnapshot` (the engine's registry). */
  readonly hosts: () => Iterable<H>;
}

let nextSessionId = 0;

/**
 * `implements` makes the compiler hold this system to XState's declared
 * `ActorSystem` (scheduler, inspect, get/getAll, getSnapshot, start, _clock,
 * _logger): an xstate release that changes those fails to compile here, which
 * is why the package accepts only the xstate minor it was built against. The
 * other internals listed above are not in XState's declarations;
 * `createRootActor` checks at run time that they are still used.
 */
export class SharedActorSystem<H extends ActorHost = ActorHost> implements XStateSystem {
  /** XState's scheduler interface is the system itself (`schedule`, `cancel`, `cancelAll`). */
  readonly scheduler = this;
  readonly _clock: Clock;
  readonly _logger = console.log.bind(console);
  readonly #options: SharedActorSystemOptions<H>;
  /** Timers of actors that are not root actors (children of a peer actor). */
  #childTimers: Map<ActorRefLike, ScheduledEvent> | undefined;
  #keyed: Map<string, AnyActorRef> | undefined;
  #observers: Set<{ next?: (event: InspectionEvent) => void }> | undefined;
  /** What `_snapshot` last built; dropped whenever a timer is set, cleared or fires. */
  #built: ScheduledSnapshot | undefined;

  constructor(options: SharedActorSystemOptions<H>) {
    this.#options = options;
    this._clock = options.clock;
  }

  hostEvent(host: ActorHost, event: { readonly type: string; readonly error?: unknown }): void {
    this.#options.hostEvent(host as H, event);
  }

  // ------------------------------------------------------------ registry

  _bookId(): string {
    return `x:peer:${nextSessionId++}`;
  }

  _register(sessionId: string, _actorRef: unknown): string {
    return sessionId;
  }

  _unregister(actorRef: AnyActorRef): void {
    const keyed = this.#keyed;
    if (keyed === undefined) return;
    for (const [systemId, ref] of keyed) if (ref === actorRef) keyed.delete(systemId);
  }

  _set(systemId: string, actorRef: AnyActorRef): void {
    const keyed = (this.#keyed ??= new Map());
    const existing = keyed.get(systemId);
    if (existing !== undefined && existing !== actorRef) throw new Error(`Actor with system ID '${systemId}' already exists.`);
    keyed.set(systemId, actorRef);
  }

  get(systemId: string): AnyActorRef | undefined {
    return this.#keyed?.get(systemId);
  }

  getAll(): Record<string, AnyActorRef> {
    return Object.fromEntries(this.#keyed ?? []);
  }

  start(): void {}

  // ------------------------------------------------------------ events

  _relay(source: ActorRefLike | undefined, target: ActorRefLike | ActorHost, event: unknown): void {
    if (target instanceof ActorHost) {
      target._send(event as { type: string });
      return;
    }
    this._sendInspectionEvent({ type: '@xstate.event', sourceRef: source, actorRef: target, event });
    target._send(event);
  }

  inspect(observerOrFn: ((event: InspectionEvent) => void) | { next?: (event: InspectionEvent) => void }): { unsubscribe(): void } {
    const observer = typeof observerOrFn === 'function' ? { next: observerOrFn } : observerOrFn;
    const observers = (this.#observers ??= new Set());
    observers.add(observer);
    return { unsubscribe: () => observers.delete(observer) };
  }

  _sendInspectionEvent(event: { readonly type: string; readonly actorRef: unknown; readonly sourceRef?: unknown; [key: string]: unknown }): void {
    const actorRef = event.actorRef as ActorRefLike;
    if (event.type === '@xstate.microstep' && actorRef._parent instanceof ActorHost) {
      const step = event as unknown as { snapshot: unknown; event: { type: string } };
      this.#options.microstep(actorRef._parent as H, actorRef, step.snapshot, step.event.type);
    }
    const inspect = this.#options.inspect;
    const observers = this.#observers;
    if (inspect === undefined && (observers === undefined || observers.size === 0)) return;
    const resolved = { ...event, rootId: rootOf(actorRef).sessionId } as unknown as InspectionEvent & { sourceRef?: unknown };
    // A root actor's stand-in parent is not an actor: its first event has no source, as without a parent.
    if (resolved.sourceRef instanceof ActorHost) resolved.sourceRef = undefined;
    inspect?.(resolved);
    if (observers !== undefined) for (const observer of observers) observer.next?.(resolved);
  }

  // ------------------------------------------------------------ scheduler

  schedule(sourceRef: AnyActorRef, targetRef: AnyActorRef, event: EventObject, delay: number, id: string = Math.random().toString(36).slice(2)): void {
    const source = sourceRef as unknown as ActorRefLike;
    const target = targetRef as unknown as ActorRefLike;
    const startedAt = this._clock.now();
    const scheduled: ScheduledEvent = { source, target, event, delay, id, startedAt, handle: undefined, next: this.#timersOf(source) };
    this.#setTimersOf(source, scheduled);
    scheduled.handle = this._clock.setTimeout(() => this.#fire(scheduled), delay);
  }

  cancel(sourceRef: AnyActorRef, id: string): void {
    const source = sourceRef as unknown as ActorRefLike;
    let previous: ScheduledEvent | undefined;
    for (let s = this.#timersOf(source); s !== undefined; previous = s, s = s.next) {
      if (s.id !== id) continue;
      this.#unlink(source, previous, s);
      this._clock.clearTimeout(s.handle);
      return;
    }
  }

  cancelAll(ref: AnyActorRef): void {
    const actorRef = ref as unknown as ActorRefLike;
    let s = this.#timersOf(actorRef);
    if (s === undefined) return;
    this.#setTimersOf(actorRef, undefined);
    for (; s !== undefined; s = s.next) this._clock.clearTimeout(s.handle);
  }

  /**
   * Pending delayed events in the shape of XState's system snapshot (keyed by
   * `<sessionId>.<id>`), built on demand: for tests and tools, not for the hot path.
   */
  getSnapshot(): ScheduledSnapshot {
    return { _scheduledEvents: { ...this._snapshot._scheduledEvents } };
  }

  /** The same, where XState's own system keeps it; built again only after the timers changed. Read only. */
  get _snapshot(): ScheduledSnapshot {
    if (this.#built !== undefined) return this.#built;
    const all: ScheduledSnapshot['_scheduledEvents'] = {};
    const add = (first: ScheduledEvent | undefined): void => {
      for (let s = first; s !== undefined; s = s.next) {
        const { source, target, event, delay, id, startedAt } = s;
        all[`${source.sessionId}.${id}`] = { source: source as unknown as AnyActorRef, target: target as unknown as AnyActorRef, event: event as EventObject, delay, id, startedAt };
      }
    };
    for (const host of this.#options.hosts()) add(host._timers);
    for (const first of this.#childTimers?.values() ?? []) add(first);
    this.#built = { _scheduledEvents: all };
    return this.#built;
  }

  #fire(scheduled: ScheduledEvent): void {
    let previous: ScheduledEvent | undefined;
    for (let s = this.#timersOf(scheduled.source); s !== undefined; previous = s, s = s.next) {
      if (s !== scheduled) continue;
      this.#unlink(scheduled.source, previous, s);
      break;
    }
    this._relay(scheduled.source, scheduled.target, scheduled.event);
  }

  #unlink(source: ActorRefLike, previous: ScheduledEvent | undefined, scheduled: ScheduledEvent): void {
    this.#built = undefined;
    if (previous === undefined) this.#setTimersOf(source, scheduled.next);
    else previous.next = scheduled.next;
  }

  #timersOf(actorRef: ActorRefLike): ScheduledEvent | undefined {
    const parent = actorRef._parent;
    return parent instanceof ActorHost ? parent._timers : this.#childTimers?.get(actorRef);
  }

  #setTimersOf(actorRef: ActorRefLike, first: ScheduledEvent | undefined): void {
    this.#built = undefined;
    const parent = actorRef._parent;
    if (parent instanceof ActorHost) {
      parent._timers = first;
      return;
    }
    if (first !== undefined) (this.#childTimers ??= new Map()).set(actorRef, first);
    else this.#childTimers?.delete(actorRef);
  }
}

function rootOf(actorRef: ActorRefLike): ActorRefLike {
  let actor = actorRef;
  while (actor._parent !== undefined && !(actor._parent instanceof ActorHost)) actor = actor._parent;
  return actor;
}

/**
 * Creates a root actor of `host.system`: `logic` runs with `host` as its
 * stand-in parent. Throws if XState did not take the host's system.
 */
export function createRootActor<TLogic extends AnyActorLogic>(
  logic: TLogic,
  host: ActorHost,
  options: Omit<ActorOptions<TLogic>, 'parent' | 'inspect' | 'clock'>,
): Actor<TLogic> {
  const actor = createActor(logic, { ...options, parent: host as unknown as AnyActorRef } as never) as Actor<TLogic>;
  if ((actor as unknown as { system: unknown }).system !== host.system) {
    throw new Error('this XState release does not take an actor system from the parent: the shared actor system needs xstate 5.x');
  }
  return actor;
}

/** Stops a root actor of a shared system (`actor.stop()` refuses actors with a parent). */
export function stopRootActor(actor: AnyActorRef): void {
  (actor as unknown as { _stop(): void })._stop();
}
