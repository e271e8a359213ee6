import { strict as assert } from 'node:assert';
import sinon from 'sinon';
import { backoffDelay, ConnectionErrorCode, PeerlineError, seededRandom, type Engine, type RetryPolicy } from '../../runtime/index.js';
import type { InspectionEvent } from 'xstate';
import type { CloseInfo, Connection } from '../../adapters/adapter.js';
import { codes, echo, holder, swarm, track, type Swarm } from '../fixtures/swarm.js';

/** Records every close a node's connections see (the wire code the remote chose). */
function recordCloses(s: Swarm, peerId: string): CloseInfo[] {
  const closes: CloseInfo[] = [];
  const adapter = s.network.node(peerId);
  const listen = adapter.listen.bind(adapter);
  sinon.stub(adapter, 'listen').callsFake((onConnection: (c: Connection) => void) =>
    listen((connection) => {
      const setHandlers = connection.setHandlers.bind(connection);
      connection.setHandlers = (handlers) =>
        setHandlers({
          ...handlers,
          onClose: (close) => {
            closes.push(close);
            handlers.onClose(close);
          },
        });
      onConnection(connection);
    }),
  );
  return closes;
}

describe('engine over the memory network', () => {
  let s: Swarm;

  afterEach(async () => {
    sinon.restore();
    await s.stopAll();
    assert.equal(s.clock.pending(), 0, 'timers left after every engine stopped');
    assert.equal(s.network.connectionCount(), 0, 'connections left after every engine stopped');
  });

  it('1. ten requests to an unreachable peer share one dial and all fail CONNECT_TIMEOUT at the timeout', async () => {
    s = await swarm();
    const a = await s.add('a', { connectTimeoutMs: 1000 });
    s.network.node('z');
    s.network.stallDials('z');
    a.addPeer('z', [s.network.address('z')]);
    const t = track(Array.from({ length: 10 }, () => a.openStream('z', '/echo')));
    await s.advance(999);
    assert.equal(t.settled(), 0, 'answered before the connect timeout');
    assert.equal(a.metrics().dials.started, 1);
    await s.advance(1);
    await t.all;
    assert.deepEqual(codes(t.outcomes), { CONNECT_TIMEOUT: 10 });
    assert.ok(t.outcomes.every((o) => !o.ok && o.error instanceof PeerlineError && o.error.peerId === 'z'));
    // The default retry policy is `none` and the default dial backoff holds the
    // failure for about a second (1 s +-20 %): a fresh request fails fast, without a dial.
    assert.deepEqual(s.states('a', 'z'), ['connecting', 'errored']);
    const fast = track([a.openStream('z', '/echo')]);
    await s.advance(0);
    await fast.all;
    assert.deepEqual(codes(fast.outcomes), { CONNECT_TIMEOUT: 1 });
    assert.equal(a.metrics().dials.started, 1);
    await s.advance(1200);
    assert.deepEqual(a.snapshot().peers, [], 'registry entry left behind');
    assert.deepEqual(s.states('a', 'z'), ['connecting', 'errored', 'closed']);
    // After the backoff the next request dials again at once.
    const next = track([a.openStream('z', '/echo')]);
    await s.advance(1);
    assert.equal(a.metrics().dials.started, 2);
    await s.advance(1000);
    await next.all;
    assert.deepEqual(codes(next.outcomes), { CONNECT_TIMEOUT: 1 });
    assert.equal(a.metrics().pendingRequests, 0);
  });

  it('2. a hundred concurrent requests to one peer make one connection and a hundred streams', async () => {
    s = await swarm();
    const a = await s.add('a');
    const b = await s.add('b');
    const held = holder();
    b.handle('/hold', held.handler);
    a.addPeer('b', [s.network.address('b')]);
    const t = track(Array.from({ length: 100 }, () => a.openStream('b', '/hold')));
    await s.advance(20);
    await t.all;
    assert.deepEqual(codes(t.outcomes), { ok: 100 });
    assert.equal(a.metrics().dials.started, 1);
    assert.equal(s.network.connectionCount(), 1);
    assert.equal(held.streams.length, 100);
    assert.equal(a.snapshot().peers[0]?.streams, 100);
    assert.deepEqual(s.states('a', 'b'), ['connecting', 'handshaking', 'ready']);
    for (const o of t.outcomes) if (o.ok) o.stream.close();
    await s.advance(5);
    assert.equal(a.snapshot().peers[0]?.streams, 0);
  });

  it('3. a dropped connection answers 5 opening and 3 queued requests once each with CONNECTION_LOST', async () => {
    s = await swarm();
    const a = await s.add('a', { maxStreamsPerConnection: 5, streamOpenTimeoutMs: 60_000 });
    const b = await s.add('b');
    b.handle('/hold', holder().handler);
    a.addPeer('b', [s.network.address('b')]);
    await s.until(a.withConnection('b', () => undefined));
    s.network.ackFault('b', { lose: true });
    const t = track(Array.from({ length: 8 }, () => a.openStream('b', '/hold')));
    await s.advance(5);
    const peer = a.snapshot().peers[0];
    assert.equal(peer?.opening, 5);
    assert.equal(peer?.queued, 3);
    assert.equal(t.settled(), 0);
    s.network.drop('a', 'b');
    await s.advance(1);
    await t.all;
    assert.deepEqual(codes(t.outcomes), { CONNECTION_LOST: 8 });
    assert.equal(a.metrics().requests.failed, 8);
    assert.deepEqual(s.states('a', 'b').slice(-2), ['errored', 'closed']);
    assert.equal(a.metrics().pendingRequests, 0);
  });

  it('4. a partitioned ready peer is errored with HEARTBEAT_TIMEOUT within interval x misses + timeout', async () => {
    s = await swarm();
    const heartbeat = { intervalMs: 1000, timeoutMs: 300, misses: 3 };
    const a = await s.add('a', { heartbeat, streamOpenTimeoutMs: 60_000 });
    const b = await s.add('b', { heartbeat });
    b.handle('/hold', holder().handler);
    a.addPeer('b', [s.network.address('b')]);
    await s.until(a.withConnection('b', () => undefined));
    await s.advance(2500);
    const partitionedAt = s.clock.now();
    s.network.partition(['a'], ['b']);
    // A request caught in flight is answered with the cause.
    const t = track([a.openStream('b', '/hold')]);
    await s.advance(heartbeat.intervalMs * heartbeat.misses + heartbeat.timeoutMs);
    await t.all;
    assert.deepEqual(codes(t.outcomes), { HEARTBEAT_TIMEOUT: 1 });
    const errored = s.transitions.find((x) => x.peerId === 'b' && x.to === 'errored');
    assert.ok(errored !== undefined, 'never errored');
    assert.ok(errored.at > partitionedAt);
    assert.ok(errored.at - partitionedAt <= heartbeat.intervalMs * heartbeat.misses + heartbeat.timeoutMs);
    assert.equal(errored.event, 'HEARTBEAT.FAILED', `errored by ${errored.event}`);
    s.network.heal();
  });

  it('5. drain lets streams in flight finish, refuses new ones, and force closes the rest at the deadline', async () => {
    s = await swarm();
    const closes = recordCloses(s, 'b');
    const a = await s.add('a', { drainDeadlineMs: 2000 });
    const b = await s.add('b');
    const held = holder();
    b.handle('/hold', held.handler);
    a.addPeer('b', [s.network.address('b')]);
    const t = track([a.openStream('b', '/hold'), a.openStream('b', '/hold'), a.openStream('b', '/hold')]);
    await s.advance(10);
    await t.all;
    assert.deepEqual(codes(t.outcomes), { ok: 3 });
    const drained = a.drain('b');
    let drainDone = false;
    void drained.then(() => (drainDone = true));
    await s.advance(1);
    assert.equal(a.snapshot().peers[0]?.state, 'draining');
    const refused = track([a.openStream('b', '/hold')]);
    await s.advance(1);
    await refused.all;
    assert.deepEqual(codes(refused.outcomes), { CONNECTION_DRAINING: 1 });
    // One stream finishes within the deadline.
    const first = t.outcomes[0];
    assert.ok(first?.ok);
    first.stream.close();
    held.streams[0]?.close();
    await s.advance(10);
    assert.equal(a.snapshot().peers[0]?.streams, 2);
    assert.equal(drainDone, false);
    await s.advance(2000);
    await drained;
    assert.deepEqual(s.states('a', 'b').slice(-3), ['draining', 'forceClosed', 'closed']);
    assert.ok(closes.some((c) => c.code === ConnectionErrorCode.ForceClose && !c.local), 'remote never saw ForceClose');
    // The two streams still open at the deadline were ended on both sides.
    let ended = false;
    void Promise.all([...held.streams.slice(1), ...t.outcomes.slice(1).map((o) => (o.ok ? o.stream : held.streams[0]!))].map((x) => x.closed)).then(
      () => (ended = true),
    );
    await s.advance(5);
    assert.ok(ended, 'streams open at the deadline were not ended');
  });

  it('6. an idle connection closes after the idle timeout; a leased one stays', async () => {
    s = await swarm();
    const a = await s.add('a', { idleTimeoutMs: 1000 });
    const b = await s.add('b');
    b.handle('/echo', echo);
    a.addPeer('b', [s.network.address('b')]);
    let stateDuringLease: string | undefined;
    await s.until(
      a.withConnection('b', async () => {
        // Hold the lease for five idle timeouts of virtual time.
        await new Promise<void>((resolve) => s.clock.setTimeout(resolve, 5000));
        stateDuringLease = a.snapshot().peers[0]?.state;
      }),
    );
    assert.equal(stateDuringLease, 'ready', 'leased connection did not stay');
    assert.equal(a.snapshot().peers[0]?.state, 'ready');
    await s.advance(999);
    assert.equal(a.snapshot().peers[0]?.state, 'ready');
    await s.advance(2);
    assert.deepEqual(a.snapshot().peers, []);
    assert.deepEqual(s.states('a', 'b'), ['connecting', 'handshaking', 'ready', 'draining', 'closed']);
    assert.ok(!s.states('a', 'b').includes('errored'), 'a clean close went through errored');
  });

  it('7. retry delays follow the policy with the injected random source; max attempts end in closed', async () => {
    s = await swarm();
    const policy: RetryPolicy = { strategy: 'exponential', initialDelayMs: 1000, multiplier: 2, jitter: 0.2, maxAttempts: 4 };
    // No dial backoff: the machine closes right after the last failure.
    const a = await s.add('a', { retry: policy, random: seededRandom(7), dialBackoff: { strategy: 'none' } });
    s.network.node('z');
    s.network.refuseDials('z');
    a.addPeer('z', [s.network.address('z')]);
    const t = track([a.openStream('z', '/x')]);
    for (let i = 0; i < 20; i++) await s.advance(1000);
    await t.all;
    assert.deepEqual(codes(t.outcomes), { CONNECT_REFUSED: 1 });
    const seq = s.transitions.filter((x) => x.peerId === 'z');
    assert.deepEqual(
      seq.map((x) => x.to),
      ['connecting', 'errored', 'connecting', 'errored', 'connecting', 'errored', 'connecting', 'errored', 'closed'],
    );
    const expected = seededRandom(7);
    const waits = [1, 2, 3].map((n) => backoffDelay(policy, n, expected));
    const erroredAt = seq.filter((x) => x.to === 'errored').map((x) => x.at);
    const reconnectAt = seq.filter((x, i) => x.to === 'connecting' && i > 0).map((x) => x.at);
    assert.deepEqual(
      reconnectAt.map((at, i) => at - erroredAt[i]!),
      waits,
    );
    // No sleep after the last failure.
    assert.equal(seq.at(-1)!.at, erroredAt.at(-1));
    assert.equal(a.metrics().retries, 3);
    assert.deepEqual(a.snapshot().peers, []);
  });

  it('7b. a pinned peer keeps trying until it connects', async () => {
    s = await swarm();
    const a = await s.add('a', { pinnedRetry: { strategy: 'fixed', delayMs: 500 } });
    const c = await s.add('c');
    s.network.refuseDials('c');
    a.addPeer('c', [s.network.address('c')], { pinned: true });
    await s.advance(10_000);
    const failures = s.transitions.filter((x) => x.peerId === 'c' && x.to === 'errored').length;
    assert.ok(failures >= 10, `only ${failures} attempts`);
    assert.equal(a.snapshot().peers[0]?.state, 'errored');
    s.network.refuseDials('c', false);
    await s.advance(600);
    assert.equal(a.snapshot().peers[0]?.state, 'ready');
    assert.equal(c.snapshot().peers[0]?.state, 'ready');
    assert.equal(a.snapshot().peers[0]?.attempts, 0);
  });

  it('8. a simultaneous dial from both sides ends with one connection and no lost request', async () => {
    s = await swarm();
    const a = await s.add('a');
    const b = await s.add('b');
    a.handle('/echo', echo);
    b.handle('/echo', echo);
    a.addPeer('b', [s.network.address('b')]);
    b.addPeer('a', [s.network.address('a')]);
    const t = track([
      ...Array.from({ length: 5 }, () => a.openStream('b', '/echo')),
      ...Array.from({ length: 5 }, () => b.openStream('a', '/echo')),
    ]);
    await s.advance(50);
    await t.all;
    assert.deepEqual(codes(t.outcomes), { ok: 10 });
    assert.equal(s.network.connectionCount(), 1);
    assert.equal(a.snapshot().peers.length, 1);
    assert.equal(b.snapshot().peers.length, 1);
    assert.equal(a.snapshot().peers[0]?.state, 'ready');
    assert.equal(b.snapshot().peers[0]?.state, 'ready');
    // The connection dialled by the lower id ('a') won on both sides.
    assert.equal(a.snapshot().peers[0]?.direction, 'outbound');
    assert.equal(b.snapshot().peers[0]?.direction, 'inbound');
    for (const o of t.outcomes) if (o.ok) o.stream.close();
  });

  it('9. stop() with peers in every state returns within the drain deadline and answers ENGINE_STOPPED', async () => {
    s = await swarm();
    const a = await s.add('a', {
      drainDeadlineMs: 3000,
      forceCloseGraceMs: 500,
      streamOpenTimeoutMs: 60_000,
      connectTimeoutMs: 60_000,
      handshakeTimeoutMs: 60_000,
      pinnedRetry: { strategy: 'fixed', delayMs: 60_000 },
    });
    const ready = await s.add('ready');
    const shaking = await s.add('shaking');
    const draining = await s.add('draining');
    await s.add('refusing');
    s.network.node('stalled');
    s.network.stallDials('stalled');
    s.network.stallHandshake('shaking');
    s.network.refuseDials('refusing');
    const heldReady = holder();
    const heldDraining = holder();
    ready.handle('/hold', heldReady.handler);
    draining.handle('/hold', heldDraining.handler);
    for (const p of ['ready', 'draining', 'refusing', 'stalled']) a.addPeer(p, [s.network.address(p)]);
    a.addPeer('refusing', [s.network.address('refusing')], { pinned: true });
    // A dialler with the lower id ('a') is ready once its hello is out: the
    // peer left handshaking is one that dialled `a` and whose hello never arrives.
    shaking.addPeer('a', [s.network.address('a')]);
    shaking.openStream('a', '/x').catch(() => {});
    await s.advance(5);
    const streams = track([a.openStream('ready', '/hold'), a.openStream('draining', '/hold')]);
    const waiting = track([a.openStream('stalled', '/x'), a.openStream('shaking', '/x'), a.openStream('stalled', '/x')]);
    await s.advance(20);
    await streams.all;
    void a.drain('draining');
    s.network.ackFault('ready', { lose: true });
    const opening = track([a.openStream('ready', '/hold')]);
    await s.advance(5);
    const states = Object.fromEntries(a.snapshot().peers.map((p) => [p.peerId, p.state]));
    assert.deepEqual(states, {
      ready: 'ready',
      shaking: 'handshaking',
      draining: 'draining',
      refusing: 'errored',
      stalled: 'connecting',
    });
    const startedAt = s.clock.now();
    let stoppedAt: number | undefined;
    const stopped = a.stop().then(() => (stoppedAt = s.clock.now()));
    for (let i = 0; i < 100 && stoppedAt === undefined; i++) await s.advance(100);
    await stopped;
    assert.ok(stoppedAt! - startedAt <= 3000 + 500 + 1, `stop took ${stoppedAt! - startedAt} ms`);
    await waiting.all;
    await opening.all;
    assert.deepEqual(codes(waiting.outcomes), { ENGINE_STOPPED: 3 });
    assert.deepEqual(codes(opening.outcomes), { ENGINE_STOPPED: 1 });
    assert.deepEqual(a.snapshot().peers, []);
    assert.equal(a.metrics().pendingRequests, 0);
    assert.equal(a.status, 'stopped');
    const late = track([a.openStream('ready', '/hold')]);
    await late.all;
    assert.deepEqual(codes(late.outcomes), { ENGINE_STOPPED: 1 });
    s.network.ackFault('ready', null);
  });

  it('10. an aborted request is answered ABORTED and its stream, if open, is closed', async () => {
    s = await swarm();
    const a = await s.add('a', { streamOpenTimeoutMs: 60_000 });
    const b = await s.add('b');
    const held = holder();
    b.handle('/hold', held.handler);
    a.addPeer('b', [s.network.address('b')]);
    // Aborted while queued for the connection.
    const queued = new AbortController();
    const q = track([a.openStream('b', '/hold', { signal: queued.signal })]);
    queued.abort();
    await s.advance(10);
    await q.all;
    assert.deepEqual(codes(q.outcomes), { ABORTED: 1 });
    // Aborted while the open waits for its ACK: the remote's stream is closed too.
    s.network.ackFault('b', { lose: true });
    const opening = new AbortController();
    const o = track([a.openStream('b', '/hold', { signal: opening.signal })]);
    await s.advance(10);
    assert.equal(a.snapshot().peers[0]?.opening, 1);
    opening.abort();
    await s.advance(10);
    await o.all;
    assert.deepEqual(codes(o.outcomes), { ABORTED: 1 });
    assert.equal(a.snapshot().peers[0]?.opening, 0);
    s.network.ackFault('b', null);
    // Aborted after the stream was delivered: the stream is aborted.
    const open = new AbortController();
    const d = track([a.openStream('b', '/hold', { signal: open.signal })]);
    await s.advance(10);
    await d.all;
    assert.ok(d.outcomes[0]?.ok);
    assert.equal(a.snapshot().peers[0]?.streams, 1);
    open.abort();
    await s.advance(10);
    assert.equal(a.snapshot().peers[0]?.streams, 0);
    assert.equal(s.network.streamCount(), 0);
    assert.equal(a.metrics().requests.aborted, 2);
  });

  it('10b. streams that close in one round give their credit back in one STREAM.CLOSED event per direction', async () => {
    s = await swarm();
    const closedEvents: Array<{ engine: string; inbound: boolean; count: number | undefined }> = [];
    const record = (engine: string) => (event: InspectionEvent): void => {
      if (event.type !== '@xstate.event') return;
      const e = event.event as { type: string; inbound?: boolean; count?: number };
      if (e.type === 'STREAM.CLOSED') closedEvents.push({ engine, inbound: e.inbound === true, count: e.count });
    };
    const a = await s.add('a', { inspect: record('a') });
    const b = await s.add('b', { inspect: record('b') });
    const held = holder();
    b.handle('/hold', held.handler);
    a.addPeer('b', [s.network.address('b')]);
    const t = track(Array.from({ length: 6 }, () => a.openStream('b', '/hold')));
    await s.until(t.all);
    assert.deepEqual(codes(t.outcomes), { ok: 6 });
    assert.equal(held.streams.length, 6);
    const streamsOf = (at: Engine, peerId: string): number | undefined => at.snapshot().peers.find((p) => p.peerId === peerId)?.streams;
    assert.equal(streamsOf(a, 'b'), 6);
    // The remote closes all six at once: they end on both sides in the same rounds.
    for (const stream of held.streams) stream.close();
    await s.advance(5);
    assert.equal(streamsOf(a, 'b'), 0, 'the hub got every credit back');
    assert.equal(streamsOf(b, 'a'), 0);
    assert.deepEqual(closedEvents, [
      { engine: 'b', inbound: true, count: 6 },
      { engine: 'a', inbound: false, count: 6 },
    ]);
    assert.equal(s.network.streamCount(), 0);
  });

  it('11a. past the per-peer queue limit requests fail QUEUE_FULL at once', async () => {
    s = await swarm();
    const a = await s.add('a', { maxQueuedPerPeer: 3, connectTimeoutMs: 1000 });
    s.network.node('z');
    s.network.stallDials('z');
    a.addPeer('z', [s.network.address('z')]);
    const t = track(Array.from({ length: 5 }, () => a.openStream('z', '/x')));
    await s.advance(1);
    assert.deepEqual(codes(t.outcomes), { QUEUE_FULL: 2 });
    assert.equal(a.snapshot().peers[0]?.queued, 3);
    await s.advance(1000);
    await t.all;
    assert.deepEqual(codes(t.outcomes), { QUEUE_FULL: 2, CONNECT_TIMEOUT: 3 });
  });

  it('11b. dials past the concurrency limit wait their turn', async () => {
    s = await swarm();
    const a = await s.add('a', { dialConcurrency: 2, connectTimeoutMs: 1000 });
    const peers = ['p1', 'p2', 'p3', 'p4', 'p5'];
    for (const p of peers) {
      s.network.node(p);
      s.network.stallDials(p);
      a.addPeer(p, [s.network.address(p)]);
    }
    const t = track(peers.map((p) => a.openStream(p, '/x')));
    await s.advance(1);
    assert.equal(a.metrics().dials.started, 2);
    assert.deepEqual(a.metrics().dialQueue, { active: 2, waiting: 3 });
    await s.advance(1000);
    assert.equal(a.metrics().dials.started, 4);
    await s.advance(1000);
    assert.equal(a.metrics().dials.started, 5);
    await s.advance(1000);
    await t.all;
    assert.deepEqual(codes(t.outcomes), { CONNECT_TIMEOUT: 5 });
    assert.deepEqual(a.metrics().dialQueue, { active: 0, waiting: 0 });
  });
});
