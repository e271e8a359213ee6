/**
 * The connection machine's effects, as one named object (`ConnectionEffects`)
 * that the engine supplies with `connectionMachine.provide(...)`: the machine
 * names every action, guard, actor and delay; this is what they do. Each
 * effect finds its peer's record by `context.peerId` (a record already
 * removed gets nothing) and never throws into the machine: a failure is
 * counted and logged. Requests are answered by `requests.ts`, dials made by
 * `dialer.ts`, inbound streams decided by `inbound.ts`; the outbound stream
 * effects (open, abort, delivery, lease, close, control) are here.
 */
import { TransportError, type Stream } from '../protocol/adapter.js';
import { errorInfo, reasonFor, type ConnectionErrorCode } from '../protocol/codes.js';
import type { ControlMessage } from '../protocol/control.js';
import type { ConnectionMachine } from '../machines/connection-machine.js';
import type { EngineOptions } from './defaults.js';
import type { Dialer } from './dialer.js';
import type { EngineHeartbeats } from './heartbeat.js';
import { transportErrorInfo } from './errors.js';
import type { Inbound } from './inbound.js';
import type { Metrics } from './metrics.js';
import type { OpenRecord, PeerRecord } from './peer-record.js';
import type { ProtocolLimits } from './protocol-limits.js';
import type { Requests } from './requests.js';
import type { LeasedConnection, PeerStream, StreamHandler } from './streams.js';

/** What `connectionMachine.provide` takes: every effect the machine names. */
export type ConnectionEffects = Parameters<ConnectionMachine['provide']>[0];

export interface EffectsInit {
  readonly options: Readonly<EngineOptions>;
  readonly metrics: Metrics;
  readonly requests: Requests;
  readonly dialer: Dialer;
  readonly inbound: Inbound;
  readonly heartbeats: EngineHeartbeats;
  readonly handlers: ReadonlyMap<string, StreamHandler>;
  readonly protocolLimits: ProtocolLimits;
  /** The peer's live record (not removed), if any. */
  record(peerId: string): PeerRecord | undefined;
  /** Opens a stream through the engine (for a leased connection). */
  openStream(peerId: string, protocol: string, options?: Parameters<LeasedConnection['openStream']>[1]): Promise<PeerStream>;
  /** Counts and logs an internal error. */
  failed(what: string, error: unknown): void;
}

export function connectionEffects(init: EffectsInit): ConnectionEffects {
  const { options: o, requests, dialer, inbound, failed } = init;
  const effect =
    <P>(name: string, fn: (record: PeerRecord, params: P) => void) =>
    ({ context }: { context: { peerId: string } }, params: P): void => {
      try {
        const record = init.record(context.peerId);
        if (record !== undefined) fn(record, params);
      } catch (error) {
        failed(name, error);
      }
    };
  const closeConnection = (record: PeerRecord, p: { connectionId: string; code: ConnectionErrorCode }): void => {
    init.protocolLimits.forget(p.connectionId);
    record.deleteConnection(p.connectionId)?.close(p.code, reasonFor(p.code));
  };
  return {
    actions: {
      answer: (_args, { id, error }) => {
        try {
          requests.answer(id, error);
        } catch (failure) {
          failed('answer', failure);
        }
      },
      deliverStream: effect('deliverStream', (record, { id }: { id: string }) => deliver(init, record, id)),
      grantLease: effect('grantLease', (record, { id, connectionId }: { id: string; connectionId: string }) =>
        grantLease(init, record, id, connectionId),
      ),
      openStream: effect('openStream', (record, params: { id: string; protocol: string; connectionId: string }) =>
        openStream(init, record, params),
      ),
      abortOpen: effect('abortOpen', (record, { id }: { id: string }) => abortOpen(record, id)),
      discardStream: effect('discardStream', (record, { id }: { id: string }) => abortOpen(record, id)),
      acceptInbound: effect('acceptInbound', (record, p: { streamId: string; connectionId: string }) =>
        inbound.accept(record, p.streamId, p.connectionId),
      ),
      rejectInbound: effect('rejectInbound', (record, p: { streamId: string; reason: string }) => inbound.reject(record, p.streamId, p.reason)),
      limitInbound: effect('limitInbound', (record, p: { streamId: string; protocol: string; connectionId: string }) =>
        inbound.limit(record, p.streamId, p.protocol, p.connectionId),
      ),
      rejectConnection: effect('rejectConnection', closeConnection),
      closeConnection: effect('closeConnection', closeConnection),
      sendControl: effect('sendControl', (record, p: { connectionId: string; message: ControlMessage }) => {
        record.connection(p.connectionId)?.sendControl(p.message);
      }),
      startHeartbeat: effect('startHeartbeat', (record, p: { connectionId: string }) => init.heartbeats.start(record, p.connectionId)),
      stopHeartbeat: effect('stopHeartbeat', (record) => init.heartbeats.stop(record)),
    },
    guards: {
      hasHandler: (_args, { protocol }) => init.handlers.has(protocol),
      protocolLimited: ({ event }) =>
        event.type === 'STREAM.INBOUND' && init.protocolLimits.limited(event.protocol, event.connectionId) !== undefined,
    },
    actors: dialer.actors(),
    delays: {
      dialQueueTimeout: o.dialQueueTimeoutMs,
      connectTimeout: o.connectTimeoutMs,
      handshakeTimeout: o.handshakeTimeoutMs,
      streamOpenTimeout: o.streamOpenTimeoutMs,
      idleTimeout: o.idleTimeoutMs,
      drainDeadline: o.drainDeadlineMs,
      forceCloseGrace: o.forceCloseGraceMs,
      retryBackoff: ({ context }) => dialer.retryDelay(context),
      restartPeriod: o.pinnedRestartIntensity.periodMs,
    },
  };
}

