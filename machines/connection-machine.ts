import { and, assign, enqueueActions, fromCallback, fromPromise, not, setup } from 'xstate';
import { ConnectionErrorCode, reasonFor, type ErrorCode, type ErrorInfo } from './codes.js';
import {
  PROTOCOL_VERSION,
  type ConnectionContext,
  type ConnectionEvent,
  type ConnectionInput,
  type DialOutput,
  type Ending,
  type RequestRef,
} from './types.js';
import type { ControlMessage } from '../adapters/adapter.js';

/**
 * The peer connection machine: one per peer, pure. It decides; the runtime
 * acts. Every effect below is a named stub that the runtime supplies with
 * `machine.provide(...)`; every timer is a named delay the runtime supplies
 * from its policies and that XState runs on the injected clock.
 *
 * Invariants (checked by the tests and the simulator):
 * - every non-final state has a pending timer, so no state can hang;
 * - every request that enters is answered exactly once: by `answer`,
 *   `deliverStream` or `grantLease`; leaving a state that holds requests
 *   answers them all;
 * - events that do not apply in a state are ignored, never thrown; resources
 *   they carry (an inbound connection, an inbound stream, an opened stream) are
 *   released by the root handlers.
 */

function info(code: ErrorCode, message: string, closeCode?: ConnectionErrorCode): ErrorInfo {
  return closeCode === undefined ? { code, message } : { code, message, closeCode };
}

/** A graceful close code: the remote ended on purpose, not because something broke. */
function isGraceful(code: number | undefined): boolean {
  return (
    code === ConnectionErrorCode.Drain ||
    code === ConnectionErrorCode.Shutdown ||
    code === ConnectionErrorCode.IdleTimeout
  );
}

/**
 * Whether another attempt may follow a failure: a pinned peer until its
 * `pinnedMaxAttempts` consecutive failures, another peer until `maxAttempts`.
 * Also used by the runtime to pick the backoff policy for `retryBackoff`.
 */
export function canRetry(context: Pick<ConnectionContext, 'attempts' | 'pinned' | 'limits'>): boolean {
  return context.attempts < (context.pinned ? context.limits.pinnedMaxAttempts : context.limits.maxAttempts);
}

/** Effects named here, implemented by the runtime. */
function stub<T>(): (_args: unknown, _params: T) => void {
  return () => {};
}

const base = setup({
  types: {
    context: {} as ConnectionContext,
    events: {} as ConnectionEvent,
    input: {} as ConnectionInput,
  },
  actors: {
    /** Waits for a dial slot (DIAL.SLOT / DIAL.QUEUE_FULL to the parent); frees it when stopped. */
    dialSlot: fromCallback<ConnectionEvent, { peerId: string }>(() => () => {}),
    /** Dials the peer's addresses; resolves with the connection id, rejects with an ErrorInfo. */
    dial: fromPromise<DialOutput, { peerId: string }>(async () => {
      throw info('NO_ADDRESS', 'no dial implementation provided');
    }),
  },
  actions: {
    answer: stub<{ id: string; error: ErrorInfo }>(),
    deliverStream: stub<{ id: string }>(),
    grantLease: stub<{ id: string; connectionId: string }>(),
    openStream: stub<{ id: string; protocol: string; connectionId: string }>(),
    abortOpen: stub<{ id: string }>(),
    discardStream: stub<{ id: string }>(),
    acceptInbound: stub<{ streamId: string; connectionId: string }>(),
    rejectInbound: stub<{ streamId: string; reason: string }>(),
    /** NACKs an inbound stream that a per-protocol limit (handle() options) refuses; the runtime names the limit. */
    limitInbound: stub<{ streamId: string; protocol: string; connectionId: string }>(),
    rejectConnection: stub<{ connectionId: string; code: ConnectionErrorCode }>(),
    closeConnection: stub<{ connectionId: string; code: ConnectionErrorCode }>(),
    sendControl: stub<{ connectionId: string; message: ControlMessage }>(),
    /**
     * Starts the connection's heartbeat: the runtime pings every interval,
     * matches the pongs and, when `misses` pings in a row (or a probe after a
     * network change) go unanswered, sends HEARTBEAT.FAILED. Entry of `ready`:
     * heartbeats run there and only there.
     */
    startHeartbeat: stub<{ connectionId: string }>(),
    /** Stops it for good. Exit of `ready`: draining sends no heartbeats (grpc-js issue 3068). */
    stopHeartbeat: stub<{ connectionId: string }>(),
  },
  guards: {
    /** Supplied by the runtime: a handler is registered for the protocol. */
    hasHandler: (_args, _params: { protocol: string }) => false,
    /** Supplied by the runtime: a per-protocol limit (handle() options) refuses this STREAM.INBOUND now. */
    protocolLimited: (_args) => false,
    isInbound: ({ context }) => context.direction === 'inbound',
    isOutbound: ({ context }) => context.direction === 'outbound',
    isPinned: ({ context }) => context.pinned,
    /** A pinned peer whose remote asked for the drain: it reconnects instead of closing. */
    pinnedRemoteDrain: ({ context }) => context.pinned && context.ending?.remote === true,
    isCurrent: ({ context, event }) =>
      'connectionId' in event && context.connectionId !== null && event.connectionId === context.connectionId,
    canRetry: ({ context }) => canRetry(context),
    /** A pinned peer whose retry budget or restart intensity is spent. */
    gaveUpNow: ({ context }) => context.pinned && (!canRetry(context) || context.restarts > context.limits.maxRestarts),
    /**
     * No attempt left, but a failed dial of ours (not an inbound connection,
     * not a lost connection that had been ready, and not a peer without an
     * address: nothing was dialled) of a peer that is not pinned: back off
     * before closing.
     */
    holdsBackoff: ({ context }) =>
      !context.pinned &&
      context.direction === 'outbound' &&
      !context.wasReady &&
      context.limits.dialBackoff &&
      context.lastError?.code !== 'NO_ADDRESS',
    hasWaiting: ({ context }) => context.queue.length > 0,
    waitsForReady: ({ event }) => event.type === 'REQUEST' && event.request.waitForReady === true,
    queueHasRoom: ({ context }) => context.queue.length < context.limits.maxQueued,
    /** Nothing in use, and not pinned: a pinned peer is kept connected, never idle-closed. */
    isIdle: ({ context }) =>
      !context.pinned && context.streams === 0 && context.leases === 0 && context.opening.length === 0 && context.queue.length === 0,
    isSettled: ({ context }) => context.streams === 0 && context.leases === 0 && context.opening.length === 0,
  },
  delays: {
    dialQueueTimeout: 30_000,
    connectTimeout: 10_000,
    handshakeTimeout: 10_000,
    streamOpenTimeout: 10_000,
    idleTimeout: 60_000,
    drainDeadline: 5_000,
    forceCloseGrace: 1_000,
    /**
     * Supplied by the runtime from its retry policy and random source: the
     * wait before the next attempt, or, with no attempt left, the dial backoff.
     */
    retryBackoff: 1_000,
    /** Restart intensity: how long one failure of a pinned peer counts. */
    restartPeriod: 60_000,
  },
});

