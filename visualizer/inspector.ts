/**
 * The inspection sink: fed by XState's `inspect` hook (`createEngine({
 * inspect: inspector.inspect })`, any number of engines at once), it turns
 * each inspection event into the serialized shape `@statelyai/inspect` sends
 * (`@xstate.actor`, `@xstate.event`, `@xstate.snapshot`, with `sessionId`,
 * `rootId`, `parentId`, `createdAt`, `_version`, ...), labels it with the
 * engine and the peer it belongs to, and keeps a bounded history per machine.
 *
 * - Shapes: the same keys and values `@statelyai/inspect` 0.7 writes, so its
 *   tools read them; anything it subscribes can forward them as they are
 *   (`inspector.subscribe(({ event }) => statelyAdapter.send(event))`).
 * - Safety: context, events and snapshots are plain JSON (functions dropped,
 *   actors written as `{ xstate$$type: 1, id }`, cycles and depth cut). The
 *   hook never throws into the engine.
 * - Memory: each peer machine keeps its last `historyLimit` events (a ring
 *   buffer, its child actors' events included); finished machines are kept
 *   for the page up to `maxFinished`, oldest dropped first.
 * - Labels: a peer machine's engine is its context's `localPeerId` (or the
 *   label given to `inspectFor`), its peer the context's `peerId`.
 */
import { Subject, type Observable } from 'rxjs';
import type { InspectionEvent } from 'xstate';
import {
  checkBoolean,
  checkFunction,
  checkNumber,
  checkObject,
  checkOptionalFunction,
  checkOptionalNumber,
  checkOptionalString,
  checkString,
  COUNT,
} from '../adapters/arguments.js';
import { topLevelState } from './graph.js';
import { RingBuffer } from './ring.js';
import { toJson, type Json } from './serialize.js';

/** The `@statelyai/inspect` release whose event shapes these follow (its `_version` field). */
export const INSPECT_PROTOCOL_VERSION = '0.7.2';

export interface InspectedSnapshot {
  readonly status?: 'active' | 'done' | 'error' | 'stopped';
  readonly value?: Json;
  readonly context?: Json;
  readonly output?: Json;
  readonly error?: Json;
  readonly [key: string]: Json | undefined;
}

export interface InspectedEvent {
  readonly type: string;
  readonly [key: string]: Json | undefined;
}

interface StatelyBase {
  readonly sessionId: string;
  readonly rootId: string | undefined;
  readonly createdAt: string;
  readonly id: null;
  readonly _version: string;
}

/** An actor was created (sent once its first snapshot exists). */
export interface StatelyActorEvent extends StatelyBase {
  readonly type: '@xstate.actor';
  readonly name: string;
  readonly parentId: string | undefined;
  /** The machine definition, stringified (functions written as `{ type: name }`). */
  readonly definition: string | undefined;
  readonly snapshot: InspectedSnapshot;
}

/** An event was sent to an actor. */
export interface StatelyEventEvent extends StatelyBase {
  readonly type: '@xstate.event';
  readonly event: InspectedEvent;
  readonly sourceId: string | undefined;
}

/** An actor has a new snapshot, and the event that made it. */
export interface StatelySnapshotEvent extends StatelyBase {
  readonly type: '@xstate.snapshot';
  readonly event: InspectedEvent;
  readonly snapshot: InspectedSnapshot;
}

export type StatelyInspectionEvent = StatelyActorEvent | StatelyEventEvent | StatelySnapshotEvent;

/** One serialized event with the machine it belongs to. */
export interface InspectorEntry {
  readonly engineId: string;
  readonly peerId: string;
  /** `engineId/peerId`: one row on the page. */
  readonly key: string;
  /** Session id of the peer machine (the root actor). */
  readonly machine: string;
  /** True when the event concerns the peer machine itself, false for its child actors. */
  readonly root: boolean;
  readonly event: StatelyInspectionEvent;
}

