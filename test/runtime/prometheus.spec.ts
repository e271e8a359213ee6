import { strict as assert } from 'node:assert';
import { LATENCY_BUCKETS_MS, prometheus, PROMETHEUS_CONTENT_TYPE, type EngineMetrics, type MetricsSource } from '../../runtime/index.js';
import { echo, swarm, type Swarm } from '../fixtures/swarm.js';

/** One sample line of the text format: name, labels, value. */
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\})? (-?[0-9.e+-]+|\+Inf|-Inf|NaN)$/;

interface Sample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

/** Parses an exposition strictly: every line is a HELP, a TYPE or a sample of the family last typed. */
function parse(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  let family: string | undefined;
  assert.ok(text.endsWith('\n'), 'ends with a newline');
  for (const line of text.slice(0, -1).split('\n')) {
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$/.exec(line);
    if (type !== null) {
      assert.ok(!types.has(type[1]!), `${type[1]} typed twice`);
      types.set(type[1]!, type[2]!);
      family = type[1];
      continue;
    }
    if (line.startsWith('# HELP ')) continue;
    const m = SAMPLE.exec(line);
    assert.ok(m !== null, `not a sample line: ${line}`);
    const name = m[1]!;
    assert.ok(family !== undefined && (name === family || name.startsWith(`${family}_`)), `${name} outside its family ${family}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[k!] = v!.replace(/\\n/g, '\n').replace(/\\(.)/g, '$1');
    samples.push({ name, labels, value: m[3] === '+Inf' ? Infinity : Number(m[3]) });
  }
  return { samples, types };
}

function value(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

describe('metrics as Prometheus text exposition', () => {
  let s: Swarm | undefined;

  afterEach(async () => {
    await s?.stopAll();
    s = undefined;
  });

  it('exposes counters, gauges per state, failures by code, and both histograms in seconds with cumulative fixed buckets', async () => {
    const sw = (s = await swarm({ latencyMs: 2, defaults: { heartbeat: { intervalMs: 1_000, timeoutMs: 500, misses: 3 }, idleTimeoutMs: Infinity } }));
    const a = await sw.add('a');
    const b = await sw.add('b');
    b.handle('/echo', echo);
    a.addPeer('b', [sw.network.address('b')]);
    for (let i = 0; i < 3; i++) {
      const opening = a.openStream('b', '/echo');
      await sw.until(opening);
      (await opening).close();
    }
    await sw.until(a.openStream('b', '/missing').catch(() => {}));
    await sw.advance(5_500);
    const m = a.metrics();
    assert.ok(m.heartbeat.samples >= 4, `${m.heartbeat.samples} heartbeats`);

    const { samples, types } = parse(prometheus(a));
    assert.equal(types.get('peerline_peers'), 'gauge');
    assert.equal(types.get('peerline_requests_total'), 'counter');
    assert.equal(types.get('peerline_stream_open_duration_seconds'), 'histogram');
    assert.equal(types.get('peerline_heartbeat_rtt_seconds'), 'histogram');
    for (const [name, type] of types) if (type === 'counter') assert.ok(name.endsWith('_total'), name);
    assert.ok(samples.every((x) => x.labels.engine === 'a'));
    assert.equal(value(samples, 'peerline_peers', { state: 'ready' }), 1);
    assert.equal(value(samples, 'peerline_peers', { state: 'connecting' }), 0);
    assert.equal(value(samples, 'peerline_requests_total'), 4);
    assert.equal(value(samples, 'peerline_streams_opened_total'), 3);
    assert.equal(value(samples, 'peerline_requests_failed_total', { code: 'STREAM_REJECTED' }), 1);
    assert.equal(value(samples, 'peerline_transitions_total'), m.transitions);

    const open = samples.filter((x) => x.name === 'peerline_stream_open_duration_seconds_bucket');
    assert.deepEqual(
      open.map((x) => x.labels.le),
      [...LATENCY_BUCKETS_MS.map((ms) => String(ms / 1000)), '+Inf'],
    );
    for (let i = 1; i < open.length; i++) assert.ok(open[i]!.value >= open[i - 1]!.value, 'cumulative');
    assert.equal(open.at(-1)!.value, 3, 'one sample per stream delivered');
    assert.equal(value(samples, 'peerline_stream_open_duration_seconds_count'), 3);
    // The first open dialled (a round trip) and opened (a round trip): 8 ms at 2 ms a hop; 'a', the dialler
    // with the lower id, is ready once its hello is out. The other two opened in a round trip each.
    const sum = value(samples, 'peerline_stream_open_duration_seconds_sum')!;
    assert.ok(sum >= 0.008 + 2 * 0.004, `sum ${sum} s`);
    assert.equal(value(samples, 'peerline_stream_open_duration_seconds_bucket', { le: '0.001' }), 0, 'no open under a round trip');

    const rtt = samples.filter((x) => x.name === 'peerline_heartbeat_rtt_seconds_bucket');
    assert.equal(rtt.at(-1)!.value, m.heartbeat.samples);
    assert.equal(value(samples, 'peerline_heartbeat_rtt_seconds_count'), m.heartbeat.samples);
    // Every round trip is 4 ms on this network: all in the (2.5 ms, 5 ms] bucket.
    assert.equal(value(samples, 'peerline_heartbeat_rtt_seconds_bucket', { le: '0.0025' }), 0);
    assert.equal(value(samples, 'peerline_heartbeat_rtt_seconds_bucket', { le: '0.005' }), m.heartbeat.samples);
  });

  it('writes several engines under one HELP and TYPE per family, adds constant labels and escapes label values', () => {
    const base = (id: string): MetricsSource => ({
      peerId: id,
      metrics: () => fakeMetrics(id === 'b' ? 2 : 1),
    });
    const text = prometheus([base('a'), base('odd"id\\with\nbreak'), base('b')], { prefix: 'agent_', labels: { service: 'relay' } });
    const { samples, types } = parse(text);
    assert.ok([...types.keys()].every((name) => name.startsWith('agent_')));
    assert.equal(text.split('# TYPE agent_peers gauge').length, 2, 'one TYPE line for three engines');
    assert.deepEqual(
      [...new Set(samples.map((x) => x.labels.engine))],
      ['a', 'odd"id\\with\nbreak', 'b'],
    );
    assert.ok(samples.every((x) => x.labels.service === 'relay'));
    assert.equal(value(samples, 'agent_requests_total', { engine: 'b' }), 2);
    assert.equal(PROMETHEUS_CONTENT_TYPE, 'text/plain; version=0.0.4; charset=utf-8');
  });

  it('refuses a bad prefix, bad labels and what is not an engine, naming them', () => {
    const engine: MetricsSource = { peerId: 'a', metrics: () => fakeMetrics(1) };
    const rejects = (fn: () => unknown, pattern: RegExp): void =>
      assert.throws(fn, (e: unknown) => e instanceof TypeError && pattern.test(e.message) && typeof (e as { code?: unknown }).code === 'string');
    rejects(() => prometheus({} as never), /^engine must be an engine/);
    rejects(() => prometheus([engine, 7] as never), /^engines\[1\]/);
    rejects(() => prometheus(engine, { prefix: '9x' }), /^options\.prefix/);
    rejects(() => prometheus(engine, { labels: { engine: 'x' } }), /^options\.labels key/);
    rejects(() => prometheus(engine, { labels: { ok: 5 as never } }), /^options\.labels\.ok/);
  });
});

function fakeMetrics(n: number): EngineMetrics {
  const h = { boundsMs: LATENCY_BUCKETS_MS, counts: new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0), count: 0, sumMs: 0 };
  return {
    peers: { connecting: 0, handshaking: 0, ready: n, draining: 0, forceClosed: 0, errored: 0, closed: 0, gaveUp: 0 },
    requests: { total: n, opened: n, leases: 0, failed: 0, aborted: 0, failedByCode: {} },
    dials: { started: n, failed: 0 },
    retries: 0,
    gaveUp: 0,
    pruned: 0,
    probes: 0,
    transitions: 3 * n,
    streams: { inboundAccepted: 0, inboundRejected: 0, inboundLimited: 0, handlerErrors: 0 },
    heartbeat: { lastRttMs: undefined, avgRttMs: undefined, samples: 0 },
    internalErrors: 0,
    histograms: { heartbeatRttMs: h, streamOpenMs: h },
    pendingRequests: 0,
    dialQueue: { active: 0, waiting: 0 },
    resume: { live: 0, suspended: 0, opened: 0, accepted: 0, suspensions: 0, resumes: 0, closed: 0, failedByCode: {}, badProofs: 0, bufferedBytes: 0 },
    admission: { inbound: 0, handshaking: 0, refused: 0, refusedByCode: {} },
  };
}