function streamTimerId(id: string): string {
  return `open:${id}`;
}

function outboundInFlight(context: ConnectionContext): number {
  return context.streams - context.inboundStreams + context.opening.length;
}

const ended = (code: ConnectionErrorCode, error: ErrorInfo): Ending => ({ code, error, remote: false });

type Enqueue = Parameters<Parameters<typeof base.enqueueActions>[0]>[0]['enqueue'];

/**
 * Leaving a connection for good: every open in flight is aborted, every
 * request held is answered with `error`, and the connection, if any, is
 * closed with `code`. Used by `forceClosed`, `errored` and `closed`.
 */
function failPendingAndClose(context: ConnectionContext, enqueue: Enqueue, error: ErrorInfo, code: ConnectionErrorCode): void {
  for (const request of context.opening) {
    enqueue.cancel(streamTimerId(request.id));
    enqueue({ type: 'abortOpen', params: { id: request.id } });
    enqueue({ type: 'answer', params: { id: request.id, error } });
  }
  for (const request of context.queue) enqueue({ type: 'answer', params: { id: request.id, error } });
  if (context.connectionId !== null) {
    enqueue({ type: 'closeConnection', params: { connectionId: context.connectionId, code } });
  }
}

/** The machine's own logic, composed from the effects above. Pure. */
const machineSetup = base.extend({
  guards: {
    /** Stream credit left, and nobody queued ahead (requests keep their order). */
    hasCredit: ({ context }) => context.queue.length === 0 && outboundInFlight(context) < context.limits.maxStreams,
    isOpening: ({ context, event }) => 'id' in event && context.opening.some((r) => r.id === event.id),
  },
  actions: {
    enqueue: base.assign({
      queue: ({ context, event }) => (event.type === 'REQUEST' ? [...context.queue, event.request] : context.queue),
    }),
    refuseQueueFull: base.enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'REQUEST') return;
      enqueue({
        type: 'answer',
        params: {
          id: event.request.id,
          error: info('QUEUE_FULL', `peer ${context.peerId} already has ${context.limits.maxQueued} requests waiting`),
        },
      });
    }),
    refuseEnding: base.enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'REQUEST') return;
      const error = context.ending?.error ?? info('CONNECTION_DRAINING', `peer ${context.peerId} is closing`);
      enqueue({ type: 'answer', params: { id: event.request.id, error } });
    }),
    refuseWithLastError: base.enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'REQUEST') return;
      const error = context.lastError ?? info('CONNECTION_LOST', `peer ${context.peerId} is unreachable`);
      enqueue({ type: 'answer', params: { id: event.request.id, error } });
    }),
    lease: base.enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'REQUEST') return;
      if (context.connectionId === null) return;
      enqueue.assign({ leases: context.leases + 1 });
      enqueue({ type: 'grantLease', params: { id: event.request.id, connectionId: context.connectionId } });
    }),
    startOpen: base.enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'REQUEST' || context.connectionId === null) return;
      const request = event.request;
      enqueue.assign({ opening: [...context.opening, request] });
      enqueue({ type: 'openStream', params: { id: request.id, protocol: request.protocol, connectionId: context.connectionId } });
      enqueue.raise({ type: 'STREAM.OPEN_TIMEOUT', id: request.id }, { id: streamTimerId(request.id), delay: 'streamOpenTimeout' });
    }),
    /** Takes queued requests in order while there is stream credit. */
    openQueued: base.enqueueActions(({ context, enqueue }) => {
      if (context.connectionId === null || context.queue.length === 0) return;
      const queue = [...context.queue];
      const opening = [...context.opening];
      let leases = context.leases;
      let inFlight = outboundInFlight(context);
      while (queue.length > 0) {
        const request = queue[0]!;
        if (request.kind === 'lease') {
          queue.shift();
          leases += 1;
          enqueue({ type: 'grantLease', params: { id: request.id, connectionId: context.connectionId } });
          continue;
        }
        if (inFlight >= context.limits.maxStreams) break;
        queue.shift();
        inFlight += 1;
        opening.push(request);
        enqueue({ type: 'openStream', params: { id: request.id, protocol: request.protocol, connectionId: context.connectionId } });
        enqueue.raise({ type: 'STREAM.OPEN_TIMEOUT', id: request.id }, { id: streamTimerId(request.id), delay: 'streamOpenTimeout' });
      }
      enqueue.assign({ queue, opening, leases });
    }),
    streamOpened: base.enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'STREAM.OPENED') return;
      enqueue.cancel(streamTimerId(event.id));
      enqueue.assign({ opening: context.opening.filter((r) => r.id !== event.id), streams: context.streams + 1 });
      enqueue({ type: 'deliverStream', params: { id: event.id } });
    }),
    openFailed: base.enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'STREAM.OPEN_FAILED') return;
      enqueue.cancel(streamTimerId(event.id));
      enqueue.assign({ opening: context.opening.filter((r) => r.id !== event.id) });
      enqueue({ type: 'answer', params: { id: event.id, error: event.error } });
    }),
    openTimedOut: base.enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'STREAM.OPEN_TIMEOUT') return;
      enqueue.assign({ opening: context.opening.filter((r) => r.id !== event.id) });
      enqueue({ type: 'abortOpen', params: { id: event.id } });
      enqueue({
        type: 'answer',
        params: { id: event.id, error: info('STREAM_TIMEOUT', `stream open to ${context.peerId} was not acknowledged in time`) },
      });
    }),
    streamClosed: base.assign(({ context, event }) => {
      const inbound = event.type === 'STREAM.CLOSED' && event.inbound;
      const count = event.type === 'STREAM.CLOSED' ? (event.count ?? 1) : 1;
      return {
        streams: Math.max(0, context.streams - count),
        inboundStreams: inbound ? Math.max(0, context.inboundStreams - count) : context.inboundStreams,
      };
    }),
    maybeAcceptInbound: base.enqueueActions(({ context, event, enqueue, check }) => {
      if (event.type !== 'STREAM.INBOUND') return;
      if (check({ type: 'hasHandler', params: { protocol: event.protocol } })) {
        enqueue.assign({ streams: context.streams + 1, inboundStreams: context.inboundStreams + 1 });
        enqueue({ type: 'acceptInbound', params: { streamId: event.streamId, connectionId: event.connectionId } });
      } else {
        enqueue({ type: 'rejectInbound', params: { streamId: event.streamId, reason: `unknown protocol ${event.protocol}` } });
      }
    }),
    /** The current connection is being replaced: opens on it cannot finish. */
    failInFlight: base.enqueueActions(({ context, enqueue }) => {
      const error = info('CONNECTION_LOST', 'connection replaced by a newer one');
      for (const request of context.opening) {
        enqueue.cancel(streamTimerId(request.id));
        enqueue({ type: 'abortOpen', params: { id: request.id } });
        enqueue({ type: 'answer', params: { id: request.id, error } });
      }
      enqueue.assign({ opening: [], streams: 0, inboundStreams: 0 });
    }),
    adoptInbound: base.assign({
      connectionId: ({ context, event }) => (event.type === 'CONNECTION.INBOUND' ? event.connectionId : context.connectionId),
      direction: 'inbound',
    }),
    replaceWithInbound: base.enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'CONNECTION.INBOUND') return;
      if (context.connectionId !== null) {
        enqueue({
          type: 'closeConnection',
          params: { connectionId: context.connectionId, code: ConnectionErrorCode.DuplicateConnection },
        });
      }
      enqueue.assign({ connectionId: event.connectionId, direction: 'inbound' });
    }),
    endWith: base.assign({
      ending: ({ context, event }) => {
        switch (event.type) {
          case 'DRAIN':
            return ended(ConnectionErrorCode.Drain, info('CONNECTION_DRAINING', `peer ${context.peerId} is draining`));
          case 'FORCE_CLOSE':
            return ended(
              ConnectionErrorCode.ForceClose,
              info('CONNECTION_FORCE_CLOSED', event.reason ?? reasonFor(ConnectionErrorCode.ForceClose), ConnectionErrorCode.ForceClose),
            );
          case 'SHUTDOWN':
            return ended(ConnectionErrorCode.Shutdown, info('ENGINE_STOPPED', 'the engine is stopping'));
          default:
            return context.ending;
        }
      },
    }),
    /** Entry of the final states: answers what is still held, closes what is still open. */
    finish: base.enqueueActions(({ context, enqueue }) => {
      const error = context.ending?.error ?? context.lastError ?? info('CONNECTION_LOST', 'connection closed');
      failPendingAndClose(context, enqueue, error, context.ending?.code ?? ConnectionErrorCode.Drain);
      enqueue.assign({ opening: [], queue: [], connectionId: null });
    }),
    cancelRequest: base.enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'REQUEST.CANCEL') return;
      if (context.queue.some((r) => r.id === event.id)) {
        enqueue.assign({ queue: context.queue.filter((r) => r.id !== event.id) });
        enqueue({ type: 'answer', params: { id: event.id, error: event.error } });
      } else if (context.opening.some((r) => r.id === event.id)) {
        enqueue.cancel(streamTimerId(event.id));
        enqueue.assign({ opening: context.opening.filter((r) => r.id !== event.id) });
        enqueue({ type: 'abortOpen', params: { id: event.id } });
        enqueue({ type: 'answer', params: { id: event.id, error: event.error } });
      }
    }),
  },
});

