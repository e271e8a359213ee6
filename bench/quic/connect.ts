/**
 * Connecting to many peers over QUIC on loopback: one peerline engine
 * reaching P peers with dial concurrency D, against the bare @matrixai/quic
 * client dialling the same P listeners D at a time, in one run.
 *
 *   peerline   a fresh engine (dialConcurrency D) asks `withConnection(peer)`
 *              for all P peers at once; the engine dials (QUIC handshake with
 *              pinned mutual TLS), runs its hello/hello-ack handshake and is
 *              `ready` with every peer. Time until all P are ready.
 *   raw        one socket, `QUICClient.createQUICClient` to the same P
 *              listeners, D in flight at a time (a simple pool); time until
 *              all P handshakes completed. The same security work as
 *              peerline's: mutual TLS (the listeners ask for a certificate
 *              and check it), and the dialler checks the listener's
 *              certificate in a verify callback and pins its peer id, with
 *              the same check. No application handshake.
 *
 * Both sides dial the same listeners, so both go through their stateless
 * retry (one more round trip; @matrixai/quic's server always does it).
 *
 * With `--adapter`, a third side in the same rounds: `adapter.dial` of a
 * peerline QUIC adapter with no engine on the dialling side (the listeners'
 * engines still adopt each connection), D in flight at a time as raw. Its
 * ratio to raw is the transport's share of the difference; peerline / adapter
 * is the engine's (its machines and the hello/hello-ack).
 *
 * The P listeners are peerline engines, started once and shared by every
 * round; each round makes a fresh dialler and closes every connection before
 * the next. Rounds alternate which side goes first. Reported: the median
 * total per side, the process CPU time per peer until the last one was
 * connected (both ends run in this process and one thread does nearly all
 * the work, so the time follows the CPU; steadier than wall time on a
 * shared machine), and the ratios peerline / raw (the difference is the
 * engine's work per peer: its machines, the control stream and the
 * hello/hello-ack).
 *
 *   npx tsx bench/quic/connect.ts [--peers 200] [--concurrency 50] [--rounds 4] [--adapter]
 */
import { QUICClient, QUICSocket } from '@matrixai/quic';
import { createQuicAdapter, peerIdFromCertificate, type QuicAdapter } from '../../adapters/quic/index.js';
import { createEngine, type Engine } from '../../runtime/index.js';
import { RESULT_PREFIX, flagArg, numberArg, quietLogger, say } from '../common.js';
import { benchIdentity, clientCrypto, cpuMsSince, percentile, silentLogger, sortedCopy } from './common.js';

const PEERS = numberArg('peers', 200);
const CONCURRENCY = numberArg('concurrency', 50);
const ROUNDS = numberArg('rounds', 4);
const ADAPTER = flagArg('adapter');


interface Listener {
  readonly engine: Engine;
  readonly adapter: QuicAdapter;
}

async function listeners(): Promise<Listener[]> {
  const out: Listener[] = [];
  for (let i = 0; i < PEERS; i++) {
    const adapter = createQuicAdapter({ identity: await benchIdentity(`listener-${i}`), logger: quietLogger });
    const engine = createEngine({ adapter, logger: quietLogger, trace: false, drainDeadlineMs: 200, forceCloseGraceMs: 500 });
    await engine.start();
    out.push({ engine, adapter });
  }
  return out;
}

type Side = 'raw' | 'peerline' | 'adapter';

/** One side's round: wall time until every peer was connected, and the process CPU time meanwhile (ms). */
interface Round {
  readonly took: number;
  readonly cpu: number;
}

/** TLS alert bad_certificate, as a QUIC crypto error. */
const BAD_CERTIFICATE = 0x100 + 42;

async function peerlineRound(peers: Listener[], round: number): Promise<Round> {
  const adapter = createQuicAdapter({ identity: await benchIdentity(`dialler-${round}`), logger: quietLogger });
  const engine = createEngine({
    adapter,
    logger: quietLogger,
    trace: false,
    dialConcurrency: CONCURRENCY,
    drainDeadlineMs: 200,
    forceCloseGraceMs: 1_000,
    connectTimeoutMs: 20_000,
    handshakeTimeoutMs: 20_000,
  });
  await engine.start();
  for (const p of peers) engine.addPeer(p.engine.peerId, [p.adapter.address]);
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const results = await Promise.allSettled(peers.map((p) => engine.withConnection(p.engine.peerId, () => undefined)));
  const took = performance.now() - started;
  const cpu = cpuMsSince(cpuBefore);
  const failed = results.filter((r) => r.status === 'rejected').length;
  if (failed > 0) say(`  peerline round ${round}: ${failed} of ${PEERS} failed (${String((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason)})`);
  const ready = engine.snapshot().peers.filter((p) => p.state === 'ready').length;
  if (ready !== PEERS) say(`  peerline round ${round}: ${ready} ready`);
  await engine.stop({ force: true });
  return { took, cpu };
}

/**
 * Dials every listener with `dial`, `CONCURRENCY` at a time (a simple pool).
 * The wall and process CPU time until the last dial settled, and what the
 * dials made.
 */
async function pooled<T>(peers: Listener[], dial: (peer: Listener) => Promise<T>): Promise<Round & { made: T[]; failed: number }> {
  const made: T[] = [];
  let next = 0;
  let failed = 0;
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < peers.length) {
        const peer = peers[next++]!;
        try {
          made.push(await dial(peer));
        } catch {
          failed++;
        }
      }
    }),
  );
  return { took: performance.now() - started, cpu: cpuMsSince(cpuBefore), made, failed };
}

