/**
 * Inspectors of the peer machines (the `inspect` option, `engine.inspect()`):
 * each is registered with the engine's shared actor system once it exists,
 * guarded so that an inspector that throws costs a count and a log line, and
 * told at once about the machines already running when it is attached late.
 * With none attached, the actor system builds no inspection event.
 */
import type { AnyActorRef, InspectionEvent, Subscription } from 'xstate';
import type { SharedActorSystem } from './actor-system.js';
import type { PeerRecord } from './peer-record.js';
import { inspectionCallback, type InspectionObserver } from './validate.js';

/**
 * The snapshot event a machine that was already running gets when an
 * inspector is attached, after its `@xstate.actor` event, so the inspector
 * knows it and its current state.
 */
export const INSPECT_ATTACHED_EVENT = Object.freeze({ type: 'peerline.inspect.attached' });

/** What `engine.inspect()` returns: detaches the inspector (also with `using`). */
export interface InspectionSubscription extends Subscription {
  [Symbol.dispose](): void;
}

export class Inspection {
  /** Attached inspection callbacks (guarded), with their subscription to the actor system once it exists. */
  readonly #inspectors = new Map<(event: InspectionEvent) => void, Subscription | undefined>();
  readonly #failed: (what: string, error: unknown) => void;
  #system: SharedActorSystem<PeerRecord> | undefined;

  constructor(failed: (what: string, error: unknown) => void) {
    this.#failed = failed;
  }

  /** The actor system was made: every inspector attached so far registers with it. */
  systemCreated(system: SharedActorSystem<PeerRecord>): void {
    this.#system = system;
    for (const callback of this.#inspectors.keys()) this.#inspectors.set(callback, system.inspect(callback));
  }

  /** Checks `observer` (a TypeError naming `name`) and registers it; returns its guarded callback. */
  attach(observer: InspectionObserver, name: string): (event: InspectionEvent) => void {
    const next = inspectionCallback(name, observer);
    const callback = (event: InspectionEvent): void => {
      try {
        next(event);
      } catch (error) {
        this.#failed('inspect', error);
      }
    };
    this.#inspectors.set(callback, this.#system?.inspect(callback));
    return callback;
  }

  /** Attaches `observer`, announcing to it the machines of `records` already running. */
  inspect(observer: InspectionObserver, records: Iterable<PeerRecord>): InspectionSubscription {
    const callback = this.attach(observer, 'observer');
    announce(callback, records);
    const unsubscribe = (): void => {
      this.#inspectors.get(callback)?.unsubscribe();
      this.#inspectors.delete(callback);
    };
    return { unsubscribe, [Symbol.dispose]: unsubscribe };
  }
}

/** Tells a newly attached inspector about every machine already running, as XState would have at their start. */
function announce(callback: (event: InspectionEvent) => void, records: Iterable<PeerRecord>): void {
  for (const record of records) {
    const actor = record.actor as AnyActorRef | undefined;
    if (record.removed || actor === undefined) continue;
    const rootId = actor.sessionId;
    const snapshot = actor.getSnapshot() as { children?: Record<string, AnyActorRef | undefined> };
    callback({ type: '@xstate.actor', actorRef: actor, rootId });
    callback({ type: '@xstate.snapshot', actorRef: actor, rootId, snapshot: snapshot as never, event: INSPECT_ATTACHED_EVENT });
    for (const child of Object.values(snapshot.children ?? {})) {
      if (child !== undefined) callback({ type: '@xstate.actor', actorRef: child, rootId });
    }
  }
}
