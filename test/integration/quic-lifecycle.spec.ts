/**
 * The lifecycle policies over real QUIC on loopback, one scenario each:
 * pinned peers that give up and unpinning, pruning by priority, staggered
 * dials, the dial backoff, waitForReady, per-protocol limits, the state
 * observables, the network-change probe, and the engine's contract (answers
 * never synchronous, one signal over many requests, a bounded stop). Wall
 * clock, so only outcomes are asserted, never durations.
 */
import assert from 'node:assert/strict';
import { createQuicAdapter, quicAddress } from '../../adapters/quic/index.js';
import { createEngine, PeerlineError, type ConnectionState, type StreamAnswer } from '../../runtime/index.js';
import { useCluster, waitFor, type Cluster, type Node } from '../fixtures/quic-cluster.js';
import { blackhole, identity, recordingLogger } from '../fixtures/identity.js';
import { codes, echo, holder, track } from '../fixtures/swarm.js';
import { UdpProxy } from '../../bin/udp-proxy.js';

/** Opens a stream, then closes it: the peer is then idle. */
async function touch(from: Node, to: Node): Promise<void> {
  const stream = await from.engine.openStream(to.engine.peerId, 'hold/1');
  stream.close();
  await waitFor(() => (from.engine.snapshot().peers.find((p) => p.peerId === to.engine.peerId)?.streams ?? 1) === 0, 'the stream closed');
}