export const connectionMachine = machineSetup.createMachine({
  id: 'peerConnection',
  context: ({ input }) => ({
    peerId: input.peerId,
    localPeerId: input.localPeerId,
    direction: input.direction,
    connectionId: input.connectionId ?? null,
    pinned: input.pinned,
    attempts: 0,
    restarts: 0,
    restartSeq: 0,
    wasReady: false,
    queue: [],
    opening: [],
    streams: 0,
    inboundStreams: 0,
    leases: 0,
    lastError: null,
    ending: null,
    limits: input.limits,
    heldInbound: [],
  }),
  initial: 'start',
  // Defaults for every state: release what an event carries; ignore the rest.
  on: {
    'STREAM.OPENED': { actions: { type: 'discardStream', params: ({ event }) => ({ id: event.id }) } },
    'STREAM.INBOUND': {
      actions: {
        type: 'rejectInbound',
        params: ({ event }) => ({ streamId: event.streamId, reason: 'connection is not ready' }),
      },
    },
    'CONNECTION.INBOUND': {
      actions: {
        type: 'rejectConnection',
        params: ({ event }) => ({ connectionId: event.connectionId, code: ConnectionErrorCode.DuplicateConnection }),
      },
    },
    'REQUEST.CANCEL': { actions: 'cancelRequest' },
    // removePeer() / addPeer(..., { pinned }) on a live machine; the guards that read it run again.
    // Pinning starts a fresh retry budget: failures while unpinned do not count against it.
    PIN: {
      actions: assign({
        pinned: ({ event }) => event.pinned,
        attempts: ({ context, event }) => (event.pinned && !context.pinned ? 0 : context.attempts),
      }),
    },
    'RESTART.DECAY': { actions: assign({ restarts: ({ context }) => Math.max(0, context.restarts - 1) }) },
  },
  states: {
    /** Transient: picks the first real state from the direction. */
    start: {
      always: [{ guard: 'isInbound', target: 'handshaking' }, { target: 'connecting' }],
    },

    connecting: {
      entry: assign({ direction: 'outbound', connectionId: null }),
      invoke: { src: 'dialSlot', input: ({ context }) => ({ peerId: context.peerId }) },
      initial: 'queued',
      states: {
        /** Waiting for one of the engine's dial slots (dial concurrency). */
        queued: {
          on: {
            'DIAL.SLOT': 'dialing',
            // Our dial is not out yet: nothing competes with the remote's.
            'CONNECTION.INBOUND': { target: '#peerConnection.handshaking', actions: 'adoptInbound' },
          },
          after: {
            dialQueueTimeout: {
              target: '#peerConnection.errored',
              actions: assign({ lastError: () => info('CONNECT_TIMEOUT', 'timed out waiting for a dial slot') }),
            },
          },
        },
        dialing: {
          invoke: {
            src: 'dial',
            input: ({ context }) => ({ peerId: context.peerId }),
            onDone: {
              target: '#peerConnection.handshaking',
              actions: assign({ connectionId: ({ event }) => event.output.connectionId, direction: 'outbound' }),
            },
            onError: {
              target: '#peerConnection.errored',
              actions: assign({ lastError: ({ event }) => toErrorInfo(event.error, 'CONNECTION_LOST') }),
            },
          },
          on: {
            // Simultaneous open. Tie-break, the same on both sides: the
            // connection dialled by the lower peer id wins. This inbound one
            // was dialled by the remote.
            'CONNECTION.INBOUND': [
              {
                guard: ({ context }) => context.peerId < context.localPeerId,
                target: '#peerConnection.handshaking',
                actions: 'adoptInbound',
              },
              {
                actions: {
                  type: 'rejectConnection',
                  params: ({ event }) => ({ connectionId: event.connectionId, code: ConnectionErrorCode.DuplicateConnection }),
                },
              },
            ],
          },
          after: {
            connectTimeout: {
              target: '#peerConnection.errored',
              actions: assign({ lastError: () => info('CONNECT_TIMEOUT', 'connect timed out') }),
            },
          },
        },
      },
      on: {
        REQUEST: [
          { guard: 'queueHasRoom', actions: 'enqueue' },
          { actions: 'refuseQueueFull' },
        ],
        'DIAL.QUEUE_FULL': {
          target: 'errored',
          actions: assign({ lastError: () => info('QUEUE_FULL', 'the dial queue is full') }),
        },
        DRAIN: { target: 'closed', actions: 'endWith' },
        FORCE_CLOSE: { target: 'closed', actions: 'endWith' },
        SHUTDOWN: { target: 'closed', actions: 'endWith' },
      },
    },

    handshaking: {
      entry: enqueueActions(({ context, enqueue }) => {
        if (context.direction === 'outbound' && context.connectionId !== null) {
          enqueue({
            type: 'sendControl',
            params: {
              connectionId: context.connectionId,
              message: { type: 'hello', version: PROTOCOL_VERSION, peerId: context.localPeerId },
            },
          });
        }
      }),
      // A dialler whose id is the lower one is ready as soon as its hello is
      // out, without waiting a round trip for the answer: the transport already
      // proved the listener's identity (the dial pins it), the listener checks
      // the hello and closes with ProtocolViolation or IdentityMismatch when it
      // disagrees, and its connection wins any simultaneous open (the one
      // dialled by the lower id wins, on both sides), so nothing it opens can
      // be lost to a duplicate. The higher one waits for hello-ack: the lower
      // one may be dialling it at this moment.
      always: {
        guard: ({ context }) => context.direction === 'outbound' && context.connectionId !== null && context.localPeerId < context.peerId,
        target: 'ready',
      },
      // Streams held while waiting for an inbound connection's hello: decided
      // in `ready` when the hello promoted the connection, refused otherwise.
      exit: enqueueActions(({ context, event, enqueue }) => {
        if (context.heldInbound.length === 0) return;
        const promoted = event.type === 'CONTROL.HELLO' && isValidHello(context, event);
        for (const held of context.heldInbound) {
          if (promoted) enqueue.raise({ type: 'STREAM.INBOUND', ...held });
          else enqueue({ type: 'rejectInbound', params: { streamId: held.streamId, reason: 'connection is not ready' } });
        }
        enqueue.assign({ heldInbound: [] });
      }),
      after: {
        handshakeTimeout: {
          target: 'errored',
          actions: assign({
            lastError: () => info('HANDSHAKE_TIMEOUT', 'handshake timed out', ConnectionErrorCode.HandshakeTimeout),
          }),
        },
      },
      on: {
        REQUEST: [
          { guard: 'queueHasRoom', actions: 'enqueue' },
          { actions: 'refuseQueueFull' },
        ],
        // A dialler that is ready at once opens streams right after its hello;
        // one may be read before the hello is. It waits (bounded) for the
        // hello; past the bound, or on another connection, the root refuses it.
        'STREAM.INBOUND': {
          guard: ({ context, event }) =>
            context.direction === 'inbound' && event.connectionId === context.connectionId && context.heldInbound.length < context.limits.maxInboundStreams,
          actions: assign({
            heldInbound: ({ context, event }) => [...context.heldInbound, { connectionId: event.connectionId, streamId: event.streamId, protocol: event.protocol }],
          }),
        },
        'CONTROL.HELLO': [
          {
            guard: ({ context, event }) => isValidHello(context, event),
            target: 'ready',
            actions: {
              type: 'sendControl',
              params: ({ context, event }) => ({
                connectionId: event.connectionId,
                message: { type: 'hello-ack', version: PROTOCOL_VERSION, peerId: context.localPeerId },
              }),
            },
          },
          {
            guard: 'isCurrent',
            target: 'errored',
            actions: assign({ lastError: ({ context, event }) => helloError(event, context.direction === 'inbound') }),
          },
        ],
        'CONTROL.HELLO_ACK': [
          {
            guard: ({ context, event }) =>
              event.connectionId === context.connectionId && context.direction === 'outbound' && event.version === PROTOCOL_VERSION && event.peerId === context.peerId,
            target: 'ready',
          },
          {
            guard: 'isCurrent',
            target: 'errored',
            actions: assign({ lastError: ({ context, event }) => helloError(event, context.direction === 'outbound') }),
          },
        ],
        'CONNECTION.CLOSED': [
          // The remote chose the other connection of a simultaneous open: keep
          // waiting (under the handshake timer) for the winner to arrive.
          {
            guard: ({ context, event }) =>
              event.connectionId === context.connectionId && event.code === ConnectionErrorCode.DuplicateConnection,
            actions: assign({ connectionId: null }),
          },
          {
            guard: 'isCurrent',
            target: 'errored',
            actions: assign({ lastError: ({ event }) => closedError(event) }),
          },
        ],
        // Same tie-break as in `connecting`, which always favours the
        // inbound one here: a dialler still in this state has the higher id
        // (the lower one is `ready` at once); between two dialled by the
        // remote, the newer wins (the remote lost the old one); with no
        // connection at all (the remote refused ours as a duplicate) the
        // inbound one is it.
        'CONNECTION.INBOUND': { target: 'handshaking', reenter: true, actions: ['replaceWithInbound'] },
        DRAIN: { target: 'closed', actions: 'endWith' },
        FORCE_CLOSE: { target: 'closed', actions: 'endWith' },
        SHUTDOWN: { target: 'closed', actions: 'endWith' },
      },
    },

    ready: {
      // Heartbeats live here and die with it: started on entry, stopped on exit
      // (and by the runtime when it removes the machine). The runtime pings and
      // matches pongs without a machine step; only a failure comes back.
      entry: [
        assign({ attempts: 0, lastError: null }),
        'openQueued',
        { type: 'startHeartbeat', params: ({ context }) => ({ connectionId: context.connectionId ?? '' }) },
      ],
      // A failure from here on is a lost connection, not a failed dial: no dial backoff.
      exit: [{ type: 'stopHeartbeat', params: ({ context }) => ({ connectionId: context.connectionId ?? '' }) }, assign({ wasReady: true })],
      initial: 'busy',
      states: {
        busy: { always: { guard: 'isIdle', target: 'idle' } },
        idle: {
          always: { guard: not('isIdle'), target: 'busy' },
          on: {
            PRUNE: {
              target: '#peerConnection.draining',
              actions: assign({ ending: () => idleEnding('pruned to make room for another connection') }),
            },
          },
          after: {
            idleTimeout: {
              target: '#peerConnection.draining',
              actions: assign({ ending: () => idleEnding('connection was idle') }),
            },
          },
        },
      },
      on: {
        REQUEST: [
          { guard: ({ event }) => event.request.kind === 'lease', actions: 'lease' },
          { guard: 'hasCredit', actions: 'startOpen' },
          { guard: 'queueHasRoom', actions: 'enqueue' },
          { actions: 'refuseQueueFull' },
        ],
        'STREAM.OPENED': [
          { guard: 'isOpening', actions: 'streamOpened' },
          { actions: { type: 'discardStream', params: ({ event }) => ({ id: event.id }) } },
        ],
        'STREAM.OPEN_FAILED': { guard: 'isOpening', actions: ['openFailed', 'openQueued'] },
        'STREAM.OPEN_TIMEOUT': { guard: 'isOpening', actions: ['openTimedOut', 'openQueued'] },
        'STREAM.CLOSED': { guard: 'isCurrent', actions: ['streamClosed', 'openQueued'] },
        'STREAM.INBOUND': [
          {
            // A per-protocol limit of handle(): NACKed with the limit as the reason.
            guard: and(['isCurrent', 'protocolLimited']),
            actions: {
              type: 'limitInbound',
              params: ({ event }) => ({ streamId: event.streamId, protocol: event.protocol, connectionId: event.connectionId }),
            },
          },
          {
            guard: ({ context, event }) =>
              event.connectionId === context.connectionId && context.inboundStreams < context.limits.maxInboundStreams,
            actions: 'maybeAcceptInbound',
          },
          {
            actions: {
              type: 'rejectInbound',
              params: ({ context, event }) => ({
                streamId: event.streamId,
                reason: event.connectionId === context.connectionId ? 'too many streams' : 'connection is being replaced',
              }),
            },
          },
        ],
        // A lease counts on the connection it was granted on; one from before a reconnect is stale.
        'LEASE.RELEASE': { guard: 'isCurrent', actions: assign({ leases: ({ context }) => Math.max(0, context.leases - 1) }) },
        // A cancelled open gives its credit to the next queued request.
        'REQUEST.CANCEL': { actions: ['cancelRequest', 'openQueued'] },
        // The runtime's heartbeat: `misses` pings in a row, or a probe, went unanswered.
        'HEARTBEAT.FAILED': {
          guard: 'isCurrent',
          target: 'errored',
          actions: assign({ lastError: ({ event }) => heartbeatError(event) }),
        },
        'CONTROL.GOAWAY': {
          guard: 'isCurrent',
          target: 'draining',
          actions: assign({
            ending: () => ({
              code: ConnectionErrorCode.Drain,
              error: info('CONNECTION_DRAINING', 'the remote is draining the connection'),
              remote: true,
            }),
          }),
        },
        'CONNECTION.CLOSED': [
          {
            guard: ({ context, event }) =>
              event.connectionId === context.connectionId && !context.pinned && !event.error && isGraceful(event.code),
            target: 'closed',
            actions: assign({ connectionId: null, lastError: ({ event }) => closedError(event) }),
          },
          {
            guard: 'isCurrent',
            target: 'errored',
            actions: assign({ connectionId: null, lastError: ({ event }) => closedError(event) }),
          },
        ],
        'CONNECTION.INBOUND': [
          {
            // A second connection from a peer we are ready with. The one
            // dialled by the lower id wins; between two dialled by the same
            // side, the newer wins (the remote lost the old one).
            guard: ({ context }) => context.direction === 'inbound' || context.peerId < context.localPeerId,
            target: 'handshaking',
            actions: ['failInFlight', 'replaceWithInbound'],
          },
          {
            actions: {
              type: 'rejectConnection',
              params: ({ event }) => ({ connectionId: event.connectionId, code: ConnectionErrorCode.DuplicateConnection }),
            },
          },
        ],
        DRAIN: { target: 'draining', actions: 'endWith' },
        SHUTDOWN: [
          { guard: ({ event }) => event.force, target: 'forceClosed', actions: 'endWith' },
          { target: 'draining', actions: 'endWith' },
        ],
        FORCE_CLOSE: { target: 'forceClosed', actions: 'endWith' },
      },
    },

    draining: {
      entry: enqueueActions(({ context, enqueue }) => {
        const ending = context.ending;
        if (ending === null) return;
        for (const request of context.queue) enqueue({ type: 'answer', params: { id: request.id, error: ending.error } });
        enqueue.assign({ queue: [] });
        if (!ending.remote && context.connectionId !== null) {
          enqueue({ type: 'sendControl', params: { connectionId: context.connectionId, message: { type: 'goaway' } } });
        }
      }),
      always: [
        {
          // A pinned peer that the remote drained: reconnect by backoff.
          guard: and(['pinnedRemoteDrain', 'isSettled']),
          target: 'errored',
          actions: assign({ lastError: () => remoteDrained }),
        },
        { guard: 'isSettled', target: 'closed' },
      ],
      after: {
        drainDeadline: {
          target: 'forceClosed',
          actions: assign({
            ending: ({ context }) => ({
              code: ConnectionErrorCode.ForceClose,
              error:
                context.ending?.error.code === 'ENGINE_STOPPED'
                  ? context.ending.error
                  : info('CONNECTION_FORCE_CLOSED', 'drain deadline passed', ConnectionErrorCode.ForceClose),
              remote: context.ending?.remote ?? false,
            }),
          }),
        },
      },
      on: {
        REQUEST: { actions: 'refuseEnding' },
        'STREAM.OPENED': [
          { guard: 'isOpening', actions: 'streamOpened' },
          { actions: { type: 'discardStream', params: ({ event }) => ({ id: event.id }) } },
        ],
        'STREAM.OPEN_FAILED': { guard: 'isOpening', actions: 'openFailed' },
        'STREAM.OPEN_TIMEOUT': { guard: 'isOpening', actions: 'openTimedOut' },
        'STREAM.CLOSED': { guard: 'isCurrent', actions: 'streamClosed' },
        'STREAM.INBOUND': {
          actions: {
            type: 'rejectInbound',
            params: ({ event }) => ({ streamId: event.streamId, reason: 'connection is draining' }),
          },
        },
        // A lease counts on the connection it was granted on; one from before a reconnect is stale.
        'LEASE.RELEASE': { guard: 'isCurrent', actions: assign({ leases: ({ context }) => Math.max(0, context.leases - 1) }) },
        'CONNECTION.CLOSED': [
          {
            guard: and(['isCurrent', 'pinnedRemoteDrain']),
            target: 'errored',
            actions: assign({ connectionId: null, lastError: () => remoteDrained }),
          },
          {
            guard: 'isCurrent',
            target: 'closed',
            actions: assign({ connectionId: null, lastError: ({ event }) => closedError(event) }),
          },
        ],
        FORCE_CLOSE: { target: 'forceClosed', actions: 'endWith' },
        SHUTDOWN: [
          { guard: ({ event }) => event.force, target: 'forceClosed', actions: 'endWith' },
          // Keep draining, but as a shutdown: a pinned peer the remote drained must not reconnect now.
          { actions: 'endWith' },
        ],
      },
    },

    forceClosed: {
      entry: enqueueActions(({ context, enqueue }) => {
        const error = context.ending?.error ?? info('CONNECTION_FORCE_CLOSED', 'connection force closed', ConnectionErrorCode.ForceClose);
        failPendingAndClose(context, enqueue, error, context.ending?.code ?? ConnectionErrorCode.ForceClose);
        enqueue.assign({ opening: [], queue: [] });
      }),
      after: {
        forceCloseGrace: [
          { guard: 'pinnedRemoteDrain', target: 'errored', actions: assign({ connectionId: null, lastError: () => remoteDrained }) },
          { target: 'closed', actions: assign({ connectionId: null }) },
        ],
      },
      on: {
        REQUEST: { actions: 'refuseEnding' },
        'CONNECTION.CLOSED': [
          {
            guard: and(['isCurrent', 'pinnedRemoteDrain']),
            target: 'errored',
            actions: assign({ connectionId: null, lastError: () => remoteDrained }),
          },
          { guard: 'isCurrent', target: 'closed', actions: assign({ connectionId: null }) },
        ],
      },
    },

    errored: {
      entry: enqueueActions(({ context, enqueue }) => {
        const error = context.lastError ?? info('CONNECTION_LOST', 'connection failed');
        // Requests that wait for ready stay for the next attempt (`closed` / `gaveUp` answer them if none follows).
        const waiting = context.queue.filter((r) => r.waitForReady === true);
        const failing = waiting.length === 0 ? context : { ...context, queue: context.queue.filter((r) => r.waitForReady !== true) };
        failPendingAndClose(failing, enqueue, error, error.closeCode ?? ConnectionErrorCode.ForceClose);
        // Restart intensity of a pinned peer: each failure counts for the restart period.
        const counted = context.pinned && context.limits.maxRestarts !== Infinity;
        enqueue.assign({
          opening: [],
          queue: waiting,
          streams: 0,
          inboundStreams: 0,
          leases: 0,
          connectionId: null,
          attempts: context.attempts + 1,
          restarts: counted ? context.restarts + 1 : context.restarts,
          restartSeq: counted ? context.restartSeq + 1 : context.restartSeq,
        });
        if (counted) enqueue.raise({ type: 'RESTART.DECAY' }, { id: `restart:${context.restartSeq}`, delay: 'restartPeriod' });
      }),
      exit: assign({ wasReady: false }),
      always: [
        { guard: 'gaveUpNow', target: 'gaveUp' },
        { guard: and([not('canRetry'), not('holdsBackoff')]), target: 'closed' },
      ],
      after: {
        retryBackoff: [
          { guard: 'canRetry', target: 'connecting' },
          // The dial backoff is over and a request waits for the peer: dial again.
          { guard: 'hasWaiting', target: 'connecting' },
          { target: 'closed' },
        ],
      },
      on: {
        // Fail fast while backing off (the answer is the error that put us
        // here), unless the request waits for ready.
        REQUEST: [
          { guard: and(['waitsForReady', 'queueHasRoom']), actions: 'enqueue' },
          { guard: 'waitsForReady', actions: 'refuseQueueFull' },
          { actions: 'refuseWithLastError' },
        ],
        // Room for another peer: a peer backing off with nobody waiting is worth nothing.
        PRUNE: { guard: and([not('isPinned'), not('hasWaiting')]), target: 'closed' },
        'CONNECTION.INBOUND': { target: 'handshaking', actions: 'adoptInbound' },
        DRAIN: { target: 'closed', actions: 'endWith' },
        FORCE_CLOSE: { target: 'closed', actions: 'endWith' },
        SHUTDOWN: { target: 'closed', actions: 'endWith' },
      },
    },

    closed: {
      type: 'final',
      entry: 'finish',
    },

    /**
     * Final: a pinned peer gave up (its retry budget or restart intensity is
     * spent). The machine ends like `closed`; the engine does not dial the
     * peer by itself again, and the next request (or addPeer) starts afresh.
     */
    gaveUp: {
      type: 'final',
      entry: 'finish',
    },
  },
});

