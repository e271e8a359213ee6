/**
 * Resumable streams over real QUIC on loopback, through the UDP fault proxy:
 * the link under a long transfer is cut again and again (every datagram
 * blackholed until the heartbeats declare the connection dead, then healed),
 * and the bytes must arrive exactly once, in order.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { quicAddress } from '../../adapters/quic/index.js';
import type { EngineInit, PeerStream, SessionTransition } from '../../runtime/index.js';
import { useCluster, type Cluster } from '../fixtures/quic-cluster.js';
import { UdpProxy } from '../../bin/udp-proxy.js';

const MB = 1024 * 1024;
const TOTAL = 50 * MB;
const CHUNK = 64 * 1024;
const RECONNECTS = 20;

/** Chunk `i` of a deterministic byte sequence (each chunk differs). */
function chunkAt(i: number): Uint8Array {
  const out = Buffer.alloc(CHUNK);
  for (let at = 0; at < CHUNK; at += 4) out.writeUInt32LE((Math.imul(i + 1, 2654435761) ^ at) >>> 0, at);
  return out;
}

/** Resolves on the first transition that matches, or fails after `ms` of wall time. */
function nextTransition(
  source: { subscribe(fn: (t: SessionTransition) => void): { unsubscribe(): void } },
  match: (t: SessionTransition) => boolean,
  what: string,
  ms: number,
): Promise<SessionTransition> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      subscription.unsubscribe();
      reject(new Error(`no ${what} within ${ms} ms`));
    }, ms);
    const subscription = source.subscribe((t) => {
      if (!match(t)) return;
      clearTimeout(timer);
      queueMicrotask(() => subscription.unsubscribe());
      resolve(t);
    });
  });
}

describe('resumable streams over QUIC (loopback, through the fault proxy)', function () {
  this.timeout(240_000);
  let c: Cluster;
  useCluster((cluster) => (c = cluster));

  it(`${TOTAL / MB} MB through ${RECONNECTS} forced reconnects: the checksums are equal`, async function () {
    const init: EngineInit = {
      heartbeat: { intervalMs: 200, timeoutMs: 150, misses: 1 },
      connectTimeoutMs: 2_000,
      resume: { retry: { strategy: 'fixed', delayMs: 100 }, timeoutMs: 3_000 },
    };
    const a = await c.add('alice', init);
    const b = await c.add('bob', init);
    const proxy = await UdpProxy.create({ targetPort: b.adapter.port, seed: 11 });
    try {
      c.introduce(a, b, quicAddress(proxy.port));
      // Bob hashes what he reads and says when he has read each milestone.
      const bobHash = createHash('sha256');
      let bobRead = 0;
      const milestones: Array<{ at: number; resolve: () => void }> = [];
      b.engine.handle('bulk/1', async (stream: PeerStream) => {
        const reader = stream.readable.getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          bobHash.update(value);
          bobRead += value.length;
          while (milestones.length > 0 && bobRead >= milestones[0]!.at) milestones.shift()!.resolve();
        }
        const writer = stream.writable.getWriter();
        await writer.write(new TextEncoder().encode(`${bobRead}:${bobHash.digest('hex')}`));
        await writer.close();
      });
      const read = (at: number): Promise<void> => new Promise((resolve) => milestones.push({ at, resolve }));

      const stream = await a.engine.openStream(b.engine.peerId, 'bulk/1', { resumable: true, timeoutMs: 10_000 });
      const aliceHash = createHash('sha256');
      const writer = stream.writable.getWriter();
      const writing = (async () => {
        for (let i = 0; i < TOTAL / CHUNK; i++) {
          const chunk = chunkAt(i);
          aliceHash.update(chunk);
          await writer.write(chunk);
        }
        await writer.close();
      })();
      writing.catch(() => {});
      const reply = (async () => {
        const chunks: Uint8Array[] = [];
        const reader = stream.readable.getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return Buffer.concat(chunks).toString();
          chunks.push(value);
        }
      })();
      reply.catch(() => {});

      const sessions = a.engine.sessionTransitions$;
      const reconnectTimes: number[] = [];
      for (let r = 1; r <= RECONNECTS; r++) {
        await Promise.race([read((r * TOTAL) / (RECONNECTS + 1)), writing.then(() => {})]);
        const suspended = nextTransition(sessions, (t) => t.role === 'opener' && t.to === 'suspended.waiting', 'suspension', 10_000);
        proxy.blackhole();
        await suspended;
        const resumed = nextTransition(sessions, (t) => t.role === 'opener' && t.from === 'suspended.resuming' && t.to === 'open', 'resume', 20_000);
        const healedAt = Date.now();
        proxy.heal();
        await resumed;
        reconnectTimes.push(Date.now() - healedAt);
      }
      await writing;
      const answer = await reply;
      const expected = `${TOTAL}:${aliceHash.digest('hex')}`;
      assert.equal(answer, expected, 'bob read other bytes than alice wrote');
      await stream.closed;
      assert.equal(stream.state, 'closed');
      assert.ok(stream.resumes >= RECONNECTS, `only ${stream.resumes} resumes`);
      const stats = a.engine.metrics().resume;
      assert.deepEqual(stats.failedByCode, {});
      assert.equal(stats.closed, 1);
      assert.equal(a.engine.snapshot().sessions.length, 0);
      assert.ok(proxy.stats.dropped > 0);
      reconnectTimes.sort((x, y) => x - y);
      this.test!.title += ` (resumes ${stream.resumes}, heal to resume p50 ${reconnectTimes[Math.floor(reconnectTimes.length / 2)]} ms)`;
    } finally {
      await proxy.close();
    }
  });
});
