/**
 * What comes in from connections: inbound connections (admitted, then
 * adopted by their peer's record or a new one), the control messages of
 * every connection (checked and decoded into machine events), inbound
 * streams (held until the machine accepts or refuses them, then handed to
 * their handler) and closes. Every connection of every record reports here
 * (`PeerRecordHost`); a handler that throws is counted, never propagated.
 */
import type { Adapter, CloseInfo, Connection, IncomingStream } from '../protocol/adapter.js';
import { ConnectionErrorCode, reasonFor } from '../protocol/codes.js';
import type { ControlMessage } from '../protocol/control.js';
import type { Admission } from './admission.js';
import type { EngineHeartbeats } from './heartbeat.js';
import type { LevelledLogger } from './logger.js';
import type { Metrics } from './metrics.js';
import type { PeerRecord, PeerRecordHost } from './peer-record.js';
import { STREAM_LIMIT_REASON, type ProtocolLimits } from './protocol-limits.js';
import { wrapStream, type StreamHandler } from './streams.js';

export interface InboundInit {
  readonly maxProtocolLength: number;
  readonly adapter: Adapter;
  readonly admission: Admission;
  readonly protocolLimits: ProtocolLimits;
  readonly handlers: ReadonlyMap<string, StreamHandler>;
  readonly heartbeats: EngineHeartbeats;
  readonly metrics: Metrics;
  readonly log: LevelledLogger;
  /** Whether the engine is running (else an inbound connection is closed with Shutdown). */
  running(): boolean;
  /** The peer's record in the registry, if any (removed or not). */
  record(peerId: string): PeerRecord | undefined;
  /** Makes a record for a peer that dialled us, holding `connection`; undefined when the connection limit leaves no room. */
  create(peerId: string, connection: Connection): PeerRecord | undefined;
  /** Counts and logs an internal error. */
  failed(what: string, error: unknown): void;
}

export class Inbound implements PeerRecordHost {
  readonly #init: InboundInit;
  readonly #metrics: Metrics;

  constructor(init: InboundInit) {
    this.#init = init;
    this.#metrics = init.metrics;
  }

  failed(what: string, error: unknown): void {
    this.#init.failed(what, error);
  }

  /** A verified inbound connection from the adapter. */
  onConnection(connection: Connection): void {
    try {
      this.#onConnection(connection);
    } catch (error) {
      this.failed('inbound connection', error);
    }
  }

  #onConnection(connection: Connection): void {
    if (!this.#init.running()) return connection.close(ConnectionErrorCode.Shutdown, reasonFor(ConnectionErrorCode.Shutdown));
    // Admission control: checked here unless the adapter already did; tracked either way.
    const admitted = this.#init.admission.admit(connection, this.#init.adapter.enforcesAdmission !== true);
    if (admitted === undefined) return;
    if (admitted instanceof Promise) {
      void admitted.then((tracked) => {
        if (tracked === undefined) return;
        try {
          this.#adopt(tracked);
        } catch (error) {
          this.failed('inbound connection', error);
        }
      });
      return;
    }
    this.#adopt(admitted);
  }

  /** An admitted inbound connection joins its peer's machine, or a new one. */
  #adopt(connection: Connection): void {
    if (!this.#init.running()) return connection.close(ConnectionErrorCode.Shutdown, reasonFor(ConnectionErrorCode.Shutdown));
    const peerId = connection.remotePeerId;
    const record = this.#init.record(peerId);
    if (record !== undefined) {
      // A connection that closed before it got here is not offered to the machine.
      if (record.attach(connection).closed === undefined) record.actor.send({ type: 'CONNECTION.INBOUND', connectionId: connection.id });
      return;
    }
    if (this.#init.create(peerId, connection) === undefined) this.#init.admission.refuse(connection, ConnectionErrorCode.ConnectionLimit);
  }

  onClose(record: PeerRecord, connection: Connection, close: CloseInfo): void {
    try {
      record.deleteConnection(connection.id);
      this.#init.protocolLimits.forget(connection.id);
      if (record.removed) return;
      record.actor.send({
        type: 'CONNECTION.CLOSED',
        connectionId: connection.id,
        code: close.code,
        error: close.error,
        reason: close.reason,
      });
    } catch (error) {
      this.failed('close', error);
    }
  }

  onControl(record: PeerRecord, connection: Connection, message: ControlMessage): void {
    try {
      this.#onControl(record, connection, message);
    } catch (error) {
      this.failed('control', error);
    }
  }

  /** Checks a control message's shape (the remote may send anything) and hands it to the machine. */
  #onControl(record: PeerRecord, connection: Connection, message: ControlMessage): void {
    if (record.removed) return;
    const connectionId = connection.id;
    const m = message as Partial<Record<string, unknown>> & { type?: unknown };
    switch (m.type) {
      case 'hello':
      case 'hello-ack':
        if (typeof m.version !== 'number' || typeof m.peerId !== 'string') break;
        record.actor.send({
          type: m.type === 'hello' ? 'CONTROL.HELLO' : 'CONTROL.HELLO_ACK',
          connectionId,
          version: m.version,
          peerId: m.peerId,
        });
        return;
      // Heartbeats take no machine step (see heartbeat.ts).
      case 'ping':
        if (typeof m.seq !== 'number') break;
        this.#init.heartbeats.ping(record, connection, m.seq);
        return;
      case 'pong':
        if (typeof m.seq !== 'number') break;
        this.#init.heartbeats.pong(record, connection, m.seq);
        return;
      case 'goaway':
        record.actor.send({ type: 'CONTROL.GOAWAY', connectionId });
        return;
    }
    // Malformed control traffic: a protocol violation ends that connection, nothing else.
    connection.close(ConnectionErrorCode.ProtocolViolation, reasonFor(ConnectionErrorCode.ProtocolViolation));
  }

