/**
 * Engines over real QUIC on loopback: the runtime and the QUIC adapter
 * together, on the wall clock. Every test is bounded, stops everything it
 * started and checks that no socket or connection is left.
 */
import assert from 'node:assert/strict';
import { quicAddress } from '../../adapters/quic/index.js';
import { ConnectionErrorCode, PeerlineError, type PeerStream } from '../../runtime/index.js';
import { useCluster, waitFor, type Cluster, type Node } from '../fixtures/quic-cluster.js';
import { identity, sleep } from '../fixtures/identity.js';
import { codes, echo, holder, track } from '../fixtures/swarm.js';
import { UdpProxy } from '../../bin/udp-proxy.js';

/** Writes `text`, half-closes, reads the echo. */
async function echoOnce(stream: PeerStream, text: string): Promise<string> {
  const writer = stream.writable.getWriter();
  const reading = (async () => {
    const chunks: Uint8Array[] = [];
    for await (const chunk of stream.readable as unknown as AsyncIterable<Uint8Array>) chunks.push(chunk);
    return Buffer.concat(chunks).toString();
  })();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  return reading;
}

describe('engines over QUIC (loopback)', function () {
  this.timeout(20_000);
  let c: Cluster;
  useCluster((cluster) => (c = cluster));

  it('two engines: echo streams both ways over one connection', async function () {
    const a = await c.add('alice');
    const b = await c.add('bob');
    a.engine.handle('echo/1', echo);
    b.engine.handle('echo/1', echo);
    c.introduce(a, b);
    c.introduce(b, a);
    for (let i = 0; i < 5; i++) {
      assert.equal(await echoOnce(await a.engine.openStream(b.engine.peerId, 'echo/1'), `a->b ${i}`), `a->b ${i}`);
    }
    // The reply direction reuses the connection bob already has.
    assert.equal(await echoOnce(await b.engine.openStream(a.engine.peerId, 'echo/1'), 'b->a'), 'b->a');
    const concurrent = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => echoOnce(await a.engine.openStream(b.engine.peerId, 'echo/1'), `#${i}`)),
    );
    assert.deepEqual(concurrent, Array.from({ length: 20 }, (_, i) => `#${i}`));
    assert.deepEqual(a.states(b.engine.peerId), ['connecting', 'handshaking', 'ready']);
    assert.deepEqual(b.states(a.engine.peerId), ['handshaking', 'ready']);
    assert.equal(a.adapter.stats().connections, 1);
    assert.equal(b.adapter.stats().connections, 1);
    const metrics = a.engine.metrics();
    assert.equal(metrics.dials.started, 1);
    assert.equal(metrics.dials.failed, 0);
  });

  it('five engines: every engine echoes with every other; one connection per pair', async function () {
    const names = ['n1', 'n2', 'n3', 'n4', 'n5'];
    const nodes: Node[] = [];
    for (const name of names) nodes.push(await c.add(name));
    for (const n of nodes) {
      n.engine.handle('echo/1', echo);
      for (const m of nodes) if (m !== n) c.introduce(n, m);
    }
    // Everyone dials everyone at once: simultaneous opens must settle on one connection per pair.
    const results = await Promise.all(
      nodes.flatMap((n) =>
        nodes
          .filter((m) => m !== n)
          .map(async (m) => echoOnce(await n.engine.openStream(m.engine.peerId, 'echo/1'), `${n.name}->${m.name}`)),
      ),
    );
    assert.equal(results.length, 20);
    assert.ok(results.every((r, i) => r === results[i]));
    await waitFor(() => nodes.every((n) => n.adapter.stats().connections === 4), 'one connection per pair');
    for (const n of nodes) {
      const peers = n.engine.snapshot().peers;
      assert.equal(peers.length, 4);
      assert.ok(peers.every((p) => p.state === 'ready'), JSON.stringify(peers));
    }
  });

  it('a peer stopped mid-stream: open streams fail, pending requests get typed errors, nothing escapes', async function () {
    const a = await c.add('alice', { maxStreamsPerConnection: 20 });
    const b = await c.add('bob');
    const held = holder();
    b.engine.handle('hold/1', held.handler);
    c.introduce(a, b);
    const open = await Promise.all(Array.from({ length: 20 }, () => a.engine.openStream(b.engine.peerId, 'hold/1')));
    await waitFor(() => held.streams.length === 20, 'bob to hold 20 streams');
    // Past maxStreamsPerConnection these wait in alice's queue.
    const pending = track(Array.from({ length: 10 }, () => a.engine.openStream(b.engine.peerId, 'hold/1')));
    await sleep(50);
    assert.equal(pending.settled(), 0);
    const reads = open.map((s) =>
      s.readable
        .getReader()
        .read()
        .then(
          () => 'ended',
          (error: unknown) => error,
        ),
    );
    await b.engine.stop({ force: true });
    await pending.all;
    assert.equal(pending.settled(), 10);
    const byCode = codes(pending.outcomes);
    assert.equal(byCode.ok, undefined, JSON.stringify(byCode));
    for (const outcome of pending.outcomes) {
      assert.ok(!outcome.ok && outcome.error instanceof PeerlineError, String(outcome));
    }
    assert.ok(['CONNECTION_FORCE_CLOSED', 'CONNECTION_LOST'].includes(Object.keys(byCode)[0]!), JSON.stringify(byCode));
    const ends = await Promise.all(reads);
    assert.ok(ends.every((e) => e === 'ended' || e instanceof Error), 'every open stream ended');
    await waitFor(() => a.engine.snapshot().peers.length === 0, 'alice to drop bob');
    assert.ok(a.states(b.engine.peerId).includes('closed'));
    assert.equal(a.adapter.stats().connections, 0);
  });

  it('150 concurrent stream requests to one peer all succeed', async function () {
    const a = await c.add('alice');
    const b = await c.add('bob');
    b.engine.handle('echo/1', echo);
    c.introduce(a, b);
    const results = await Promise.all(
      Array.from({ length: 150 }, async (_, i) => echoOnce(await a.engine.openStream(b.engine.peerId, 'echo/1'), `r${i}`)),
    );
    assert.deepEqual(results, Array.from({ length: 150 }, (_, i) => `r${i}`));
    const metrics = a.engine.metrics();
    assert.equal(metrics.requests.opened, 150);
    assert.equal(metrics.internalErrors, 0);
    assert.equal(metrics.dials.started, 1);
    await waitFor(() => a.engine.snapshot().peers[0]?.streams === 0, 'every stream to close');
  });

  it('echo through a lossy, slow link: 5 % of datagrams dropped, 3 ms added each way', async function () {
    const a = await c.add('alice');
    const b = await c.add('bob');
    b.engine.handle('echo/1', echo);
    const proxy = await UdpProxy.create({ targetPort: b.adapter.port, seed: 42 });
    try {
      c.introduce(a, b, quicAddress(proxy.port));
      assert.equal(await echoOnce(await a.engine.openStream(b.engine.peerId, 'echo/1'), 'hello'), 'hello');
      proxy.drop(0.05).delay(3);
      const payload = 'x'.repeat(20_000);
      const results = await Promise.all(
        Array.from({ length: 30 }, async (_, i) => echoOnce(await a.engine.openStream(b.engine.peerId, 'echo/1'), `${i}:${payload}`)),
      );
      assert.deepEqual(results, Array.from({ length: 30 }, (_, i) => `${i}:${payload}`));
      assert.ok(proxy.stats.dropped > 0 && proxy.stats.delayed > 0, JSON.stringify(proxy.stats));
      await waitFor(() => a.engine.snapshot().peers[0]?.streams === 0, 'every stream to close');
    } finally {
      await proxy.close();
    }
  });

  it('a silent peer (datagrams blackholed) is caught by heartbeats: errored with HEARTBEAT_TIMEOUT', async function () {
    this.timeout(30_000);
    const heartbeat = { intervalMs: 200, timeoutMs: 100, misses: 2 };
    const a = await c.add('alice', { heartbeat });
    const b = await c.add('bob', { heartbeat });
    b.engine.handle('echo/1', echo);
    const proxy = await UdpProxy.create({ targetPort: b.adapter.port, seed: 7 });
    try {
      c.introduce(a, b, quicAddress(proxy.port));
      assert.equal(await echoOnce(await a.engine.openStream(b.engine.peerId, 'echo/1'), 'before'), 'before');
      await waitFor(() => a.engine.metrics().heartbeat.samples >= 2, 'heartbeats to flow');
      proxy.blackhole();
      const silentAt = Date.now();
      await waitFor(() => a.states(b.engine.peerId).includes('errored'), 'alice to give up on bob', 15_000);
      const took = Date.now() - silentAt;
      const errored = a.transitions.find((t) => t.peerId === b.engine.peerId && t.to === 'errored')!;
      assert.equal(errored.from, 'ready');
      // interval x misses + timeout = 500 ms, before QUIC's own idle timeout
      // (1.5 s): the code says the heartbeats caught it, however late a busy
      // machine fired their timers.
      assert.deepEqual(a.errors, [`${b.engine.peerId}: HEARTBEAT_TIMEOUT`]);
      assert.ok(took >= 150, `caught after ${took} ms`);
      assert.equal(a.engine.metrics().requests.failed, 0, 'no request was waiting');
      await waitFor(() => a.states(b.engine.peerId).includes('closed'), 'the machine to close');
      assert.ok(proxy.stats.dropped > 0);
    } finally {
      await proxy.close();
    }
  });

  it('wrong identity, outbound: the key at the address is not the peer asked for', async function () {
    const a = await c.add('alice');
    const b = await c.add('bob');
    const mallory = await identity('mallory');
    // Alice believes mallory lives at bob's address.
    a.engine.addPeer(mallory.peerId, [b.adapter.address]);
    await assert.rejects(
      a.engine.openStream(mallory.peerId, 'echo/1'),
      (e: unknown) => e instanceof PeerlineError && e.code === 'PEER_IDENTITY_MISMATCH',
    );
    // Held by the dial backoff: a fresh request fails fast instead of dialling the impostor again.
    assert.deepEqual(a.states(mallory.peerId), ['connecting', 'errored']);
    await assert.rejects(a.engine.openStream(mallory.peerId, 'echo/1'), (e: unknown) => e instanceof PeerlineError && e.code === 'PEER_IDENTITY_MISMATCH');
    assert.equal(a.engine.metrics().dials.started, 1);
    assert.deepEqual(a.errors, [`${mallory.peerId}: PEER_IDENTITY_MISMATCH`]);
    await sleep(50);
    assert.deepEqual(b.engine.snapshot().peers, [], 'bob never saw a connection');
  });

  it('inbound gate: a listener whose allowInbound refuses the dialler ends its handshake with the AdmissionDenied code', async function () {
    const a = await c.add('alice');
    const refused: string[] = [];
    const b = await c.add('bob', {}, {
      allowInbound: (peerId) => {
        refused.push(peerId);
        return false;
      },
    });
    b.engine.handle('echo/1', echo);
    c.introduce(a, b);
    // TLS alert access_denied: refused with the code, whether the dial or the handshake saw it.
    const denied = (e: unknown): boolean =>
      e instanceof PeerlineError && e.code === 'CONNECT_REFUSED' && e.closeCode === ConnectionErrorCode.AdmissionDenied;
    await assert.rejects(a.engine.openStream(b.engine.peerId, 'echo/1'), denied);
    const states = a.states(b.engine.peerId);
    // A dialler with the lower id is ready once its hello is out, so it may
    // see the refusal there (a lost ready connection is not backed off: the
    // machine closes); otherwise the dial failed and the dial backoff holds it.
    const lower = a.engine.peerId < b.engine.peerId;
    if (states.includes('ready')) assert.ok(lower && states.at(-1) === 'closed', states.join(' '));
    else assert.equal(states.at(-1), 'errored', 'held by the dial backoff');
    assert.ok(states.includes('errored'), states.join(' '));
    assert.equal(a.errors.length, 1);
    assert.match(a.errors[0]!, /: CONNECT_REFUSED$/);
    assert.equal(b.engine.metrics().admission.refusedByCode.AdmissionDenied, 1);
    assert.deepEqual(refused, [a.engine.peerId]);
    assert.deepEqual(b.engine.snapshot().peers, [], 'bob never handed the connection over');
    assert.equal(b.engine.metrics().streams.inboundAccepted, 0);
  });
});
