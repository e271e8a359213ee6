import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { PeerlineError, RESUME_PROTOCOL, type PeerStream, type ResumableStream, type SessionTransition } from '../../runtime/index.js';
import { encode, FrameReader, FrameType, type Frame } from '../../runtime/resume/frames.js';
import { newSecret, newSessionId, proofFor, rotate } from '../../runtime/resume/session.js';
import { swarm, type Swarm } from '../fixtures/swarm.js';

const PROTOCOL = '/transfer/1';

/** Bytes 0..n-1 of a fixed pseudo-random sequence: every position is checkable. */
function pattern(n: number, seed = 7): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

function sha(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function readAll(stream: PeerStream): Promise<Uint8Array> {
  const reader = stream.readable.getReader();
  const parts: Uint8Array[] = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    parts.push(value);
  }
  return Buffer.concat(parts);
}

/** The receiving side: reads everything, answers with its length and digest, and ends. */
function digestHandler(received: Uint8Array[]): (stream: PeerStream) => Promise<void> {
  return async (stream) => {
    const bytes = await readAll(stream);
    received.push(bytes);
    const writer = stream.writable.getWriter();
    await writer.write(new TextEncoder().encode(`${bytes.length}:${sha(bytes)}`));
    await writer.close();
  };
}

/** Moves virtual time until `fn()` holds, at most `limitMs`. */
async function waitFor(s: Swarm, fn: () => boolean, what: string, limitMs = 30_000): Promise<void> {
  const end = s.clock.now() + limitMs;
  while (!fn()) {
    if (s.clock.now() >= end) throw new Error(`not true after ${limitMs} ms of virtual time: ${what}`);
    await s.advance(1);
  }
}

