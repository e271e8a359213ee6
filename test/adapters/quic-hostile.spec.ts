/**
 * Hostile peers against an engine over real QUIC on loopback. For every
 * attack, at the same time:
 * - a well-behaved engine peer, connected before, keeps getting echo answers
 *   from the target (every round trip must succeed);
 * - the hostile stream or connection ends with the right code, seen from the
 *   hostile side;
 * - memory and handles stay bounded: the target is back to its one good peer
 *   (engine snapshot, adapter stats: no leftover stream or connection, the
 *   library's own connection map drained), its heap after a full collection
 *   is within a few MB of where it was before the attack, and once
 *   everything is stopped `process.getActiveResourcesInfo()` is back to what
 *   it was before the test;
 * - no error escapes to the process (the root hook fails the test if one
 *   does).
 *
 * Timeouts are short (handshake 500 ms, stream open 1 s). The figures each
 * test measures are printed with PEERLINE_FIGURES=1 (docs/RELIABILITY.md
 * quotes them). HOSTILE_CONNECTIONS sets the size of the connection flood
 * (default 300) and HOSTILE_FLOOD_WAVES how many floods follow each other
 * (default 1); docs/RELIABILITY.md has the manual run with thousands.
 */
import assert from 'node:assert/strict';
import { ConnectionErrorCode, ConnectionErrorReason, PeerlineError, type EngineInit } from '../../runtime/index.js';
import { StreamCode, TransportError, quicAddress, type QuicAdapterOptions } from '../../adapters/quic/index.js';
import { encodeControl } from '../../adapters/quic/wire.js';
import { codeForReason } from '../../protocol/codes.js';
import { escapedErrors } from '../fixtures/hooks.js';
import { identity } from '../fixtures/identity.js';
import {
  HostilePeer,
  certificateSignedByAnother,
  ecdsaKeyPair,
  endOf,
  eventually,
  floodFromChild,
  goodPeer,
  heapAfterGc,
  keepEchoing,
  handlesBackTo,
  resources,
  resourcesAbove,
  sleep,
  startNode,
  type Node,
  type PeerClose,
  type StreamOutcome,
} from '../fixtures/hostile-peer.js';

const MB = 1024 * 1024;
const CONNECTION_REFUSED = 0x02;
const TLS_BAD_CERTIFICATE = 0x100 + 42;
const FLOOD = Number(process.env.HOSTILE_CONNECTIONS ?? 300);
const WAVES = Number(process.env.HOSTILE_FLOOD_WAVES ?? 1);
/** How long each flood connection attempt waits for an answer (QUIC retransmits the lost ones). */
const ATTEMPT_MS = Number(process.env.HOSTILE_ATTEMPT_MS ?? 5_000);
/** Heap the target may keep after an attack (full GC, same peers as before). */
const HEAP_SLACK = 8 * MB;

interface Figure {
  readonly attack: string;
  readonly code: string;
  readonly ms?: number;
  readonly heapBeforeMb: number;
  readonly heapPeakMb: number;
  readonly heapAfterMb: number;
  readonly rssPeakDeltaMb: number;
  readonly echoes: number;
  readonly echoFailures: number;
  readonly echoMaxMs: number;
  readonly extra?: string;
}
const figures: Figure[] = [];

function mb(bytes: number): number {
  return Math.round((bytes / MB) * 10) / 10;
}

/** Streams the target's engine counts for `peerId` now. */
function streamsOf(node: Node, peerId: string): number {
  return node.engine.snapshot().peers.find((p) => p.peerId === peerId)?.streams ?? 0;
}

function isReset(outcome: StreamOutcome | 'timeout' | null, code: number): boolean {
  return outcome !== null && outcome !== 'timeout' && outcome.resetCode === code;
}

/** A refusal before the handshake completed: transport CONNECTION_REFUSED with the reason text of `code`. */
function refusedWith(close: PeerClose | 'open', code: ConnectionErrorCode): boolean {
  return close !== 'open' && !close.isApp && close.errorCode === CONNECTION_REFUSED && codeForReason(close.reason) === code;
}


interface Arena {
  readonly target: Node;
  readonly good: Node;
  readonly hostile: HostilePeer;
  /** Samples the heap and RSS now (the peak is kept). */
  sample(): void;
}

/** Streams of the STOP_SENDING flood that quiche 0.18 may keep, and their credit with them, on a busy machine. */
const KEPT_BY_QUICHE = 5;

