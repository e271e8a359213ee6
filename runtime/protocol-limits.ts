/**
 * Per-protocol limits on inbound streams, the options of
 * `engine.handle(protocol, handler, options)`: streams open at once per
 * connection, an open rate per connection, and handlers running at once
 * over the whole engine. Over a limit the stream is NACKed with a reason that
 * starts with `STREAM_LIMIT_REASON`, which the opener's engine turns into
 * the error code `STREAM_LIMIT` (retry later), not `STREAM_REJECTED`.
 *
 * The machine decides (its `protocolLimited` guard reads `limited()`); the
 * counting happens in the same step when the stream is accepted
 * (`accepted()`), so the check and the count never disagree.
 */

import { checkNumber, checkObject, checkOptionalNumber, COUNT_OR_INFINITY, POSITIVE } from '../protocol/arguments.js';

export interface HandlerOptions {
  /** Inbound streams of this protocol open at once on one connection. */
  readonly maxStreamsPerConnection?: number;
  /** Inbound opens of this protocol per connection: a burst of `opens`, refilled at `opens` per `windowMs`. */
  readonly inboundRate?: { readonly opens: number; readonly windowMs: number };
  /** Handlers of this protocol running at once, over every connection (until the handler's promise settles). */
  readonly maxConcurrentHandlers?: number;
}

/** The NACK reason of a stream refused by a limit starts with this. */
export const STREAM_LIMIT_REASON = 'stream limit';

/** Throws a RangeError (TypeError for a wrong type) naming the bad field. */
export function validateHandlerOptions(options: unknown): HandlerOptions {
  if (options === undefined) return {};
  checkObject('options', options);
  const o = options as Record<string, unknown>;
  checkOptionalNumber('options.maxStreamsPerConnection', o.maxStreamsPerConnection, COUNT_OR_INFINITY);
  checkOptionalNumber('options.maxConcurrentHandlers', o.maxConcurrentHandlers, COUNT_OR_INFINITY);
  if (o.inboundRate !== undefined) {
    checkObject('options.inboundRate', o.inboundRate);
    const rate = o.inboundRate as Record<string, unknown>;
    checkNumber('options.inboundRate.opens', rate.opens, COUNT_OR_INFINITY);
    checkNumber('options.inboundRate.windowMs', rate.windowMs, POSITIVE);
  }
  return options as HandlerOptions;
}

/** One protocol on one connection: its open streams and its token bucket. */
interface Use {
  streams: number;
  tokens: number;
  at: number;
}

export class ProtocolLimits {
  readonly #now: () => number;
  readonly #options = new Map<string, HandlerOptions>();
  readonly #running = new Map<string, number>();
  /** By connection id, then protocol; only for protocols with a per-connection limit, dropped with the connection. */
  readonly #use = new Map<string, Map<string, Use>>();

  constructor(now: () => number) {
    this.#now = now;
  }

  set(protocol: string, options: HandlerOptions): void {
    const limited =
      options.maxStreamsPerConnection !== undefined || options.inboundRate !== undefined || options.maxConcurrentHandlers !== undefined;
    if (limited) this.#options.set(protocol, options);
    else this.#options.delete(protocol);
  }

  delete(protocol: string): void {
    this.#options.delete(protocol);
  }

  /** Why one more inbound stream of `protocol` on `connectionId` is refused now, or undefined. Takes nothing. */
  limited(protocol: string, connectionId: string): string | undefined {
    const o = this.#options.get(protocol);
    if (o === undefined) return undefined;
    if (o.maxConcurrentHandlers !== undefined && (this.#running.get(protocol) ?? 0) >= o.maxConcurrentHandlers) {
      return `${STREAM_LIMIT_REASON}: ${o.maxConcurrentHandlers} handlers of ${protocol} are running`;
    }
    const use = this.#use.get(connectionId)?.get(protocol);
    if (use === undefined) return undefined;
    if (o.maxStreamsPerConnection !== undefined && use.streams >= o.maxStreamsPerConnection) {
      return `${STREAM_LIMIT_REASON}: ${o.maxStreamsPerConnection} streams of ${protocol} are open on this connection`;
    }
    if (o.inboundRate !== undefined && this.#refill(use, o.inboundRate) < 1) {
      return `${STREAM_LIMIT_REASON}: more than ${o.inboundRate.opens} opens of ${protocol} per ${o.inboundRate.windowMs} ms`;
    }
    return undefined;
  }

  /** The stream was accepted: counts it (and its token). Returns what to call when it closes. */
  accepted(protocol: string, connectionId: string): () => void {
    const o = this.#options.get(protocol);
    if (o === undefined || (o.maxStreamsPerConnection === undefined && o.inboundRate === undefined)) return noop;
    let byProtocol = this.#use.get(connectionId);
    if (byProtocol === undefined) {
      byProtocol = new Map();
      this.#use.set(connectionId, byProtocol);
    }
    let use = byProtocol.get(protocol);
    if (use === undefined) {
      use = { streams: 0, tokens: o.inboundRate?.opens ?? 0, at: this.#now() };
      byProtocol.set(protocol, use);
    }
    if (o.inboundRate !== undefined) use.tokens = this.#refill(use, o.inboundRate) - 1;
    use.streams += 1;
    const counted = use;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      counted.streams -= 1;
    };
  }

  /** A handler of `protocol` started; returns what to call when it has finished. */
  handlerStarted(protocol: string): () => void {
    this.#running.set(protocol, (this.#running.get(protocol) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const left = (this.#running.get(protocol) ?? 1) - 1;
      if (left <= 0) this.#running.delete(protocol);
      else this.#running.set(protocol, left);
    };
  }

  /** The connection is gone: its counts and buckets go too. */
  forget(connectionId: string): void {
    this.#use.delete(connectionId);
  }

  #refill(use: Use, rate: { readonly opens: number; readonly windowMs: number }): number {
    const now = this.#now();
    use.tokens = Math.min(rate.opens, use.tokens + ((now - use.at) * rate.opens) / rate.windowMs);
    use.at = now;
    return use.tokens;
  }
}

function noop(): void {}
