import { strict as assert } from 'node:assert';
import { holder, swarm, track, codes, type Swarm } from '../fixtures/swarm.js';
import { escapedErrors } from '../fixtures/hooks.js';
import type { Engine, EngineInit } from '../../runtime/index.js';

/**
 * Named races: two things that can happen at the same moment, made to happen
 * at the same moment on the virtual clock. Each test asserts the states the
 * machines went through, every answer and its code, and the counts left on
 * both sides; nothing may escape to the process and nothing may leak.
 */
const LATENCY = 2;
const HEARTBEAT = { intervalMs: 400, timeoutMs: 150, misses: 2 };
const OPTIONS: EngineInit = { heartbeat: HEARTBEAT, streamOpenTimeoutMs: 5_000, idleTimeoutMs: 60_000, drainDeadlineMs: 1_000 };

async function pair(options: EngineInit = OPTIONS): Promise<{ s: Swarm; a: Engine; b: Engine; held: ReturnType<typeof holder> }> {
  const s = await swarm({ latencyMs: LATENCY, defaults: options });
  const a = await s.add('a');
  const b = await s.add('b');
  const held = holder();
  b.handle('/hold', held.handler);
  a.addPeer('b', [s.network.address('b')]);
  b.addPeer('a', [s.network.address('a')]);
  return { s, a, b, held };
}

/** Connects a to b and returns when both are ready. */
async function connect(s: Swarm, a: Engine): Promise<void> {
  await s.until(a.withConnection('b', () => undefined));
  assert.equal(a.snapshot().peers[0]?.state, 'ready');
}

function peer(engine: Engine, peerId: string): ReturnType<Engine['snapshot']>['peers'][number] | undefined {
  return engine.snapshot().peers.find((p) => p.peerId === peerId);
}

