/**
 * The long simulator soak: many seeds (a count or a time budget), on every
 * core. `npm run sim:soak -- ...` runs it too (`npm run soak` is the chaos
 * soak over real QUIC, in `soak/`).
 *
 *   npx tsx sim/soak.ts --minutes 30 --peers 20 --steps 10000
 *   npx tsx sim/soak.ts --seeds 1000 --from 5000 --peers 8 --steps 4000
 *
 * Options: --seeds N (how many; default unlimited with --minutes), --minutes M
 * (time budget; default 10 when --seeds is not given), --from S (first seed,
 * default 1), --peers N (default 20), --steps N (default 10000), --threads N
 * (default: cores, at most 4), --shrink-seconds N (for the first failure,
 * default 120). Prints one line per batch and, for every failing seed, the
 * invariant and the command that reruns it; the first failure is shrunk.
 * Exit code 1 if any seed failed.
 */
import { availableParallelism, tmpdir } from 'node:os';
import { pathToFileURL } from 'node:url';
import { failureReport } from './cli.js';
import { runSeeds, type SeedOutcome } from './pool.js';
import { generate } from './schedule.js';
import { simulate } from './world.js';

interface SoakOptions {
  seeds: number;
  minutes: number;
  from: number;
  peers: number;
  steps: number;
  threads: number;
  shrinkSeconds: number;
}

function parse(argv: readonly string[]): SoakOptions {
  const o: SoakOptions = {
    seeds: Infinity,
    minutes: NaN,
    from: 1,
    peers: 20,
    steps: 10_000,
    threads: Math.min(availableParallelism(), 4),
    shrinkSeconds: 120,
  };
  const keys: Record<string, keyof SoakOptions> = {
    '--seeds': 'seeds',
    '--minutes': 'minutes',
    '--from': 'from',
    '--peers': 'peers',
    '--steps': 'steps',
    '--threads': 'threads',
    '--shrink-seconds': 'shrinkSeconds',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const key = keys[argv[i] ?? ''];
    const value = Number(argv[i + 1]);
    if (key === undefined || !Number.isFinite(value) || value < 0) throw new Error(`bad argument ${String(argv[i])} ${String(argv[i + 1])}`);
    o[key] = value;
  }
  if (Number.isNaN(o.minutes)) o.minutes = o.seeds === Infinity ? 10 : Infinity;
  return o;
}

async function main(): Promise<void> {
  let o: SoakOptions;
  try {
    o = parse(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    process.exitCode = 2;
    return;
  }
  const started = performance.now();
  const deadline = started + o.minutes * 60_000;
  const failures: SeedOutcome[] = [];
  let next = o.from;
  let done = 0;
  let steps = 0;
  // Large batches: each starts its worker threads anew.
  const batch = o.threads * 8;
  while (done < o.seeds && performance.now() < deadline) {
    const count = Math.min(batch, o.seeds - done);
    const seeds = Array.from({ length: count }, (_, i) => next + i);
    next += count;
    const outcomes = await runSeeds({ seeds, peers: o.peers, steps: o.steps }, { threads: o.threads });
    for (const outcome of outcomes) {
      done += 1;
      steps += outcome.executed;
      if (outcome.violation !== undefined) {
        failures.push(outcome);
        process.stdout.write(
          `FAIL seed ${outcome.seed}: ${outcome.violation.invariant} at step ${outcome.violation.step}: ${outcome.violation.message}\n` +
            `  rerun: npx tsx sim/cli.ts --seed ${outcome.seed} --peers ${o.peers} --steps ${o.steps}\n`,
        );
      }
    }
    const minutes = (performance.now() - started) / 60_000;
    process.stdout.write(`${done} seeds (${seeds[0]}-${seeds.at(-1)}), ${steps} steps, ${failures.length} failed, ${minutes.toFixed(1)} min\n`);
  }
  if (failures.length === 0) return;
  process.exitCode = 1;
  const first = failures[0]!;
  const result = await simulate(generate(first.seed, o.peers, o.steps));
  const command = `npx tsx sim/cli.ts --seed ${first.seed} --peers ${o.peers} --steps ${o.steps}`;
  process.stdout.write(`\nfirst failure, seed ${first.seed}:\n${await failureReport(result, { shrinkSeconds: o.shrinkSeconds, out: tmpdir(), command })}\n`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) void main();