/** `adapter.dial` alone: the transport peerline's engine dials through, with no engine on this side. */
async function adapterRound(peers: Listener[], round: number): Promise<Round> {
  const adapter = createQuicAdapter({ identity: await benchIdentity(`adapter-dialler-${round}`), logger: quietLogger });
  await adapter.start();
  const { took, cpu, failed } = await pooled(peers, (peer) =>
    adapter.dial(peer.engine.peerId, peer.adapter.address, { signal: new AbortController().signal }),
  );
  if (failed > 0) say(`  adapter round ${round}: ${failed} of ${PEERS} failed`);
  await adapter.close();
  return { took, cpu };
}

async function rawRound(peers: Listener[], round: number): Promise<Round> {
  const identity = await benchIdentity(`raw-dialler-${round}`);
  const socket = new QUICSocket({ logger: silentLogger });
  await socket.start({ host: '127.0.0.1', port: 0 });
  const { took, cpu, failed, made: clients } = await pooled(peers, (peer) =>
    QUICClient.createQUICClient(
      {
        host: '127.0.0.1',
        port: peer.adapter.port,
        socket,
        logger: silentLogger,
        crypto: clientCrypto,
        config: {
          key: identity.privateKeyPem,
          cert: identity.certificatePem,
          applicationProtos: ['peerline/1'],
          // The listener's certificate checked and its peer id pinned, as peerline's dial does.
          verifyPeer: true,
          verifyCallback: async (certs: Uint8Array[]) => {
            try {
              return peerIdFromCertificate(certs[0] ?? new Uint8Array()) === peer.engine.peerId ? undefined : BAD_CERTIFICATE;
            } catch {
              return BAD_CERTIFICATE;
            }
          },
        },
      },
      { timer: 20_000 },
    ),
  );
  if (failed > 0) say(`  raw round ${round}: ${failed} of ${PEERS} failed`);
  await Promise.all(clients.map((c) => c.destroy({ force: true }).catch(() => {})));
  await socket.stop({ force: true }).catch(() => {});
  return { took, cpu };
}

export interface ConnectReport {
  readonly peers: number;
  readonly concurrency: number;
  readonly peerlineMs: number;
  readonly rawMs: number;
  /** Median total time, peerline / raw. */
  readonly ratio: number;
  /** Median CPU per peer, peerline / raw. */
  readonly cpuRatio: number;
  readonly goal: number;
}

async function main(): Promise<void> {
  say(`connect to ${PEERS} peers, dial concurrency ${CONCURRENCY}, loopback; ${ROUNDS} rounds`);
  const peers = await listeners();
  const totals: Record<Side, number[]> = { raw: [], peerline: [], adapter: [] };
  const cpu: Record<Side, number[]> = { raw: [], peerline: [], adapter: [] };
  const runs: Record<Side, (round: number) => Promise<Round>> = {
    raw: (round) => rawRound(peers, round),
    peerline: (round) => peerlineRound(peers, round),
    adapter: (round) => adapterRound(peers, round),
  };
  const order: Side[] = ADAPTER ? ['raw', 'adapter', 'peerline'] : ['raw', 'peerline'];
  // One round of each side first, not counted: the code is compiled, and the
  // listeners' certificates are checked once (the check is cached per process)
  // before either side is timed.
  for (const side of order) {
    await runs[side](-1);
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  for (let round = 0; round < ROUNDS; round++) {
    const sides = round % 2 === 1 ? [...order].reverse() : order;
    for (const side of sides) {
      const { took, cpu: used } = await runs[side](round);
      totals[side].push(took);
      cpu[side].push(used / PEERS);
      say(`  round ${round} ${side.padEnd(8)} ${took.toFixed(0)} ms, CPU ${(used / PEERS).toFixed(2)} ms per peer (both ends, until the last one connected)`);
      // Let the listeners finish closing before the next side.
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
  }
  const p = percentile(sortedCopy(totals.peerline), 0.5);
  const r = percentile(sortedCopy(totals.raw), 0.5);
  say('');
  say(`median total: peerline ${p.toFixed(0)} ms (${((PEERS / p) * 1000).toFixed(0)} peers/s), raw ${r.toFixed(0)} ms (${((PEERS / r) * 1000).toFixed(0)} peers/s)`);
  const pc = percentile(sortedCopy(cpu.peerline), 0.5);
  const rc = percentile(sortedCopy(cpu.raw), 0.5);
  say(`median CPU per peer: peerline ${pc.toFixed(2)} ms, raw ${rc.toFixed(2)} ms`);
  if (ADAPTER) {
    const a = percentile(sortedCopy(totals.adapter), 0.5);
    const ac = percentile(sortedCopy(cpu.adapter), 0.5);
    say(`adapter.dial alone: ${a.toFixed(0)} ms, CPU ${ac.toFixed(2)} ms per peer; adapter / raw: time ${(a / r).toFixed(2)}, CPU ${(ac / rc).toFixed(2)}; peerline / adapter: time ${(p / a).toFixed(2)}, CPU ${(pc / ac).toFixed(2)}`);
  }
  const goal = 1.2;
  say(`peerline / raw: time ${(p / r).toFixed(2)}, CPU ${(pc / rc).toFixed(2)} (goal: time <= ${goal}: ${p / r <= goal ? 'MET' : 'NOT MET'})`);
  await Promise.all(peers.map((l) => l.engine.stop({ force: true })));
  const report: ConnectReport = { peers: PEERS, concurrency: CONCURRENCY, peerlineMs: p, rawMs: r, ratio: p / r, cpuRatio: pc / rc, goal };
  say(`${RESULT_PREFIX}${JSON.stringify(report)}`);
}

await main();
