/**
 * The dialer: what the machine's `dialSlot` and `dial` actors and its
 * `retryBackoff` delay do. A dial waits for a slot of the dial queue
 * (`dialConcurrency` at once, `dialQueueLimit` waiting, as libp2p's dial
 * queue), then dials the peer's addresses staggered (RFC 8305,
 * `staggered-dial.ts`); the first verified connection is attached to the
 * peer's record and its id handed to the machine. The wait before the next
 * attempt, or with none left the dial backoff, is drawn from the policies
 * here.
 */
import { fromCallback, fromPromise } from 'xstate';
import type { Adapter, Connection } from '../protocol/adapter.js';
import { ConnectionErrorCode, errorInfo, reasonFor, type ErrorInfo } from '../protocol/codes.js';
import type { Clock, Random } from '../protocol/time.js';
import { canRetry, closedError } from '../machines/connection-machine.js';
import type { ConnectionContext, ConnectionEvent, DialOutput } from '../machines/types.js';
import { DialQueue } from './dial-queue.js';
import type { EngineOptions } from './defaults.js';
import { diagnostics } from './diagnostics.js';
import { transportErrorInfo } from './errors.js';
import type { LevelledLogger } from './logger.js';
import type { Metrics } from './metrics.js';
import type { PeerRecord } from './peer-record.js';
import { backoffDelay } from './retry.js';
import { rankAddresses, staggeredDial } from './staggered-dial.js';

export interface DialerInit {
  readonly localPeerId: string;
  readonly options: Readonly<EngineOptions>;
  readonly adapter: Adapter;
  readonly clock: Clock;
  readonly random: Random;
  readonly metrics: Metrics;
  readonly log: LevelledLogger;
  /** The peer's live record (not removed), if any. */
  record(peerId: string): PeerRecord | undefined;
  /** The peer's addresses in the address book. */
  addresses(peerId: string): readonly string[];
}

export class Dialer {
  readonly queue: DialQueue;
  readonly #init: DialerInit;
  readonly #options: Readonly<EngineOptions>;
  readonly #clock: Clock;

  constructor(init: DialerInit) {
    this.#init = init;
    this.#options = init.options;
    this.#clock = init.clock;
    this.queue = new DialQueue(init.options.dialConcurrency, init.options.dialQueueLimit);
  }

  /** The machine's `dialSlot` and `dial` actors. */
  actors() {
    return {
      dialSlot: fromCallback<ConnectionEvent, { peerId: string }>(({ sendBack }) =>
        this.queue.acquire(
          () => sendBack({ type: 'DIAL.SLOT' }),
          () => sendBack({ type: 'DIAL.QUEUE_FULL' }),
        ),
      ),
      dial: fromPromise<DialOutput, { peerId: string }>(({ input, signal }) => this.dial(input.peerId, signal)),
    };
  }

  /** The machine's `retryBackoff` delay: the wait before the next attempt; with none left, the dial backoff (see the machine's `errored`). */
  retryDelay(context: Pick<ConnectionContext, 'attempts' | 'pinned' | 'limits'>): number {
    const o = this.#options;
    return backoffDelay(canRetry(context) ? (context.pinned ? o.pinnedRetry : o.retry) : o.dialBackoff, context.attempts, this.#init.random);
  }

  async dial(peerId: string, signal: AbortSignal): Promise<DialOutput> {
    const record = this.#init.record(peerId);
    if (record === undefined) throw errorInfo('CONNECTION_LOST', `peer ${peerId} is gone`);
    const addresses = this.#init.addresses(peerId);
    if (addresses.length === 0) throw errorInfo('NO_ADDRESS', `no address known for peer ${peerId}`);
    const metrics = this.#init.metrics;
    metrics.dialsStarted += 1;
    const startedAt = this.#clock.now();
    let connection: Connection;
    try {
      connection = await staggeredDial({
        addresses: rankAddresses(addresses, this.#options.addressOrder),
        delayMs: this.#options.dialStaggerMs,
        clock: this.#clock,
        signal,
        dial: (address, attemptSignal) => this.#init.adapter.dial(peerId, address, { signal: attemptSignal }),
        abandon: (late) => late.close(ConnectionErrorCode.Abandoned, reasonFor(ConnectionErrorCode.Abandoned)),
      });
    } catch (error) {
      metrics.dialsFailed += 1;
      throw this.#failed(peerId, addresses, startedAt, transportErrorInfo(error, 'dial'));
    }
    if (signal.aborted || record.removed) {
      // The machine stopped waiting (timeout, shutdown): nobody will adopt it.
      connection.close(ConnectionErrorCode.Abandoned, reasonFor(ConnectionErrorCode.Abandoned));
      throw this.#failed(peerId, addresses, startedAt, errorInfo('CONNECT_TIMEOUT', 'dial finished after it was abandoned'));
    }
    const closed = record.attach(connection).closed;
    if (closed !== undefined) {
      // It closed as it came up (the remote refused it at once, say): the close reached the machine
      // before the connection did, so the dial fails with the close's reason.
      metrics.dialsFailed += 1;
      throw this.#failed(peerId, addresses, startedAt, closedError(closed));
    }
    if (diagnostics.dial.hasSubscribers) {
      const at = this.#clock.now();
      const connectionId = connection.id;
      diagnostics.dial.publish({ localPeerId: this.#init.localPeerId, peerId, addresses, ok: true, connectionId, durationMs: at - startedAt, at });
    }
    return { connectionId: connection.id };
  }

  /** Logs and publishes a failed dial; returns its error for the machine. */
  #failed(peerId: string, addresses: readonly string[], startedAt: number, error: ErrorInfo): ErrorInfo {
    const log = this.#init.log;
    const localPeerId = this.#init.localPeerId;
    if (log.enabled('debug')) log.debug(`peerline ${localPeerId}: dial to ${peerId} failed: ${error.code} ${error.message}`);
    if (diagnostics.dial.hasSubscribers) {
      const at = this.#clock.now();
      const { code, message } = error;
      diagnostics.dial.publish({ localPeerId, peerId, addresses, ok: false, code, message, durationMs: at - startedAt, at });
    }
    return error;
  }
}