describe('resumable streams over the memory network', () => {
  let s: Swarm;
  let sessionLog: SessionTransition[];

  async function pair(init: Parameters<Swarm['add']>[1] = {}): Promise<void> {
    s = await swarm({ latencyMs: 1 });
    sessionLog = [];
    const a = await s.add('a', init);
    const b = await s.add('b', init);
    a.addPeer('b', [s.network.address('b')]);
    b.addPeer('a', [s.network.address('a')]);
    a.sessionTransitions$.subscribe((t) => sessionLog.push(t));
    b.sessionTransitions$.subscribe((t) => sessionLog.push(t));
  }

  afterEach(async () => {
    await s.stopAll();
    assert.equal(s.clock.pending(), 0, 'timers left after every engine stopped');
    assert.equal(s.network.connectionCount(), 0, 'connections left after every engine stopped');
  });

  it('carries bytes both ways and ends cleanly on both sides', async () => {
    await pair();
    const received: Uint8Array[] = [];
    s.engine('b').handle(PROTOCOL, digestHandler(received));
    const data = pattern(300_000);
    const stream = await s.until(s.engine('a').openStream('b', PROTOCOL, { resumable: true }));
    assert.equal(stream.resumable, true);
    assert.equal(stream.state, 'open');
    const writer = stream.writable.getWriter();
    const reply = readAll(stream);
    await s.until(writer.write(data));
    await s.until(writer.close());
    const answer = new TextDecoder().decode(await s.until(reply));
    assert.equal(answer, `${data.length}:${sha(data)}`);
    await s.until(stream.closed);
    assert.equal(stream.state, 'closed');
    await waitFor(s, () => s.engine('b').snapshot().sessions.length === 0, 'b forgets the session');
    assert.equal(s.engine('a').snapshot().sessions.length, 0);
    assert.equal(s.engine('a').metrics().resume.closed, 1);
    assert.equal(s.engine('b').metrics().resume.closed, 1);
    assert.equal(s.engine('a').metrics().resume.resumes, 0);
  });

  /** States the opener's session went through, in order. */
  function openerStates(): string[] {
    return sessionLog.filter((t) => t.role === 'opener').map((t) => t.to);
  }

  const FRAMES = 16;
  const FRAME = 8 * 1024;

  it(`A to B: the connection dropped at every frame boundary of a ${FRAMES}-frame transfer; B gets the exact bytes once`, async () => {
    for (let k = 0; k <= FRAMES; k++) {
      if (k > 0) await s.stopAll();
      await pair();
      const received: Uint8Array[] = [];
      s.engine('b').handle(PROTOCOL, digestHandler(received));
      const data = pattern(FRAMES * FRAME, k + 1);
      const stream = await s.until(s.engine('a').openStream('b', PROTOCOL, { resumable: true }));
      const writer = stream.writable.getWriter();
      const reply = readAll(stream);
      reply.catch(() => {});
      for (let i = 0; i < FRAMES; i++) {
        if (i === k) s.network.drop('a', 'b');
        await s.until(writer.write(data.subarray(i * FRAME, (i + 1) * FRAME)));
        // One latency: the frame is on the other side before the next one goes.
        await s.advance(1);
      }
      if (k === FRAMES) s.network.drop('a', 'b');
      await s.until(writer.close());
      const answer = new TextDecoder().decode(await s.until(reply, 120_000));
      assert.equal(answer, `${data.length}:${sha(data)}`, `drop after frame ${k}`);
      assert.equal(received.length, 1);
      assert.equal(Buffer.compare(received[0]!, data), 0, `B got other bytes (drop after frame ${k})`);
      await s.until(stream.closed, 120_000);
      assert.equal(stream.state, 'closed', `drop after frame ${k}`);
      assert.ok(stream.resumes >= 1, `no resume after the drop at frame ${k}`);
      const states = openerStates();
      assert.deepEqual(states.slice(0, 4), ['opening', 'open', 'suspended.waiting', 'suspended.resuming'], `drop after frame ${k}: ${states.join(' > ')}`);
      assert.ok(states.includes('open', 2) && states.at(-1) === 'closed', `drop after frame ${k}: ${states.join(' > ')}`);
      await waitFor(s, () => s.engine('b').snapshot().sessions.length === 0, 'b forgets the session');
      assert.equal(s.engine('b').metrics().resume.closed, 1);
      assert.deepEqual(s.engine('a').metrics().resume.failedByCode, {});
    }
  });

  it(`both ways: an echo dropped at every frame boundary of the replies; A gets its bytes back exactly once`, async () => {
    for (let k = 0; k <= FRAMES; k++) {
      if (k > 0) await s.stopAll();
      await pair();
      s.engine('b').handle(PROTOCOL, async (stream) => {
        const reader = stream.readable.getReader();
        const writer = stream.writable.getWriter();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          await writer.write(value);
        }
        await writer.close();
      });
      const data = pattern(FRAMES * FRAME, 100 + k);
      const stream = await s.until(s.engine('a').openStream('b', PROTOCOL, { resumable: true }));
      const writer = stream.writable.getWriter();
      const reader = stream.readable.getReader();
      const back: Uint8Array[] = [];
      let backBytes = 0;
      let dropped = false;
      const reading = (async () => {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          back.push(value);
          backBytes += value.length;
          // Drop right after the k-th frame came back.
          if (!dropped && backBytes >= k * FRAME && k < FRAMES) {
            dropped = true;
            s.network.drop('a', 'b');
          }
        }
      })();
      reading.catch(() => {});
      for (let i = 0; i < FRAMES; i++) {
        await s.until(writer.write(data.subarray(i * FRAME, (i + 1) * FRAME)));
        await s.advance(1);
      }
      await s.until(writer.close());
      await s.until(reading, 120_000);
      const got = Buffer.concat(back);
      assert.equal(got.length, data.length, `echo length, drop after reply frame ${k}`);
      assert.equal(Buffer.compare(got, data), 0, `echo bytes, drop after reply frame ${k}`);
      await s.until(stream.closed, 120_000);
      assert.equal(stream.state, 'closed');
      if (k < FRAMES) assert.ok(stream.resumes >= 1, `no resume after the drop at reply frame ${k}`);
    }
  });

  /**
   * A hand-driven opener on engine a: speaks the resume protocol frame by
   * frame on raw links, so a test can say what a well-behaved engine never
   * would (a short counter, a wrong proof, no ACK at all).
   */
  async function rawLink(): Promise<{ send(frame: Uint8Array): void; next(): Promise<Frame>; link: PeerStream }> {
    const link = await s.until(s.engine('a').openStream('b', RESUME_PROTOCOL));
    const writer = link.writable.getWriter();
    const reader = link.readable.getReader();
    const frames = new FrameReader();
    const queue: Frame[] = [];
    return {
      link,
      send: (frame) => void writer.write(frame).catch(() => {}),
      async next() {
        while (queue.length === 0) {
          const { value, done } = await s.until(reader.read());
          if (done) throw new Error('the link ended');
          queue.push(...frames.push(value));
        }
        return queue.shift()!;
      },
    };
  }

  /** Reads DATA frames until `bytes` arrived; returns them. */
  async function readData(raw: { next(): Promise<Frame> }, bytes: number): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let got = 0;
    while (got < bytes) {
      const frame = await raw.next();
      if (frame.type !== FrameType.Data) continue;
      assert.equal(frame.offset, got, 'DATA frames arrive in order, without gaps');
      parts.push(...frame.parts);
      got += frame.length;
    }
    return Buffer.concat(parts);
  }

  /** B's handler writes `data`, then reads to the end; what happened to it is recorded. */
  function writerHandler(data: Uint8Array, outcome: { error?: PeerlineError; writes: number }) {
    return async (stream: PeerStream) => {
      const writer = stream.writable.getWriter();
      try {
        for (let at = 0; at < data.length; at += 16 * 1024) {
          await writer.write(data.subarray(at, at + 16 * 1024));
          outcome.writes += 1;
        }
        await readAll(stream);
      } catch (error) {
        outcome.error = error as PeerlineError;
      }
    };
  }

  /** b's handler writes `data`; a raw opener on a opens a session to it. */
  async function rawSession(data: Uint8Array) {
    const outcome: { error?: PeerlineError; writes: number } = { writes: 0 };
    s.engine('b').handle(PROTOCOL, writerHandler(data, outcome));
    const sessionId = newSessionId();
    const secret = newSecret();
    const first = await rawLink();
    first.send(encode.open({ v: 1, sessionId, secret: secret.toString('hex'), protocol: PROTOCOL, window: 1 << 20 }));
    assert.equal((await first.next()).type, FrameType.Opened);
    return { outcome, sessionId, secret, first };
  }

  it('RESUME_GAP: a resume that asks for bytes already acknowledged and dropped fails on both sides, never silently', async () => {
    await pair();
    const data = pattern(50_000);
    const { outcome, sessionId, secret, first } = await rawSession(data);
    const got = await readData(first, data.length);
    assert.equal(Buffer.compare(got, data), 0);
    // We read 30,000 bytes (B may drop them), then the link dies.
    first.send(encode.ack(30_000, false));
    await s.advance(5);
    first.link.abort('cut');
    await waitFor(s, () => s.engine('b').snapshot().sessions[0]?.state === 'suspended.waiting', 'b suspends');
    assert.equal(s.engine('b').snapshot().sessions[0]!.buffered, 20_000, 'b keeps only what was not acknowledged');
    // Now claim to hold only 10,000: bytes 10,000..30,000 are gone.
    const second = await rawLink();
    second.send(encode.resume({ sessionId, generation: 0, proof: proofFor(secret, sessionId, 0), received: 10_000, fin: false }));
    const answer = await second.next();
    assert.equal(answer.type, FrameType.Refuse);
    assert.equal(answer.type === FrameType.Refuse && answer.body.code, 'RESUME_GAP');
    await waitFor(s, () => outcome.error !== undefined, "b's handler hears of it");
    assert.equal(outcome.error?.code, 'RESUME_GAP');
    assert.equal(s.engine('b').snapshot().sessions.length, 0);
    assert.deepEqual(s.engine('b').metrics().resume.failedByCode, { RESUME_GAP: 1 });
    assert.equal(s.engine('b').metrics().resume.bufferedBytes, 0);
  });

  it('a wrong proof is refused (RESUME_REJECTED) without hurting the session; the right one resumes it, and an old proof is refused after', async () => {
    await pair();
    const data = pattern(40_000);
    const { outcome, sessionId, secret, first } = await rawSession(data);
    await readData(first, 16_384);
    first.link.abort('cut');
    await waitFor(s, () => s.engine('b').snapshot().sessions[0]?.state === 'suspended.waiting', 'b suspends');

    const wrong = await rawLink();
    wrong.send(encode.resume({ sessionId, generation: 0, proof: proofFor(newSecret(), sessionId, 0), received: 16_384, fin: false }));
    const refused = await wrong.next();
    assert.equal(refused.type === FrameType.Refuse && refused.body.code, 'RESUME_REJECTED');
    assert.equal(s.engine('b').metrics().resume.badProofs, 1);
    assert.equal(s.engine('b').snapshot().sessions[0]?.state, 'suspended.waiting', 'the session is untouched');

    const right = await rawLink();
    right.send(encode.resume({ sessionId, generation: 0, proof: proofFor(secret, sessionId, 0), received: 16_384, fin: false }));
    const resumed = await right.next();
    assert.equal(resumed.type, FrameType.Resumed);
    // B replays from 16,384: the rest arrives, starting exactly there.
    const frames: Frame[] = [];
    let end = 16_384;
    while (end < data.length) {
      const frame = await right.next();
      if (frame.type !== FrameType.Data) continue;
      assert.equal(frame.offset, end);
      assert.equal(Buffer.compare(Buffer.concat(frame.parts), data.subarray(end, end + frame.length)), 0);
      end += frame.length;
      frames.push(frame);
    }
    right.send(encode.ack(data.length, false));
    await s.advance(5);
    assert.equal(s.engine('b').snapshot().sessions[0]?.state, 'open');
    assert.equal(s.engine('b').snapshot().sessions[0]?.buffered, 0);
    // The secret rotated: the first proof no longer opens anything.
    right.link.abort('cut again');
    await waitFor(s, () => s.engine('b').snapshot().sessions[0]?.state === 'suspended.waiting', 'b suspends again');
    const replayed = await rawLink();
    replayed.send(encode.resume({ sessionId, generation: 0, proof: proofFor(secret, sessionId, 0), received: data.length, fin: false }));
    const again = await replayed.next();
    assert.equal(again.type === FrameType.Refuse && again.body.code, 'RESUME_REJECTED');
    const nonce = resumed.type === FrameType.Resumed ? resumed.body.nonce : '';
    const next = rotate(secret, nonce);
    const fresh = await rawLink();
    fresh.send(encode.resume({ sessionId, generation: 1, proof: proofFor(next, sessionId, 1), received: data.length, fin: false }));
    assert.equal((await fresh.next()).type, FrameType.Resumed);
    assert.equal(outcome.error, undefined);
  });

  it('a peer that never acknowledges holds at most the replay buffer; the writer waits, and the abort frees it', async () => {
    await pair({ resume: { bufferBytes: 64 * 1024 } });
    const data = pattern(1 << 20);
    const outcome: { error?: PeerlineError; writes: number } = { writes: 0 };
    s.engine('b').handle(PROTOCOL, writerHandler(data, outcome));
    const sessionId = newSessionId();
    const raw = await rawLink();
    raw.send(encode.open({ v: 1, sessionId, secret: newSecret().toString('hex'), protocol: PROTOCOL, window: 1 << 30 }));
    assert.equal((await raw.next()).type, FrameType.Opened);
    const got = await readData(raw, 64 * 1024);
    assert.equal(got.length, 64 * 1024);
    await s.advance(10_000);
    const stats = s.engine('b').metrics().resume;
    assert.equal(stats.bufferedBytes, 64 * 1024, 'the replay buffer is full and no fuller');
    assert.equal(outcome.writes, 4, 'the writer waits once the buffer is full');
    raw.send(encode.abort({ message: 'bye' }));
    await waitFor(s, () => outcome.error !== undefined, 'the writer hears of the abort');
    assert.equal(outcome.error?.code, 'ABORTED');
    assert.equal(s.engine('b').metrics().resume.bufferedBytes, 0);
    assert.equal(s.engine('b').snapshot().sessions.length, 0);
  });

  it('RESUME_EXPIRED: a session not resumed within its TTL fails on both sides and frees its buffers', async () => {
    await pair({ resume: { ttlMs: 5_000 } });
    const outcome: { error?: PeerlineError; writes: number } = { writes: 0 };
    s.engine('b').handle(PROTOCOL, writerHandler(pattern(10_000), outcome));
    const stream = await s.until(s.engine('a').openStream('b', PROTOCOL, { resumable: true }));
    const writer = stream.writable.getWriter();
    await s.until(writer.write(pattern(20_000)));
    const reading = readAll(stream);
    reading.catch(() => {});
    await s.advance(5);
    s.network.partition(['a'], ['b']);
    s.network.drop('a', 'b');
    const started = s.clock.now();
    await s.until(stream.closed, 10_000);
    assert.equal(stream.state, 'failed');
    assert.ok(s.clock.now() - started <= 5_000 + 10, 'expired at the TTL');
    await assert.rejects(reading, (e: PeerlineError) => e.code === 'RESUME_EXPIRED');
    await assert.rejects(writer.write(pattern(1)), (e: PeerlineError) => e.code === 'RESUME_EXPIRED');
    await waitFor(s, () => outcome.error !== undefined, "b's side expires too");
    assert.equal(outcome.error?.code, 'RESUME_EXPIRED');
    for (const peer of ['a', 'b']) {
      assert.equal(s.engine(peer).snapshot().sessions.length, 0, `${peer} forgot the session`);
      assert.equal(s.engine(peer).metrics().resume.bufferedBytes, 0);
      assert.deepEqual(s.engine(peer).metrics().resume.failedByCode, { RESUME_EXPIRED: 1 });
    }
    s.network.heal();
  });

  describe('the last acknowledgement lost with the link', () => {
    const HEARTBEAT = { intervalMs: 200, timeoutMs: 100, misses: 2 };

    /** a sends 100 bytes and its end; b reads them, answers with their length and ends. */
    async function exchange(): Promise<{ stream: ResumableStream; reply: Promise<string>; bSide: string[] }> {
      await pair({ resume: { ttlMs: 3_000 }, heartbeat: HEARTBEAT });
      const bSide: string[] = [];
      s.engine('b').handle(PROTOCOL, async (stream) => {
        try {
          const bytes = await readAll(stream);
          const writer = stream.writable.getWriter();
          await writer.write(new TextEncoder().encode(String(bytes.length)));
          await writer.close();
          await stream.closed;
          bSide.push(String((stream as unknown as { state: string }).state));
        } catch (error) {
          bSide.push(`error ${(error as PeerlineError).code}`);
        }
      });
      const stream = await s.until(s.engine('a').openStream('b', PROTOCOL, { resumable: true }));
      const writer = stream.writable.getWriter();
      const reply = readAll(stream).then((bytes) => new TextDecoder().decode(bytes));
      void writer.write(pattern(100)).catch(() => {});
      void writer.close().catch(() => {});
      return { stream, reply, bSide };
    }

    it('the opener read everything and its end was read: cut off before its last ACK arrives, it ends closed (the acceptor, which cannot know, expires)', async () => {
      const { stream, reply, bSide } = await exchange();
      assert.equal(await s.until(reply), '100');
      // The reply's end was just read: the opener's last ACK is on its way. Cut it off for longer than the TTL.
      s.network.partition(['a'], ['b']);
      await s.advance(4_000);
      s.network.heal();
      await s.advance(100);
      assert.equal(stream.state, 'closed');
      await s.until(stream.closed);
      assert.deepEqual(s.engine('a').metrics().resume.failedByCode, {});
      assert.equal(s.engine('a').metrics().resume.closed, 1);
      // b never learnt that its reply was read: RESUME_EXPIRED is the honest answer there.
      assert.deepEqual(bSide, ['failed']);
      assert.deepEqual(s.engine('b').metrics().resume.failedByCode, { RESUME_EXPIRED: 1 });
    });

    it('the acceptor finished, and only its goodbye is lost: both sides end closed', async () => {
      const { stream, reply, bSide } = await exchange();
      assert.equal(await s.until(reply), '100');
      await waitFor(s, () => bSide.length > 0, 'b finished');
      assert.deepEqual(bSide, ['closed']);
      s.network.partition(['a'], ['b']);
      await s.advance(4_000);
      s.network.heal();
      await s.advance(100);
      assert.equal(stream.state, 'closed');
      for (const peer of ['a', 'b']) {
        assert.deepEqual(s.engine(peer).metrics().resume.failedByCode, {}, peer);
        assert.equal(s.engine(peer).metrics().resume.closed, 1, peer);
      }
    });
  });

  it('abort and engine stop end the session on both sides with a code', async () => {
    await pair();
    const outcomes: Array<{ error?: PeerlineError; writes: number }> = [];
    s.engine('b').handle(PROTOCOL, (stream) => {
      const outcome = { writes: 0 };
      outcomes.push(outcome);
      return writerHandler(pattern(100), outcome)(stream);
    });
    const one = await s.until(s.engine('a').openStream('b', PROTOCOL, { resumable: true }));
    const two = await s.until(s.engine('a').openStream('b', PROTOCOL, { resumable: true }));
    await s.advance(5);
    one.abort('done with it');
    await waitFor(s, () => outcomes[0]?.error !== undefined, 'b hears of the abort');
    assert.equal(outcomes[0]!.error?.code, 'ABORTED');
    assert.equal(one.state, 'failed');
    const reading = readAll(two);
    reading.catch(() => {});
    await s.until(s.engine('a').stop());
    await assert.rejects(reading, (e: PeerlineError) => e.code === 'ENGINE_STOPPED');
    await waitFor(s, () => outcomes[1]?.error !== undefined, 'b hears of the stop');
    assert.equal(outcomes[1]!.error?.code, 'ABORTED');
    assert.equal(s.engine('b').snapshot().sessions.length, 0);
  });

  it('bounds the sessions per peer on both sides', async () => {
    await pair({ resume: { maxSessionsPerPeer: 2 } });
    s.engine('b').handle(PROTOCOL, () => {});
    await s.until(s.engine('a').openStream('b', PROTOCOL, { resumable: true }));
    await s.until(s.engine('a').openStream('b', PROTOCOL, { resumable: true }));
    await assert.rejects(s.until(s.engine('a').openStream('b', PROTOCOL, { resumable: true })), (e: PeerlineError) => e.code === 'QUEUE_FULL');
    // From the other side, b already holds two sessions with a.
    s.engine('a').handle(PROTOCOL, () => {});
    await assert.rejects(s.until(s.engine('b').openStream('a', PROTOCOL, { resumable: true })), (e: PeerlineError) => e.code === 'QUEUE_FULL');
    assert.equal(s.engine('b').snapshot().sessions.length, 2);
  });

  it("the link lost with the acceptor's last ACK: the opener learns the end from the acceptor's tombstone and closes cleanly", async () => {
    await pair();
    const received: Uint8Array[] = [];
    // b answers first and reads last: its final word is the ACK of a's end.
    s.engine('b').handle(PROTOCOL, async (stream) => {
      const writer = stream.writable.getWriter();
      await writer.write(new TextEncoder().encode('hello'));
      await writer.close();
      received.push(await readAll(stream));
    });
    // The moment b's session is over, that ACK is still on the wire: cut it.
    s.engine('b').sessionTransitions$.subscribe((t) => {
      if (t.to === 'closed') s.network.drop('a', 'b');
    });
    const data = pattern(20_000);
    const stream = await s.until(s.engine('a').openStream('b', PROTOCOL, { resumable: true }));
    assert.equal(new TextDecoder().decode(await s.until(readAll(stream))), 'hello');
    const writer = stream.writable.getWriter();
    await s.until(writer.write(data));
    await s.until(writer.close());
    await s.until(stream.closed, 30_000);
    assert.equal(Buffer.compare(received[0]!, data), 0);
    assert.equal(stream.state, 'closed');
    assert.deepEqual(openerStates().slice(-4), ['open', 'suspended.waiting', 'suspended.resuming', 'closed']);
    assert.deepEqual(s.engine('a').metrics().resume.failedByCode, {});
  });

  it('an opener that cannot dial the peer (no address) resumes as soon as the peer connects back', async () => {
    s = await swarm({ latencyMs: 1 });
    sessionLog = [];
    const a = await s.add('a');
    const b = await s.add('b');
    // a keeps b connected (pinned); b does not know where a is.
    a.addPeer('b', [s.network.address('b')], { pinned: true });
    b.sessionTransitions$.subscribe((t) => sessionLog.push(t));
    const received: Uint8Array[] = [];
    a.handle(PROTOCOL, digestHandler(received));
    await waitFor(s, () => b.snapshot().peers.some((p) => p.peerId === 'a' && p.state === 'ready'), 'a connects to b');
    const stream = await s.until(b.openStream('a', PROTOCOL, { resumable: true }));
    const writer = stream.writable.getWriter();
    const data = pattern(50_000);
    await s.until(writer.write(data.subarray(0, 20_000)));
    s.network.drop('a', 'b');
    await s.until(writer.write(data.subarray(20_000)));
    await s.until(writer.close());
    const answer = new TextDecoder().decode(await s.until(readAll(stream), 60_000));
    assert.equal(answer, `${data.length}:${sha(data)}`);
    const events = sessionLog.filter((t) => t.role === 'opener').map((t) => `${t.to}:${t.event}`);
    assert.ok(
      events.some((e) => e === 'suspended.resuming:LINK.READY'),
      `the attempt that worked was started by a's reconnection: ${events.join(' > ')}`,
    );
    assert.ok(b.metrics().requests.failedByCode.NO_ADDRESS! >= 1, 'b tried to dial and could not');
  });

  it('opens that start together cannot overshoot the bound', async () => {
    await pair({ resume: { maxSessionsPerPeer: 3 } });
    s.engine('b').handle(PROTOCOL, () => {});
    const opens = Array.from({ length: 8 }, () =>
      s.engine('a').openStream('b', PROTOCOL, { resumable: true }).then(
        () => 'ok',
        (e: PeerlineError) => e.code,
      ),
    );
    const outcomes = await s.until(Promise.all(opens));
    assert.deepEqual(outcomes.sort(), ['QUEUE_FULL', 'QUEUE_FULL', 'QUEUE_FULL', 'QUEUE_FULL', 'QUEUE_FULL', 'ok', 'ok', 'ok']);
    assert.equal(s.engine('a').snapshot().sessions.length, 3);
    await waitFor(s, () => s.engine('b').snapshot().sessions.length === 3, 'b holds the three');
  });

  it('refuses a protocol nobody handles, and the reserved protocol as a handler', async () => {
    await pair();
    await assert.rejects(s.until(s.engine('a').openStream('b', '/nobody/1', { resumable: true })), (e: PeerlineError) => e.code === 'STREAM_REJECTED');
    assert.throws(() => s.engine('b').handle(RESUME_PROTOCOL, () => {}), /reserved/);
    assert.equal(s.engine('a').snapshot().sessions.length, 0);
    assert.equal(s.engine('b').snapshot().sessions.length, 0);
  });
});
