import type { Actor } from 'xstate';
import type { CloseInfo, Connection, ConnectionHandlers, ControlMessage, IncomingStream, Stream } from '../adapters/adapter.js';
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

/** What an entry's connections report to: one per engine, shared by all its entries. */
export interface EntryHost {
  onControl(entry: Entry, connection: Connection, message: ControlMessage): void;
  onStream(entry: Entry, connection: Connection, incoming: IncomingStream): void;
  onClose(entry: Entry, connection: Connection, close: CloseInfo): void;
}

/**
 * The handlers of one connection of an entry: a small object whose three
 * handlers are functions shared by every link, instead of three closures per
 * connection. They are own properties, not methods, so a wrapper that copies
 * the handlers (`{ ...handlers, onClose }`) keeps them, and they find their
 * entry and connection through `this`, as the adapter calls them as methods.
 */
export class Link implements ConnectionHandlers {
  readonly entry: Entry;
  readonly connection: Connection;
  readonly onControl = linkControl;
  readonly onStream = linkStream;
  readonly onClose = linkClose;
  /** How the connection closed, once it has. */
  closed: CloseInfo | undefined = undefined;

  constructor(entry: Entry, connection: Connection) {
    this.entry = entry;
    this.connection = connection;
  }
}

function linkControl(this: Link, message: ControlMessage): void {
  this.entry.host.onControl(this.entry, this.connection, message);
}

function linkStream(this: Link, incoming: IncomingStream): void {
  this.entry.host.onStream(this.entry, this.connection, incoming);
}

function linkClose(this: Link, close: CloseInfo): void {
  this.closed = close;
  this.entry.host.onClose(this.entry, this.connection, close);
}

/**
 * A peer's place in the engine's registry. Removed exactly once (`removed`
 * guards it).
 *
 * An idle peer holds one connection and nothing else, and a hub may hold
 * 100,000 of them, so the collections are created on first use and dropped
 * again when they empty: a ready idle peer keeps its one connection in a
 * field, and no Map, Set or array at all. The entry is also its machine's
 * stand-in parent in the engine's shared actor system (see actor-system.ts).
 */
export class Entry extends ActorHost {
  readonly peerId: string;
  readonly host: EntryHost;
  /** Set right after the entry is created; the actor's callbacks may run before. */
  actor!: Actor<ConnectionMachine>;
  state: ConnectionState | 'start' = 'start';
  /** The connection's heartbeat while the machine is `ready` (see heartbeat.ts). */
  heartbeat: Heartbeat<Entry> | undefined = undefined;
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

  constructor(peerId: string, host: EntryHost, system: SharedActorSystem<Entry>) {
    super(system as unknown as SharedActorSystem);
    this.peerId = peerId;
    this.host = host;
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

  /** Every connection held, in the order they were added; the entry holds none after. */
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
    const opens = this.#opens;
    if (opens === undefined) return;
    opens.delete(id);
    if (opens.size === 0) this.#opens = undefined;
  }

  takeOpens(): OpenRecord[] {
    const opens = this.#opens;
    this.#opens = undefined;
    return opens === undefined ? [] : [...opens.values()];
  }

  inbound(streamId: string): IncomingStream | undefined {
    return this.#inbound?.get(streamId);
  }

  setInbound(streamId: string, incoming: IncomingStream): void {
    (this.#inbound ??= new Map()).set(streamId, incoming);
  }

  deleteInbound(streamId: string): void {
    const inbound = this.#inbound;
    if (inbound === undefined) return;
    inbound.delete(streamId);
    if (inbound.size === 0) this.#inbound = undefined;
  }

  takeInbound(): IncomingStream[] {
    const inbound = this.#inbound;
    this.#inbound = undefined;
    return inbound === undefined ? [] : [...inbound.values()];
  }

  addRequest(id: string): void {
    (this.#requests ??= new Set()).add(id);
  }

  deleteRequest(id: string): void {
    const requests = this.#requests;
    if (requests === undefined) return;
    requests.delete(id);
    if (requests.size === 0) this.#requests = undefined;
  }

  /** Ids of the requests still held, oldest first (a copy: answering them changes the set). */
  requestIds(): string[] {
    return this.#requests === undefined ? [] : [...this.#requests];
  }

  /** Counts a closed stream; true when it is the first one not told to the machine yet. */
  addClosed(connectionId: string, inbound: boolean): boolean {
    const closed = this.#closed;
    if (closed === undefined) {
      this.#closed = [{ connectionId, inbound, count: 1 }];
      return true;
    }
    for (const c of closed) {
      if (c.connectionId === connectionId && c.inbound === inbound) {
        c.count += 1;
        return false;
      }
    }
    closed.push({ connectionId, inbound, count: 1 });
    return false;
  }

  takeClosed(): ClosedStreams[] {
    const closed = this.#closed;
    this.#closed = undefined;
    return closed ?? [];
  }

  addWaiter(resolve: () => void): void {
    (this.#waiters ??= []).push(resolve);
  }

  takeWaiters(): Array<() => void> {
    const waiters = this.#waiters;
    this.#waiters = undefined;
    return waiters ?? [];
  }
}
