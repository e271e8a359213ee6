import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { PeerlineError, RESUME_PROTOCOL, type PeerStream, type SessionTransition } from '../../runtime/index.js';
import { encode, FrameReader, FrameType, type Frame } from '../../runtime/resume/frames.js';
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
});
