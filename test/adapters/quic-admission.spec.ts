/**
 * Admission control over real QUIC on loopback: the inbound connection rate
 * per address, the handshaking limit, the inbound limit and the gate. Each
 * test checks the code the dialler sees, the target's metrics, and that a
 * well-behaved peer connected before keeps getting echo answers. The last
 * block runs the same checks where the engine enforces them itself (the
 * memory adapter does not).
 *
 * On loopback every peer comes from 127.0.0.1: the well-behaved peer shares
 * the hostile one's address, so it connects first (a rate limit is about new
 * connections; an established one is not touched).
 */
import assert from 'node:assert/strict';
import { MemoryNetwork, VirtualClock, flushMicrotasks, type CloseInfo, type Connection } from '../../adapters/memory/index.js';
import {
  ConnectionErrorCode,
  ConnectionErrorReason,
  DEFAULTS,
  PeerlineError,
  createEngine,
  resolveOptions,
  type Engine,
} from '../../runtime/index.js';
import { codeForReason } from '../../protocol/codes.js';
import { RateLimiter } from '../../protocol/rate-limit.js';
import { createQuicAdapter } from '../../adapters/quic/index.js';
import { escapedErrors } from '../fixtures/hooks.js';
import { identity } from '../fixtures/identity.js';
import {
  HostilePeer,
  eventually,
  goodPeer,
  keepEchoing,
  sleep,
  startNode,
  type Attempt,
  type HostileConnection,
  type Node,
  type PeerClose,
} from '../fixtures/hostile-peer.js';

const CONNECTION_REFUSED = 0x02;
const TLS_ACCESS_DENIED = 0x100 + 49;

/** How a hostile attempt ended: refused before TLS finished, or closed afterwards. */
async function outcome(attempt: Attempt, ms = 3_000): Promise<PeerClose | 'open'> {
  if (!attempt.ok) return attempt.close;
  const closed = await Promise.race([attempt.connection.closed, sleep(ms).then(() => 'open' as const)]);
  return closed;
}

/** A refusal before the handshake completed: transport CONNECTION_REFUSED with the reason text of `code`. */
function refusedWith(close: PeerClose | 'open', code: ConnectionErrorCode): boolean {
  return close !== 'open' && !close.isApp && close.errorCode === CONNECTION_REFUSED && codeForReason(close.reason) === code;
}

/** Time from the attempt to the refusal, as the dialler saw it (printed with PEERLINE_FIGURES=1). */
const figures: Array<{ refusal: string; ms: number[] }> = [];
function figure(refusal: string, closes: Array<PeerClose | 'open'>): void {
  figures.push({ refusal, ms: closes.flatMap((c) => (c === 'open' ? [] : [c.afterMs])) });
}

