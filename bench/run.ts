/**
 * Runs every benchmark, each in its own process (started with --expose-gc),
 * streams their output, and prints a summary. `npm run bench`.
 *
 * Bounded: every child has a deadline and is killed past it; on this 2-core
 * machine the whole run takes about 3-4 minutes.
 *
 *   npm run bench
 *   npx tsx bench/run.ts --quick     # smaller sizes, for a smoke run
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { RESULT_PREFIX, flagArg, int, mib, msSince, say } from './common.js';
import type { DialQueueRow } from './dial-queue.js';
import type { MemoryRow } from './memory.js';
import type { ObservabilityReport } from './observability.js';
import type { PruneReport } from './prune.js';
import type { RequestPathReport } from './request-path.js';
import type { ConnectReport } from './quic/connect.js';
import type { ThroughputReport } from './quic/throughput.js';
import type { ResumeReport } from './resume.js';
import type { RoutingReport } from './routing.js';

interface Child {
  readonly name: string;
  readonly script: string;
  readonly args: readonly string[];
  readonly timeoutMs: number;
}

const quick = flagArg('quick');
const here = (file: string): string => fileURLToPath(new URL(file, import.meta.url));

const CHILDREN: readonly Child[] = [
  {
    name: 'routing',
    script: here('./routing.ts'),
    args: quick ? ['--requests', '2000', '--rounds', '2'] : [],
    timeoutMs: 180_000,
  },
  {
    name: 'request-path',
    script: here('./request-path.ts'),
    args: quick ? ['--requests', '4000', '--sequential', '500', '--rounds', '2'] : [],
    timeoutMs: 180_000,
  },
  {
    name: 'memory',
    script: here('./memory.ts'),
    args: quick ? ['--sizes', '2000,10000'] : [],
    // Its own children (one per size and mode) have their own deadlines.
    timeoutMs: 360_000,
  },
  {
    name: 'dial-queue',
    script: here('./dial-queue.ts'),
    args: quick ? ['--max', '25000'] : [],
    timeoutMs: 60_000,
  },
  {
    name: 'observability',
    script: here('./observability.ts'),
    args: quick ? ['--requests', '2000', '--rounds', '2'] : [],
    timeoutMs: 180_000,
  },
  {
    name: 'prune',
    script: here('./prune.ts'),
    args: quick ? ['--small', '500', '--large', '5000', '--admissions', '100'] : [],
    timeoutMs: 180_000,
  },
  {
    name: 'resume',
    script: here('./resume.ts'),
    args: quick ? ['--mb', '4', '--rounds', '2', '--cuts', '3'] : [],
    timeoutMs: 300_000,
  },
  {
    name: 'quic-throughput',
    script: here('./quic/throughput.ts'),
    args: quick ? ['--mb', '16', '--raw-mb', '2', '--rounds', '1'] : [],
    timeoutMs: 300_000,
  },
  {
    name: 'quic-connect',
    script: here('./quic/connect.ts'),
    args: quick ? ['--peers', '50', '--rounds', '2'] : [],
    timeoutMs: 300_000,
  },
];

/** Runs one benchmark, echoing its output; resolves with its result line (parsed) or an error text. */
function run(child: Child): Promise<{ result?: Record<string, unknown>; error?: string; ms: number }> {
  const start = process.hrtime.bigint();
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', child.script, ...child.args], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let result: Record<string, unknown> | undefined;
    let pending = '';
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (chunk: string) => {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        if (line.startsWith(RESULT_PREFIX)) result = JSON.parse(line.slice(RESULT_PREFIX.length)) as Record<string, unknown>;
        else say(line);
      }
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      proc.kill('SIGKILL');
    }, child.timeoutMs);
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      if (pending.length > 0 && !pending.startsWith(RESULT_PREFIX)) say(pending);
      const ms = msSince(start);
      if (timedOut) resolve({ error: `killed after ${child.timeoutMs / 1000} s`, ms });
      else if (code !== 0 || result === undefined) resolve({ error: `exited with ${code ?? signal}`, ms });
      else resolve({ result, ms });
    });
  });
}

