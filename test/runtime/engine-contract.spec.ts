/**
 * The engine's contract where it used to leak: answers that came
 * synchronously from `requests.next()`, a stop() that outlived its bound with
 * an adapter whose close never settles, an AbortSignal shared by many
 * requests, and stream data on a connection that lived through a partition.
 */
import { strict as assert } from 'node:assert';
import type { Adapter, Connection } from '../../protocol/adapter.js';
import { createEngine, type StreamAnswer } from '../../runtime/index.js';
import { abortCallbacks } from '../../runtime/abort.js';
import { codes, echo, holder, swarm, track, type Swarm } from '../fixtures/swarm.js';

/** A request pushed into `engine.requests`; records whether its reply came while `next()` was still running. */
function push(engine: ReturnType<typeof createEngine>, request: { peerId: string; protocol: string; signal?: AbortSignal; waitForReady?: boolean }): {
  readonly answers: StreamAnswer[];
  readonly synchronous: boolean[];
} {
  const answers: StreamAnswer[] = [];
  const synchronous: boolean[] = [];
  let inside = true;
  engine.requests.next({
    ...request,
    reply: (answer) => {
      answers.push(answer);
      synchronous.push(inside);
    },
  });
  inside = false;
  return { answers, synchronous };
}

function code(answer: StreamAnswer | undefined): string {
  if (answer === undefined) return 'none';
  return answer.ok ? 'ok' : answer.error.code;
}

