import { strict as assert } from 'node:assert';
import { SpanStatusCode, type Attributes, type BatchObservableCallback, type Meter, type MetricOptions, type SpanOptions, type SpanStatus, type TimeInput, type Tracer } from '@opentelemetry/api';
import { bridgeToOpenTelemetry } from '../../examples/otel-bridge.js';
import { echo, swarm, type Swarm } from '../fixtures/swarm.js';

/**
 * A Meter and a Tracer that keep what they are given: the parts of
 * @opentelemetry/api's interfaces the bridge uses, as an SDK would receive them.
 */
function recording(): {
  meter: Meter;
  tracer: Tracer;
  instruments: Map<string, { kind: string; options: MetricOptions | undefined; points: Array<{ value: number; attributes: Attributes }> }>;
  spans: Array<{ name: string; options: SpanOptions; attributes: Attributes; status: SpanStatus | undefined; end: TimeInput | undefined }>;
  collect(): void;
  callbacks: Set<BatchObservableCallback>;
} {
  const instruments = new Map<string, { kind: string; options: MetricOptions | undefined; points: Array<{ value: number; attributes: Attributes }> }>();
  const callbacks = new Set<BatchObservableCallback>();
  const instrument = (kind: string) => (name: string, options?: MetricOptions) => {
    const record = { kind, options, points: [] as Array<{ value: number; attributes: Attributes }> };
    instruments.set(name, record);
    const push = (value: number, attributes: Attributes = {}): void => void record.points.push({ value, attributes });
    return { name, record: push, add: push, addCallback() {}, removeCallback() {} };
  };
  const meter = {
    createHistogram: instrument('histogram'),
    createCounter: instrument('counter'),
    createObservableGauge: instrument('observableGauge'),
    createObservableCounter: instrument('observableCounter'),
    addBatchObservableCallback: (callback: BatchObservableCallback) => void callbacks.add(callback),
    removeBatchObservableCallback: (callback: BatchObservableCallback) => void callbacks.delete(callback),
  } as unknown as Meter;
  const spans: Array<{ name: string; options: SpanOptions; attributes: Attributes; status: SpanStatus | undefined; end: TimeInput | undefined }> = [];
  const tracer = {
    startSpan(name: string, options: SpanOptions = {}) {
      const span = { name, options, attributes: { ...options.attributes }, status: undefined as SpanStatus | undefined, end: undefined as TimeInput | undefined };
      spans.push(span);
      return {
        setAttribute(key: string, value: unknown) {
          span.attributes[key] = value as string;
          return this;
        },
        setStatus(status: SpanStatus) {
          span.status = status;
          return this;
        },
        end(end?: TimeInput) {
          span.end = end;
        },
      };
    },
  } as unknown as Tracer;
  return {
    meter,
    tracer,
    instruments,
    spans,
    callbacks,
    collect() {
      for (const callback of callbacks) {
        void callback({
          observe(observable: unknown, value: number, attributes: Attributes = {}) {
            const name = (observable as { name: string }).name;
            instruments.get(name)!.points.push({ value, attributes });
          },
        });
      }
    },
  };
}

describe('the OpenTelemetry bridge (examples/otel-bridge.ts)', () => {
  let s: Swarm;

  afterEach(async () => {
    await s.stopAll();
  });

  it('maps metrics to observable instruments, latencies to histograms in seconds, opens and dials to spans; stop() undoes it', async () => {
    s = await swarm({ latencyMs: 2, defaults: { heartbeat: { intervalMs: 1_000, timeoutMs: 500, misses: 3 }, idleTimeoutMs: Infinity } });
    const otel = recording();
    const a = await s.add('a');
    const b = await s.add('b');
    const unbridge = bridgeToOpenTelemetry(a, { meter: otel.meter, tracer: otel.tracer });
    b.handle('/echo', echo);
    a.addPeer('b', [s.network.address('b')]);
    const opening = a.openStream('b', '/echo');
    await s.until(opening);
    (await opening).close();
    await s.until(a.openStream('b', '/missing').catch(() => {}));
    await s.advance(2_500);

    const open = otel.instruments.get('peerline.stream.open.duration')!;
    assert.equal(open.options?.unit, 's');
    assert.deepEqual(open.options?.advice?.explicitBucketBoundaries?.slice(0, 3), [0.00025, 0.0005, 0.001]);
    assert.equal(open.points.length, 1, 'one stream delivered');
    // The dialler 'a' has the lower id: it is ready once its hello is out, so no hello round trip.
    assert.ok(open.points[0]!.value >= 0.008, 'dial and open: two round trips of 4 ms');
    const rtt = otel.instruments.get('peerline.heartbeat.rtt')!;
    assert.equal(rtt.points.length, a.metrics().heartbeat.samples);
    assert.ok(rtt.points.every((p) => p.value === 0.004));
    const transitions = otel.instruments.get('peerline.transitions')!;
    assert.deepEqual(
      transitions.points.map((p) => `${String(p.attributes['peerline.from'])}->${String(p.attributes['peerline.to'])}`),
      ['new->connecting', 'connecting->handshaking', 'handshaking->ready'],
    );

    assert.deepEqual(
      otel.spans.map((span) => [span.name, span.status?.code === SpanStatusCode.ERROR ? span.status.message : 'ok']),
      [
        ['peerline.dial', 'ok'],
        ['peerline.stream.open', 'ok'],
        ['peerline.stream.open', 'STREAM_REJECTED'],
      ],
    );
    for (const span of otel.spans) {
      assert.equal(span.attributes['peerline.engine'], 'a');
      assert.equal(span.attributes['peerline.peer'], 'b');
      assert.ok((span.end as number) - (span.options.startTime as number) >= 4, `${span.name} lasts at least a round trip`);
    }

    otel.collect();
    const observed = (name: string, attributes: Attributes = {}): number | undefined =>
      otel.instruments.get(name)!.points.find((p) => Object.entries(attributes).every(([k, v]) => p.attributes[k] === v))?.value;
    assert.equal(observed('peerline.peers', { 'peerline.state': 'ready' }), 1);
    assert.equal(observed('peerline.peers', { 'peerline.state': 'errored' }), 0);
    assert.equal(observed('peerline.requests'), 2);
    assert.equal(observed('peerline.streams.opened'), 1);
    assert.equal(observed('peerline.requests.failed', { 'error.type': 'STREAM_REJECTED' }), 1);

    unbridge();
    assert.equal(otel.callbacks.size, 0);
    const spans = otel.spans.length;
    await s.until(a.openStream('b', '/missing').catch(() => {}));
    assert.equal(otel.spans.length, spans, 'nothing after the bridge is undone');
  });
});