  onStream(record: PeerRecord, connection: Connection, incoming: IncomingStream): void {
    try {
      if (record.removed) return incoming.reject('connection closed');
      if (typeof incoming.protocol !== 'string' || Buffer.byteLength(incoming.protocol) > this.#init.maxProtocolLength) {
        this.#metrics.inboundRejected += 1;
        return incoming.reject('protocol name too long');
      }
      const streamId = `${connection.id}/${record.streamSeq++}`;
      record.setInbound(streamId, incoming);
      record.actor.send({ type: 'STREAM.INBOUND', connectionId: connection.id, streamId, protocol: incoming.protocol });
    } catch (error) {
      this.failed('inbound stream', error);
    }
  }

  /** The machine's `acceptInbound`: ACK, then the handler runs outside the machine's step. */
  accept(record: PeerRecord, streamId: string, connectionId: string): void {
    const incoming = record.takeInboundStream(streamId);
    const handler = incoming === undefined ? undefined : this.#init.handlers.get(incoming.protocol);
    if (incoming === undefined || handler === undefined) {
      incoming?.reject('no handler');
      // The machine counted it open; it never was.
      record.actor.send({ type: 'STREAM.CLOSED', connectionId, inbound: true });
      return;
    }
    const stream = incoming.accept();
    this.#metrics.inboundAccepted += 1;
    // Counted in the step that accepted it, so the machine's next limit check sees it.
    const limits = this.#init.protocolLimits;
    const uncount = limits.accepted(incoming.protocol, connectionId);
    const handlerDone = limits.handlerStarted(incoming.protocol);
    void stream.closed.then(() => {
      try {
        uncount();
        record.streamClosed(connectionId, true);
      } catch (error) {
        this.failed('stream closed', error);
      }
    });
    const peerStream = wrapStream(stream, record.peerId, 'inbound');
    const failed = (error: unknown): void => {
      this.#metrics.handlerErrors += 1;
      this.#init.log.warn(`peerline: handler for ${incoming.protocol} failed`, error);
      stream.abort('handler failed');
    };
    // Run the handler outside the machine's step; its failure (thrown or rejected) aborts the stream only.
    queueMicrotask(() => {
      try {
        const result = handler(peerStream);
        if (result !== undefined && result !== null && typeof (result as Promise<void>).then === 'function') {
          (result as Promise<void>).then(handlerDone, (error: unknown) => {
            handlerDone();
            failed(error);
          });
          return;
        }
      } catch (error) {
        failed(error);
      }
      handlerDone();
    });
  }

  /** The machine's `rejectInbound`: NACK with the machine's reason. */
  reject(record: PeerRecord, streamId: string, reason: string): void {
    const incoming = record.takeInboundStream(streamId);
    this.#metrics.inboundRejected += 1;
    incoming?.reject(reason);
  }

  /** The machine's `limitInbound`: NACK naming the per-protocol limit that refused it. */
  limit(record: PeerRecord, streamId: string, protocol: string, connectionId: string): void {
    const incoming = record.takeInboundStream(streamId);
    this.#metrics.inboundRejected += 1;
    this.#metrics.inboundLimited += 1;
    incoming?.reject(this.#init.protocolLimits.limited(protocol, connectionId) ?? `${STREAM_LIMIT_REASON}: ${protocol}`);
  }
}
