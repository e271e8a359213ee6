/**
 * `engine.metrics()` as Prometheus text exposition (format 0.0.4), for a
 * `/metrics` endpoint: counters end in `_total`, gauges per state carry a
 * `state` label, failures a `code` label, and the two latency histograms are
 * in seconds, Prometheus' base unit, with the fixed buckets of
 * `LATENCY_BUCKETS_MS`. Every sample has an `engine` label, the engine's
 * peer id, so several engines of one process share one exposition.
 *
 * @example
 * createServer((req, res) => {
 *   res.setHeader('content-type', PROMETHEUS_CONTENT_TYPE);
 *   res.end(prometheus(engine));
 * }).listen(9464, '127.0.0.1');
 */
import { checkObject, checkString, invalidType, invalidValue } from '../protocol/arguments.js';
import { ConnectionStates } from '../machines/types.js';
import type { EngineMetrics } from './engine.js';
import type { HistogramSnapshot } from './metrics.js';

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** What `prometheus()` reads: peerline's `Engine` fits. */
export interface MetricsSource {
  readonly peerId: string;
  metrics(): EngineMetrics;
}

export interface PrometheusOptions {
  /** Prepended to every metric name. @default 'peerline_' */
  readonly prefix?: string;
  /** Labels added to every sample (e.g. `{ service: 'agent' }`). */
  readonly labels?: Readonly<Record<string, string>>;
}

type Labels = Readonly<Record<string, string>>;
type Kind = 'counter' | 'gauge' | 'histogram';