describe('admission control over QUIC (loopback)', function () {
  // A deadline: TLS handshakes and a 5 s wait for the rate limit's refill,
  // which a loaded machine stretches.
  this.timeout(60_000);
  const nodes: Node[] = [];
  const hostiles: HostilePeer[] = [];

  after(function () {
    if (process.env.PEERLINE_FIGURES !== undefined) process.stdout.write(`\nadmission figures:\n${JSON.stringify(figures)}\n`);
  });

  async function node(name: string, init = {}): Promise<Node> {
    const n = await startNode(name, init);
    nodes.push(n);
    return n;
  }

  async function good(target: Node): Promise<Node> {
    const g = await goodPeer(target);
    nodes.push(g);
    return g;
  }

  async function hostile(name = 'mallory'): Promise<HostilePeer> {
    const h = await HostilePeer.create(await identity(name));
    hostiles.push(h);
    return h;
  }

  afterEach(async function () {
    await Promise.all(hostiles.splice(0).map((h) => h.close()));
    await Promise.all(nodes.map((n) => n.stop()));
    for (const n of nodes.splice(0)) {
      assert.equal(n.adapter.stats().connections, 0, `${n.name} kept connections`);
      assert.equal(n.adapter.stats().libraryErrors, 0, `${n.name}: ${n.warnings.join('\n')}`);
      assert.equal(n.engine.metrics().internalErrors, 0, `${n.name}: ${n.warnings.join('\n')}`);
    }
    assert.deepEqual(escapedErrors(), []);
  });

  describe('options', function () {
    it('defaults: 800 inbound, 64 handshaking, 20 new connections per second per address, no gate', function () {
      const o = resolveOptions();
      assert.equal(o.maxInboundConnections, 800);
      assert.equal(o.maxHandshakingConnections, 64);
      assert.deepEqual(o.inboundRateLimit, { connections: 20, windowMs: 1_000 });
      assert.equal(o.allowInbound, undefined);
      assert.deepEqual(DEFAULTS.inboundRateLimit, { connections: 20, windowMs: 1_000 });
      // A partial rate limit keeps the other default; Infinity turns a limit off.
      assert.deepEqual(resolveOptions({ inboundRateLimit: { connections: 5 } }).inboundRateLimit, { connections: 5, windowMs: 1_000 });
      assert.equal(resolveOptions({ maxInboundConnections: Infinity, inboundRateLimit: { connections: Infinity } }).maxInboundConnections, Infinity);
    });

    it('bad values are refused with an error naming the option', function () {
      assert.throws(() => resolveOptions({ maxInboundConnections: 0 }), /maxInboundConnections must be an integer >= 1 or Infinity, got 0/);
      assert.throws(() => resolveOptions({ maxHandshakingConnections: 1.5 }), /maxHandshakingConnections/);
      assert.throws(() => resolveOptions({ maxHandshakingConnections: -1 }), RangeError);
      assert.throws(() => resolveOptions({ inboundRateLimit: { connections: 0 } }), /inboundRateLimit\.connections/);
      assert.throws(() => resolveOptions({ inboundRateLimit: { windowMs: 0 } }), /inboundRateLimit\.windowMs/);
      assert.throws(() => resolveOptions({ inboundRateLimit: { windowMs: Infinity } }), /inboundRateLimit\.windowMs/);
      assert.throws(() => resolveOptions({ allowInbound: 'yes' as never }), /allowInbound must be a function/);
    });

    it('every refusal code has its reason text, and the text maps back to the code', function () {
      for (const code of [
        ConnectionErrorCode.ConnectionLimit,
        ConnectionErrorCode.HandshakeLimit,
        ConnectionErrorCode.RateLimited,
        ConnectionErrorCode.AdmissionDenied,
        ConnectionErrorCode.HandshakeTimeout,
      ]) {
        const reason = ConnectionErrorReason[ConnectionErrorCode[code] as keyof typeof ConnectionErrorReason];
        assert.ok(reason.length > 0);
        assert.equal(codeForReason(reason), code);
      }
      assert.equal(codeForReason('no such reason'), undefined);
    });

    it('the QUIC adapter checks retryTokenMs, and enforces admission itself', async function () {
      const id = await identity('alice');
      assert.throws(() => createQuicAdapter({ identity: id, retryTokenMs: 0 }), /retryTokenMs must be a positive finite number, got 0/);
      assert.throws(() => createQuicAdapter({ identity: id, retryTokenMs: Infinity }), RangeError);
      assert.equal(createQuicAdapter({ identity: id }).enforcesAdmission, true);
    });

    it('the rate limiter: a burst, then the refill rate; its memory is bounded', function () {
      let now = 0;
      const limiter = new RateLimiter({ connections: 3, windowMs: 300 }, () => now, 100);
      assert.deepEqual([1, 2, 3, 4].map(() => limiter.take('a')), [true, true, true, false]);
      assert.equal(limiter.take('b'), true, 'another address has its own bucket');
      now = 99;
      assert.equal(limiter.take('a'), false);
      now = 100; // one token back
      assert.deepEqual([limiter.take('a'), limiter.take('a')], [true, false]);
      for (let i = 0; i < 1_000; i++) limiter.take(`spoof-${i}`);
      assert.ok(limiter.size <= 100, `${limiter.size} buckets`);
      assert.equal(new RateLimiter({ connections: Infinity, windowMs: 1 }, () => 0).take('x'), true);
    });
  });

  it('rate per address: past the bucket, new connections are refused with RateLimited before TLS; it refills', async function () {
    // The good peer takes one token; the hostile peer gets the other three.
    // One token comes back every 5 s: the counts below hold as long as the
    // good peer's dial, the six attempts and the late engine's dial take less
    // than that, which a loaded machine does with room to spare (with 750 ms
    // a token, a slow TLS handshake let a fourth attempt in).
    const target = await node('target', { inboundRateLimit: { connections: 4, windowMs: 20_000 } });
    const g = await good(target);
    const echoing = keepEchoing(g.engine, target.engine.peerId);
    const h = await hostile();
    const attempts: Attempt[] = [];
    for (let i = 0; i < 6; i++) attempts.push(await h.attempt(target.target));
    const outcomes = await Promise.all(attempts.map((a) => outcome(a, 200)));
    const refused = outcomes.filter((o) => refusedWith(o, ConnectionErrorCode.RateLimited));
    assert.equal(refused.length, 3, JSON.stringify(outcomes));
    figure('RateLimited (before TLS)', refused);
    assert.equal(target.engine.metrics().admission.refusedByCode.RateLimited, 3);
    assert.equal(target.adapter.stats().refused, 3);

    // An engine dialling from the same address now is refused too, and its error names the code.
    const late = await node('late');
    late.engine.addPeer(target.engine.peerId, [target.adapter.address]);
    const error = await late.engine.openStream(target.engine.peerId, 'echo/1').then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(error instanceof PeerlineError, String(error));
    assert.ok(error.code === 'CONNECT_REFUSED' && error.closeCode === ConnectionErrorCode.RateLimited, `${error.code}: ${error.message}`);
    // The bucket refills (4 per 20 s): after 5 s one connection gets in again
    // (the wait is a lower bound on time passed, which load only lengthens).
    await sleep(5_100);
    const again = await h.attempt(target.target);
    assert.ok(again.ok);
    assert.equal(await again.connection.hello((await identity('mallory')).peerId), true);

    const report = await echoing.stop();
    assert.deepEqual(report.failed, []);
    assert.ok(report.ok > 5, `${report.ok} echoes`);
    assert.equal(target.engine.metrics().admission.refusedByCode.RateLimited, 4);
  });

  it('handshaking limit: connections that stall before their hello hold slots; past the limit, HandshakeLimit', async function () {
    const target = await node('target', { maxHandshakingConnections: 4, inboundRateLimit: { connections: Infinity } });
    const g = await good(target);
    const echoing = keepEchoing(g.engine, target.engine.peerId);
    const h = await hostile();
    // Two stall after TLS with no control stream (held by the adapter), two
    // open it and never say hello (held by the engine): four slots. Distinct
    // identities: a second connection of one peer replaces its first.
    const keys = await Promise.all(['s1', 's2', 's3', 's4'].map((name) => identity(name)));
    const stalled = await Promise.all(keys.map((k) => h.connect(target.target, { keys: k })));
    await stalled[2]!.control();
    await stalled[3]!.control();
    assert.ok(await eventually(() => target.engine.metrics().admission.handshaking === 2), 'two in the engine');
    assert.equal(target.adapter.stats().handshaking, 2);
    const more = await Promise.all(Array.from({ length: 5 }, () => h.attempt(target.target)));
    const outcomes = await Promise.all(more.map((a) => outcome(a, 300)));
    assert.ok(outcomes.every((o) => refusedWith(o, ConnectionErrorCode.HandshakeLimit)), JSON.stringify(outcomes));
    figure('HandshakeLimit (before TLS)', outcomes);
    assert.equal(target.engine.metrics().admission.refusedByCode.HandshakeLimit, 5);
    // The stalled ones end at the handshake timeout (500 ms), with its code...
    const closes = await Promise.all(stalled.map((c) => c.closed));
    for (const close of closes) {
      assert.equal(close.isApp, true);
      assert.equal(close.errorCode, ConnectionErrorCode.HandshakeTimeout);
      // Not before the timeout; the code says the timeout closed it, however late.
      assert.ok(close.afterMs >= 400, `closed after ${close.afterMs} ms`);
    }
    // ... and the slots are free again.
    assert.ok(await eventually(() => target.engine.metrics().admission.handshaking === 0 && target.adapter.stats().handshaking === 0));
    const joined = await h.join(target.target, (await identity('mallory')).peerId);
    assert.equal(joined.ended, undefined);
    const report = await echoing.stop();
    assert.deepEqual(report.failed, []);
    assert.ok(report.ok > 5, `${report.ok} echoes`);
  });

  it('inbound limit: verified inbound connections past maxInboundConnections are refused with ConnectionLimit', async function () {
    const target = await node('target', { maxInboundConnections: 3, inboundRateLimit: { connections: Infinity } });
    const g = await good(target); // inbound connection 1
    const echoing = keepEchoing(g.engine, target.engine.peerId);
    const names = ['m1', 'm2', 'm3'];
    const peers = await Promise.all(names.map((name) => hostile(name)));
    const joined: HostileConnection[] = [];
    for (const [i, p] of peers.slice(0, 2).entries()) joined.push(await p.join(target.target, (await identity(names[i]!)).peerId));
    assert.equal(target.engine.metrics().admission.inbound, 3);
    const third = await peers[2]!.attempt(target.target);
    const limited = await outcome(third);
    assert.ok(refusedWith(limited, ConnectionErrorCode.ConnectionLimit));
    figure('ConnectionLimit (before TLS)', [limited]);
    assert.equal(target.engine.metrics().admission.refusedByCode.ConnectionLimit, 1);
    assert.equal(target.engine.snapshot().peers.length, 3);
    // One leaves: room again.
    await joined[0]!.destroy();
    assert.ok(await eventually(() => target.engine.metrics().admission.inbound === 2));
    const retry = await peers[2]!.join(target.target, (await identity('m3')).peerId);
    assert.equal(retry.ended, undefined);
    const report = await echoing.stop();
    assert.deepEqual(report.failed, []);
  });

  it('gate, answering at once: refused during TLS (alert access_denied); the dialler sees AdmissionDenied', async function () {
    const mallory = await identity('mallory');
    const asked: Array<[string, string | undefined]> = [];
    const target = await node('target', {
      allowInbound: (peerId: string, address: string | undefined) => {
        asked.push([peerId, address]);
        return peerId !== mallory.peerId;
      },
    });
    const g = await good(target);
    const echoing = keepEchoing(g.engine, target.engine.peerId);
    const h = await hostile();
    const attempt = await h.attempt(target.target);
    const close = await outcome(attempt);
    assert.ok(close !== 'open' && close.tls && close.errorCode === TLS_ACCESS_DENIED, JSON.stringify(close));
    figure('AdmissionDenied, gate answering at once (TLS alert)', [close]);
    assert.deepEqual(asked.map(([peerId]) => peerId), [g.engine.peerId, mallory.peerId]);
    assert.match(asked[1]![1]!, /^quic:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(asked[1]![1], `quic://127.0.0.1:${h.socket.port}`);
    // A peerline dialler the gate refuses: its connection closes with AdmissionDenied.
    const denied = await node('mallory');
    const closes: CloseInfo[] = [];
    const connection = await denied.adapter
      .dial(target.engine.peerId, target.adapter.address, { signal: new AbortController().signal })
      .catch((e: unknown) => e);
    if (connection instanceof Error) {
      assert.equal((connection as { closeCode?: number }).closeCode, ConnectionErrorCode.AdmissionDenied);
    } else {
      const c = connection as Connection;
      c.setHandlers({ onControl: () => {}, onStream: () => {}, onClose: (info) => void closes.push(info) });
      assert.ok(await eventually(() => closes.length === 1));
      assert.equal(closes[0]!.code, ConnectionErrorCode.AdmissionDenied);
    }
    assert.equal(target.engine.metrics().admission.refusedByCode.AdmissionDenied, 2);
    assert.equal(target.engine.snapshot().peers.length, 1, 'only the good peer');
    const report = await echoing.stop();
    assert.deepEqual(report.failed, []);
  });

  it('gate, answering later: the connection waits verified and unread; no means AdmissionDenied, no answer in time too', async function () {
    const [alice, mallory, carol] = await Promise.all([identity('alice'), identity('mallory'), identity('carol')]);
    const target = await node('target', {
      inboundRateLimit: { connections: Infinity },
      allowInbound: async (peerId: string) => {
        await sleep(50);
        if (peerId === carol.peerId) return new Promise<boolean>(() => {}); // never answers
        if (peerId === mallory.peerId) throw new Error('no such peer in the directory');
        return true;
      },
    });
    const g = await good(target);
    const echoing = keepEchoing(g.engine, target.engine.peerId);
    // Allowed after 50 ms: the control stream and hello sent at once are not lost.
    const a = await hostile('alice');
    const joined = await a.connect(target.target);
    assert.equal(await joined.hello(alice.peerId), true);
    // A gate that throws refuses, after TLS, with the application code.
    const m = await hostile('mallory');
    const refused = await m.connect(target.target);
    await refused.control().catch(() => {});
    const close = await refused.closed;
    assert.equal(close.isApp, true);
    assert.equal(close.errorCode, ConnectionErrorCode.AdmissionDenied);
    figure('AdmissionDenied, gate answering after 50 ms (after TLS)', [close]);
    // A gate that never answers: refused at the handshake timeout.
    const c = await hostile('carol');
    const waiting = await c.connect(target.target);
    await waiting.control().catch(() => {});
    const late = await waiting.closed;
    assert.equal(late.errorCode, ConnectionErrorCode.AdmissionDenied);
    assert.ok(late.afterMs >= 450, `refused after ${late.afterMs} ms`);
    assert.equal(target.engine.metrics().admission.refusedByCode.AdmissionDenied, 2);
    assert.deepEqual(
      target.engine.snapshot().peers.map((p) => p.peerId).sort(),
      [g.engine.peerId, alice.peerId].sort(),
      'the refused peers never reached the engine',
    );
    assert.equal(target.engine.metrics().streams.inboundAccepted > 0, true);
    const report = await echoing.stop();
    assert.deepEqual(report.failed, []);
  });
});

describe('admission control enforced by the engine (memory adapter)', function () {
  let clock: VirtualClock;
  let network: MemoryNetwork;
  const engines: Engine[] = [];

  beforeEach(function () {
    clock = new VirtualClock();
    network = new MemoryNetwork({ clock, latencyMs: 1 });
  });

  afterEach(async function () {
    const stopping = Promise.all(engines.splice(0).map((e) => e.stop({ force: true })));
    await clock.advance(5_000);
    await stopping;
  });

  async function engine(name: string, init = {}): Promise<Engine> {
    const e = createEngine({ adapter: network.node(name), clock, trace: false, logger: { trace: () => {}, warn: () => {} }, ...init });
    e.handle('echo/1', () => {});
    await e.start();
    engines.push(e);
    return e;
  }

  /** Dials `to` from `from`'s adapter (below the engine) and reports how the connection ended, if it did. */
  async function dial(from: string, to: string): Promise<CloseInfo | 'open' | unknown> {
    const adapter = network.node(from);
    const dialing = adapter.dial(to, network.address(to), { signal: new AbortController().signal });
    await clock.advance(5);
    let connection: Connection;
    try {
      connection = await dialing;
    } catch (error) {
      return error;
    }
    const closes: CloseInfo[] = [];
    connection.setHandlers({ onControl: () => {}, onStream: () => {}, onClose: (info) => void closes.push(info) });
    connection.sendControl({ type: 'hello', version: 1, peerId: from });
    await clock.advance(10);
    await flushMicrotasks();
    return closes[0] ?? 'open';
  }

  it('the gate (sync and async), the inbound limit, the handshaking limit and the rate: each closes with its code, counted', async function () {
    const target = await engine('target', {
      maxInboundConnections: 3,
      maxHandshakingConnections: 10,
      inboundRateLimit: { connections: 2, windowMs: 1_000 },
      allowInbound: (peerId: string) => (peerId === 'later' ? Promise.resolve().then(() => false) : peerId !== 'denied'),
    });
    const denied = (await dial('denied', 'target')) as CloseInfo;
    assert.equal(denied.code, ConnectionErrorCode.AdmissionDenied);
    const later = (await dial('later', 'target')) as CloseInfo;
    assert.equal(later.code, ConnectionErrorCode.AdmissionDenied);
    assert.equal(await dial('p1', 'target'), 'open');
    assert.equal(await dial('p2', 'target'), 'open');
    assert.equal(await dial('p3', 'target'), 'open');
    assert.equal(((await dial('p4', 'target')) as CloseInfo).code, ConnectionErrorCode.ConnectionLimit);
    // Per address (here: per peer): the third connection of p1 within the window.
    await dial('p1', 'target');
    assert.equal(((await dial('p1', 'target')) as CloseInfo).code, ConnectionErrorCode.RateLimited);
    const admission = target.metrics().admission;
    assert.deepEqual(admission.refusedByCode, { AdmissionDenied: 2, ConnectionLimit: 2, RateLimited: 1 });
    assert.equal(admission.refused, 5);
    assert.equal(admission.inbound, 3);
    assert.equal(admission.handshaking, 0);
    assert.equal(target.status, 'running');
  });

  it('handshaking limit in the engine: connections that never say hello hold their slot until the handshake timeout', async function () {
    const target = await engine('target', { maxHandshakingConnections: 2, handshakeTimeoutMs: 500 });
    const silent = async (name: string): Promise<{ closes: CloseInfo[] }> => {
      const dialing = network.node(name).dial('target', network.address('target'), { signal: new AbortController().signal });
      await clock.advance(5);
      const connection = await dialing;
      const closes: CloseInfo[] = [];
      connection.setHandlers({ onControl: () => {}, onStream: () => {}, onClose: (info) => void closes.push(info) });
      return { closes };
    };
    const a = await silent('a');
    const b = await silent('b');
    await clock.advance(5);
    assert.equal(target.metrics().admission.handshaking, 2);
    const c = await silent('c');
    await clock.advance(5);
    assert.equal(c.closes[0]?.code, ConnectionErrorCode.HandshakeLimit);
    await clock.advance(600);
    assert.equal(a.closes[0]?.code, ConnectionErrorCode.HandshakeTimeout);
    assert.equal(b.closes[0]?.code, ConnectionErrorCode.HandshakeTimeout);
    assert.equal(target.metrics().admission.handshaking, 0);
    assert.equal(target.metrics().admission.inbound, 0);
  });
});