describe('model: named races', () => {
  let s: Swarm;

  afterEach(async () => {
    await s.stopAll();
    assert.equal(s.clock.pending(), 0, 'timers left after every engine stopped');
    assert.equal(s.network.connectionCount(), 0, 'connections left after every engine stopped');
    for (const e of s.engines.values()) assert.equal(e.metrics().internalErrors, 0, s.warnings.join('\n'));
    assert.deepEqual(escapedErrors(), []);
  });

  it('connection loss during stream open: the open is answered CONNECTION_LOST once, both sides end clean', async () => {
    const p = await pair();
    s = p.s;
    await connect(s, p.a);
    s.network.ackFault('b', { delayMs: 50 });
    const t = track([p.a.openStream('b', '/hold')]);
    await s.advance(2 * LATENCY + 1);
    assert.equal(peer(p.a, 'b')?.opening, 1, 'the open waits for its ACK');
    assert.equal(t.settled(), 0);
    s.network.drop('a', 'b');
    await s.advance(1);
    await t.all;
    assert.deepEqual(codes(t.outcomes), { CONNECTION_LOST: 1 });
    await s.advance(100);
    assert.equal(t.settled(), 1, 'answered once');
    assert.deepEqual(s.states('a', 'b'), ['connecting', 'handshaking', 'ready', 'errored', 'closed']);
    assert.deepEqual(s.states('b', 'a'), ['handshaking', 'ready', 'errored', 'closed']);
    assert.deepEqual(p.a.snapshot().peers, []);
    assert.deepEqual(p.b.snapshot().peers, []);
    assert.equal(p.a.metrics().pendingRequests, 0);
    assert.equal(s.network.streamCount(), 0, 'the half-open stream is gone on both sides');
    s.network.ackFault('b', null);
  });

  it('drain during open: the open in flight completes, new requests are refused, then the peer closes', async () => {
    const p = await pair();
    s = p.s;
    await connect(s, p.a);
    s.network.ackFault('b', { delayMs: 30 });
    const t = track([p.a.openStream('b', '/hold')]);
    await s.advance(1);
    let drained = false;
    void p.a.drain('b').then(() => (drained = true));
    await s.advance(1);
    assert.equal(peer(p.a, 'b')?.state, 'draining');
    assert.equal(peer(p.a, 'b')?.opening, 1, 'the open in flight is kept');
    const refused = track([p.a.openStream('b', '/hold')]);
    await s.advance(40);
    await t.all;
    await refused.all;
    assert.deepEqual(codes(t.outcomes), { ok: 1 });
    assert.deepEqual(codes(refused.outcomes), { CONNECTION_DRAINING: 1 });
    assert.equal(peer(p.a, 'b')?.streams, 1);
    assert.equal(p.held.streams.length, 1, 'the remote handler got the stream');
    assert.equal(drained, false, 'a stream is still open');
    const first = t.outcomes[0]!;
    assert.ok(first.ok);
    first.stream.close();
    p.held.streams[0]!.close();
    await s.advance(20);
    assert.equal(drained, true);
    assert.deepEqual(s.states('a', 'b').slice(-3), ['ready', 'draining', 'closed']);
    assert.ok(!s.states('a', 'b').includes('errored'), 'a clean drain never passes through errored');
    assert.deepEqual(p.a.snapshot().peers, []);
    assert.equal(p.a.metrics().requests.total, 3);
    assert.equal(p.a.metrics().pendingRequests, 0);
    s.network.ackFault('b', null);
  });

  it('stop during dial: the waiting request is answered ENGINE_STOPPED at once and the dial leaves nothing behind', async () => {
    s = await swarm({ latencyMs: LATENCY, defaults: OPTIONS });
    const a = await s.add('a', { connectTimeoutMs: 10_000 });
    s.network.node('b');
    s.network.stallDials('b');
    a.addPeer('b', [s.network.address('b')]);
    const t = track([a.openStream('b', '/hold'), a.openStream('b', '/hold')]);
    await s.advance(5);
    assert.equal(peer(a, 'b')?.state, 'connecting');
    assert.equal(peer(a, 'b')?.queued, 2);
    assert.equal(a.metrics().dials.started, 1);
    const startedAt = s.clock.now();
    let stoppedAt: number | undefined;
    void a.stop().then(() => (stoppedAt = s.clock.now()));
    await s.advance(0);
    await t.all;
    assert.deepEqual(codes(t.outcomes), { ENGINE_STOPPED: 2 });
    await s.advance(5);
    assert.equal(stoppedAt, startedAt, 'a peer that is only dialling closes at once');
    assert.deepEqual(s.states('a', 'b'), ['connecting', 'closed']);
    assert.equal(a.status, 'stopped');
    assert.equal(a.metrics().dials.started, 1);
    assert.equal(a.metrics().pendingRequests, 0);
    assert.equal(s.clock.pending(), 0, 'no connect timer, no retry timer');
  });

  it('simultaneous open: both sides dial at once and end with one connection chosen the same way', async () => {
    const p = await pair();
    s = p.s;
    p.a.handle('/hold', holder().handler);
    const t = track([p.a.openStream('b', '/hold'), p.b.openStream('a', '/hold'), p.a.openStream('b', '/hold'), p.b.openStream('a', '/hold')]);
    await s.advance(50);
    await t.all;
    assert.deepEqual(codes(t.outcomes), { ok: 4 });
    assert.equal(s.network.connectionCount(), 1, 'one connection survives');
    assert.equal(peer(p.a, 'b')?.state, 'ready');
    assert.equal(peer(p.b, 'a')?.state, 'ready');
    // The connection dialled by the lower id ('a') wins on both sides.
    assert.equal(peer(p.a, 'b')?.direction, 'outbound');
    assert.equal(peer(p.b, 'a')?.direction, 'inbound');
    assert.equal(peer(p.a, 'b')?.streams, 4);
    assert.equal(peer(p.b, 'a')?.streams, 4, 'both sides count the same streams');
    assert.equal(p.a.metrics().dials.started, 1);
    assert.equal(p.b.metrics().dials.started, 1);
    for (const o of t.outcomes) if (o.ok) o.stream.close();
    await s.advance(20);
    assert.equal(peer(p.a, 'b')?.streams, 0);
    assert.equal(peer(p.b, 'a')?.streams, 0);
  });

  for (const order of ['just before', 'just after'] as const) {
    it(`heartbeat timeout as a stream completes (${order}): HEARTBEAT_TIMEOUT, one answer, counts never go wrong`, async () => {
      // Each run is the same up to the close; the first one finds the instant the heartbeat gives up.
      const run = async (closeAt: number | undefined): Promise<{ erroredAt: number; closedAt: number | undefined; closed: boolean; counts: number[] }> => {
        const p = await pair();
        s = p.s;
        const seen: Array<{ to: string; at: number; event: string }> = [];
        p.a.transitions$.subscribe((x) => void seen.push({ to: x.to, at: x.at, event: x.event }));
        await connect(s, p.a);
        const t = track([p.a.openStream('b', '/hold')]);
        await s.advance(10);
        await t.all;
        const opened = t.outcomes[0]!;
        assert.ok(opened.ok);
        let closed = false;
        let closedAt: number | undefined;
        void opened.stream.closed.then(() => (closed = true));
        s.network.partition(['a'], ['b']);
        const now = s.clock.now();
        if (closeAt !== undefined) {
          const close = (): void => {
            closedAt = s.clock.now();
            opened.stream.close();
          };
          // 'just before': set now, it fires ahead of the heartbeat timer due at the same instant.
          // 'just after': set when the last ping goes out, it fires right after that ping's timeout.
          if (order === 'just before') s.clock.setTimeout(close, closeAt - now);
          else s.clock.setTimeout(() => s.clock.setTimeout(close, HEARTBEAT.timeoutMs), closeAt - HEARTBEAT.timeoutMs - now);
        }
        const counts: number[] = [];
        for (let i = 0; i < 1_000 && peer(p.a, 'b')?.state === 'ready'; i++) {
          await s.clock.next();
          counts.push(peer(p.a, 'b')?.streams ?? -1);
        }
        const errored = seen.find((x) => x.to === 'errored');
        assert.ok(errored !== undefined, 'never errored');
        assert.equal(errored.event, 'HEARTBEAT.FAILED', `errored by ${errored.event}`);
        await s.advance(50);
        assert.deepEqual(codes(t.outcomes), { ok: 1 }, 'the delivered stream keeps its one answer');
        assert.deepEqual(seen.map((x) => x.to).slice(-3), ['ready', 'errored', 'closed']);
        assert.equal(peer(p.a, 'b'), undefined);
        assert.equal(p.a.metrics().pendingRequests, 0);
        s.network.heal();
        return { erroredAt: errored.at, closedAt, closed, counts };
      };
      const dry = await run(undefined);
      await s.stopAll();
      const wet = await run(dry.erroredAt);
      assert.equal(wet.erroredAt, dry.erroredAt, 'closing the stream at that instant does not change when the heartbeat fails');
      assert.equal(wet.closedAt, dry.erroredAt, 'the close ran at the instant the heartbeat gave up');
      assert.ok(wet.closed, 'the stream closed');
      assert.ok(wet.counts.every((n) => n === -1 || n === 0 || n === 1), `stream counts seen: ${wet.counts.join(' ')}`);
    });
  }

  for (const order of ['just before', 'just after'] as const) {
    it(`abort as the ACK arrives (${order}): answered once, and no stream is left open on either side`, async () => {
      const p = await pair();
      s = p.s;
      await connect(s, p.a);
      const controller = new AbortController();
      const openedAt = s.clock.now();
      // Header out, ACK back: the ACK arrives two latencies after the open.
      if (order === 'just before') s.clock.setTimeout(() => controller.abort(), 2 * LATENCY);
      const t = track([p.a.openStream('b', '/hold', { signal: controller.signal })]);
      // After the header arrives (the remote ACKs at once), an abort due with the ACK fires right after it: in the
      // clock's next round at that instant, once the ACK's round and its promise callbacks (the delivery) are done.
      if (order === 'just after') {
        s.clock.setTimeout(() => s.clock.setTimeout(() => s.clock.setTimeout(() => controller.abort(), 0), LATENCY), LATENCY);
      }
      await s.advance(2 * LATENCY);
      assert.equal(s.clock.now(), openedAt + 2 * LATENCY);
      await t.all;
      assert.equal(t.settled(), 1);
      const outcome = t.outcomes[0]!;
      if (order === 'just before') assert.equal(outcome.ok ? 'ok' : outcome.error.code, 'ABORTED');
      else assert.ok(outcome.ok, 'the ACK came first: the stream was delivered, then aborted by the signal');
      await s.advance(20);
      assert.equal(t.settled(), 1, 'still answered once');
      assert.equal(peer(p.a, 'b')?.streams, 0);
      assert.equal(peer(p.a, 'b')?.opening, 0);
      assert.equal(peer(p.b, 'a')?.streams, 0, 'the remote closed its end too');
      assert.equal(s.network.streamCount(), 0);
      assert.equal(p.a.metrics().requests.aborted, order === 'just before' ? 1 : 0);
      assert.equal(peer(p.a, 'b')?.state, 'ready', 'the connection is not harmed');
    });
  }

  it('retry backoff firing after stop(): a stopped engine never dials again and leaves no timer', async () => {
    s = await swarm({ latencyMs: LATENCY, defaults: OPTIONS });
    const a = await s.add('a', { pinnedRetry: { strategy: 'fixed', delayMs: 500 } });
    await s.add('b');
    s.network.refuseDials('b');
    a.addPeer('b', [s.network.address('b')], { pinned: true });
    await s.advance(2 * LATENCY + 100);
    assert.equal(peer(a, 'b')?.state, 'errored', 'refused, waiting for the backoff');
    const dials = a.metrics().dials.started;
    assert.equal(dials, 1);
    const stopped = a.stop();
    await s.advance(0);
    await stopped;
    assert.equal(a.status, 'stopped');
    s.network.refuseDials('b', false);
    await s.advance(2_000);
    assert.equal(a.metrics().dials.started, dials, 'no dial after stop()');
    assert.deepEqual(a.snapshot().peers, []);
    assert.deepEqual(s.states('a', 'b'), ['connecting', 'errored', 'closed']);
    const b = s.engine('b');
    assert.deepEqual(b.snapshot().peers, [], 'the remote never heard from us again');
  });
});