interface Family {
  readonly kind: Kind;
  readonly help: string;
  readonly lines: string[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatValue(value: number): string {
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return Number.isNaN(value) ? 'NaN' : String(value);
}

function formatLabels(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

/** Collects samples by family, so several engines' samples share one HELP and TYPE. */
class Exposition {
  readonly #families = new Map<string, Family>();
  readonly #prefix: string;

  constructor(prefix: string) {
    this.#prefix = prefix;
  }

  #family(name: string, kind: Kind, help: string): Family {
    let family = this.#families.get(name);
    if (family === undefined) {
      family = { kind, help, lines: [] };
      this.#families.set(name, family);
    }
    return family;
  }

  sample(name: string, kind: Exclude<Kind, 'histogram'>, help: string, labels: Labels, value: number): void {
    const full = this.#prefix + name;
    this.#family(full, kind, help).lines.push(`${full}${formatLabels(labels)} ${formatValue(value)}`);
  }

  /** A histogram of milliseconds, exposed in seconds. */
  histogram(name: string, help: string, labels: Labels, h: HistogramSnapshot): void {
    const full = this.#prefix + name;
    const lines = this.#family(full, 'histogram', help).lines;
    let cumulative = 0;
    h.boundsMs.forEach((bound, i) => {
      cumulative += h.counts[i] ?? 0;
      lines.push(`${full}_bucket${formatLabels({ ...labels, le: String(bound / 1000) })} ${cumulative}`);
    });
    lines.push(`${full}_bucket${formatLabels({ ...labels, le: '+Inf' })} ${h.count}`);
    lines.push(`${full}_sum${formatLabels(labels)} ${formatValue(h.sumMs / 1000)}`);
    lines.push(`${full}_count${formatLabels(labels)} ${h.count}`);
  }

  text(): string {
    let out = '';
    for (const [name, family] of this.#families) {
      out += `# HELP ${name} ${family.help}\n# TYPE ${name} ${family.kind}\n${family.lines.join('\n')}\n`;
    }
    return out;
  }
}

function byCode(
  x: Exposition,
  name: string,
  help: string,
  labels: Labels,
  counts: Readonly<Partial<Record<string, number>>>,
): void {
  for (const [code, n] of Object.entries(counts)) x.sample(name, 'counter', help, { ...labels, code }, n ?? 0);
}

function writeEngine(x: Exposition, labels: Labels, m: EngineMetrics): void {
  for (const state of ConnectionStates) x.sample('peers', 'gauge', 'Live peer connection machines by state.', { ...labels, state }, m.peers[state]);
  x.sample('requests_total', 'counter', 'Stream and lease requests received.', labels, m.requests.total);
  x.sample('streams_opened_total', 'counter', 'Stream requests answered with a stream.', labels, m.requests.opened);
  x.sample('leases_total', 'counter', 'Connections leased by withConnection.', labels, m.requests.leases);
  byCode(x, 'requests_failed_total', 'Requests answered with an error, by PeerlineError code.', labels, m.requests.failedByCode);
  x.sample('pending_requests', 'gauge', 'Requests waiting for an answer.', labels, m.pendingRequests);
  x.sample('dials_total', 'counter', 'Dials started.', labels, m.dials.started);
  x.sample('dials_failed_total', 'counter', 'Dials that failed.', labels, m.dials.failed);
  x.sample('dial_queue_active', 'gauge', 'Dials in progress.', labels, m.dialQueue.active);
  x.sample('dial_queue_waiting', 'gauge', 'Dials waiting for a slot.', labels, m.dialQueue.waiting);
  x.sample('retries_total', 'counter', 'Reconnections after a failure (errored to connecting).', labels, m.retries);
  x.sample('gave_up_total', 'counter', 'Pinned peers that gave up reconnecting (state gaveUp).', labels, m.gaveUp);
  x.sample('pruned_total', 'counter', 'Idle peers closed to make room at maxConnections.', labels, m.pruned);
  x.sample('probes_total', 'counter', 'Ready peers probed by networkChanged().', labels, m.probes);
  x.sample('transitions_total', 'counter', 'State changes of all peer machines.', labels, m.transitions);
  const inbound = 'Inbound streams, accepted by a handler, rejected (no handler), or refused by a per-protocol limit.';
  x.sample('inbound_streams_total', 'counter', inbound, { ...labels, result: 'accepted' }, m.streams.inboundAccepted);
  x.sample('inbound_streams_total', 'counter', inbound, { ...labels, result: 'rejected' }, m.streams.inboundRejected);
  x.sample('inbound_streams_total', 'counter', inbound, { ...labels, result: 'limited' }, m.streams.inboundLimited);
  x.sample('handler_errors_total', 'counter', 'Inbound stream handlers that threw or rejected.', labels, m.streams.handlerErrors);
  x.sample('internal_errors_total', 'counter', 'Errors caught inside the engine (each one a bug report).', labels, m.internalErrors);
  x.sample('inbound_connections', 'gauge', 'Inbound connections held.', labels, m.admission.inbound);
  x.sample('handshaking_connections', 'gauge', 'Inbound connections whose handshake has not finished.', labels, m.admission.handshaking);
  byCode(x, 'admission_refused_total', 'Inbound connections refused by admission control, by ConnectionErrorCode name.', labels, m.admission.refusedByCode);
  const sessions = 'Resumable stream sessions by state.';
  x.sample('resumable_sessions', 'gauge', sessions, { ...labels, state: 'live' }, m.resume.live);
  x.sample('resumable_sessions', 'gauge', sessions, { ...labels, state: 'suspended' }, m.resume.suspended);
  x.sample('resumable_sessions_opened_total', 'counter', 'Resumable streams opened here.', labels, m.resume.opened);
  x.sample('resumable_sessions_accepted_total', 'counter', 'Resumable streams accepted from peers.', labels, m.resume.accepted);
  x.sample('resumable_suspensions_total', 'counter', 'Resumable streams suspended by a lost connection.', labels, m.resume.suspensions);
  x.sample('resumable_resumes_total', 'counter', 'Resumable streams resumed.', labels, m.resume.resumes);
  byCode(x, 'resumable_failures_total', 'Resumable streams failed, by PeerlineError code.', labels, m.resume.failedByCode);
  x.sample('resumable_buffered_bytes', 'gauge', 'Bytes held in replay buffers.', labels, m.resume.bufferedBytes);
  x.histogram('heartbeat_rtt_seconds', 'Heartbeat round trips (ping to pong).', labels, m.histograms.heartbeatRttMs);
  x.histogram(
    'stream_open_duration_seconds',
    'Stream requests answered with a stream: arrival to delivery (queueing, dial, handshake, open, ACK).',
    labels,
    m.histograms.streamOpenMs,
  );
}

/** The metrics of `engines` (one or several) as Prometheus text exposition. */
export function prometheus(engines: MetricsSource | readonly MetricsSource[], options: PrometheusOptions = {}): string {
  const list: readonly unknown[] = Array.isArray(engines) ? engines : [engines];
  list.forEach((engine, i) => {
    const name = Array.isArray(engines) ? `engines[${i}]` : 'engine';
    if (engine === null || typeof engine !== 'object' || typeof (engine as MetricsSource).metrics !== 'function') {
      throw invalidType(name, 'an engine (an object with metrics())', engine);
    }
  });
  checkObject('options', options);
  const prefix = options.prefix ?? 'peerline_';
  if (typeof prefix !== 'string') throw invalidType('options.prefix', 'a string', prefix);
  if (prefix !== '' && !NAME.test(prefix)) throw invalidValue('options.prefix', 'a metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)', prefix);
  const extra = options.labels ?? {};
  checkObject('options.labels', extra);
  for (const [key, value] of Object.entries(extra)) {
    if (!LABEL.test(key) || key.startsWith('__') || key === 'engine') {
      throw invalidValue(`options.labels key`, 'a label name ([a-zA-Z_][a-zA-Z0-9_]*, not engine or __*)', key);
    }
    checkString(`options.labels.${key}`, value);
  }
  const x = new Exposition(prefix);
  for (const engine of list as readonly MetricsSource[]) writeEngine(x, { engine: engine.peerId, ...(extra as Labels) }, engine.metrics());
  return x.text();
}
