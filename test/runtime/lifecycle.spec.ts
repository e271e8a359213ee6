/**
 * Lifecycle policies over the memory network on the virtual clock: pinned
 * peers that give up and unpinning, pruning by priority, staggered dials,
 * the dial backoff and waitForReady, per-protocol limits on inbound streams,
 * the state observables, and the network-change probe. Every scenario is
 * deterministic: times are asserted on the virtual clock.
 */
import { strict as assert } from 'node:assert';
import type { ConnectionState, Engine, PeerStream } from '../../runtime/index.js';
import { createEngine, PeerlineError } from '../../runtime/index.js';
import { hub } from '../fixtures/pair.js';
import { codes, echo, holder, swarm, track, type Swarm } from '../fixtures/swarm.js';

/** Opens a stream, checks it, and closes it: the peer is then idle. */
async function touch(s: Swarm, from: string, to: string): Promise<void> {
  const stream = await s.until(s.engine(from).openStream(to, '/hold'));
  stream.close();
  await s.advance(5);
}

describe('lifecycle policies over the memory network', () => {
  let s: Swarm;

  afterEach(async () => {
    await s.stopAll();
    assert.equal(s.clock.pending(), 0, 'timers left after every engine stopped');
    assert.equal(s.network.connectionCount(), 0, 'connections left after every engine stopped');
  });

  // ------------------------------------------------------------ pinned peers

  describe('pinned peers: give-up limit, restart intensity, unpinning', () => {
    /** `a` with `b` pinned and ready, retried every 100 ms, under the given restart intensity. */
    async function pinnedReady(intensity: { maxRestarts: number; periodMs: number }): Promise<Engine> {
      s = await swarm();
      const a = await s.add('a', { pinnedRetry: { strategy: 'fixed', delayMs: 100 }, pinnedRestartIntensity: intensity });
      await s.add('b');
      a.addPeer('b', [s.network.address('b')], { pinned: true });
      await s.advance(10);
      return a;
    }

    it('pinnedRetry.maxAttempts: after that many failed attempts in a row the peer goes gaveUp and is not dialled again', async () => {
      s = await swarm();
      const a = await s.add('a', { pinnedRetry: { strategy: 'fixed', delayMs: 200, maxAttempts: 3 } });
      s.network.node('b');
      a.addPeer('b', [s.network.address('b')], { pinned: true });
      await s.advance(1_000);
      assert.deepEqual(s.states('a', 'b'), ['connecting', 'errored', 'connecting', 'errored', 'connecting', 'errored', 'gaveUp']);
      const last = s.transitions.filter((t) => t.peerId === 'b').at(-1)!;
      assert.equal(last.to, 'gaveUp');
      assert.equal(last.at, 406, 'three dials of one round trip each, 200 ms apart');
      assert.equal(a.metrics().gaveUp, 1);
      assert.equal(a.metrics().dials.started, 3);
      assert.deepEqual(a.snapshot().peers, []);
      await s.advance(10_000);
      assert.equal(a.metrics().dials.started, 3, 'a peer that gave up is not dialled by itself');
      // The next request starts afresh (still pinned, with a new budget).
      const b = await s.add('b');
      b.handle('/echo', echo);
      const stream = await s.until(a.openStream('b', '/echo'));
      stream.close();
      assert.equal(a.snapshot().peers[0]?.pinned, true);
      assert.equal(a.snapshot().peers[0]?.state, 'ready');
    });

    it('restart intensity: a peer that keeps failing after ready gives up after more than maxRestarts failures within the period', async () => {
      const a = await pinnedReady({ maxRestarts: 2, periodMs: 10_000 });
      for (let i = 0; i < 2; i++) {
        assert.equal(a.snapshot().peers[0]?.state, 'ready');
        s.network.drop('a', 'b');
        await s.advance(200);
      }
      assert.equal(a.snapshot().peers[0]?.state, 'ready', 'two failures are within the intensity');
      s.network.drop('a', 'b');
      await s.advance(1);
      assert.deepEqual(s.states('a', 'b').slice(-2), ['errored', 'gaveUp']);
      assert.equal(a.metrics().gaveUp, 1);
      assert.deepEqual(a.snapshot().peers, []);
    });

    it('restart intensity: failures further apart than the period never add up', async () => {
      const a = await pinnedReady({ maxRestarts: 1, periodMs: 2_000 });
      for (let i = 0; i < 4; i++) {
        s.network.drop('a', 'b');
        await s.advance(2_500);
        assert.equal(a.snapshot().peers[0]?.state, 'ready', `after failure ${i + 1}`);
      }
      assert.equal(a.metrics().gaveUp, 0);
      assert.equal(a.metrics().retries, 4);
    });

    it('removePeer unpins the live machine: a pinned peer that was retrying stops instead of retrying NO_ADDRESS forever', async () => {
      s = await swarm();
      const a = await s.add('a', { pinnedRetry: { strategy: 'fixed', delayMs: 200 } });
      s.network.node('b');
      a.addPeer('b', [s.network.address('b')], { pinned: true });
      await s.advance(500);
      const dials = a.metrics().dials.started;
      assert.ok(dials >= 2);
      a.removePeer('b');
      assert.equal(a.snapshot().peers[0]?.pinned, false);
      // Backing off after a refused dial: the dial backoff ends it, without another dial.
      await s.advance(3_000);
      assert.deepEqual(a.snapshot().peers, []);
      assert.equal(s.states('a', 'b').at(-1), 'closed');
      assert.equal(a.metrics().dials.started, dials);
      await s.advance(10_000);
      assert.equal(a.metrics().dials.started, dials, 'no dial after removePeer');
    });

    it('addPeer(..., { pinned: false }) unpins a ready machine: it closes when idle instead of being kept', async () => {
      s = await swarm();
      const a = await s.add('a', { idleTimeoutMs: 1_000 });
      await s.add('b');
      a.addPeer('b', [s.network.address('b')], { pinned: true });
      await s.advance(5_000);
      assert.equal(a.snapshot().peers[0]?.state, 'ready', 'a pinned peer is never idle-closed');
      // New addresses without `pinned` keep the pin; `pinned: false` takes it away.
      a.addPeer('b', [s.network.address('b'), s.network.address('b')]);
      assert.equal(a.snapshot().peers[0]?.pinned, true);
      a.addPeer('b', [s.network.address('b')], { pinned: false });
      assert.equal(a.snapshot().peers[0]?.pinned, false);
      await s.advance(1_000);
      assert.deepEqual(s.states('a', 'b').slice(-2), ['draining', 'closed']);
      assert.deepEqual(a.snapshot().peers, []);
    });
  });

  // ----------------------------------------------------------------- pruning

  describe('pruning by priority', () => {
    async function hub(maxConnections: number, peers: string[]): Promise<void> {
      s = await swarm();
      const a = await s.add('a', { maxConnections });
      for (const p of peers) {
        const e = await s.add(p);
        e.handle('/hold', holder().handler);
        a.addPeer(p, [s.network.address(p)]);
      }
    }

    it('the lowest priority goes first, the least recently used among equals; protected peers never', async () => {
      await hub(3, ['b', 'c', 'd', 'e', 'f']);
      const a = s.engine('a');
      a.tagPeer('b', 'friend', 10);
      await touch(s, 'a', 'b');
      await touch(s, 'a', 'c');
      await touch(s, 'a', 'd');
      await s.advance(100);
      await touch(s, 'a', 'c'); // c is now more recent than d, though created before it
      await touch(s, 'a', 'e'); // full: d (priority 0, least recently used) makes room
      assert.deepEqual(a.snapshot().peers.map((p) => p.peerId).sort(), ['b', 'c', 'e']);
      assert.ok(s.states('a', 'd').includes('draining'));
      // c is now the least recently used of priority 0, but protected; e is the one to go.
      a.protectPeer('c');
      await touch(s, 'a', 'f');
      assert.deepEqual(a.snapshot().peers.map((p) => p.peerId).sort(), ['b', 'c', 'f']);
      assert.ok(s.states('a', 'e').includes('draining'));
      assert.ok(!s.states('a', 'c').includes('draining'));
      assert.equal(a.metrics().pruned, 2);
      // With every idle peer protected or of higher priority... b (10) goes before anything protected.
      a.protectPeer('f');
      await touch(s, 'a', 'd');
      assert.deepEqual(a.snapshot().peers.map((p) => p.peerId).sort(), ['c', 'd', 'f']);
      // Nothing left to prune: every peer is protected or busy.
      a.protectPeer('d');
      const refused = track([a.openStream('e', '/hold')]);
      await s.advance(10);
      await refused.all;
      assert.deepEqual(codes(refused.outcomes), { CONNECTION_LIMIT: 1 });
      // Unprotected and untagged again, c is an ordinary candidate.
      a.protectPeer('c', false);
      await touch(s, 'a', 'e');
      assert.deepEqual(a.snapshot().peers.map((p) => p.peerId).sort(), ['d', 'e', 'f']);
    });

    it('addPeer options set the priority; tags add up and untagPeer removes one', async () => {
      await hub(2, ['b', 'c', 'd']);
      const a = s.engine('a');
      a.addPeer('b', [s.network.address('b')], { tags: { x: 3, y: 4 } });
      a.addPeer('c', [s.network.address('c')], { tags: { x: 5 } });
      await touch(s, 'a', 'c');
      await touch(s, 'a', 'b');
      await touch(s, 'a', 'd'); // c (5) goes before b (3 + 4)
      assert.deepEqual(a.snapshot().peers.map((p) => p.peerId).sort(), ['b', 'd']);
      a.untagPeer('b', 'y');
      a.tagPeer('d', 'x', 4);
      await touch(s, 'a', 'c'); // b is 3 now, d is 4
      assert.deepEqual(a.snapshot().peers.map((p) => p.peerId).sort(), ['c', 'd']);
      assert.throws(() => a.tagPeer('b', 'x', Number.NaN), RangeError);
      assert.throws(() => a.tagPeer('', 'x', 1), TypeError);
    });

    it('a peer backing off with nobody waiting is pruned before any idle peer', async () => {
      await hub(2, ['b', 'c']);
      const a = s.engine('a');
      s.network.node('z');
      a.addPeer('z', [s.network.address('z')]);
      await touch(s, 'a', 'b');
      const failed = track([a.openStream('z', '/hold')]);
      await s.advance(5);
      await failed.all;
      assert.deepEqual(codes(failed.outcomes), { CONNECT_REFUSED: 1 });
      assert.equal(a.snapshot().peers.find((p) => p.peerId === 'z')?.state, 'errored');
      await touch(s, 'a', 'c');
      assert.deepEqual(a.snapshot().peers.map((p) => p.peerId).sort(), ['b', 'c']);
      assert.deepEqual(s.states('a', 'z'), ['connecting', 'errored', 'closed']);
    });
  });

  // ---------------------------------------------------------- staggered dials

  describe('staggered dials', () => {
    it('the second address starts 250 ms after the first, wins, and the first attempt is cancelled', async () => {
      s = await swarm();
      const a = await s.add('a');
      await s.add('b');
      s.network.node('ghost');
      s.network.stallDials('ghost');
      a.addPeer('b', [s.network.address('ghost'), s.network.address('b')]);
      const t = track([a.withConnection('b', () => undefined).then(() => ({}) as PeerStream)]);
      await s.advance(249);
      assert.equal(s.network.stats().dials, 1, 'one address at a time');
      await s.advance(1);
      assert.equal(s.network.stats().dials, 2, 'the next one 250 ms later');
      await s.advance(10);
      await t.all;
      assert.equal(a.snapshot().peers[0]?.state, 'ready');
      assert.equal(a.metrics().dials.started, 1, 'one dial of the machine');
      await s.advance(10_000);
      assert.equal(s.network.stats().dials, 2, 'no third attempt');
      assert.equal(s.network.connectionCount(), 1);
    });

    it('a failed attempt starts the next one at once; the error of the last one answers if all fail', async () => {
      s = await swarm();
      const a = await s.add('a');
      await s.add('b');
      s.network.node('nobody');
      a.addPeer('b', [s.network.address('nobody'), s.network.address('b')]);
      await s.until(a.withConnection('b', () => undefined));
      // 'a' dials with the lower id: ready once its hello is out, no hello round trip.
      assert.equal(s.clock.now(), 4, 'refused after one round trip, then the second dial: no 250 ms wait');
      a.addPeer('c', [s.network.address('nobody'), s.network.address('b')]);
      const t = track([a.openStream('c', '/x')]);
      await s.advance(10);
      await t.all;
      // memory://b answers as b, not c: the identity mismatch says more than the refusal.
      assert.deepEqual(codes(t.outcomes), { PEER_IDENTITY_MISMATCH: 1 });
    });

    it('with dialStaggerMs 0 every address is dialled at once; the losers are cancelled', async () => {
      s = await swarm();
      const a = await s.add('a', { dialStaggerMs: 0 });
      await s.add('b');
      s.network.node('ghost');
      s.network.stallDials('ghost');
      a.addPeer('b', [s.network.address('ghost'), s.network.address('ghost'), s.network.address('b')]);
      const leased = a.withConnection('b', () => undefined);
      await s.advance(0);
      assert.equal(s.network.stats().dials, 3, 'all at once');
      await s.until(leased);
      assert.equal(s.clock.now(), 2, 'one round trip: the dialler with the lower id does not wait for hello-ack');
      await s.advance(10_000);
      assert.equal(s.network.stats().dials, 3);
      assert.equal(s.network.connectionCount(), 1);
    });

    it('addresses are tried IPv6 first, alternating families (addressOrder interleave), or as given', async () => {
      s = await swarm();
      const seen: string[][] = [];
      for (const addressOrder of ['interleave', 'given'] as const) {
        const inner = s.network.node(`a-${addressOrder}`);
        const tried: string[] = [];
        seen.push(tried);
        const adapter = {
          localPeerId: inner.localPeerId,
          listen: (cb: Parameters<typeof inner.listen>[0]) => inner.listen(cb),
          close: () => inner.close(),
          dial: (peerId: string, address: string, options: { signal: AbortSignal }) => {
            tried.push(address);
            return inner.dial(peerId, s.network.address('nobody'), options);
          },
        };
        const e = createEngine({ adapter, clock: s.clock, addressOrder, logger: { trace: () => {}, warn: () => {} } });
        s.engines.set(`a-${addressOrder}`, e);
        await e.start();
        e.addPeer('b', ['quic://10.0.0.1:1', 'quic://10.0.0.2:1', 'quic://[2001:db8::1]:1', 'memory://x', 'quic://[2001:db8::2]:1']);
        await assert.rejects(s.until(e.withConnection('b', () => undefined)), (x: PeerlineError) => x.code === 'CONNECT_REFUSED');
      }
      s.network.node('nobody');
      assert.deepEqual(seen[0], ['quic://[2001:db8::1]:1', 'quic://10.0.0.1:1', 'quic://[2001:db8::2]:1', 'quic://10.0.0.2:1', 'memory://x']);
      assert.deepEqual(seen[1], ['quic://10.0.0.1:1', 'quic://10.0.0.2:1', 'quic://[2001:db8::1]:1', 'memory://x', 'quic://[2001:db8::2]:1']);
    });
  });

  // ------------------------------------------------- dial backoff and waitForReady

  describe('dial backoff and waitForReady', () => {
    it('a fresh request to a peer whose dial just failed fails fast; with waitForReady it waits and is dialled for', async () => {
      s = await swarm();
      const a = await s.add('a', { dialBackoff: { strategy: 'fixed', delayMs: 1_000 } });
      s.network.node('b');
      a.addPeer('b', [s.network.address('b')]);
      const first = track([a.openStream('b', '/echo')]);
      await s.advance(2);
      await first.all;
      assert.deepEqual(codes(first.outcomes), { CONNECT_REFUSED: 1 });
      const fast = track([a.openStream('b', '/echo')]);
      const waiting = track([a.openStream('b', '/echo', { waitForReady: true, timeoutMs: 5_000 })]);
      await s.advance(0);
      await fast.all;
      assert.deepEqual(codes(fast.outcomes), { CONNECT_REFUSED: 1 });
      assert.equal(a.metrics().dials.started, 1, 'no dial for a request during the backoff');
      const b = await s.add('b');
      b.handle('/echo', echo);
      await s.advance(999);
      assert.equal(waiting.settled(), 0);
      assert.equal(a.metrics().dials.started, 1);
      await s.advance(1);
      assert.equal(a.metrics().dials.started, 2, 'dialled again when the backoff ended, for the waiting request');
      await s.advance(10);
      await waiting.all;
      assert.deepEqual(codes(waiting.outcomes), { ok: 1 });
      for (const o of waiting.outcomes) if (o.ok) o.stream.close();
    });

    it('a waitForReady request gets STREAM_TIMEOUT at its deadline if the peer never comes; backoffs grow meanwhile', async () => {
      s = await swarm();
      const a = await s.add('a', { dialBackoff: { strategy: 'exponential', initialDelayMs: 100, multiplier: 2, jitter: 0 } });
      s.network.node('b');
      a.addPeer('b', [s.network.address('b')]);
      const t = track([a.openStream('b', '/echo', { waitForReady: true, timeoutMs: 1_000 })]);
      await s.advance(999);
      assert.equal(t.settled(), 0);
      // Dials at 0, 102 (+100), 306 (+200), 710 (+400): each failure doubles the wait.
      assert.equal(a.metrics().dials.started, 4);
      await s.advance(1);
      await t.all;
      assert.deepEqual(codes(t.outcomes), { STREAM_TIMEOUT: 1 });
      await s.advance(2_000);
      assert.deepEqual(a.snapshot().peers, [], 'with nobody waiting the backoff ends in closed');
    });

    it('waitForReady on a pinned peer waits through its retries; without it the request fails at once', async () => {
      s = await swarm();
      const a = await s.add('a', { pinnedRetry: { strategy: 'fixed', delayMs: 300 } });
      s.network.node('b');
      a.addPeer('b', [s.network.address('b')], { pinned: true });
      await s.advance(5);
      assert.equal(a.snapshot().peers[0]?.state, 'errored');
      const plain = track([a.openStream('b', '/echo')]);
      const waiting = track([a.openStream('b', '/echo', { waitForReady: true })]);
      await s.advance(0);
      assert.deepEqual(codes(plain.outcomes), { CONNECT_REFUSED: 1 });
      assert.equal(waiting.settled(), 0);
      const b = await s.add('b');
      b.handle('/echo', echo);
      await s.advance(320);
      await waiting.all;
      assert.deepEqual(codes(waiting.outcomes), { ok: 1 });
      for (const o of waiting.outcomes) if (o.ok) o.stream.close();
    });

    it('withConnection takes waitForReady too', async () => {
      s = await swarm();
      const a = await s.add('a', { dialBackoff: { strategy: 'fixed', delayMs: 500 } });
      s.network.node('b');
      a.addPeer('b', [s.network.address('b')]);
      await assert.rejects(s.until(a.withConnection('b', () => undefined)), (e: PeerlineError) => e.code === 'CONNECT_REFUSED');
      const leased = a.withConnection('b', () => 'done', { waitForReady: true, timeoutMs: 2_000 });
      await s.add('b');
      assert.equal(await s.until(leased), 'done');
    });
  });

  // --------------------------------------------------- per-protocol limits

  describe('handle() options: per-protocol limits on inbound streams', () => {
    async function pair(options: Parameters<ReturnType<Swarm['engine']>['handle']>[2]): Promise<{ held: PeerStream[] }> {
      s = await swarm();
      const a = await s.add('a');
      const b = await s.add('b');
      const held = holder();
      b.handle('/h', held.handler, options);
      b.handle('/free', holder().handler);
      a.addPeer('b', [s.network.address('b')]);
      return { held: held.streams };
    }

    it('maxStreamsPerConnection: one more is NACKed; the opener gets STREAM_LIMIT naming the limit; a closed one frees its place', async () => {
      await pair({ maxStreamsPerConnection: 2 });
      const a = s.engine('a');
      const t = track([a.openStream('b', '/h'), a.openStream('b', '/h'), a.openStream('b', '/h'), a.openStream('b', '/free')]);
      await s.advance(20);
      await t.all;
      assert.deepEqual(codes(t.outcomes), { ok: 3, STREAM_LIMIT: 1 });
      const limited = t.outcomes.find((o) => !o.ok);
      assert.ok(limited !== undefined && !limited.ok);
      assert.ok(limited.error instanceof PeerlineError);
      assert.equal(limited.error.name, 'StreamLimitError');
      assert.match(limited.error.message, /stream limit: 2 streams of \/h are open on this connection/);
      assert.equal(s.engine('b').metrics().streams.inboundLimited, 1);
      assert.equal(a.snapshot().peers[0]?.state, 'ready', 'a refused stream leaves the connection up');
      const first = t.outcomes.find((o) => o.ok);
      if (first?.ok) first.stream.close();
      await s.advance(5);
      const again = track([a.openStream('b', '/h')]);
      await s.advance(10);
      await again.all;
      assert.deepEqual(codes(again.outcomes), { ok: 1 });
      for (const o of [...t.outcomes, ...again.outcomes]) if (o.ok) o.stream.abort();
    });

    it('inboundRate: a burst of `opens`, then one more per window share', async () => {
      await pair({ inboundRate: { opens: 2, windowMs: 1_000 } });
      const a = s.engine('a');
      const burst = track([a.openStream('b', '/h'), a.openStream('b', '/h'), a.openStream('b', '/h')]);
      await s.advance(20);
      await burst.all;
      assert.deepEqual(codes(burst.outcomes), { ok: 2, STREAM_LIMIT: 1 });
      await s.advance(500);
      const later = track([a.openStream('b', '/h'), a.openStream('b', '/h')]);
      await s.advance(20);
      await later.all;
      assert.deepEqual(codes(later.outcomes), { ok: 1, STREAM_LIMIT: 1 }, 'half a window gives one token back');
      for (const o of [...burst.outcomes, ...later.outcomes]) if (o.ok) o.stream.abort();
    });

    it('maxConcurrentHandlers counts handlers over every connection; a finished handler frees its place', async () => {
      s = await swarm();
      const a = await s.add('a');
      const c = await s.add('c');
      const b = await s.add('b');
      const releases: Array<() => void> = [];
      b.handle(
        '/busy',
        (stream) =>
          new Promise<void>((resolve) =>
            releases.push(() => {
              stream.close();
              resolve();
            }),
          ),
        { maxConcurrentHandlers: 1 },
      );
      a.addPeer('b', [s.network.address('b')]);
      c.addPeer('b', [s.network.address('b')]);
      const one = track([a.openStream('b', '/busy')]);
      await s.advance(20);
      const two = track([c.openStream('b', '/busy')]);
      await s.advance(20);
      await Promise.all([one.all, two.all]);
      assert.deepEqual(codes([...one.outcomes, ...two.outcomes]), { ok: 1, STREAM_LIMIT: 1 });
      releases.shift()?.();
      await s.advance(5);
      const three = track([c.openStream('b', '/busy')]);
      await s.advance(20);
      await three.all;
      assert.deepEqual(codes(three.outcomes), { ok: 1 });
      for (const release of releases) release();
      for (const o of [...one.outcomes, ...three.outcomes]) if (o.ok) o.stream.close();
    });

    it('bad options are refused with an error naming the field', async () => {
      s = await swarm();
      const a = await s.add('a');
      assert.throws(() => a.handle('/x', () => {}, { maxStreamsPerConnection: 0 }), /options\.maxStreamsPerConnection/);
      assert.throws(() => a.handle('/x', () => {}, { maxConcurrentHandlers: 1.5 }), /options\.maxConcurrentHandlers/);
      assert.throws(() => a.handle('/x', () => {}, { inboundRate: { opens: 1, windowMs: 0 } }), /options\.inboundRate\.windowMs/);
      assert.throws(() => a.handle('/x', () => {}, null as never), TypeError);
      // Nothing was registered by the failed calls.
      assert.doesNotThrow(() => a.handle('/x', () => {}, { maxStreamsPerConnection: 1 }));
    });
  });

  // ------------------------------------------------------ state observables

  describe('state$ and peers$', () => {
    it('state$ replays the current state to a late subscriber, follows the machine, and completes when it ends', async () => {
      s = await swarm();
      const a = await s.add('a');
      await s.add('b');
      a.addPeer('b', [s.network.address('b')]);
      const early: string[] = [];
      let earlyDone = false;
      a.state$('b').subscribe({ next: (x) => early.push(x), complete: () => (earlyDone = true) });
      assert.deepEqual(early, [], 'no machine yet: nothing to replay');
      await s.until(a.withConnection('b', () => undefined));
      assert.deepEqual(early, ['connecting', 'handshaking', 'ready']);
      const late: ConnectionState[] = [];
      let lateDone = false;
      a.state$('b').subscribe({ next: (x) => late.push(x), complete: () => (lateDone = true) });
      assert.deepEqual(late, ['ready'], 'the current state at once');
      await s.until(a.drain('b'));
      assert.deepEqual(early, ['connecting', 'handshaking', 'ready', 'draining', 'closed']);
      assert.deepEqual(late, ['ready', 'draining', 'closed']);
      assert.ok(earlyDone && lateDone, 'both completed when the machine ended');
    });

    it('peers$ gives the current map at once, one map per turn of changes, and completes when the engine stops', async () => {
      s = await swarm();
      const a = await hub(s);
      await s.until(a.withConnection('b', () => undefined));
      const maps: Array<Record<string, string>> = [];
      let done = false;
      a.peers$.subscribe({ next: (m) => maps.push(Object.fromEntries(m)), complete: () => (done = true) });
      assert.deepEqual(maps, [{ b: 'ready' }]);
      await s.until(a.withConnection('c', () => undefined));
      assert.deepEqual(maps.at(-1), { b: 'ready', c: 'ready' });
      assert.ok(maps.length <= 4, `${maps.length} maps for three transitions`);
      let stateDone = false;
      a.state$('c').subscribe({ complete: () => (stateDone = true) });
      const stopping = a.stop();
      await s.until(stopping);
      assert.ok(done, 'peers$ completed at stop');
      assert.ok(stateDone, 'state$ completed at stop');
      let after = false;
      a.state$('b').subscribe({ complete: () => (after = true) });
      assert.ok(after, 'subscribing after stop completes at once');
    });

    it('state$ for a pinned peer that gives up ends with gaveUp', async () => {
      s = await swarm();
      const a = await s.add('a', { pinnedRetry: { strategy: 'fixed', delayMs: 100, maxAttempts: 2 } });
      s.network.node('b');
      const seen: string[] = [];
      let done = false;
      a.state$('b').subscribe({ next: (x) => seen.push(x), complete: () => (done = true) });
      a.addPeer('b', [s.network.address('b')], { pinned: true });
      await s.advance(500);
      assert.deepEqual(seen, ['connecting', 'errored', 'connecting', 'errored', 'gaveUp']);
      assert.ok(done);
    });
  });

  // ------------------------------------------------------- network change

  describe('networkChanged()', () => {
    it('probes every ready peer at once: a dead one is errored within the heartbeat timeout, a live one stays ready', async () => {
      s = await swarm();
      const a = await s.add('a', { heartbeat: { intervalMs: 30_000, timeoutMs: 500, misses: 3 } });
      await s.add('b');
      await s.add('c');
      s.network.node('d');
      a.addPeer('b', [s.network.address('b')]);
      a.addPeer('c', [s.network.address('c')]);
      a.addPeer('d', [s.network.address('d')]);
      await s.until(a.withConnection('b', () => undefined));
      await s.until(a.withConnection('c', () => undefined));
      await s.advance(100);
      s.network.partition(['a'], ['b']);
      const changedAt = s.clock.now();
      const caught = track([a.openStream('b', '/x')]);
      assert.equal(a.networkChanged(), 2, 'the two ready peers');
      await s.advance(499);
      assert.equal(a.snapshot().peers.find((p) => p.peerId === 'b')?.state, 'ready');
      await s.advance(1);
      const errored = s.transitions.find((t) => t.peerId === 'b' && t.to === 'errored');
      assert.equal(errored?.at, changedAt + 500, 'dead at the heartbeat timeout, not after 3 x 30 s');
      assert.equal(a.snapshot().peers.find((p) => p.peerId === 'c')?.state, 'ready');
      assert.equal(a.metrics().probes, 2);
      await caught.all;
      assert.deepEqual(codes(caught.outcomes), { HEARTBEAT_TIMEOUT: 1 });
      s.network.heal();
    });
  });
});
