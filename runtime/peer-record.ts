import type { Actor } from 'xstate';
import type { CloseInfo, Connection, ConnectionHandlers, IncomingStream, Stream } from '../protocol/adapter.js';
import type { ControlMessage } from '../protocol/control.js';
import type { ConnectionMachine } from '../machines/connection-machine.js';
import type { ConnectionState } from '../machines/types.js';
import { ActorHost, type SharedActorSystem } from './actor-system.js';
import type { Heartbeat } from './heartbeat.js';

/** A stream open the machine asked for, until it is delivered or given up. */
export interface OpenRecord {
  readonly controller: AbortController;
  readonly connectionId: string;
  stream: Stream | null;
}

/** Streams of one connection and direction that closed, not yet told to the machine. */
export interface ClosedStreams {
  readonly connectionId: string;
  readonly inbound: boolean;
  count: number;
}

/** What a record's connections report to: one per engine, shared by all its records (`inbound.ts`). */
export interface PeerRecordHost {
  onControl(record: PeerRecord, connection: Connection, message: ControlMessage): void;
  onStream(record: PeerRecord, connection: Connection, incoming: IncomingStream): void;
  onClose(record: PeerRecord, connection: Connection, close: CloseInfo): void;
  /** Counts and logs an internal error; never throws. */
  failed(what: string, error: unknown): void;
}

/**
 * The handlers of one connection of a record: a small object whose three
 * handlers are functions shared by every connection, instead of three
 * closures per connection. They are own properties, not methods, so a
 * wrapper that copies the handlers (`{ ...handlers, onClose }`) keeps them,
 * and they find their record and connection through `this`, as the adapter
 * calls them as methods.
 */
export class RecordHandlers implements ConnectionHandlers {
  readonly record: PeerRecord;
  readonly connection: Connection;
  readonly onControl = handleControl;
  readonly onStream = handleStream;
  readonly onClose = handleClose;
  /** How the connection closed, once it has. */
  closed: CloseInfo | undefined = undefined;

  constructor(record: PeerRecord, connection: Connection) {
    this.record = record;
    this.connection = connection;
  }
}

function handleControl(this: RecordHandlers, message: ControlMessage): void {
  this.record.host.onControl(this.record, this.connection, message);
}

function handleStream(this: RecordHandlers, incoming: IncomingStream): void {
  this.record.host.onStream(this.record, this.connection, incoming);
}

function handleClose(this: RecordHandlers, close: CloseInfo): void {
  this.closed = close;
  this.record.host.onClose(this.record, this.connection, close);
}

/** A Map or Set that a record makes on first use and drops once it is empty. */
interface Collection<K> {
  delete(key: K): boolean;
  readonly size: number;
}

/** `collection` less `key`, or undefined once it is empty, so the record holds nothing for it. */
function without<C extends Collection<K>, K>(collection: C | undefined, key: K): C | undefined {
  if (collection === undefined) return undefined;
  collection.delete(key);
  return collection.size === 0 ? undefined : collection;
}

/** The values of a collection the record is letting go of. */
function valuesOf<V>(collection: { values(): Iterable<V> } | undefined): V[] {
  return collection === undefined ? [] : [...collection.values()];
}

/**
 * A peer's record in the engine's registry: its machine, the connections,
 * opens, inbound streams and requests the machine refers to by id, and the
 * waiters of `drain()` / `forceClose()`. Removed exactly once (`removed`
 * guards it).
 *
 * An idle peer holds one connection and nothing else, and a hub may hold
 * 100,000 of them, so the collections are created on first use and dropped
 * again when they empty (`without`): a ready idle peer keeps its one
 * connection in a field, and no Map, Set or array at all. The record is also
 * its machine's stand-in parent in the engine's shared actor system (see
 * actor-system.ts).
 */
export class PeerRecord extends ActorHost {
  readonly peerId: string;
  readonly host: PeerRecordHost;
  /** Set right after the record is created; the actor's callbacks may run before. */
  actor!: Actor<ConnectionMachine>;
  state: ConnectionState | 'start' = 'start';
  /** The connection's heartbeat while the machine is `ready` (see heartbeat.ts). */
  heartbeat: Heartbeat<PeerRecord> | undefined = undefined;
  streamSeq = 0;
  removed = false;
  /** One connection, or several in the order they were added (a duplicate being replaced). */
  #connections: Connection | Map<string, Connection> | undefined = undefined;
  #opens: Map<string, OpenRecord> | undefined = undefined;
  #inbound: Map<string, IncomingStream> | undefined = undefined;
  /** Requests sent into this machine and not answered yet. */
  #requests: Set<string> | undefined = undefined;
  #waiters: Array<() => void> | undefined = undefined;
  /** Stream closes not told to the machine yet, by connection and direction, in the order first seen. */
  #closed: ClosedStreams[] | undefined = undefined;

