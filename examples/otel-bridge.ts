/**
 * peerline to OpenTelemetry, with `@opentelemetry/api` only: your
 * application brings the SDK, the exporters and the providers; peerline
 * depends on none of them. docs/OBSERVABILITY.md explains the mapping.
 *
 * - Counters and gauges: observable instruments read `engine.metrics()`
 *   once per collection (one batch callback, so every value comes from one
 *   snapshot).
 * - Latency histograms: recorded as events happen, from the diagnostics
 *   channels `peerline:stream:open` and `peerline:heartbeat`, in seconds,
 *   with peerline's bucket bounds as advice.
 * - Spans: one per stream open and one per dial, made when the channel
 *   reports the end, with the start time set back by the duration.
 *
 * @example
 * import { metrics, trace } from '@opentelemetry/api';
 * const stop = bridgeToOpenTelemetry(engine, { meter: metrics.getMeter('peerline'), tracer: trace.getTracer('peerline') });
 * // ...
 * stop();
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { SpanKind, SpanStatusCode, ValueType, type Attributes, type BatchObservableCallback, type Meter, type Tracer } from '@opentelemetry/api';
import {
  CHANNELS,
  ConnectionStates,
  LATENCY_BUCKETS_MS,
  type DialMessage,
  type Engine,
  type HeartbeatMessage,
  type StreamOpenMessage,
  type TransitionMessage,
} from 'peerline';

export interface OpenTelemetryBridgeOptions {
  readonly meter: Meter;
  /** Without a tracer, no spans are made. */
  readonly tracer?: Tracer;
}

/** Bridges one engine's metrics, latencies and spans; returns the function that undoes it. */
export function bridgeToOpenTelemetry(engine: Engine, { meter, tracer }: OpenTelemetryBridgeOptions): () => void {
  const base: Attributes = { 'peerline.engine': engine.peerId };
  const seconds = LATENCY_BUCKETS_MS.map((ms) => ms / 1000);

  // ---- pulled from engine.metrics() at each collection
  const peers = meter.createObservableGauge('peerline.peers', { description: 'Peer connection machines by state.' });
  const requests = meter.createObservableCounter('peerline.requests', { description: 'Stream and lease requests received.' });
  const opened = meter.createObservableCounter('peerline.streams.opened', { description: 'Stream requests answered with a stream.' });
  const failed = meter.createObservableCounter('peerline.requests.failed', { description: 'Requests answered with an error, by code.' });
  const dials = meter.createObservableCounter('peerline.dials', { description: 'Dials started.' });
  const retries = meter.createObservableCounter('peerline.retries', { description: 'Reconnections after a failure.' });
  const refused = meter.createObservableCounter('peerline.admission.refused', { description: 'Inbound connections refused, by code.' });
  const internal = meter.createObservableCounter('peerline.internal_errors', { description: 'Errors caught inside the engine.' });
  const observables = [peers, requests, opened, failed, dials, retries, refused, internal];
  const collect: BatchObservableCallback = (result) => {
    const m = engine.metrics();
    for (const state of ConnectionStates) result.observe(peers, m.peers[state], { ...base, 'peerline.state': state });
    result.observe(requests, m.requests.total, base);
    result.observe(opened, m.requests.opened, base);
    for (const [code, n] of Object.entries(m.requests.failedByCode)) result.observe(failed, n ?? 0, { ...base, 'error.type': code });
    result.observe(dials, m.dials.started, base);
    result.observe(retries, m.retries, base);
    for (const [code, n] of Object.entries(m.admission.refusedByCode)) result.observe(refused, n ?? 0, { ...base, 'error.type': code });
    result.observe(internal, m.internalErrors, base);
  };
  meter.addBatchObservableCallback(collect, observables);

  // ---- pushed from the diagnostics channels
  const openDuration = meter.createHistogram('peerline.stream.open.duration', {
    description: 'Stream requests answered with a stream: arrival to delivery.',
    unit: 's',
    valueType: ValueType.DOUBLE,
    advice: { explicitBucketBoundaries: seconds },
  });
  const rtt = meter.createHistogram('peerline.heartbeat.rtt', {
    description: 'Heartbeat round trips.',
    unit: 's',
    valueType: ValueType.DOUBLE,
    advice: { explicitBucketBoundaries: seconds },
  });
  const transitions = meter.createCounter('peerline.transitions', { description: 'State changes of the peer machines.' });

  const ours = (message: { readonly localPeerId: string }): boolean => message.localPeerId === engine.peerId;
  /** A span for something that just ended, `durationMs` long (engine durations; span times are wall clock). */
  const endedSpan = (name: string, durationMs: number, attributes: Attributes, error: string | undefined): void => {
    if (tracer === undefined) return;
    const end = Date.now();
    const span = tracer.startSpan(name, { kind: SpanKind.CLIENT, startTime: end - durationMs, attributes: { ...base, ...attributes } });
    if (error !== undefined) {
      span.setAttribute('error.type', error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: error });
    }
    span.end(end);
  };

  const handlers: Array<readonly [string, (message: unknown) => void]> = [
    [
      CHANNELS.streamOpen,
      (message) => {
        const m = message as StreamOpenMessage;
        if (!ours(m)) return;
        const attributes = { 'peerline.peer': m.peerId, 'peerline.protocol': m.protocol };
        if (m.ok) openDuration.record(m.durationMs / 1000, { ...base, 'peerline.protocol': m.protocol });
        endedSpan('peerline.stream.open', m.durationMs, attributes, m.ok ? undefined : m.code);
      },
    ],
    [
      CHANNELS.dial,
      (message) => {
        const m = message as DialMessage;
        if (!ours(m)) return;
        endedSpan('peerline.dial', m.durationMs, { 'peerline.peer': m.peerId, 'peerline.addresses': [...m.addresses] }, m.ok ? undefined : m.code);
      },
    ],
    [
      CHANNELS.heartbeat,
      (message) => {
        const m = message as HeartbeatMessage;
        if (ours(m)) rtt.record(m.rttMs / 1000, base);
      },
    ],
    [
      CHANNELS.transition,
      (message) => {
        const m = message as TransitionMessage;
        if (ours(m)) transitions.add(1, { ...base, 'peerline.from': m.from ?? 'new', 'peerline.to': m.to });
      },
    ],
  ];
  for (const [name, handler] of handlers) subscribe(name, handler);

  return () => {
    for (const [name, handler] of handlers) unsubscribe(name, handler);
    meter.removeBatchObservableCallback(collect, observables);
  };
}