/** What the page shows for one peer machine. */
export interface PeerView {
  readonly key: string;
  readonly engineId: string;
  readonly peerId: string;
  /** Session id of the machine shown (a peer gets a new machine after its old one closed). */
  readonly sessionId: string;
  /** Top-level state, e.g. `ready`. */
  readonly state: string;
  /** Full state value, e.g. `{ ready: 'busy' }`. */
  readonly value: Json;
  readonly status: 'active' | 'done' | 'error' | 'stopped';
  readonly lastEvent: string | undefined;
  /** `createdAt` of the machine's first and latest snapshots (ms). */
  readonly startedAt: number;
  readonly updatedAt: number;
  /** Snapshots seen for this machine. */
  readonly steps: number;
  /** A few context fields worth a glance (peerline's connection context). */
  readonly details: Readonly<Record<string, string | number | boolean | null>>;
}

/** One line of a peer's timeline: the event and the state it led to. */
export interface TimelineEntry {
  readonly at: number;
  readonly event: string;
  readonly state: string;
  readonly value: Json;
  /** The state value changed with this step. */
  readonly changed: boolean;
  readonly sessionId: string;
}

export interface InspectorOptions {
  /** Events kept per peer machine. @default 100 */
  readonly historyLimit?: number;
  /** Finished machines kept for viewing; the oldest go first. @default 200 */
  readonly maxFinished?: number;
  /** The clock of `createdAt`. @default Date.now */
  readonly now?: () => number;
  /** Depth limit of serialized data (as @statelyai/inspect's `serializationDepthLimit`). @default 10 */
  readonly serializationDepth?: number;
  /** Include the stringified machine definition in `@xstate.actor` events. @default true */
  readonly definitions?: boolean;
}

export interface InspectorStats {
  readonly machines: number;
  readonly active: number;
  readonly finished: number;
  /** Events received from XState or ingested. */
  readonly received: number;
  /** Events that could not be attributed to a known machine. */
  readonly unattributed: number;
  /** Events pushed out of the per-machine histories. */
  readonly evictedEvents: number;
  /** Finished machines forgotten to stay under `maxFinished`. */
  readonly evictedMachines: number;
}

/** A machine (peer connection) and what the inspector knows of it. */
interface MachineRecord {
  readonly sessionId: string;
  readonly key: string;
  readonly engineId: string;
  readonly peerId: string;
  readonly name: string;
  readonly events: RingBuffer<StatelyInspectionEvent>;
  readonly children: Set<string>;
  status: PeerView['status'];
  value: Json;
  context: Json;
  lastEvent: string | undefined;
  startedAt: number;
  updatedAt: number;
  steps: number;
  finished: boolean;
}

interface ActorLike {
  readonly id: string;
  readonly sessionId: string;
  readonly _parent?: { readonly sessionId: string } | undefined;
  readonly logic?: { readonly config?: unknown };
  getSnapshot(): unknown;
}

interface PendingActor {
  readonly ref: ActorLike;
  readonly rootId: string | undefined;
  readonly label: string | undefined;
}

const MAX_PENDING = 1000;

function str(value: Json | undefined): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

function field(context: Json, name: string): Json | undefined {
  return context !== null && typeof context === 'object' && !Array.isArray(context) ? context[name] : undefined;
}

/** A few fields of peerline's connection context, for the peer list. */
function detailsOf(context: Json): Record<string, string | number | boolean | null> {
  const out: Record<string, string | number | boolean | null> = {};
  const pick = (name: string, as = name): void => {
    const v = field(context, name);
    if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') out[as] = v;
  };
  pick('direction');
  pick('pinned');
  pick('attempts');
  pick('streams');
  pick('leases');
  pick('connectionId');
  const length = (name: string): void => {
    const v = field(context, name);
    if (Array.isArray(v)) out[name === 'queue' ? 'queued' : name] = v.length;
  };
  length('queue');
  length('opening');
  const lastError = field(context, 'lastError');
  out.lastError = str(field(lastError ?? null, 'code')) ?? null;
  const ending = field(context, 'ending');
  const endingCode = str(field(field(ending ?? null, 'error') ?? null, 'code'));
  if (endingCode !== undefined) out.ending = endingCode;
  return out;
}

export class Inspector {
  /** Pass to `createEngine({ inspect })` (or `createActor(..., { inspect })`); shared by any number of engines. */
  readonly inspect: (event: InspectionEvent) => void;
  /** Every serialized event, labelled; emits only while subscribed. */
  readonly events$: Observable<InspectorEntry>;

