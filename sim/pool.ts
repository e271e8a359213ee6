/**
 * Runs many seeds, on worker threads when the machine has more than one core
 * (each seed is independent and deterministic, so the split changes nothing
 * but the wall time). Results come back in seed order.
 */
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { generate } from './schedule.js';
import { simulate, type SimOptions, type SimStats, type Violation } from './world.js';

export interface SeedOutcome {
  readonly seed: number;
  readonly peers: number;
  readonly steps: number;
  readonly executed: number;
  readonly violation: Violation | undefined;
  /** The end of the trace, when the seed failed. */
  readonly tail: readonly string[];
  readonly traceHash: string;
  readonly stats: SimStats;
  readonly ms: number;
}

export interface SeedJob {
  readonly seeds: readonly number[];
  readonly peers: number;
  readonly steps: number;
  readonly options?: SimOptions;
}

/** Runs one seed in this thread. */
export async function runSeed(seed: number, peers: number, steps: number, options: SimOptions = {}): Promise<SeedOutcome> {
  const started = performance.now();
  const result = await simulate(generate(seed, peers, steps), { keepTrace: false, ...options });
  return {
    seed,
    peers,
    steps,
    executed: result.steps,
    violation: result.violation,
    tail: result.violation === undefined ? [] : result.trace.slice(-40),
    traceHash: result.traceHash,
    stats: result.stats,
    ms: performance.now() - started,
  };
}

function inThread(job: SeedJob, onResult?: (outcome: SeedOutcome) => void): Promise<SeedOutcome[]> {
  return (async () => {
    const out: SeedOutcome[] = [];
    for (const seed of job.seeds) {
      const outcome = await runSeed(seed, job.peers, job.steps, job.options);
      onResult?.(outcome);
      out.push(outcome);
    }
    return out;
  })();
}

function inWorker(job: SeedJob, onResult?: (outcome: SeedOutcome) => void): Promise<SeedOutcome[]> {
  return new Promise((resolve, reject) => {
    // The worker runs TypeScript through tsx, registered in the worker itself.
    const require = createRequire(import.meta.url);
    const api = require.resolve('tsx/cjs/api');
    const entry = fileURLToPath(new URL('./worker.ts', import.meta.url));
    const boot = `require(${JSON.stringify(api)}).register(); require(${JSON.stringify(entry)});`;
    const worker = new Worker(boot, { eval: true, workerData: job });
    const out: SeedOutcome[] = [];
    worker.on('message', (outcome: SeedOutcome) => {
      onResult?.(outcome);
      out.push(outcome);
    });
    worker.on('error', reject);
    worker.on('exit', (code) => {
      if (out.length === job.seeds.length) resolve(out);
      else reject(new Error(`simulation worker exited with code ${code} after ${out.length} of ${job.seeds.length} seeds`));
    });
  });
}

/** Runs every seed; `threads` defaults to the number of cores (at most 4). */
export async function runSeeds(
  job: SeedJob,
  options: { threads?: number; onResult?: (outcome: SeedOutcome) => void } = {},
): Promise<SeedOutcome[]> {
  const threads = Math.max(1, Math.min(options.threads ?? Math.min(availableParallelism(), 4), job.seeds.length));
  if (threads === 1) return inThread(job, options.onResult);
  // Seeds dealt round robin, so every thread gets a similar mix.
  const parts = Array.from({ length: threads }, (_, t) => job.seeds.filter((_, i) => i % threads === t));
  const results = await Promise.all(parts.map((seeds) => inWorker({ ...job, seeds }, options.onResult)));
  return results.flat().sort((a, b) => a.seed - b.seed);
}