/** The machine's `openStream`: the adapter opens it (header, then the remote's ACK); the outcome goes back to the machine. */
function openStream(init: EffectsInit, record: PeerRecord, params: { id: string; protocol: string; connectionId: string }): void {
  const controller = new AbortController();
  const open: OpenRecord = { controller, connectionId: params.connectionId, stream: null };
  record.setOpen(params.id, open);
  const connection = record.connection(params.connectionId);
  let attempt: Promise<Stream>;
  try {
    attempt =
      connection === undefined
        ? Promise.reject(new TransportError('closed', 'connection is closed'))
        : connection.openStream(params.protocol, { signal: controller.signal });
  } catch (error) {
    attempt = Promise.reject(error);
  }
  attempt.then(
    (stream) => {
      try {
        if (record.open(params.id) !== open || controller.signal.aborted || record.removed) {
          stream.abort('no longer wanted');
          return;
        }
        open.stream = stream;
        record.actor.send({ type: 'STREAM.OPENED', id: params.id });
      } catch (error) {
        init.failed('stream opened', error);
      }
    },
    (error: unknown) => {
      try {
        if (record.open(params.id) !== open || record.removed) return;
        record.deleteOpen(params.id);
        record.actor.send({ type: 'STREAM.OPEN_FAILED', id: params.id, error: transportErrorInfo(error, 'stream') });
      } catch (failure) {
        init.failed('stream failed', failure);
      }
    },
  );
}

/** The machine's `abortOpen` and `discardStream`: the open is given up, the stream (if it came) aborted. */
function abortOpen(record: PeerRecord, id: string): void {
  const open = record.open(id);
  if (open === undefined) return;
  record.deleteOpen(id);
  open.controller.abort();
  open.stream?.abort('aborted');
}

/** The machine's `deliverStream`: the opened stream answers its request. */
function deliver(init: EffectsInit, record: PeerRecord, id: string): void {
  const open = record.open(id);
  record.deleteOpen(id);
  const stream = open?.stream;
  if (stream !== null && stream !== undefined) {
    const connectionId = open!.connectionId;
    if (init.requests.deliver(id, stream, record.peerId, () => record.streamClosed(connectionId, false))) return;
  }
  stream?.abort('request already answered');
  init.requests.answer(id, errorInfo('CONNECTION_LOST', 'stream vanished before delivery'));
  init.metrics.internalErrors += 1;
  // The machine counted the stream open when it asked for delivery: give the credit back.
  if (open !== undefined) record.streamClosed(open.connectionId, false);
}

/** The machine's `grantLease`: the lease answers its request; releasing it tells the machine. */
function grantLease(init: EffectsInit, record: PeerRecord, id: string, connectionId: string): void {
  const peerId = record.peerId;
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    if (!record.removed) record.actor.send({ type: 'LEASE.RELEASE', connectionId });
  };
  const connection: LeasedConnection = {
    peerId,
    openStream: (protocol, options) => init.openStream(peerId, protocol, options),
  };
  if (!init.requests.grant(id, { connection, release })) release();
}