describe('hostile peers over QUIC (loopback)', function () {
  // A deadline: the attacks are seconds of CPU work (1 500 streams, 2 000
  // open+reset, 200 000 pings) that a loaded machine stretches several times.
  this.timeout(60_000);

  after(function () {
    if (process.env.PEERLINE_FIGURES === undefined) return;
    process.stdout.write(`\nhostile-peer figures:\n${JSON.stringify(figures, null, 1)}\n`);
  });

  /**
   * Runs `attack` against a fresh target while a good peer keeps echoing,
   * then checks that everything came back: the good peer never failed, the
   * target holds only the good peer, its heap is back, and once stopped the
   * process has no handle more than before.
   */
  async function underAttack(
    attack: string,
    init: EngineInit,
    run: (arena: Arena) => Promise<{ code: string; ms?: number; extra?: string }>,
    options: {
      heapSlack?: number;
      adapter?: Partial<QuicAdapterOptions>;
      /** Report the good peer's failures instead of failing on them (the manual runs with thousands). */
      tolerateEchoFailures?: boolean;
      /** How long the target may take to be back to its good peer (closed connections drain for 3 x PTO). */
      settleMs?: number;
    } = {},
  ): Promise<void> {
    const heapSlack = options.heapSlack ?? HEAP_SLACK;
    // After a turn of the loop: mocha arms this test's timeout timer once the test function returned its promise.
    await new Promise((resolve) => setImmediate(resolve));
    const handlesBefore = resources();
    const target = await startNode('target', init, options.adapter);
    const good = await goodPeer(target);
    const hostile = await HostilePeer.create(await identity('mallory'));
    let stopped = false;
    let echoing: { stop(): Promise<unknown> } | undefined;
    try {
      const heapBefore = heapAfterGc();
      const rssBefore = process.memoryUsage().rss;
      let heapPeak = heapBefore;
      let rssPeak = rssBefore;
      const sample = (): void => {
        const usage = process.memoryUsage();
        heapPeak = Math.max(heapPeak, usage.heapUsed);
        rssPeak = Math.max(rssPeak, usage.rss);
      };
      const sampler = setInterval(sample, 20);
      const echo = keepEchoing(good.engine, target.engine.peerId);
      echoing = echo;
      let result: { code: string; ms?: number; extra?: string };
      try {
        result = await run({ target, good, hostile, sample });
        sample();
      } finally {
        clearInterval(sampler);
        await hostile.close();
      }
      // Back to the one good peer, with nothing left over below it.
      const settled = await eventually(() => {
        const stats = target.adapter.stats();
        return (
          target.engine.snapshot().peers.length === 1 &&
          stats.connections === 1 &&
          stats.handshaking === 0 &&
          stats.libraryConnections === 1 &&
          target.engine.metrics().admission.inbound === 1 &&
          target.engine.metrics().admission.handshaking === 0
        );
      }, options.settleMs ?? 10_000);
      const report = await echo.stop();
      assert.ok(
        settled,
        `target not back to its good peer: ${JSON.stringify({ peers: target.engine.snapshot().peers.map((p) => p.state), stats: target.adapter.stats(), admission: target.engine.metrics().admission })}`,
      );
      if (options.tolerateEchoFailures !== true) assert.deepEqual(report.failed, [], 'the good peer had echo failures');
      assert.ok(report.ok >= 3, `only ${report.ok} echoes during the attack`);
      assert.ok(await eventually(() => target.adapter.stats().streams === 0, 10_000), `streams left: ${target.adapter.stats().streams}`);
      assert.equal(target.held.length === 0 || target.held.every((s) => s.peerId !== good.engine.peerId), true);
      const heapAfter = heapAfterGc();
      assert.ok(heapAfter - heapBefore < heapSlack, `heap grew by ${mb(heapAfter - heapBefore)} MB`);
      assert.equal(target.adapter.stats().libraryErrors, 0, target.warnings.join('\n'));
      assert.equal(target.engine.metrics().internalErrors, 0, target.warnings.join('\n'));
      assert.equal(target.engine.status, 'running');
      figures.push({
        attack,
        ...result,
        heapBeforeMb: mb(heapBefore),
        heapPeakMb: mb(heapPeak),
        heapAfterMb: mb(heapAfter),
        rssPeakDeltaMb: mb(rssPeak - rssBefore),
        echoes: report.ok,
        echoFailures: report.failed.length,
        echoMaxMs: report.maxMs,
      });
      await Promise.all([target.stop(), good.stop()]);
      stopped = true;
      assert.equal(target.adapter.stats().connections + good.adapter.stats().connections, 0);
      // Closing connections drain for a moment (QUIC's 3 x PTO), then every handle is gone.
      const released = await handlesBackTo(handlesBefore, 10_000);
      assert.ok(released, `handles left: ${JSON.stringify(resourcesAbove(handlesBefore))}`);
      assert.deepEqual(escapedErrors(), []);
    } finally {
      await echoing?.stop();
      if (!stopped) await Promise.allSettled([target.stop(), good.stop(), hostile.close()]);
    }
  }

  it('garbage stream headers: each stream is reset with ProtocolViolation; the connection and its credit survive', async function () {
    await underAttack('garbage stream headers (150 streams)', {}, async ({ target, hostile }) => {
      const connection = await hostile.join(target.target, hostile.peerId);
      const started = Date.now();
      const outcomes: Array<StreamOutcome | 'timeout' | null> = [];
      // More streams than QUIC's 100 of credit: the resets give it back.
      for (let i = 0; i < 150; i++) outcomes.push(await hostile.garbageHeader(connection));
      const ms = Date.now() - started;
      assert.equal(outcomes.filter((o) => isReset(o, StreamCode.ProtocolViolation)).length, 150, JSON.stringify(outcomes.slice(0, 3)));
      // The connection is intact: a proper stream still echoes.
      const { answer } = await connection.openUser('echo/1');
      assert.equal(answer, 'ack');
      assert.equal(connection.ended, undefined);
      return { code: `stream reset ${StreamCode.ProtocolViolation} (ProtocolViolation)`, ms: Math.round(ms / 150), extra: 'ms per stream' };
    });
  });

  it('oversized stream headers (65535 and 257 bytes announced): reset with ProtocolViolation before the name is read', async function () {
    await underAttack('oversized stream headers', {}, async ({ target, hostile }) => {
      const connection = await hostile.join(target.target, hostile.peerId);
      const huge = await hostile.oversizedHeader(connection, 0xffff, 64 * 1024);
      const overByOne = await hostile.oversizedHeader(connection, 257, 257);
      assert.ok(isReset(huge, StreamCode.ProtocolViolation), JSON.stringify(huge));
      assert.ok(isReset(overByOne, StreamCode.ProtocolViolation), JSON.stringify(overByOne));
      assert.equal(connection.ended, undefined);
      const ms = huge !== null && huge !== 'timeout' ? huge.afterMs : undefined;
      return { code: `stream reset ${StreamCode.ProtocolViolation}`, ms };
    });
  });

  it('slowloris: 50 headers sent one byte per 100 ms are reset at the header timeout', async function () {
    await underAttack('slowloris headers (50 streams, 1 byte / 100 ms)', {}, async ({ target, hostile }) => {
      const connection = await hostile.join(target.target, hostile.peerId);
      const outcomes = await Promise.all(Array.from({ length: 50 }, () => hostile.slowHeader(connection, 'echo/1', 100)));
      assert.ok(outcomes.every((o) => isReset(o, StreamCode.ProtocolViolation)), JSON.stringify(outcomes.slice(0, 2)));
      const times = outcomes.map((o) => (o as StreamOutcome).afterMs);
      // The header timeout is the handshake timeout, 500 ms, before the 900 ms the
      // header needs: a header that completed would have been accepted, not reset.
      // No upper bound: a busy machine fires the timer late, and that is no failure.
      assert.ok(Math.min(...times) >= 450, `reset after ${Math.min(...times)}..${Math.max(...times)} ms`);
      assert.equal(connection.ended, undefined);
      return { code: `stream reset ${StreamCode.ProtocolViolation} at the header timeout`, ms: Math.max(...times) };
    });
  });

  it('never reading: 20 echo streams fed 2 MB each, never read; flow control holds them; they go when the peer goes', async function () {
    await underAttack('never reading (20 echo streams x 2 MB)', {}, async ({ target, hostile, sample }) => {
      const connection = await hostile.join(target.target, hostile.peerId);
      const streams = await Promise.all(Array.from({ length: 20 }, () => hostile.neverRead(connection, 'echo/1', 2 * MB)));
      assert.ok(streams.every((s) => s.answer === 'ack'));
      // Let flow control fill every window, then look at the target.
      await sleep(1_000);
      sample();
      assert.equal(target.adapter.stats().streams >= 20, true);
      assert.equal(connection.ended, undefined);
      const started = Date.now();
      await connection.destroy();
      assert.ok(await eventually(() => target.adapter.stats().streams === 0 && target.engine.snapshot().peers.length === 1, 10_000));
      return { code: 'held by flow control; freed when the connection closed', ms: Date.now() - started, extra: 'ms to free after close' };
    });
  });

  it('never answering: a stream the target opens to the hostile peer fails with STREAM_TIMEOUT; nothing stays open', async function () {
    await underAttack('never answering stream opens (ACK never sent)', {}, async ({ target, hostile }) => {
      const peerId = hostile.peerId;
      const connection = await hostile.join(target.target, peerId);
      const started = Date.now();
      const opens = await Promise.all(
        Array.from({ length: 10 }, () =>
          target.engine.openStream(peerId, 'echo/1').then(
            () => 'opened',
            (error: unknown) => (error instanceof PeerlineError ? error.code : String(error)),
          ),
        ),
      );
      const ms = Date.now() - started;
      assert.deepEqual([...new Set(opens)], ['STREAM_TIMEOUT']);
      // Not before the stream open timeout (1 s); a busy machine may answer later.
      assert.ok(ms >= 900, `failed after ${ms} ms`);
      assert.equal(connection.incoming.length, 10, 'the headers arrived, unanswered');
      assert.ok(await eventually(() => target.engine.snapshot().peers.find((p) => p.peerId === peerId)?.opening === 0, 10_000));
      return { code: 'request fails STREAM_TIMEOUT (streamOpenTimeoutMs)', ms };
    });
  });

  it('never acknowledging: a peer gone silent (no ACK, no pong) is closed by heartbeats with HeartbeatTimeout', async function () {
    // The target pings the good peer too: a pong wait of 2.5 s, so that a busy
    // machine's late pong does not cost the good peer its connection. Two
    // misses: the silent peer is caught after about 8.5 s, 2 s before QUIC's
    // idle timeout (10.6 s).
    const heartbeat = { intervalMs: 3_000, timeoutMs: 2_500, misses: 2 };
    await underAttack('silent peer (no QUIC ACK, no pong)', { heartbeat }, async ({ target, hostile }) => {
      const connection = await hostile.join(target.target, hostile.peerId);
      assert.ok(await eventually(() => connection.controls.some((m) => m.type === 'ping'), 10_000), 'heartbeats flow');
      const started = Date.now();
      hostile.goSilent();
      const close = await connection.closed;
      const ms = Date.now() - started;
      assert.equal(close.isApp, true);
      // The code says the heartbeats caught it (not QUIC's idle timeout, a second later).
      assert.equal(close.errorCode, ConnectionErrorCode.HeartbeatTimeout);
      return { code: `close ${ConnectionErrorCode.HeartbeatTimeout} (HeartbeatTimeout)`, ms };
    });
  });

  it('stream floods: 300 held opens meet QUIC credit; 500 garbage streams and 2 000 open-and-reset leave nothing behind', async function () {
    // The header timeout (the handshake timeout) is long here: a machine so
    // busy that a held stream's header waits that long would reset it and
    // give its credit back, which is right, but not what this test counts.
    await underAttack('stream floods (held, garbage, reset churn)', { handshakeTimeoutMs: 10_000 }, async ({ target, good, hostile }) => {
      // The good peer keeps echoing meanwhile: its streams are in the target's counts too.
      const hostileStreams = (): number => streamsOf(target, hostile.peerId);
      const adapterStreamsBesidesGood = (): number => target.adapter.stats().streams - streamsOf(target, good.engine.peerId);
      const connection = await hostile.join(target.target, hostile.peerId);
      // Held: the target grants 100 streams of credit besides the control stream.
      const held = await hostile.streamFlood(connection, 300, 'hold');
      assert.equal(held.opened, 100, `${held.opened} opened; target warnings: ${target.warnings.join(' | ')}`);
      assert.equal(held.refused, 200);
      assert.ok(await eventually(() => target.held.length === 100, 10_000), `${target.held.length} held`);
      assert.ok(await eventually(() => hostileStreams() === 100 && adapterStreamsBesidesGood() === 100, 10_000), `${hostileStreams()} / ${adapterStreamsBesidesGood()} streams`);
      for (const stream of held.streams) stream.reset();
      assert.ok(await eventually(() => hostileStreams() === 0 && adapterStreamsBesidesGood() === 0, 10_000), 'the reset streams are freed');
      // Garbage and churn, as fast as the credit comes back (MAX_STREAMS).
      // Bounded by the count, and by a deadline on progress, not on the whole
      // flood: a busy machine takes longer, the credit still comes back.
      const flood = async (kind: 'garbage' | 'reset', total: number): Promise<{ count: number; ms: number }> => {
        const started = Date.now();
        let progressAt = started;
        let count = 0;
        while (count < total && Date.now() - progressAt < 10_000) {
          const round = await hostile.streamFlood(connection, 100, kind);
          count += round.opened;
          if (round.opened > 0) progressAt = Date.now();
          if (kind === 'garbage') {
            const outcomes = await Promise.all(round.streams.map((stream) => stream.outcome(10_000)));
            assert.ok(outcomes.every((o) => isReset(o, StreamCode.ProtocolViolation)), JSON.stringify(outcomes.find((o) => !isReset(o, StreamCode.ProtocolViolation))));
          }
          await sleep(round.opened === 0 ? 5 : 0);
        }
        return { count, ms: Date.now() - started };
      };
      const garbage = await flood('garbage', 500);
      assert.ok(garbage.count >= 500, `${garbage.count} garbage streams in ${garbage.ms} ms: the credit stopped coming back for 10 s`);
      const churn = await flood('reset', 2_000);
      assert.ok(churn.count >= 2_000, `${churn.count} open+reset in ${churn.ms} ms: the credit stopped coming back for 10 s`);
      assert.equal(connection.ended, undefined);
      assert.ok(await eventually(() => hostileStreams() === 0 && adapterStreamsBesidesGood() === 0, 10_000), `streams: ${hostileStreams()} / ${adapterStreamsBesidesGood()}`);
      return {
        code: `QUIC credit caps held streams at 100; garbage reset ${StreamCode.ProtocolViolation}`,
        ms: churn.ms,
        extra: `ms for ${churn.count} open+reset (${garbage.count} garbage in ${garbage.ms} ms)`,
      };
    });
  });

  it('STOP_SENDING right after FIN: a handler writing its answer fails at once with a typed error, never hangs; 1 500 streams leave nothing behind', async function () {
    this.timeout(60_000);
    await underAttack('stop sending right after FIN (1 500 streams)', {}, async ({ target, hostile }) => {
      // A handler that answers while it reads: 16 KB at once, the rest after the end.
      const ends: string[] = [];
      let running = 0;
      target.engine.handle('talk/1', async (stream) => {
        running++;
        try {
          const writer = stream.writable.getWriter();
          await writer.write(new Uint8Array(16 * 1024));
          const reader = stream.readable.getReader();
          while (!(await reader.read()).done);
          for (let i = 0; i < 3; i++) await writer.write(new Uint8Array(16 * 1024));
          await writer.close();
          ends.push('written');
        } catch (error) {
          ends.push(error instanceof TransportError ? `${error.kind}: ${error.message}` : `untyped: ${String(error)}`);
        } finally {
          running--;
        }
      });
      // A 4 KB window for what the target sends: its answers wait on flow control when the STOP_SENDING comes.
      const connection = await hostile.join(target.target, hostile.peerId, { config: { initialMaxStreamDataBidiLocal: 4_096 } });
      const baseline = connection.credit;
      const started = Date.now();
      const flood = await hostile.stopAfterFin(connection, 'talk/1', 1_500, 20_000);
      assert.deepEqual(flood, { opened: 1_500, acked: 1_500 }, 'the credit kept coming back');
      // Every handler ended: none waits for ever in a write (the library's writer did, for 11 to 90 of 1 500).
      assert.ok(await eventually(() => ends.length === 1_500 && running === 0, 10_000), `${running} handlers still running, ${ends.length} ended`);
      const kinds = [...new Set(ends)];
      assert.ok(kinds.every((k) => k === 'written' || k === 'closed: the remote stopped reading the stream'), JSON.stringify(kinds));
      const ms = Date.now() - started;
      // Nothing held: no stream of the hostile peer in the engine or the adapter.
      assert.ok(
        await eventually(() => streamsOf(target, hostile.peerId) === 0 && target.adapter.stats().streams - streamsOf(target, hostile.peerId) <= 1, 10_000),
        JSON.stringify({ peers: target.engine.snapshot().peers, stats: target.adapter.stats() }),
      );
      // And the remote's stream credit is back where it was, but for streams
      // quiche 0.18 keeps: one the STOP_SENDING reached while bytes of ours
      // were in flight is never collected (docs/PERFORMANCE.md, library
      // behaviour 5). Whether a stream's answer was in flight then depends on
      // how busy the machine is (1 of 1 500 in about 1 run of 6 under four
      // busy loops, none on an idle machine), so a few are allowed; without
      // the credit coming back the flood above stops at 100 streams.
      assert.ok(await eventually(() => connection.credit === baseline, 10_000) || baseline - connection.credit <= KEPT_BY_QUICHE, `credit ${connection.credit} of ${baseline}`);
      assert.equal(connection.ended, undefined);
      const failed = ends.filter((e) => e !== 'written').length;
      return {
        code: 'writes after STOP_SENDING fail with TransportError closed',
        ms,
        extra: `ms for 1 500 streams; ${failed} handler writes failed; credit left ${connection.credit} of ${baseline}`,
      };
    });
  });

  it('control floods: 200 000 pings at once, and pings whose pongs are never read: closed with ControlFlood; nothing piles up', async function () {
    this.timeout(60_000);
    // The hostile peer never reads its control stream, so it never answers
    // the target's pings either: with the usual heartbeat (1 s, 2 misses) the
    // slow flood's connection died of HeartbeatTimeout whenever the machine
    // was busy enough to slow the flood's 100 ms turns, before its unread
    // pongs passed the backlog bound. Heartbeats out of the way, the flood
    // alone decides.
    const heartbeat = { intervalMs: 60_000, timeoutMs: 10_000, misses: 2 };
    await underAttack('control floods (pings, pongs never read)', { heartbeat }, async ({ target, hostile }) => {
      // As fast as the loop turns, never reading the pongs: the inbound rate limit.
      const fast = await hostile.join(target.target, hostile.peerId);
      fast.readsControl = false;
      const started = Date.now();
      const sent = await hostile.pingFlood(fast, 200_000, 2_000, 0);
      const fastClose = await fast.closed;
      const fastMs = Date.now() - started;
      assert.equal(fastClose.isApp, true, JSON.stringify(fastClose));
      assert.equal(fastClose.errorCode, ConnectionErrorCode.ControlFlood);
      // Just under the rate, with a tiny window and the pongs never read: the outbound bound.
      const slow = await hostile.join(target.target, hostile.peerId, { config: { initialMaxStreamDataBidiLocal: 2_048 } });
      slow.readsControl = false;
      const slowStarted = Date.now();
      const slowSent = await hostile.pingFlood(slow, 20_000, 80, 100);
      const slowClose = await slow.closed;
      assert.equal(slowClose.errorCode, ConnectionErrorCode.ControlFlood, JSON.stringify(slowClose));
      assert.ok(slowSent < 20_000, `${slowSent} pings before the close`);

      return {
        code: `close ${ConnectionErrorCode.ControlFlood} (ControlFlood)`,
        ms: fastMs,
        extra: `ms for the fast flood (${sent} pings sent before the close); the slow one closed after ${slowSent} pings, ${Date.now() - slowStarted} ms`,
      };
      // A flooded connection drains for 3 x PTO, and the flood inflated its round-trip estimate.
    }, { settleMs: 15_000 });
  });

  it(`connection flood: ${FLOOD} connections at once from another process; past maxHandshakingConnections refused before TLS, the rest time out`, async function () {
    this.timeout(Math.max(60_000, WAVES * (ATTEMPT_MS + 15_000)));
    await underAttack(
      `connection flood (${FLOOD} at once, handshaking limit 64)`,
      { inboundRateLimit: { connections: Infinity } },
      async ({ target, sample }) => {
        const settled = (): boolean => target.adapter.stats().libraryConnections === 1 && target.adapter.stats().handshaking === 0;
        const wave = async () => {
          // Handshaking connections at once, adapter and engine together: never above the limit.
          let most = 0;
          const watch = setInterval(() => {
            most = Math.max(most, target.adapter.stats().handshaking + target.engine.metrics().admission.handshaking);
            sample();
          }, 2);
          const refusedBefore = target.engine.metrics().admission.refusedByCode.HandshakeLimit ?? 0;
          const { ends, connectMs } = await floodFromChild(target.target, FLOOD, ATTEMPT_MS).finally(() => clearInterval(watch));
          const limited = ends.filter((c) => refusedWith(c, ConnectionErrorCode.HandshakeLimit)).length;
          // Held, then closed at the handshake timeout: with the application code
          // past TLS, with the transport close when their TLS had not finished.
          const timeout = (c: PeerClose | 'open'): boolean =>
            (c !== 'open' && c.isApp && c.errorCode === ConnectionErrorCode.HandshakeTimeout) || refusedWith(c, ConnectionErrorCode.HandshakeTimeout);
          const timedOut = ends.filter(timeout).length;
          // No answer at all in time: the datagrams were lost on the way in
          // (the kernel's receive buffer overflows under a burst like this one),
          // and QUIC's retransmissions had not got through yet.
          const unanswered = ends.filter((c) => c !== 'open' && !c.remote && c.errorCode === undefined).length;
          // Closed by the target, but its close was lost on the way back (same
          // cause): the hostile side never hears of it. The target's side is
          // checked all the same.
          const unheard = ends.filter((c) => c === 'open').length;
          const other = ends.filter((c) => c !== 'open' && !refusedWith(c, ConnectionErrorCode.HandshakeLimit) && !timeout(c) && c.errorCode !== undefined);
          assert.deepEqual(other.slice(0, 3), [], `${other.length} other outcomes`);
          assert.equal(limited + timedOut + unanswered + unheard, FLOOD);
          // Beyond a few hundred at once most of a burst is lost in the kernel's buffers on loopback (see docs/RELIABILITY.md).
          if (FLOOD <= 500) assert.ok(unanswered + unheard < FLOOD / 2, `${unanswered} unanswered, ${unheard} unheard`);
          // At most the limit held at once (the good peer's connection is established, not counted);
          // as they time out (500 ms), later arrivals take their slots.
          assert.ok(most <= 64 && most > 0, `${most} handshaking at once`);
          assert.ok(timedOut > 0);
          // The target counted every refusal the hostile side heard of, and maybe some whose close was lost.
          const counted = (target.engine.metrics().admission.refusedByCode.HandshakeLimit ?? 0) - refusedBefore;
          assert.ok(counted >= limited && counted <= limited + unanswered + unheard, `${counted} counted, ${limited} heard`);
          assert.ok(await eventually(settled, 10_000), JSON.stringify(target.adapter.stats()));
          return { limited, counted, timedOut, unanswered, unheard, most, connectMs, heap: heapAfterGc(), rss: process.memoryUsage().rss };
        };
        // HOSTILE_FLOOD_WAVES=n floods n times over (a manual run): the heap
        // after each wave shows whether anything accumulates per flood.
        const waves = [await wave()];
        for (let i = 1; i < WAVES; i++) waves.push(await wave());
        const heaps = waves.map((w) => w.heap);
        if (WAVES >= 3) {
          // The first flood warms caches and compiled code up; later ones must not add to it.
          assert.ok(heaps.at(-1)! - heaps[1]! < 3 * MB, `heap after each flood: ${heaps.map(mb).join(', ')} MB`);
        }
        const first = waves[0]!;
        return {
          code: `${first.limited} refused before TLS (HandshakeLimit; the target counted ${first.counted}), ${first.timedOut} closed ${ConnectionErrorCode.HandshakeTimeout} (HandshakeTimeout), ${first.unanswered} unanswered, ${first.unheard} close lost; at most ${first.most} handshaking at once`,
          ms: first.connectMs,
          extra: `ms until every attempt had an answer; heap after each flood: ${heaps.map(mb).join(', ')} MB; rss after each: ${waves.map((w) => mb(w.rss)).join(', ')} MB; later waves: ${waves
            .slice(1)
            .map((w) => `${w.limited}/${w.timedOut}/${w.unanswered}/${w.unheard}`)
            .join(', ')} (refused/timed out/unanswered/close lost)`,
        };
      },
      { tolerateEchoFailures: FLOOD > 500 },
    );
  });

  it('identities: a foreign key type, a forged self-signature and the engine dialling an impostor are refused during TLS; a hello naming another peer closes with IdentityMismatch', async function () {
    await underAttack('wrong identities', {}, async ({ target, hostile }) => {
      const started = Date.now();
      // Not an Ed25519 key: TLS itself is fine with it, peerline refuses it in the verify callback.
      const ecdsa = await hostile.attempt(target.target, { keys: await ecdsaKeyPair() });
      const ecdsaClose = await endOf(ecdsa);
      assert.ok(ecdsaClose !== 'open' && ecdsaClose.tls && ecdsaClose.errorCode === TLS_BAD_CERTIFICATE, JSON.stringify(ecdsaClose));
      // mallory's key in a certificate signed by alice's key.
      const forged = await certificateSignedByAnother(await identity('mallory'), await identity('alice'));
      const forgedClose = await endOf(await hostile.attempt(target.target, { keys: forged }));
      assert.ok(forgedClose !== 'open' && forgedClose.tls && forgedClose.errorCode === TLS_BAD_CERTIFICATE, JSON.stringify(forgedClose));
      const tlsMs = Date.now() - started;
      // Valid TLS as mallory, but the hello names alice.
      const claim = await hostile.connect(target.target);
      await claim.send({ type: 'hello', version: 1, peerId: (await identity('alice')).peerId });
      const claimClose = await claim.closed;
      assert.equal(claimClose.isApp, true);
      assert.equal(claimClose.errorCode, ConnectionErrorCode.IdentityMismatch);
      // The engine dials an address where mallory answers for alice: refused in its own verify callback.
      const impostor = await HostilePeer.create(await identity('mallory'));
      try {
        const port = await impostor.listen();
        const alice = await identity('alice');
        target.engine.addPeer(alice.peerId, [quicAddress(port)]);
        await assert.rejects(
          target.engine.openStream(alice.peerId, 'echo/1'),
          (e: unknown) => e instanceof PeerlineError && e.code === 'PEER_IDENTITY_MISMATCH',
        );
        target.engine.removePeer(alice.peerId);
      } finally {
        await impostor.close();
      }
      assert.equal(target.engine.metrics().admission.refusedByCode.IdentityMismatch, 2);
      return { code: `TLS alert bad_certificate (0x${TLS_BAD_CERTIFICATE.toString(16)}); hello for another peer: close ${ConnectionErrorCode.IdentityMismatch}`, ms: tlsMs, extra: 'ms for both TLS refusals' };
    });
  });

  it('data after the end: bytes after a stream END reset it with ProtocolViolation; datagrams replayed after the connection closed are dropped', async function () {
    // Retry tokens good for 300 to 900 ms here (10 to 30 s by default).
    await underAttack(
      'data after close (stream END, replayed datagrams)',
      {},
      async ({ target, hostile }) => {
        const connection = await hostile.join(target.target, hostile.peerId);
        const after = await hostile.dataAfterEnd(connection, 'echo/1');
        assert.ok(after !== 'refused' && isReset(after, StreamCode.ProtocolViolation), JSON.stringify(after));
        await connection.destroy();
        // Record a whole connection, handshake included, close it, then send it all again.
        hostile.record();
        const recorded = await hostile.join(target.target, hostile.peerId);
        const { stream, answer } = await recorded.openUser('echo/1');
        assert.equal(answer, 'ack');
        await stream.end();
        await recorded.destroy();
        assert.ok(await eventually(() => target.engine.snapshot().peers.length === 1 && target.adapter.stats().libraryConnections === 1, 10_000));
        await sleep(1_000); // past the retry token's life
        const before = target.engine.metrics();
        let most = 0;
        const watch = setInterval(() => void (most = Math.max(most, target.adapter.stats().libraryConnections)), 2);
        const replayed = await hostile.replay(3);
        await sleep(300);
        clearInterval(watch);
        assert.ok(replayed > 10, `${replayed} datagrams`);
        assert.equal(most, 1, 'the replayed handshake made no connection state');
        assert.equal(target.engine.snapshot().peers.length, 1);
        assert.equal(target.adapter.stats().handshaking, 0);
        assert.equal(target.engine.metrics().admission.refused, before.admission.refused);
        return { code: `stream reset ${StreamCode.ProtocolViolation}; replayed datagrams dropped (expired retry token)`, extra: `${replayed} datagrams replayed` };
      },
      { adapter: { retryTokenMs: 300 } },
    );
  });

  it('handshakes that never finish: a TLS stall, no control stream, no hello, a hello one byte at a time: all closed at the handshake timeout', async function () {
    await underAttack('stalled handshakes', { inboundRateLimit: { connections: Infinity } }, async ({ target, hostile }) => {
      const stallers = await Promise.all(['t1', 't2', 't3'].map(async (name) => HostilePeer.create(await identity(name))));
      try {
        // TLS: our certificate and Finished never leave.
        const tls = await stallers[0]!.stallTls(target.target, 3_000);
        assert.ok(await eventually(() => target.adapter.stats().handshaking >= 1, 10_000));
        // TLS done, no control stream.
        const noControl = await stallers[1]!.connect(target.target);
        // Control stream, no hello.
        const noHello = await stallers[2]!.connect(target.target);
        await noHello.control();
        // A hello one byte every 100 ms (13+ bytes: longer than the timeout).
        const slow = await hostile.connect(target.target);
        const control = await slow.control();
        const hello = encodeControl({ type: 'hello', version: 1, peerId: hostile.peerId });
        const dribble = (async () => {
          for (const byte of hello) {
            if (slow.ended !== undefined) return;
            await control.write(Uint8Array.of(byte)).catch(() => {});
            await sleep(100);
          }
        })();
        const closes = await Promise.all([
          tls.ok ? tls.connection.closed : Promise.resolve(tls.close),
          noControl.closed,
          noHello.closed,
          slow.closed,
        ]);
        await dribble;
        // The TLS stall can only be told with a transport close (no application code before the handshake completes).
        assert.ok(refusedWith(closes[0]!, ConnectionErrorCode.HandshakeTimeout), JSON.stringify(closes[0]));
        for (const close of closes.slice(1)) {
          assert.equal(close.isApp, true, JSON.stringify(close));
          assert.equal(close.errorCode, ConnectionErrorCode.HandshakeTimeout);
        }
        const times = closes.map((c) => c.afterMs);
        // Not before the handshake timeout (500 ms); the codes say the timeout closed them.
        assert.ok(times.every((t) => t >= 450), `closed after ${times.join(', ')} ms`);
        return { code: `close ${ConnectionErrorCode.HandshakeTimeout} (HandshakeTimeout); TLS stall: CONNECTION_REFUSED "${ConnectionErrorReason.HandshakeTimeout}"`, ms: Math.max(...times) };
      } finally {
        await Promise.all(stallers.map((s) => s.close()));
      }
    });
  });

  it('malformed control traffic: a bad frame, a second control stream: the connection closes with ProtocolViolation', async function () {
    await underAttack('malformed control traffic', {}, async ({ target, hostile }) => {
      const first = await hostile.join(target.target, hostile.peerId);
      const started = Date.now();
      await first.controlBytes(new Uint8Array([0x00, 0x01, 0x63])); // a frame of an unknown type
      const badFrame = await first.closed;
      const ms = Date.now() - started;
      assert.equal(badFrame.errorCode, ConnectionErrorCode.ProtocolViolation);
      const second = await hostile.join(target.target, hostile.peerId);
      const extra = second.open()!;
      await extra.write(Uint8Array.of(0x00)); // another control stream
      const twice = await second.closed;
      assert.equal(twice.isApp, true);
      assert.equal(twice.errorCode, ConnectionErrorCode.ProtocolViolation);
      return { code: `close ${ConnectionErrorCode.ProtocolViolation} (ProtocolViolation)`, ms };
    });
  });
});