describe('engine contract', () => {
  let s: Swarm;

  afterEach(async () => {
    await s.stopAll();
    assert.equal(s.clock.pending(), 0, 'timers left after every engine stopped');
    assert.equal(s.network.connectionCount(), 0, 'connections left after every engine stopped');
  });

  it('requests.next() never replies synchronously: invalid, aborted, QUEUE_FULL, backing off, CONNECTION_LIMIT, not started', async () => {
    s = await swarm();
    const idle = createEngine({ adapter: s.network.node('idle'), clock: s.clock });
    const a = await s.add('a', { maxQueuedPerPeer: 1, maxConnections: 2 });
    s.network.node('slow');
    s.network.stallDials('slow');
    s.network.node('down');
    a.addPeer('slow', [s.network.address('slow')]);
    a.addPeer('down', [s.network.address('down')]);
    const aborted = new AbortController();
    aborted.abort();
    // Fill what needs filling first: one request queued on a peer that is dialling, one failed dial.
    push(a, { peerId: 'slow', protocol: '/x' });
    const failed = push(a, { peerId: 'down', protocol: '/x' });
    await s.advance(5);
    assert.equal(code(failed.answers[0]), 'CONNECT_REFUSED');
    // Someone waits for `down`: it cannot be pruned, so the registry is full.
    const waiting = push(a, { peerId: 'down', protocol: '/x', waitForReady: true });
    const cases = {
      invalid: push(a, { peerId: '', protocol: '/x' }),
      aborted: push(a, { peerId: 'slow', protocol: '/x', signal: aborted.signal }),
      queueFull: push(a, { peerId: 'slow', protocol: '/x' }),
      backingOff: push(a, { peerId: 'down', protocol: '/x' }),
      connectionLimit: push(a, { peerId: 'third', protocol: '/x' }),
      notStarted: push(idle, { peerId: 'a', protocol: '/x' }),
    };
    for (const [name, c] of Object.entries(cases)) assert.deepEqual(c.answers, [], `${name} answered inside next()`);
    await s.advance(0);
    const got = Object.fromEntries(Object.entries(cases).map(([name, c]) => [name, [code(c.answers[0]), c.answers.length, c.synchronous[0]]]));
    assert.deepEqual(got, {
      invalid: ['INVALID_REQUEST', 1, false],
      aborted: ['ABORTED', 1, false],
      queueFull: ['QUEUE_FULL', 1, false],
      backingOff: ['CONNECT_REFUSED', 1, false],
      connectionLimit: ['CONNECTION_LIMIT', 1, false],
      notStarted: ['ENGINE_STOPPED', 1, false],
    });
    assert.deepEqual(waiting.answers, []);
    await idle.stop();
  });

  describe('stop() is bounded by drainDeadlineMs + forceCloseGraceMs, the adapter included', () => {
    /** The memory node's adapter, with a close() that never settles. */
    function stuck(s: Swarm, name: string): Adapter & { release(): Promise<void> } {
      const inner = s.network.node(name);
      return {
        localPeerId: inner.localPeerId,
        listen: (onConnection: (c: Connection) => void) => inner.listen(onConnection),
        dial: (peerId, address, options) => inner.dial(peerId, address, options),
        close: () => new Promise<void>(() => {}),
        release: () => inner.close(),
      };
    }

    for (const force of [false, true]) {
      it(`${force ? 'force' : 'graceful'}: a peer that does not finish draining and an adapter that never closes`, async () => {
        s = await swarm();
        const adapter = stuck(s, 'a');
        const a = createEngine({ adapter, clock: s.clock, drainDeadlineMs: 700, forceCloseGraceMs: 300, logger: { trace: () => {}, warn: () => {} } });
        await a.start();
        const b = await s.add('b');
        const held = holder();
        b.handle('/hold', held.handler);
        a.addPeer('b', [s.network.address('b')]);
        const open = track([a.openStream('b', '/hold')]);
        await s.advance(10);
        await open.all;
        assert.deepEqual(codes(open.outcomes), { ok: 1 });
        // The stream stays open: the drain runs to its deadline. Losing the force close's confirmation costs the grace.
        s.network.partition(['a'], ['b']);
        const started = s.clock.now();
        let stoppedAt: number | undefined;
        void a.stop({ force }).then(() => (stoppedAt = s.clock.now()));
        await s.advance(5_000);
        assert.notEqual(stoppedAt, undefined, 'stop() returned');
        const bound = (force ? 0 : 700) + 300 + 1;
        assert.ok(stoppedAt! - started <= bound, `stop took ${stoppedAt! - started} ms, bound ${bound}`);
        assert.equal(a.status, 'stopped');
        s.network.heal();
        await adapter.release();
        for (const o of open.outcomes) if (o.ok) o.stream.abort();
      });
    }
  });

  it('one AbortSignal over 1000 requests adds one listener and warns nothing; aborting answers each once', async () => {
    s = await swarm();
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      const a = await s.add('a', { maxQueuedPerPeer: 1_000 });
      const b = await s.add('b');
      b.handle('/echo', echo);
      s.network.node('slow');
      s.network.stallDials('slow');
      a.addPeer('slow', [s.network.address('slow')]);
      a.addPeer('b', [s.network.address('b')]);
      const controller = new AbortController();
      const signal = controller.signal;
      const waiting = track(Array.from({ length: 1_000 }, () => a.openStream('slow', '/echo', { signal })));
      const opened = track(Array.from({ length: 20 }, () => a.openStream('b', '/echo', { signal })));
      await s.advance(20);
      await opened.all;
      assert.deepEqual(codes(opened.outcomes), { ok: 20 });
      assert.equal(abortCallbacks(signal), 1_020, 'one registration per request and per delivered stream');
      controller.abort();
      await s.advance(1);
      await waiting.all;
      assert.deepEqual(codes(waiting.outcomes), { ABORTED: 1_000 });
      for (const o of opened.outcomes) if (o.ok) await assert.rejects(o.stream.readable.getReader().read());
      assert.equal(abortCallbacks(signal), 0);
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(
        warnings.map((w) => w.name),
        [],
      );
      // Requests that end without the signal firing leave nothing on it either.
      const other = new AbortController();
      const done = track(Array.from({ length: 30 }, () => a.openStream('b', '/echo', { signal: other.signal })));
      await s.advance(10);
      await done.all;
      for (const o of done.outcomes) if (o.ok) o.stream.close();
      await s.advance(10);
      assert.equal(abortCallbacks(other.signal), 0);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('a partition shorter than the heartbeat allows loses nothing: data written meanwhile arrives after the heal, on the same connection', async () => {
    s = await swarm({ latencyMs: 2 });
    const a = await s.add('a', { heartbeat: { intervalMs: 1_000, timeoutMs: 400, misses: 3 } });
    const b = await s.add('b', { heartbeat: { intervalMs: 1_000, timeoutMs: 400, misses: 3 } });
    b.handle('/echo', echo);
    a.addPeer('b', [s.network.address('b')]);
    const stream = await s.until(a.openStream('b', '/echo'));
    const reader = stream.readable.getReader();
    const writer = stream.writable.getWriter();
    s.network.partition(['a'], ['b']);
    await writer.write(new TextEncoder().encode('during the partition'));
    const read = reader.read();
    await s.advance(1_500);
    assert.equal(a.snapshot().peers[0]?.state, 'ready');
    s.network.heal();
    const { value } = await s.until(read);
    assert.equal(new TextDecoder().decode(value), 'during the partition');
    assert.ok(!s.states('a', 'b').includes('errored'), 'the connection lived through it');
    assert.ok(s.network.stats().retransmitted > 0);
    stream.close();
  });
});