  constructor(peerId: string, host: PeerRecordHost, system: SharedActorSystem<PeerRecord>) {
    super(system as unknown as SharedActorSystem);
    this.peerId = peerId;
    this.host = host;
  }

  /**
   * Holds `connection` and hands its events to the host. Events that came
   * before are delivered now, a close among them: the handlers say so
   * (`closed`).
   */
  attach(connection: Connection): RecordHandlers {
    this.addConnection(connection);
    const handlers = new RecordHandlers(this, connection);
    connection.setHandlers(handlers);
    return handlers;
  }

  connection(id: string): Connection | undefined {
    const held = this.#connections;
    if (held === undefined) return undefined;
    if (held instanceof Map) return held.get(id);
    return held.id === id ? held : undefined;
  }

  addConnection(connection: Connection): void {
    const held = this.#connections;
    if (held === undefined || (!(held instanceof Map) && held.id === connection.id)) {
      this.#connections = connection;
    } else if (held instanceof Map) {
      held.set(connection.id, connection);
    } else {
      this.#connections = new Map([
        [held.id, held],
        [connection.id, connection],
      ]);
    }
  }

  /** Forgets the connection `id`; returns it if it was held. */
  deleteConnection(id: string): Connection | undefined {
    const held = this.#connections;
    if (held === undefined) return undefined;
    if (!(held instanceof Map)) {
      if (held.id !== id) return undefined;
      this.#connections = undefined;
      return held;
    }
    const connection = held.get(id);
    held.delete(id);
    if (held.size <= 1) this.#connections = held.values().next().value;
    return connection;
  }

  /** Every connection held, in the order they were added; the record holds none after. */
  takeConnections(): Connection[] {
    const held = this.#connections;
    this.#connections = undefined;
    if (held === undefined) return [];
    return held instanceof Map ? [...held.values()] : [held];
  }

  open(id: string): OpenRecord | undefined {
    return this.#opens?.get(id);
  }

  setOpen(id: string, record: OpenRecord): void {
    (this.#opens ??= new Map()).set(id, record);
  }

  deleteOpen(id: string): void {
    this.#opens = without(this.#opens, id);
  }

  takeOpens(): OpenRecord[] {
    const opens = valuesOf(this.#opens);
    this.#opens = undefined;
    return opens;
  }

  inbound(streamId: string): IncomingStream | undefined {
    return this.#inbound?.get(streamId);
  }

  setInbound(streamId: string, incoming: IncomingStream): void {
    (this.#inbound ??= new Map()).set(streamId, incoming);
  }

  /** Forgets the inbound stream `streamId`; returns it if it was held. */
  takeInboundStream(streamId: string): IncomingStream | undefined {
    const incoming = this.#inbound?.get(streamId);
    this.#inbound = without(this.#inbound, streamId);
    return incoming;
  }

  takeInbound(): IncomingStream[] {
    const inbound = valuesOf(this.#inbound);
    this.#inbound = undefined;
    return inbound;
  }

  addRequest(id: string): void {
    (this.#requests ??= new Set()).add(id);
  }

  deleteRequest(id: string): void {
    this.#requests = without(this.#requests, id);
  }

  /** Ids of the requests still held, oldest first (a copy: answering them changes the set). */
  requestIds(): string[] {
    return valuesOf(this.#requests);
  }

  addWaiter(resolve: () => void): void {
    (this.#waiters ??= []).push(resolve);
  }

  takeWaiters(): Array<() => void> {
    const waiters = this.#waiters;
    this.#waiters = undefined;
    return waiters ?? [];
  }

  /**
   * A stream of this peer closed. The machine hears of it once per turn: the
   * closes of one turn (a burst of streams ending together) go in one
   * STREAM.CLOSED event with their count, on the next microtask.
   */
  streamClosed(connectionId: string, inbound: boolean): void {
    if (this.removed) return;
    const closed = this.#closed;
    if (closed === undefined) {
      this.#closed = [{ connectionId, inbound, count: 1 }];
      queueMicrotask(() => this.#flushClosed());
      return;
    }
    for (const c of closed) {
      if (c.connectionId === connectionId && c.inbound === inbound) {
        c.count += 1;
        return;
      }
    }
    closed.push({ connectionId, inbound, count: 1 });
  }

  #flushClosed(): void {
    const closed = this.#closed ?? [];
    this.#closed = undefined;
    try {
      for (const c of closed) {
        if (this.removed) return;
        this.actor.send({ type: 'STREAM.CLOSED', connectionId: c.connectionId, inbound: c.inbound, count: c.count });
      }
    } catch (error) {
      this.host.failed('stream closed', error);
    }
  }
}