const started = process.hrtime.bigint();
say(`peerline benchmarks, ${new Date().toISOString()}, node ${process.version}${quick ? ', quick sizes' : ''}`);
const outcomes = new Map<string, Awaited<ReturnType<typeof run>>>();
for (const child of CHILDREN) {
  say('');
  outcomes.set(child.name, await run(child));
}

say('');
say('== summary ==');
let failures = 0;
for (const child of CHILDREN) {
  const o = outcomes.get(child.name)!;
  const took = `${(o.ms / 1000).toFixed(0)} s`;
  if (o.error !== undefined || o.result === undefined) {
    failures += 1;
    say(`${child.name}: FAILED (${o.error ?? 'no result'}) after ${took}`);
    continue;
  }
  switch (child.name) {
    case 'routing': {
      const r = o.result as unknown as RoutingReport;
      say(
        `routing (${took}): direct ${int(r.medians.direct)} req/s, routing ${int(r.medians.routing)} req/s, ` +
          `openStream ${int(r.medians.openStream)} req/s`,
      );
      say(
        `  routing/direct ${r.ratio.toFixed(3)}x, openStream/direct ${r.ratioOpenStream.toFixed(3)}x ` +
          `(goal <= ${r.goal}x: ${r.ratio <= r.goal ? 'MET' : 'NOT MET'} / ${r.ratioOpenStream <= r.goal ? 'MET' : 'NOT MET'}); ` +
          `by CPU time ${r.cpuRatio.toFixed(3)}x / ${r.cpuRatioOpenStream.toFixed(3)}x`,
      );
      break;
    }
    case 'request-path': {
      const r = o.result as unknown as RequestPathReport;
      say(`request path on the memory network (${took}):`);
      for (const m of r.modes) {
        say(
          `  ${m.mode}: engine ${int(m.engine.perSecond)} req/s (main-thread CPU ${int(m.engine.perMainCpuSecond)}, process CPU ${int(m.engine.perCpuSecond)}), ` +
            `raw network ${int(m.raw.perSecond)} req/s (${int(m.raw.perCpuSecond)}); engine/raw ${m.ratio.toFixed(2)}x, CPU ${m.cpuRatio.toFixed(2)}x`,
        );
      }
      const batch = r.modes[0]!.engine;
      const met = (rate: number): string => (rate >= r.goal ? 'MET' : 'NOT MET');
      say(
        `  goal engine >= ${int(r.goal)} req/s (batch): ${met(batch.perSecond)} by wall time, ${met(batch.perMainCpuSecond)} by main-thread CPU, ` +
          `${met(batch.perCpuSecond)} by process CPU`,
      );
      break;
    }
    case 'memory': {
      const rows = (o.result as unknown as { rows: MemoryRow[] }).rows;
      say(`memory (${took}):`);
      for (const row of rows) {
        say(
          `  ${int(row.peers).padStart(7)} peers: RSS ${int(row.rssPerPeer)} B/peer (process ${mib(row.engine.m3.rss)}), ` +
            `heap ${int(row.heapPerPeer)} B/peer, hub engine alone ${int(row.enginePerPeer)} B/peer heap`,
        );
      }
      const big = rows.find((row) => row.peers >= 100_000);
      if (big !== undefined) {
        say(
          `  goal 100k peers within 1 GiB RSS: ${big.fitsGoal ? 'MET' : 'NOT MET'} (process ${mib(big.engine.m3.rss)}, ` +
            `peak ${mib(big.engine.maxRss)}; hub alone, estimated ${mib(big.hubOnlyRss)})`,
        );
        say(
          `  heartbeats: ${big.usPerPeerInterval.toFixed(2)} us CPU per peer per interval, ${big.heartbeatRatio.toFixed(2)}x the memory network's raw ping/pong ` +
            `(${big.transportUsPerPeerInterval.toFixed(2)} us); goal <= 10 us: ${big.heartbeatGoalMet ? 'MET' : 'NOT MET'}; ` +
            `the hub engine's own share ${big.engineUsPerPeerInterval.toFixed(2)} us, ${int(big.peers)} peers at 5 s need ${big.heartbeatCores.toFixed(3)} cores`,
        );
      }
      break;
    }
    case 'dial-queue': {
      const rows = (o.result as unknown as { rows: DialQueueRow[] }).rows;
      const first = rows[0];
      const last = rows[rows.length - 1];
      if (first !== undefined && last !== undefined) {
        say(
          `dial queue (${took}): ${int(first.nsPerWaiter)} ns/waiter at ${int(first.waiters)}, ` +
            `${int(last.nsPerWaiter)} ns/waiter at ${int(last.waiters)} (linear would stay flat)`,
        );
      }
      break;
    }
    case 'observability': {
      const r = o.result as unknown as ObservabilityReport;
      say(
        `observability (${took}): openStream with nothing watching ${int(r.perSecond.off)} req/s; time over that: ` +
          `inspector attached then detached ${r.ratio.detached.toFixed(3)}x, every diagnostics channel subscribed ${r.ratio.channels.toFixed(3)}x, ` +
          `an inspector attached ${r.ratio.inspector.toFixed(3)}x; prometheus() ${r.prometheusUs.toFixed(0)} us for ${r.peers} peers`,
      );
      break;
    }
    case 'prune': {
      const r = o.result as unknown as PruneReport;
      say(
        `pruning (${took}): ${r.msSmall.toFixed(3)} ms per admission at ${int(r.small)} peers, ${r.msLarge.toFixed(3)} ms at ${int(r.large)}: ` +
          `${r.ratio.toFixed(2)}x (goal <= ${r.goal}x, constant time: ${r.ratio <= r.goal ? 'MET' : 'NOT MET'})`,
      );
      break;
    }
    case 'resume': {
      const r = o.result as unknown as ResumeReport;
      const p50 = (values: readonly number[]): string => (values.length === 0 ? 'n/a' : values[Math.floor(values.length / 2)]!.toFixed(1));
      say(
        `resumable streams (${took}): resumable/plain throughput ${r.memory.ratio.toFixed(3)} on the memory network, ` +
          `${r.quic.ratio.toFixed(3)} over QUIC (${r.quic.resumable.toFixed(1)} vs ${r.quic.plain.toFixed(1)} MiB/s)`,
      );
      say(`  reconnect to first resumed byte: p50 ${p50(r.fromHeal)} ms from the heal, ${p50(r.fromReady)} ms from the new connection ready`);
      break;
    }
    case 'quic-throughput': {
      const r = o.result as unknown as ThroughputReport;
      const pl = r.rates.peerline!;
      const raw = r.rates.raw!;
      const floor = r.rates.dgram!;
      say(
        `quic throughput (${took}): peerline ${pl.single.toFixed(1)} MiB/s on 1 stream, ${pl.parallel.toFixed(1)} MiB/s on ${r.parallel}; ` +
          `peerline / raw ${(pl.single / raw.single).toFixed(1)}x / ${(pl.parallel / raw.parallel).toFixed(1)}x; ` +
          `peerline / dgram floor ${(pl.single / floor.single).toFixed(3)} / ${(pl.parallel / floor.parallel).toFixed(3)}`,
      );
      say(
        `  goals: 1 stream >= ${r.goals.single} MiB/s (stretch ${r.goals.stretch}): ${pl.single >= r.goals.single ? 'MET' : 'NOT MET'}${pl.single >= r.goals.stretch ? ' (stretch too)' : ''}; ` +
          `${r.parallel} streams >= ${r.goals.parallel} MiB/s: ${pl.parallel >= r.goals.parallel ? 'MET' : 'NOT MET'}`,
      );
      break;
    }
    case 'quic-connect': {
      const r = o.result as unknown as ConnectReport;
      say(
        `quic connect (${took}): ${r.peers} peers at concurrency ${r.concurrency}: peerline ${r.peerlineMs.toFixed(0)} ms, raw ${r.rawMs.toFixed(0)} ms; ` +
          `peerline / raw ${r.ratio.toFixed(2)} (goal <= ${r.goal}: ${r.ratio <= r.goal ? 'MET' : 'NOT MET'}), CPU ${r.cpuRatio.toFixed(2)}`,
      );
      break;
    }
  }
}
say(`total ${(msSince(started) / 1000).toFixed(0)} s`);
process.exitCode = failures > 0 ? 1 : 0;
