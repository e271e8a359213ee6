import type { InboundGate } from '../protocol/adapter.js';
import type { RateLimit } from '../protocol/rate-limit.js';
import { checkNumber, checkObject, checkOneOf, checkOptionalFunction, COUNT, COUNT_OR_INFINITY, invalidValue, NON_NEGATIVE, outOfRange, POSITIVE } from '../protocol/arguments.js';
import { TIMING_DEFAULTS, WIRE_DEFAULTS } from '../protocol/timing.js';
import { maxAttempts, validateRetryPolicy, type RetryPolicy } from './retry.js';

const POSITIVE_OR_INFINITY = Object.freeze({ ...POSITIVE, infinity: true });
import type { ResumeOptions } from './resume/manager.js';

/**
 * Every engine option, with its default and why. One file, so a reader can
 * see all of peerline's bounds at once; the timings' values come from the
 * one table of them, `protocol/timing.ts`.
 */
export interface EngineOptions {
  /** Dial (transport connect) timeout per attempt. @default 10_000 */
  connectTimeoutMs: number;
  /** Longest wait for one of the dial slots before the attempt fails. @default 30_000 */
  dialQueueTimeoutMs: number;
  /** Identity check + application handshake. @default 10_000 */
  handshakeTimeoutMs: number;
  /** Stream open: header sent until the remote's ACK. @default 10_000 */
  streamOpenTimeoutMs: number;
  heartbeat: {
    /** A ping every interval while `ready` (and only then). @default 5_000 */
    intervalMs: number;
    /** Wait for each pong. Must be below the interval. @default 2_000 */
    timeoutMs: number;
    /** Consecutive misses that make the connection dead. @default 3 */
    misses: number;
  };
  /** Close a connection with no stream, lease or request for this long. Infinity: never. @default 60_000 */
  idleTimeoutMs: number;
  /** Streams in flight may finish this long after a drain starts; then force close. @default 5_000 */
  drainDeadlineMs: number;
  /** After a force close, wait this long for the transport to confirm. @default 1_000 */
  forceCloseGraceMs: number;
  /** Retry policy for peers that are not pinned. @default { strategy: 'none' } */
  retry: RetryPolicy;
  /**
   * Backoff for pinned peers. Its `maxAttempts` is the number of consecutive
   * failed attempts after which a pinned peer gives up (state `gaveUp`);
   * without one they retry forever.
   * @default exponential 1 s x1.6 +-20 % cap 120 s, no attempt limit
   */
  pinnedRetry: RetryPolicy;
  /**
   * Restart intensity of pinned peers (Erlang supervisors' MaxR in MaxT): a
   * pinned peer whose connection fails more than `maxRestarts` times within
   * `periodMs` gives up (state `gaveUp`), however often it was ready in
   * between. `maxRestarts: Infinity`: no limit.
   * @default { maxRestarts: Infinity, periodMs: 60_000 }
   */
  pinnedRestartIntensity: { maxRestarts: number; periodMs: number };
  /**
   * Dial backoff for peers that are not pinned: when a dial fails and the
   * `retry` policy allows no more attempts, the peer stays `errored` this long
   * (by the policy, after the failed attempts so far) before it closes. A
   * request meanwhile fails fast with the failure's code, or, with
   * `waitForReady`, waits and is dialled for when the backoff ends. A lost
   * connection that had been ready, or an inbound one, is not backed off.
   * `{ strategy: 'none' }`:
   * the peer closes at once and the next request dials again.
   * @default exponential 1 s x2 +-20 % cap 60 s
   */
  dialBackoff: RetryPolicy;
  /**
   * Staggered dials (RFC 8305's connection attempt delay): a peer's addresses
   * are dialled one after another, this long apart, each started early if the
   * previous one failed; the first connection wins and the rest are
   * cancelled. 0: all at once.
   * @default 250
   */
  dialStaggerMs: number;
  /**
   * The order addresses are tried in: `interleave` puts IPv6 first and
   * alternates the families (RFC 8305 section 4), keeping the given order
   * within each family and for addresses of no IP family; `given` keeps the
   * address book's order.
   * @default 'interleave'
   */
  addressOrder: 'interleave' | 'given';
  /** Requests waiting per peer (for the connection or for stream credit). @default 256 */
  maxQueuedPerPeer: number;
  /** Outbound streams open or opening at once per connection (QUIC's default stream limit). @default 100 */
  maxStreamsPerConnection: number;
  /** Inbound streams open at once per connection; more are NACKed. @default 100 */
  maxInboundStreamsPerConnection: number;
  /** Dials in progress at once. @default 50 */
  dialConcurrency: number;
  /** Dials waiting for a slot; more fail with QUEUE_FULL. @default 500 */
  dialQueueLimit: number;
  /** Live peer machines; at the limit an idle one is pruned, else CONNECTION_LIMIT. @default 1_000 */
  maxConnections: number;
  /** Longest protocol name accepted in a stream header, in bytes. @default 256 */
  maxProtocolLength: number;
  /** Resumable streams (`openStream(..., { resumable: true })`): replay buffer, TTL, bounds. */
  resume: ResumeOptions;
  /**
   * Admission control: inbound connections at once, verified by the
   * transport, handshaking or ready. More are refused with
   * ConnectionErrorCode.ConnectionLimit; our own dials are not counted, so a
   * fifth of `maxConnections` stays for them. Infinity: no limit. @default 800
   */
  maxInboundConnections: number;
  /**
   * Admission control: inbound connections whose handshake (the transport's
   * and the application hello) has not finished. More are refused with
   * ConnectionErrorCode.HandshakeLimit. Bounds what peers that connect and
   * stall can hold. Infinity: no limit. @default 64
   */
  maxHandshakingConnections: number;
  /**
   * Admission control: new inbound connections per remote address (the IP
   * for QUIC, the peer for the memory network), a token bucket: a burst of
   * `connections`, refilled at `connections` per `windowMs`. More are refused
   * with ConnectionErrorCode.RateLimited. `connections: Infinity`: no limit.
   * @default { connections: 20, windowMs: 1_000 }
   */
  inboundRateLimit: RateLimit;
  /**
   * Admission control: the gater, asked with each inbound peer's verified id
   * (and its address) before any of its streams is accepted; false refuses
   * it with ConnectionErrorCode.AdmissionDenied. May return a promise, awaited
   * at most `handshakeTimeoutMs`; throwing, rejecting or not answering in
   * time refuses. QUIC asks it during the TLS handshake.
   * @default undefined (every verified peer is admitted)
   */
  allowInbound: InboundGate | undefined;
}

