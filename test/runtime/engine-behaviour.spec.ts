import { strict as assert } from 'node:assert';
import sinon from 'sinon';
import { Subject } from 'rxjs';
import { PeerlineError, type StreamAnswer, type StreamRequest } from '../../runtime/index.js';
import { codes, echo, holder, swarm, track, type Swarm } from '../fixtures/swarm.js';

describe('engine behaviour', () => {
  let s: Swarm;

  afterEach(async () => {
    await s.stopAll();
    assert.equal(s.clock.pending(), 0, 'timers left after every engine stopped');
    assert.equal(s.network.connectionCount(), 0, 'connections left after every engine stopped');
  });

  it('answers requests pushed into engine.requests, including from an RxJS stream, once each', async () => {
    s = await swarm();
    const a = await s.add('a');
    const b = await s.add('b');
    b.handle('/echo', echo);
    a.addPeer('b', [s.network.address('b')]);
    const answers: StreamAnswer[] = [];
    const source = new Subject<StreamRequest>();
    source.subscribe(a.requests);
    for (let i = 0; i < 3; i++) source.next({ peerId: 'b', protocol: '/echo', reply: (x) => answers.push(x) });
    source.next({ peerId: 'b', protocol: '/echo', deadline: s.clock.now() + 1, reply: (x) => answers.push(x) });
    // A source that errors or completes does not stop routing.
    source.error(new Error('upstream failed'));
    a.requests.next({ peerId: 'b', protocol: '/echo', reply: (x) => answers.push(x) });
    await s.advance(20);
    assert.equal(answers.length, 5);
    assert.deepEqual(
      answers.map((x) => (x.ok ? 'ok' : x.error.code)).sort(),
      ['STREAM_TIMEOUT', 'ok', 'ok', 'ok', 'ok'],
    );
    for (const x of answers) if (x.ok) x.stream.close();
  });

  it('rejects bad openStream arguments with a coded TypeError/RangeError, answers bad pushed requests INVALID_REQUEST, and a reply callback that throws does not break routing', async () => {
    s = await swarm();
    const a = await s.add('a');
    // A bad argument is a programmer error: the promise rejects with it, no PeerlineError.
    const bad = await Promise.all(
      [
        a.openStream('', '/x'),
        a.openStream('b', ''),
        a.openStream('b', 'x'.repeat(300)),
        a.openStream('a', '/x'),
        a.openStream('b', '/x', { timeoutMs: -1 }),
        a.openStream('b', '/x', { timeoutMs: '5' as never }),
      ].map((p) => p.then(() => 'resolved', (e: unknown) => `${(e as Error).name} ${(e as { code?: string }).code}`)),
    );
    assert.deepEqual(bad, [
      'TypeError ERR_INVALID_ARG_VALUE',
      'TypeError ERR_INVALID_ARG_VALUE',
      'RangeError ERR_OUT_OF_RANGE',
      'TypeError ERR_INVALID_ARG_VALUE',
      'RangeError ERR_OUT_OF_RANGE',
      'TypeError ERR_INVALID_ARG_TYPE',
    ]);
    assert.equal(a.metrics().requests.total, 0, 'a rejected argument is not a request');
    // Requests pushed into engine.requests have no caller to throw to: they are answered INVALID_REQUEST.
    const answers: StreamAnswer[] = [];
    const reply = (x: StreamAnswer): void => void answers.push(x);
    for (const [peerId, protocol] of [['', '/x'], ['b', ''], ['b', 'x'.repeat(300)], ['a', '/x']] as const) {
      a.requests.next({ peerId, protocol, reply });
    }
    await s.advance(1);
    assert.deepEqual(answers.map((x) => (x.ok ? 'ok' : x.error.code)), ['INVALID_REQUEST', 'INVALID_REQUEST', 'INVALID_REQUEST', 'INVALID_REQUEST']);
    const warn = sinon.spy();
    a.requests.next({
      peerId: 'nobody',
      protocol: '/x',
      reply: () => {
        throw new Error('user callback failed');
      },
    });
    await s.advance(1);
    const after = track([a.openStream('nobody', '/x')]);
    await s.advance(1);
    await after.all;
    assert.deepEqual(codes(after.outcomes), { NO_ADDRESS: 1 });
    assert.ok(a.metrics().internalErrors >= 1);
    void warn;
  });

  it('an unknown protocol is NACKed: STREAM_REJECTED with the reason, the connection stays ready', async () => {
    s = await swarm();
    const a = await s.add('a');
    await s.add('b');
    a.addPeer('b', [s.network.address('b')]);
    const t = track([a.openStream('b', '/missing')]);
    await s.advance(20);
    await t.all;
    const outcome = t.outcomes[0];
    assert.ok(outcome !== undefined && !outcome.ok);
    assert.equal(outcome.error.code, 'STREAM_REJECTED');
    assert.match(outcome.error.message, /unknown protocol/);
    assert.ok(outcome.error instanceof PeerlineError);
    assert.equal(a.snapshot().peers[0]?.state, 'ready');
  });

  it('a handler that throws aborts its stream only; the agent and the connection go on', async () => {
    s = await swarm();
    const a = await s.add('a');
    const b = await s.add('b');
    b.handle('/boom', () => {
      throw new Error('handler bug');
    });
    b.handle('/echo', echo);
    a.addPeer('b', [s.network.address('b')]);
    const t = track([a.openStream('b', '/boom'), a.openStream('b', '/echo')]);
    await s.advance(20);
    await t.all;
    assert.deepEqual(codes(t.outcomes), { ok: 2 });
    await s.advance(5);
    assert.equal(b.metrics().streams.handlerErrors, 1);
    const boom = t.outcomes[0]!;
    assert.ok(boom.ok);
    await assert.rejects(boom.stream.readable.getReader().read());
    assert.equal(a.snapshot().peers[0]?.state, 'ready');
    for (const o of t.outcomes) if (o.ok) o.stream.abort();
  });

  it('a dial that reaches another identity fails PEER_IDENTITY_MISMATCH', async () => {
    s = await swarm();
    const a = await s.add('a');
    await s.add('mallory');
    a.addPeer('b', [s.network.address('mallory')]);
    const t = track([a.openStream('b', '/x')]);
    await s.advance(20);
    await t.all;
    assert.deepEqual(codes(t.outcomes), { PEER_IDENTITY_MISMATCH: 1 });
    // The dial backoff holds the failure (a fresh request would fail fast), then the machine closes.
    assert.deepEqual(s.states('a', 'b'), ['connecting', 'errored']);
    await s.advance(2_000);
    assert.deepEqual(s.states('a', 'b'), ['connecting', 'errored', 'closed']);
  });

  it('a peer with no address fails NO_ADDRESS', async () => {
    s = await swarm();
    const a = await s.add('a');
    const t = track([a.openStream('ghost', '/x')]);
    await s.advance(1);
    await t.all;
    assert.deepEqual(codes(t.outcomes), { NO_ADDRESS: 1 });
    assert.deepEqual(a.snapshot().peers, []);
  });

  it('at the connection limit an idle peer is pruned; with none idle the request fails CONNECTION_LIMIT', async () => {
    s = await swarm();
    const a = await s.add('a', { maxConnections: 2 });
    for (const p of ['b', 'c', 'd']) {
      const e = await s.add(p);
      e.handle('/hold', holder().handler);
      a.addPeer(p, [s.network.address(p)]);
    }
    await s.until(a.withConnection('b', () => undefined));
    const held = track([a.openStream('c', '/hold')]);
    await s.advance(10);
    await held.all;
    // b is idle, c is busy: d gets b's place.
    const d = track([a.openStream('d', '/hold')]);
    await s.advance(20);
    await d.all;
    assert.deepEqual(codes(d.outcomes), { ok: 1 });
    assert.deepEqual(a.snapshot().peers.map((p) => p.peerId).sort(), ['c', 'd']);
    assert.ok(s.states('a', 'b').includes('draining'));
    // Now both are busy: the next one is refused.
    const refused = track([a.openStream('b', '/hold')]);
    await s.advance(1);
    await refused.all;
    assert.deepEqual(codes(refused.outcomes), { CONNECTION_LIMIT: 1 });
    for (const o of [...held.outcomes, ...d.outcomes]) if (o.ok) o.stream.close();
  });

  it('metrics count peers per state, outcomes by code, dials and heartbeat round trips', async () => {
    s = await swarm({ latencyMs: 3 });
    const a = await s.add('a', { heartbeat: { intervalMs: 1000, timeoutMs: 500, misses: 2 } });
    const b = await s.add('b');
    b.handle('/echo', echo);
    a.addPeer('b', [s.network.address('b')]);
    const t = track([a.openStream('b', '/echo'), a.openStream('b', '/nope')]);
    await s.advance(3000);
    await t.all;
    const m = a.metrics();
    assert.equal(m.peers.ready, 1);
    assert.equal(m.peers.connecting, 0);
    assert.equal(m.requests.total, 2);
    assert.equal(m.requests.opened, 1);
    assert.deepEqual(m.requests.failedByCode, { STREAM_REJECTED: 1 });
    assert.equal(m.dials.started, 1);
    assert.ok(m.heartbeat.samples >= 2);
    assert.equal(m.heartbeat.lastRttMs, 6);
    assert.equal(m.internalErrors, 0);
    for (const o of t.outcomes) if (o.ok) o.stream.close();
  });

  it('PEERLINE_TRACE writes one line per transition', async () => {
    s = await swarm();
    const lines: string[] = [];
    const logger = { trace: (l: string) => lines.push(l), warn: () => {} };
    const a = await s.add('a', { trace: true, logger });
    await s.add('b');
    a.addPeer('b', [s.network.address('b')]);
    await s.until(a.withConnection('b', () => undefined));
    assert.deepEqual(lines, [
      'peerline a peer b: new -> connecting (xstate.init)',
      'peerline a peer b: connecting -> handshaking (xstate.done.actor.0.peerConnection.connecting.dialing)',
      // 'a' is the lower id: ready as soon as its hello is out.
      'peerline a peer b: handshaking -> ready (xstate.done.actor.0.peerConnection.connecting.dialing)',
    ]);
  });

  it('a remote that stops gracefully drains our side; a pinned peer reconnects when it returns', async () => {
    s = await swarm();
    const a = await s.add('a', { pinnedRetry: { strategy: 'fixed', delayMs: 200 } });
    const b = await s.add('b');
    a.addPeer('b', [s.network.address('b')], { pinned: true });
    await s.advance(10);
    assert.equal(a.snapshot().peers[0]?.state, 'ready');
    const stopped = b.stop();
    await s.advance(10);
    await stopped;
    assert.ok(s.states('a', 'b').includes('draining'));
    assert.equal(a.snapshot().peers[0]?.state, 'errored');
    s.engines.delete('b');
    await s.advance(1000);
    // Retrying every 200 ms against a node that is gone.
    assert.ok((a.snapshot().peers[0]?.attempts ?? 0) >= 4, `attempts: ${a.snapshot().peers[0]?.attempts}`);
    assert.ok(['errored', 'connecting'].includes(a.snapshot().peers[0]?.state ?? ''));
    const b2 = await s.add('b');
    await s.advance(400);
    assert.equal(a.snapshot().peers[0]?.state, 'ready');
    assert.equal(b2.snapshot().peers[0]?.state, 'ready');
  });

  it('force close sends ConnectionErrorCode.ForceClose and the remote ends with CONNECTION_FORCE_CLOSED', async () => {
    s = await swarm();
    const a = await s.add('a');
    const b = await s.add('b');
    const held = holder();
    a.handle('/hold', held.handler);
    b.addPeer('a', [s.network.address('a')]);
    const t = track([b.openStream('a', '/hold')]);
    await s.advance(10);
    await t.all;
    const closed = a.forceClose('b', 'operator said so');
    await s.advance(10);
    await closed;
    assert.deepEqual(s.states('a', 'b').slice(-2), ['forceClosed', 'closed']);
    const bSide = s.states('b', 'a');
    assert.deepEqual(bSide.slice(-2), ['errored', 'closed']);
    assert.equal(b.metrics().peers.ready, 0);
  });
});
