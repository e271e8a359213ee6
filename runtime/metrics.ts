import { ConnectionStates, type ConnectionState } from '../machines/types.js';
import type { ErrorCode } from '../protocol/codes.js';

export interface MetricsSnapshot {
  /** Live machines per state (gauges). */
  readonly peers: Readonly<Record<ConnectionState, number>>;
  readonly requests: {
    readonly total: number;
    readonly opened: number;
    readonly leases: number;
    readonly failed: number;
    readonly aborted: number;
    readonly failedByCode: Readonly<Partial<Record<ErrorCode, number>>>;
  };
  readonly dials: { readonly started: number; readonly failed: number };
  readonly retries: number;
  /** Pinned peers that gave up (retry budget or restart intensity spent). */
  readonly gaveUp: number;
  /** Peers closed to make room at the connection limit. */
  readonly pruned: number;
  /** Peers probed by `networkChanged()`. */
  readonly probes: number;
  readonly transitions: number;
  readonly streams: {
    readonly inboundAccepted: number;
    readonly inboundRejected: number;
    /** Inbound streams NACKed by a per-protocol limit (also counted in inboundRejected). */
    readonly inboundLimited: number;
    readonly handlerErrors: number;
  };
  readonly heartbeat: { readonly lastRttMs: number | undefined; readonly avgRttMs: number | undefined; readonly samples: number };
  /** Errors caught inside effects and adapters' callbacks: each is a bug report, not a crash. */
  readonly internalErrors: number;
  /** Distributions, in fixed buckets (`LATENCY_BUCKETS_MS`). */
  readonly histograms: {
    /** Heartbeat round trips: ping sent to pong received. */
    readonly heartbeatRttMs: HistogramSnapshot;
    /** Stream requests answered with a stream: arrival of the request to delivery (queueing, dial, handshake, open, ACK). */
    readonly streamOpenMs: HistogramSnapshot;
  };
}

/**
 * A histogram with explicit bounds, as OpenTelemetry represents one:
 * `counts[i]` samples fell in (boundsMs[i-1], boundsMs[i]], and the last
 * count is above the last bound. Prometheus' cumulative `le` buckets are
 * running sums of `counts`.
 */
export interface HistogramSnapshot {
  readonly boundsMs: readonly number[];
  /** One more than `boundsMs`. */
  readonly counts: readonly number[];
  readonly count: number;
  readonly sumMs: number;
}

/**
 * Bucket upper bounds (ms) of both histograms: from 250 us (a loopback round
 * trip) to 10 s (the default connect, handshake and open timeouts), about
 * x2-x2.5 apart.
 */
export const LATENCY_BUCKETS_MS: readonly number[] = Object.freeze([0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000]);

/** Counts in fixed buckets; one short scan per sample, no allocation. */
export class Histogram {
  readonly #bounds: readonly number[];
  readonly #counts: number[];
  #count = 0;
  #sum = 0;

  constructor(bounds: readonly number[] = LATENCY_BUCKETS_MS) {
    this.#bounds = bounds;
    this.#counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(ms: number): void {
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && ms > bounds[i]!) i += 1;
    this.#counts[i]! += 1;
    this.#count += 1;
    this.#sum += ms;
  }

  snapshot(): HistogramSnapshot {
    return { boundsMs: this.#bounds, counts: [...this.#counts], count: this.#count, sumMs: this.#sum };
  }
}

/** Counters and gauges; plain numbers, cheap to bump on the hot path. */
export class Metrics {
  readonly peers: Record<ConnectionState, number>;
  total = 0;
  opened = 0;
  leases = 0;
  failed = 0;
  aborted = 0;
  readonly failedByCode: Partial<Record<ErrorCode, number>> = {};
  dialsStarted = 0;
  dialsFailed = 0;
  retries = 0;
  gaveUp = 0;
  pruned = 0;
  probes = 0;
  transitions = 0;
  inboundAccepted = 0;
  inboundRejected = 0;
  inboundLimited = 0;
  handlerErrors = 0;
  internalErrors = 0;
  #rttLast: number | undefined;
  #rttAvg: number | undefined;
  #rttSamples = 0;
  readonly rttHistogram = new Histogram();
  readonly openHistogram = new Histogram();

  constructor() {
    this.peers = Object.fromEntries(ConnectionStates.map((s) => [s, 0])) as Record<ConnectionState, number>;
  }

  failure(code: ErrorCode): void {
    this.failed += 1;
    if (code === 'ABORTED') this.aborted += 1;
    this.failedByCode[code] = (this.failedByCode[code] ?? 0) + 1;
  }

  rtt(ms: number): void {
    this.#rttLast = ms;
    this.#rttSamples += 1;
    // Exponentially weighted, so a long run does not need a sample buffer.
    this.#rttAvg = this.#rttAvg === undefined ? ms : this.#rttAvg * 0.9 + ms * 0.1;
    this.rttHistogram.observe(ms);
  }

  snapshot(): MetricsSnapshot {
    return {
      peers: { ...this.peers },
      requests: {
        total: this.total,
        opened: this.opened,
        leases: this.leases,
        failed: this.failed,
        aborted: this.aborted,
        failedByCode: { ...this.failedByCode },
      },
      dials: { started: this.dialsStarted, failed: this.dialsFailed },
      retries: this.retries,
      gaveUp: this.gaveUp,
      pruned: this.pruned,
      probes: this.probes,
      transitions: this.transitions,
      streams: {
        inboundAccepted: this.inboundAccepted,
        inboundRejected: this.inboundRejected,
        inboundLimited: this.inboundLimited,
        handlerErrors: this.handlerErrors,
      },
      heartbeat: { lastRttMs: this.#rttLast, avgRttMs: this.#rttAvg, samples: this.#rttSamples },
      internalErrors: this.internalErrors,
      histograms: { heartbeatRttMs: this.rttHistogram.snapshot(), streamOpenMs: this.openHistogram.snapshot() },
    };
  }
}