  readonly #options: Required<InspectorOptions>;
  readonly #subject = new Subject<InspectorEntry>();
  readonly #listeners = new Set<(entry: InspectorEntry) => void>();
  readonly #removedListeners = new Set<(key: string, sessionId: string) => void>();
  /** Peer machines by session id. */
  readonly #machines = new Map<string, MachineRecord>();
  /** The machine shown for each `engine/peer` key: the newest. */
  readonly #byKey = new Map<string, string>();
  /** Child actor session id -> its peer machine's session id. */
  readonly #childOf = new Map<string, string>();
  /** Finished machines, oldest first. */
  readonly #finished: string[] = [];
  readonly #pending = new Map<string, PendingActor>();
  readonly #definitions = new WeakMap<object, string>();
  #received = 0;
  #unattributed = 0;
  #evictedEvents = 0;
  #evictedMachines = 0;

  constructor(options: InspectorOptions = {}) {
    checkObject('options', options);
    const historyLimit = options.historyLimit ?? 100;
    const maxFinished = options.maxFinished ?? 200;
    checkNumber('options.historyLimit', historyLimit, COUNT);
    checkNumber('options.maxFinished', maxFinished, { min: 0, integer: true });
    checkOptionalFunction('options.now', options.now);
    checkOptionalNumber('options.serializationDepth', options.serializationDepth, { min: 0, integer: true });
    checkBoolean('options.definitions', options.definitions);
    this.#options = {
      historyLimit,
      maxFinished,
      now: options.now ?? Date.now,
      serializationDepth: options.serializationDepth ?? 10,
      definitions: options.definitions ?? true,
    };
    this.inspect = (event) => this.#safely(() => this.#onXState(event, undefined));
    this.events$ = this.#subject.asObservable();
  }

  /** An `inspect` function whose machines are labelled with `engineId` (instead of their context's `localPeerId`). */
  inspectFor(engineId: string): (event: InspectionEvent) => void {
    checkString('engineId', engineId);
    return (event) => this.#safely(() => this.#onXState(event, engineId));
  }

  /**
   * Takes an event already in `@statelyai/inspect`'s shape, e.g. received from
   * its `createWebSocketInspector` in another process. `origin` keeps session
   * ids of different senders apart (they are only unique per process).
   */
  ingest(event: unknown, origin?: string): boolean {
    checkOptionalString('origin', origin);
    let ok = false;
    this.#safely(() => {
      ok = this.#onStately(event, origin);
    });
    return ok;
  }

  /** Calls `listener` with every entry; returns the unsubscribe function. */
  subscribe(listener: (entry: InspectorEntry) => void): () => void {
    checkFunction('listener', listener);
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Called when a machine is forgotten (to stay under `maxFinished`, or by `clear()`). */
  onRemoved(listener: (key: string, sessionId: string) => void): () => void {
    checkFunction('listener', listener);
    this.#removedListeners.add(listener);
    return () => this.#removedListeners.delete(listener);
  }

  /** The newest machine of every peer, in order of creation. */
  peers(): PeerView[] {
    const out: PeerView[] = [];
    for (const sessionId of this.#byKey.values()) {
      const record = this.#machines.get(sessionId);
      if (record !== undefined) out.push(this.#view(record));
    }
    return out;
  }

  peer(key: string): PeerView | undefined {
    checkString('key', key);
    const sessionId = this.#byKey.get(key);
    const record = sessionId === undefined ? undefined : this.#machines.get(sessionId);
    return record === undefined ? undefined : this.#view(record);
  }

  /** Engine labels seen so far. */
  engines(): string[] {
    return [...new Set([...this.#machines.values()].map((m) => m.engineId))];
  }

  /** The serialized events kept for a peer's newest machine (`engine/peer` key) or a machine's session id, oldest first. */
  history(keyOrSession: string): StatelyInspectionEvent[] {
    checkString('keyOrSession', keyOrSession);
    const record = this.#record(keyOrSession);
    return record === undefined ? [] : record.events.toArray();
  }

  /** The peer machine's steps, oldest first, from its kept history. */
  timeline(keyOrSession: string): TimelineEntry[] {
    checkString('keyOrSession', keyOrSession);
    const record = this.#record(keyOrSession);
    if (record === undefined) return [];
    const out: TimelineEntry[] = [];
    let previous: string | undefined;
    for (const event of record.events.toArray()) {
      if (event.type !== '@xstate.snapshot' || event.sessionId !== record.sessionId) continue;
      const entry = toTimelineEntry(event, previous);
      previous = JSON.stringify(entry.value);
      out.push(entry);
    }
    return out;
  }

  stats(): InspectorStats {
    let active = 0;
    for (const m of this.#machines.values()) if (!m.finished) active += 1;
    return {
      machines: this.#machines.size,
      active,
      finished: this.#finished.length,
      received: this.#received,
      unattributed: this.#unattributed,
      evictedEvents: this.#evictedEvents,
      evictedMachines: this.#evictedMachines,
    };
  }

  /** Forgets every machine. */
  clear(): void {
    for (const record of [...this.#machines.values()]) this.#forget(record);
    this.#pending.clear();
    this.#finished.length = 0;
  }

  // ------------------------------------------------------------ internals

  #safely(fn: () => void): void {
    try {
      fn();
    } catch {
      // An inspector must never break what it watches.
      this.#unattributed += 1;
    }
  }

  #record(keyOrSession: string): MachineRecord | undefined {
    const sessionId = this.#byKey.get(keyOrSession) ?? keyOrSession;
    return this.#machines.get(sessionId) ?? this.#machines.get(this.#childOf.get(sessionId) ?? '');
  }

  #view(record: MachineRecord): PeerView {
    return {
      key: record.key,
      engineId: record.engineId,
      peerId: record.peerId,
      sessionId: record.sessionId,
      state: topLevelState(record.value) ?? String(record.value),
      value: record.value,
      status: record.status,
      lastEvent: record.lastEvent,
      startedAt: record.startedAt,
      updatedAt: record.updatedAt,
      steps: record.steps,
      details: detailsOf(record.context),
    };
  }

  #json(value: unknown): Json {
    return toJson(value, { depth: this.#options.serializationDepth });
  }

  #snapshotJson(snapshot: unknown): InspectedSnapshot {
    const json = this.#json(snapshot);
    if (json !== null && typeof json === 'object' && !Array.isArray(json)) return json as InspectedSnapshot;
    return { status: 'active' };
  }

  #eventJson(event: unknown): InspectedEvent {
    const json = this.#json(event);
    if (json !== null && typeof json === 'object' && !Array.isArray(json) && typeof json.type === 'string') {
      return json as InspectedEvent;
    }
    return { type: typeof event === 'string' ? event : '' };
  }

  #definition(config: unknown): string | undefined {
    if (!this.#options.definitions || config === null || typeof config !== 'object') return undefined;
    let text = this.#definitions.get(config);
    if (text === undefined) {
      text = JSON.stringify(toJson(config, { depth: this.#options.serializationDepth, functions: 'name' }));
      this.#definitions.set(config, text);
    }
    return text;
  }

  #base(sessionId: string, rootId: string | undefined): StatelyBase {
    return { sessionId, rootId, createdAt: String(this.#options.now()), id: null, _version: INSPECT_PROTOCOL_VERSION };
  }

  #onXState(event: InspectionEvent, label: string | undefined): void {
    this.#received += 1;
    switch (event.type) {
      case '@xstate.actor': {
        // The actor has no snapshot yet (XState reports it before initializing it): send it on its first event.
        if (this.#pending.size >= MAX_PENDING) this.#pending.delete(this.#pending.keys().next().value!);
        const ref = event.actorRef as unknown as ActorLike;
        this.#pending.set(ref.sessionId, { ref, rootId: event.rootId, label });
        return;
      }
      case '@xstate.event': {
        this.#flushPending();
        const target = event.actorRef as unknown as ActorLike;
        const source = event.sourceRef as unknown as ActorLike | undefined;
        this.#accept({
          ...this.#base(target.sessionId, event.rootId),
          type: '@xstate.event',
          event: this.#eventJson(event.event),
          sourceId: source?.sessionId,
        });
        return;
      }
      case '@xstate.snapshot': {
        this.#flushPending();
        const actor = event.actorRef as unknown as ActorLike;
        this.#accept({
          ...this.#base(actor.sessionId, event.rootId),
          type: '@xstate.snapshot',
          event: this.#eventJson(event.event),
          snapshot: this.#snapshotJson(event.snapshot),
        });
        return;
      }
      default:
        // Microsteps and actions: @statelyai/inspect does not send them either.
        if (this.#pending.size > 0) this.#flushPending();
    }
  }

  #flushPending(): void {
    if (this.#pending.size === 0) return;
    for (const [sessionId, pending] of this.#pending) {
      // A child waits for its machine: the machine's actor event comes first.
      if (pending.rootId !== undefined && pending.rootId !== sessionId && this.#pending.has(pending.rootId)) continue;
      let snapshot: unknown;
      try {
        snapshot = pending.ref.getSnapshot();
      } catch {
        snapshot = undefined;
      }
      if (snapshot === undefined) continue;
      this.#pending.delete(sessionId);
      const { ref } = pending;
      const config = ref.logic?.config;
      const configId = config !== null && typeof config === 'object' ? (config as { id?: unknown }).id : undefined;
      const name = ref.id === ref.sessionId && typeof configId === 'string' ? configId : ref.id;
      this.#accept(
        {
          ...this.#base(ref.sessionId, pending.rootId),
          type: '@xstate.actor',
          name,
          parentId: ref._parent?.sessionId,
          // As @statelyai/inspect: a logic without a machine config is described by its name.
          definition: this.#definition(config) ?? (this.#options.definitions ? JSON.stringify({ id: name }) : undefined),
          snapshot: this.#snapshotJson(snapshot),
        },
        pending.label,
      );
    }
  }

  #onStately(raw: unknown, origin: string | undefined): boolean {
    this.#received += 1;
    if (raw === null || typeof raw !== 'object') return false;
    const e = raw as Record<string, unknown>;
    if (typeof e.type !== 'string' || typeof e.sessionId !== 'string') return false;
    const ns = (id: unknown): string | undefined =>
      typeof id === 'string' ? (origin === undefined ? id : `${origin}/${id}`) : undefined;
    const base = {
      sessionId: ns(e.sessionId)!,
      rootId: ns(e.rootId),
      createdAt: typeof e.createdAt === 'string' ? e.createdAt : String(this.#options.now()),
      id: null,
      _version: typeof e._version === 'string' ? e._version : INSPECT_PROTOCOL_VERSION,
    };
    switch (e.type) {
      case '@xstate.actor':
        this.#accept(
          {
            ...base,
            type: '@xstate.actor',
            name: typeof e.name === 'string' ? e.name : base.sessionId,
            parentId: ns(e.parentId),
            definition: this.#options.definitions && typeof e.definition === 'string' ? e.definition : undefined,
            snapshot: this.#snapshotJson(e.snapshot),
          },
          undefined,
          origin,
        );
        return true;
      case '@xstate.event':
        this.#accept({ ...base, type: '@xstate.event', event: this.#eventJson(e.event), sourceId: ns(e.sourceId) }, undefined, origin);
        return true;
      case '@xstate.snapshot':
        this.#accept(
          { ...base, type: '@xstate.snapshot', event: this.#eventJson(e.event), snapshot: this.#snapshotJson(e.snapshot) },
          undefined,
          origin,
        );
        return true;
      default:
        return false;
    }
  }

  /** Files an event under its peer machine, updates the machine, and tells the listeners. */
  #accept(event: StatelyInspectionEvent, label?: string, origin?: string): void {
    const rootId = event.rootId ?? event.sessionId;
    const isRoot = event.sessionId === rootId && (event.type !== '@xstate.actor' || event.parentId === undefined);
    let record = this.#machines.get(rootId);
    if (record === undefined) {
      // A peer machine is known from its first serialized snapshot (its actor event, or a snapshot if that was missed).
      if (!isRoot || event.type === '@xstate.event') {
        this.#unattributed += 1;
        return;
      }
      record = this.#create(event.sessionId, event, label, origin);
    }
    if (!isRoot && event.type === '@xstate.actor') {
      record.children.add(event.sessionId);
      this.#childOf.set(event.sessionId, record.sessionId);
    }
    const dropped = record.events.dropped;
    record.events.push(event);
    this.#evictedEvents += record.events.dropped - dropped;
    if (isRoot && event.type !== '@xstate.event') this.#update(record, event);
    const entry: InspectorEntry = {
      engineId: record.engineId,
      peerId: record.peerId,
      key: record.key,
      machine: record.sessionId,
      root: isRoot,
      event,
    };
    for (const listener of this.#listeners) {
      try {
        listener(entry);
      } catch {
        // A listener's failure is its own.
      }
    }
    if (this.#subject.observed) this.#subject.next(entry);
  }

  #create(
    sessionId: string,
    event: StatelyActorEvent | StatelySnapshotEvent,
    label: string | undefined,
    origin: string | undefined,
  ): MachineRecord {
    const context = event.snapshot.context ?? null;
    const engineId = label ?? str(field(context, 'localPeerId')) ?? origin ?? 'local';
    const peerId = str(field(context, 'peerId')) ?? sessionId;
    const key = `${engineId}/${peerId}`;
    const at = Number(event.createdAt) || this.#options.now();
    const record: MachineRecord = {
      sessionId,
      key,
      engineId,
      peerId,
      name: event.type === '@xstate.actor' ? event.name : sessionId,
      events: new RingBuffer(this.#options.historyLimit),
      children: new Set(),
      status: 'active',
      value: null,
      context,
      lastEvent: undefined,
      startedAt: at,
      updatedAt: at,
      steps: 0,
      finished: false,
    };
    this.#machines.set(sessionId, record);
    // Re-inserting moves the key to the end: peers() lists by latest machine.
    const previous = this.#byKey.get(key);
    if (previous !== undefined) this.#byKey.delete(key);
    this.#byKey.set(key, sessionId);
    // An older machine of the same peer is no longer shown: keep it only as finished history.
    const old = previous === undefined ? undefined : this.#machines.get(previous);
    if (old !== undefined && !old.finished) this.#finish(old);
    return record;
  }

  #update(record: MachineRecord, event: StatelyActorEvent | StatelySnapshotEvent): void {
    const snapshot = event.snapshot;
    if (snapshot.value !== undefined) record.value = snapshot.value;
    if (snapshot.context !== undefined) record.context = snapshot.context;
    const status = snapshot.status;
    if (status === 'active' || status === 'done' || status === 'error' || status === 'stopped') record.status = status;
    record.updatedAt = Number(event.createdAt) || this.#options.now();
    if (event.type === '@xstate.snapshot') {
      record.steps += 1;
      record.lastEvent = event.event.type;
    }
    if (record.status !== 'active' && !record.finished) this.#finish(record);
  }

  #finish(record: MachineRecord): void {
    record.finished = true;
    this.#finished.push(record.sessionId);
    for (const child of record.children) this.#childOf.delete(child);
    record.children.clear();
    while (this.#finished.length > this.#options.maxFinished) {
      const oldest = this.#machines.get(this.#finished.shift()!);
      if (oldest !== undefined) {
        this.#evictedMachines += 1;
        this.#forget(oldest);
      }
    }
  }

  #forget(record: MachineRecord): void {
    this.#machines.delete(record.sessionId);
    for (const child of record.children) this.#childOf.delete(child);
    const shown = this.#byKey.get(record.key) === record.sessionId;
    if (shown) this.#byKey.delete(record.key);
    const at = this.#finished.indexOf(record.sessionId);
    if (at >= 0) this.#finished.splice(at, 1);
    if (!shown) return;
    for (const listener of this.#removedListeners) {
      try {
        listener(record.key, record.sessionId);
      } catch {
        // A listener's failure is its own.
      }
    }
  }
}

/** A snapshot event as a timeline line. `previous`: the JSON of the state value before it. */
export function toTimelineEntry(event: StatelySnapshotEvent, previous: string | undefined): TimelineEntry {
  checkObject('event', event);
  checkObject('event.snapshot', event.snapshot);
  checkObject('event.event', event.event);
  checkOptionalString('previous', previous);
  const value = event.snapshot.value ?? null;
  return {
    at: Number(event.createdAt),
    event: event.event.type,
    state: topLevelState(value) ?? String(value),
    value,
    changed: previous === undefined || previous !== JSON.stringify(value),
    sessionId: event.sessionId,
  };
}

export function createInspector(options: InspectorOptions = {}): Inspector {
  return new Inspector(options);
}