export const DEFAULTS: Readonly<EngineOptions> = Object.freeze({
  connectTimeoutMs: TIMING_DEFAULTS.connectTimeoutMs,
  dialQueueTimeoutMs: TIMING_DEFAULTS.dialQueueTimeoutMs,
  handshakeTimeoutMs: TIMING_DEFAULTS.handshakeTimeoutMs,
  streamOpenTimeoutMs: TIMING_DEFAULTS.streamOpenTimeoutMs,
  heartbeat: TIMING_DEFAULTS.heartbeat,
  idleTimeoutMs: TIMING_DEFAULTS.idleTimeoutMs,
  drainDeadlineMs: TIMING_DEFAULTS.drainDeadlineMs,
  forceCloseGraceMs: TIMING_DEFAULTS.forceCloseGraceMs,
  retry: Object.freeze({ strategy: 'none' }) as RetryPolicy,
  pinnedRetry: Object.freeze({
    strategy: 'exponential',
    initialDelayMs: TIMING_DEFAULTS.backoffInitialMs,
    multiplier: 1.6,
    maxDelayMs: 120_000,
    jitter: 0.2,
  }) as RetryPolicy,
  pinnedRestartIntensity: Object.freeze({ maxRestarts: Infinity, periodMs: TIMING_DEFAULTS.restartPeriodMs }),
  dialBackoff: Object.freeze({
    strategy: 'exponential',
    initialDelayMs: TIMING_DEFAULTS.backoffInitialMs,
    multiplier: 2,
    maxDelayMs: 60_000,
    jitter: 0.2,
  }) as RetryPolicy,
  dialStaggerMs: TIMING_DEFAULTS.dialStaggerMs,
  addressOrder: 'interleave',
  maxQueuedPerPeer: 256,
  maxStreamsPerConnection: 100,
  maxInboundStreamsPerConnection: WIRE_DEFAULTS.maxInboundStreamsPerConnection,
  dialConcurrency: 50,
  dialQueueLimit: 500,
  maxConnections: 1_000,
  maxProtocolLength: WIRE_DEFAULTS.maxProtocolLength,
  resume: Object.freeze({
    bufferBytes: 4 * 1024 * 1024,
    ttlMs: 60_000,
    maxSessionsPerPeer: 16,
    timeoutMs: 10_000,
    retry: undefined,
    ackDelayMs: 20,
  }),
  maxInboundConnections: 800,
  maxHandshakingConnections: 64,
  inboundRateLimit: Object.freeze({ connections: 20, windowMs: 1_000 }),
  allowInbound: undefined,
});

export type EngineInit = Partial<Omit<EngineOptions, 'heartbeat' | 'resume' | 'inboundRateLimit' | 'pinnedRestartIntensity'>> & {
  heartbeat?: Partial<EngineOptions['heartbeat']>;
  pinnedRestartIntensity?: Partial<EngineOptions['pinnedRestartIntensity']>;
  resume?: Partial<EngineOptions['resume']>;
  inboundRateLimit?: Partial<RateLimit>;
};