function toErrorInfo(error: unknown, fallback: ErrorCode): ErrorInfo {
  if (typeof error === 'object' && error !== null && 'code' in error && 'message' in error) {
    return error as ErrorInfo;
  }
  return info(fallback, error instanceof Error ? error.message : String(error));
}

/** A hello that makes an inbound connection ready: on it, our version, naming the peer the transport verified. */
function isValidHello(context: ConnectionContext, event: { connectionId: string; version: number; peerId: string }): boolean {
  return (
    event.connectionId === context.connectionId &&
    context.direction === 'inbound' &&
    event.version === PROTOCOL_VERSION &&
    event.peerId === context.peerId
  );
}

/** Why a hello / hello-ack was refused. `expected`: this side waits for that message. */
function helloError(event: { type: string; version: number; peerId: string }, expected: boolean): ErrorInfo {
  if (!expected) {
    return info(
      'PROTOCOL_VIOLATION',
      `${event.type} is not expected by the ${event.type === 'CONTROL.HELLO' ? 'dialling' : 'listening'} side`,
      ConnectionErrorCode.ProtocolViolation,
    );
  }
  if (event.version !== PROTOCOL_VERSION) {
    return info(
      'PROTOCOL_VIOLATION',
      `handshake version ${event.version} is not ${PROTOCOL_VERSION}`,
      ConnectionErrorCode.ProtocolViolation,
    );
  }
  return info('PEER_IDENTITY_MISMATCH', `handshake names peer ${event.peerId}`, ConnectionErrorCode.IdentityMismatch);
}