describe('lifecycle policies over QUIC (loopback)', function () {
  this.timeout(30_000);
  let c: Cluster;
  useCluster((cluster) => (c = cluster));

  const holes: Array<{ close(): Promise<void> }> = [];
  afterEach(async () => {
    for (const hole of holes.splice(0)) await hole.close();
  });

  /** An address where a QUIC dial never completes. */
  async function deadAddress(): Promise<string> {
    const hole = await blackhole();
    holes.push(hole);
    return quicAddress(hole.port);
  }

  it('pinned peers: give up after pinnedRetry.maxAttempts (gaveUp, no more dials); unpinning a live one lets it close when idle', async function () {
    const a = await c.add('alice', { connectTimeoutMs: 300, pinnedRetry: { strategy: 'fixed', delayMs: 50, maxAttempts: 2 }, idleTimeoutMs: 500 });
    const gone = await identity('gone');
    a.engine.addPeer(gone.peerId, [await deadAddress()], { pinned: true });
    await waitFor(() => a.states(gone.peerId).includes('gaveUp'), 'the pinned peer gives up');
    assert.deepEqual(a.states(gone.peerId), ['connecting', 'errored', 'connecting', 'errored', 'gaveUp']);
    assert.equal(a.engine.metrics().gaveUp, 1);
    assert.equal(a.engine.metrics().dials.started, 2);
    const b = await c.add('bob');
    a.engine.addPeer(b.engine.peerId, [b.adapter.address], { pinned: true });
    await waitFor(() => a.states(b.engine.peerId).includes('ready'), 'pinned peer ready');
    a.engine.addPeer(b.engine.peerId, [b.adapter.address], { pinned: false });
    await waitFor(() => a.states(b.engine.peerId).includes('closed'), 'the unpinned peer closes when idle');
    assert.deepEqual(a.states(b.engine.peerId), ['connecting', 'handshaking', 'ready', 'draining', 'closed']);
    assert.equal(a.engine.metrics().dials.started, 3);
  });

  it('pruning: at the limit the lowest priority goes, protected peers never', async function () {
    const a = await c.add('alice', { maxConnections: 2 });
    const nodes: Node[] = [];
    for (const name of ['bob', 'carol', 'dave']) {
      const n = await c.add(name);
      n.engine.handle('hold/1', holder().handler);
      c.introduce(a, n);
      nodes.push(n);
    }
    const [b, cc, d] = nodes as [Node, Node, Node];
    a.engine.tagPeer(b.engine.peerId, 'friend', 10);
    a.engine.protectPeer(cc.engine.peerId);
    await touch(a, b);
    await touch(a, cc);
    // carol has the lowest priority and is the least recently used, but is protected: bob makes room.
    await touch(a, d);
    await waitFor(() => a.states(b.engine.peerId).includes('closed'), 'bob pruned');
    assert.deepEqual(a.engine.snapshot().peers.map((p) => p.peerId).sort(), [cc.engine.peerId, d.engine.peerId].sort());
    assert.ok(!a.states(cc.engine.peerId).includes('draining'));
    assert.equal(a.engine.metrics().pruned, 1);
  });

  it('staggered dials: a dead first address, the live one 100 ms later wins, the dead attempt is cancelled', async function () {
    const a = await c.add('alice', { dialStaggerMs: 100 });
    const b = await c.add('bob');
    b.engine.handle('echo/1', echo);
    c.introduce(a, b);
    a.engine.addPeer(b.engine.peerId, [await deadAddress(), b.adapter.address]);
    const stream = await a.engine.openStream(b.engine.peerId, 'echo/1');
    stream.close();
    assert.deepEqual(a.states(b.engine.peerId), ['connecting', 'handshaking', 'ready']);
    assert.equal(a.engine.metrics().dials.started, 1);
    await waitFor(() => a.adapter.stats().dialing === 0, 'the dead attempt was cancelled');
    assert.equal(a.adapter.stats().connections, 1);
    assert.equal(b.adapter.stats().connections, 1);
  });

  it('dial backoff: a fresh request to a peer whose dial just failed fails fast with the same code, without a dial', async function () {
    const a = await c.add('alice', { connectTimeoutMs: 300, dialBackoff: { strategy: 'fixed', delayMs: 5_000 } });
    const gone = await identity('gone');
    a.engine.addPeer(gone.peerId, [await deadAddress()]);
    await assert.rejects(a.engine.openStream(gone.peerId, 'echo/1'), (e: PeerlineError) => e.code === 'CONNECT_TIMEOUT');
    await assert.rejects(a.engine.openStream(gone.peerId, 'echo/1'), (e: PeerlineError) => e.code === 'CONNECT_TIMEOUT');
    assert.equal(a.engine.metrics().dials.started, 1);
    assert.equal(a.engine.snapshot().peers[0]?.state, 'errored');
  });

  it('waitForReady: a request to a peer that is down waits through the backoff and is served when the peer is back', async function () {
    const b = await c.add('bob');
    const port = b.adapter.port;
    const bob = await identity('bob');
    await b.engine.stop({ force: true });
    const a = await c.add('alice', { connectTimeoutMs: 300, dialBackoff: { strategy: 'fixed', delayMs: 200 } });
    a.engine.addPeer(bob.peerId, [quicAddress(port)]);
    const waiting = a.engine.openStream(bob.peerId, 'echo/1', { waitForReady: true, timeoutMs: 15_000 });
    const plain = a.engine.openStream(bob.peerId, 'echo/1');
    await assert.rejects(plain, (e: PeerlineError) => e instanceof PeerlineError);
    await waitFor(() => a.states(bob.peerId).filter((s) => s === 'errored').length >= 1, 'the first dial failed');
    const back = await c.add('bob again', {}, { identity: bob, port });
    back.engine.handle('echo/1', echo);
    const stream = await waiting;
    stream.close();
    assert.ok(a.states(bob.peerId).includes('ready'));
  });

  it('handle() limits: one stream per connection for the protocol; the second is NACKed and the opener gets STREAM_LIMIT', async function () {
    const a = await c.add('alice');
    const b = await c.add('bob');
    b.engine.handle('hold/1', holder().handler, { maxStreamsPerConnection: 1 });
    c.introduce(a, b);
    const first = await a.engine.openStream(b.engine.peerId, 'hold/1');
    await assert.rejects(a.engine.openStream(b.engine.peerId, 'hold/1'), (e: PeerlineError) =>
      e.code === 'STREAM_LIMIT' && /stream limit: 1 streams of hold\/1/.test(e.message),
    );
    assert.equal(b.engine.metrics().streams.inboundLimited, 1);
    first.abort('done');
    await waitFor(() => b.engine.snapshot().peers[0]?.streams === 0, 'the first stream ended');
    const second = await a.engine.openStream(b.engine.peerId, 'hold/1');
    second.close();
  });

  it('state$ and peers$: a late subscriber gets the current state; both complete when the engine stops', async function () {
    const a = await c.add('alice');
    const b = await c.add('bob');
    c.introduce(a, b);
    const early: ConnectionState[] = [];
    a.engine.state$(b.engine.peerId).subscribe((x) => early.push(x));
    await a.engine.withConnection(b.engine.peerId, () => undefined);
    assert.deepEqual(early, ['connecting', 'handshaking', 'ready']);
    const late: ConnectionState[] = [];
    let lateDone = false;
    a.engine.state$(b.engine.peerId).subscribe({ next: (x) => late.push(x), complete: () => (lateDone = true) });
    const maps: Array<Record<string, string>> = [];
    let mapsDone = false;
    a.engine.peers$.subscribe({ next: (m) => maps.push(Object.fromEntries(m)), complete: () => (mapsDone = true) });
    assert.deepEqual(late, ['ready']);
    assert.deepEqual(maps, [{ [b.engine.peerId]: 'ready' }]);
    await a.engine.stop();
    assert.ok(lateDone && mapsDone);
    assert.equal(late.at(-1), 'closed');
  });

  it('networkChanged(): the peer behind a silent path is errored at the heartbeat timeout; the live one stays ready', async function () {
    const heartbeat = { intervalMs: 30_000, timeoutMs: 300, misses: 3 };
    const a = await c.add('alice', { heartbeat });
    const b = await c.add('bob', { heartbeat });
    const d = await c.add('dave', { heartbeat });
    const proxy = await UdpProxy.create({ targetPort: b.adapter.port });
    try {
      c.introduce(a, b, quicAddress(proxy.port));
      c.introduce(a, d);
      await a.engine.withConnection(b.engine.peerId, () => undefined);
      await a.engine.withConnection(d.engine.peerId, () => undefined);
      proxy.blackhole();
      assert.equal(a.engine.networkChanged(), 2);
      await waitFor(() => a.states(b.engine.peerId).includes('errored'), 'the silent peer is errored');
      assert.ok(a.errors.includes(`${b.engine.peerId}: HEARTBEAT_TIMEOUT`), a.errors.join(' '));
      assert.equal(a.engine.snapshot().peers.find((p) => p.peerId === d.engine.peerId)?.state, 'ready');
    } finally {
      await proxy.close();
    }
  });

  it('contract: answers never synchronous, one signal over 100 requests warns nothing, stop() bounded though the adapter never closes', async function () {
    const b = await c.add('bob');
    b.engine.handle('echo/1', echo);
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    const inner = createQuicAdapter({ identity: await identity('alice'), logger: recordingLogger() });
    const engine = createEngine({
      adapter: {
        get localPeerId() {
          return inner.localPeerId;
        },
        listen: (onConnection) => inner.listen(onConnection),
        dial: (peerId, address, options) => inner.dial(peerId, address, options),
        close: () => new Promise<void>(() => {}),
      },
      drainDeadlineMs: 300,
      forceCloseGraceMs: 300,
      logger: { trace: () => {}, warn: () => {} },
    });
    try {
      await engine.start();
      engine.addPeer(b.engine.peerId, [b.adapter.address]);
      let inside = true;
      const replies: Array<{ answer: StreamAnswer; inside: boolean }> = [];
      engine.requests.next({ peerId: '', protocol: 'echo/1', reply: (answer) => replies.push({ answer, inside }) });
      inside = false;
      const controller = new AbortController();
      const t = track(Array.from({ length: 100 }, () => engine.openStream(b.engine.peerId, 'echo/1', { signal: controller.signal })));
      await t.all;
      assert.deepEqual(codes(t.outcomes), { ok: 100 });
      assert.deepEqual(replies.map((r) => [r.answer.ok ? 'ok' : r.answer.error.code, r.inside]), [['INVALID_REQUEST', false]]);
      controller.abort();
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(warnings.map((w) => w.name), []);
      await engine.stop();
      assert.equal(engine.status, 'stopped');
    } finally {
      process.off('warning', onWarning);
      await inner.close();
    }
  });
});