/** Merges `init` over the defaults and checks every field; throws a TypeError or RangeError naming the bad one (`${name}.field`). */
export function resolveOptions(init: EngineInit = {}, name = 'options'): EngineOptions {
  checkObject(name, init);
  for (const nested of ['heartbeat', 'resume', 'inboundRateLimit'] as const) {
    if (init[nested] !== undefined) checkObject(`${name}.${nested}`, init[nested]);
  }
  const options: EngineOptions = {
    ...DEFAULTS,
    ...init,
    heartbeat: { ...DEFAULTS.heartbeat, ...init.heartbeat },
    resume: { ...DEFAULTS.resume, ...init.resume },
    inboundRateLimit: { ...DEFAULTS.inboundRateLimit, ...init.inboundRateLimit },
    pinnedRestartIntensity: { ...DEFAULTS.pinnedRestartIntensity, ...init.pinnedRestartIntensity },
  };
  const positive = (field: string, value: unknown, infinity = false): void => checkNumber(`${name}.${field}`, value, infinity ? POSITIVE_OR_INFINITY : POSITIVE);
  const count = (field: string, value: unknown, infinity = false): void => checkNumber(`${name}.${field}`, value, infinity ? COUNT_OR_INFINITY : COUNT);
  positive('connectTimeoutMs', options.connectTimeoutMs);
  positive('dialQueueTimeoutMs', options.dialQueueTimeoutMs);
  positive('handshakeTimeoutMs', options.handshakeTimeoutMs);
  positive('streamOpenTimeoutMs', options.streamOpenTimeoutMs);
  positive('heartbeat.intervalMs', options.heartbeat.intervalMs);
  positive('heartbeat.timeoutMs', options.heartbeat.timeoutMs);
  if (options.heartbeat.timeoutMs >= options.heartbeat.intervalMs) {
    throw outOfRange(`${name}.heartbeat.timeoutMs`, `below heartbeat.intervalMs (${options.heartbeat.intervalMs})`, options.heartbeat.timeoutMs);
  }
  count('heartbeat.misses', options.heartbeat.misses);
  positive('idleTimeoutMs', options.idleTimeoutMs, true);
  positive('drainDeadlineMs', options.drainDeadlineMs);
  positive('forceCloseGraceMs', options.forceCloseGraceMs);
  validateRetryPolicy(options.retry, `${name}.retry`);
  validateRetryPolicy(options.pinnedRetry, `${name}.pinnedRetry`);
  count('pinnedRestartIntensity.maxRestarts', options.pinnedRestartIntensity.maxRestarts, true);
  positive('pinnedRestartIntensity.periodMs', options.pinnedRestartIntensity.periodMs);
  validateRetryPolicy(options.dialBackoff, `${name}.dialBackoff`);
  checkNumber(`${name}.dialStaggerMs`, options.dialStaggerMs, NON_NEGATIVE);
  checkOneOf(`${name}.addressOrder`, options.addressOrder, ['interleave', 'given']);
  count('maxQueuedPerPeer', options.maxQueuedPerPeer);
  count('maxStreamsPerConnection', options.maxStreamsPerConnection);
  count('maxInboundStreamsPerConnection', options.maxInboundStreamsPerConnection);
  count('dialConcurrency', options.dialConcurrency);
  count('dialQueueLimit', options.dialQueueLimit, true);
  count('maxConnections', options.maxConnections, true);
  count('maxProtocolLength', options.maxProtocolLength);
  count('resume.bufferBytes', options.resume.bufferBytes);
  positive('resume.ttlMs', options.resume.ttlMs);
  count('resume.maxSessionsPerPeer', options.resume.maxSessionsPerPeer);
  positive('resume.timeoutMs', options.resume.timeoutMs);
  positive('resume.ackDelayMs', options.resume.ackDelayMs);
  if (options.resume.retry !== undefined) {
    validateRetryPolicy(options.resume.retry, `${name}.resume.retry`);
    if (options.resume.retry.strategy === 'none') throw invalidValue(`${name}.resume.retry.strategy`, 'a backoff strategy (not "none")', 'none');
  }
  count('maxInboundConnections', options.maxInboundConnections, true);
  count('maxHandshakingConnections', options.maxHandshakingConnections, true);
  count('inboundRateLimit.connections', options.inboundRateLimit.connections, true);
  positive('inboundRateLimit.windowMs', options.inboundRateLimit.windowMs);
  checkOptionalFunction(`${name}.allowInbound`, options.allowInbound);
  return options;
}

export { maxAttempts };