/** The error a connection's close means for the machine (and for a dial whose connection closed as it came up). */
export function closedError(event: { code: number | undefined; reason: string; error: boolean }): ErrorInfo {
  const detail = event.code === undefined ? event.reason : `${event.reason} (code ${event.code})`;
  if (event.code === ConnectionErrorCode.IdentityMismatch) {
    return info('PEER_IDENTITY_MISMATCH', `connection closed: ${detail}`, ConnectionErrorCode.IdentityMismatch);
  }
  if (event.code === ConnectionErrorCode.ProtocolViolation) {
    return info('PROTOCOL_VIOLATION', `connection closed: ${detail}`, ConnectionErrorCode.ProtocolViolation);
  }
  if (event.code === ConnectionErrorCode.HeartbeatTimeout) {
    return info('HEARTBEAT_TIMEOUT', `remote declared the connection dead: ${detail}`, ConnectionErrorCode.HeartbeatTimeout);
  }
  if (event.code === ConnectionErrorCode.ForceClose) {
    return info('CONNECTION_FORCE_CLOSED', `remote force closed the connection: ${detail}`, ConnectionErrorCode.ForceClose);
  }
  // Admission control on the remote: the transport came up on our side before its refusal arrived.
  if (
    event.code === ConnectionErrorCode.AdmissionDenied ||
    event.code === ConnectionErrorCode.RateLimited ||
    event.code === ConnectionErrorCode.HandshakeLimit ||
    event.code === ConnectionErrorCode.ConnectionLimit
  ) {
    return info('CONNECT_REFUSED', `the remote refused the connection: ${detail}`, event.code);
  }
  return info('CONNECTION_LOST', `connection lost: ${detail}`);
}

/** A pinned peer's remote drained us: reconnect by backoff (closing, if still open, as a drain). */
const remoteDrained: ErrorInfo = info('CONNECTION_LOST', 'the remote drained the connection', ConnectionErrorCode.Drain);

function heartbeatError(event: { misses: number; probe: boolean }): ErrorInfo {
  const message = event.probe ? 'no answer to the probe after a network change' : `no heartbeat answer after ${event.misses} tries`;
  return info('HEARTBEAT_TIMEOUT', message, ConnectionErrorCode.HeartbeatTimeout);
}

function idleEnding(message: string): Ending {
  return { code: ConnectionErrorCode.IdleTimeout, error: info('CONNECTION_DRAINING', message), remote: false };
}

export type ConnectionMachine = typeof connectionMachine;
export { reasonFor };
export type { RequestRef };
