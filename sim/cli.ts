/**
 * The simulator's command line.
 *
 *   npx tsx sim/cli.ts --seed 42 --peers 20 --steps 10000
 *   npx tsx sim/cli.ts --schedule <file or base64>        # rerun a saved (e.g. shrunk) schedule
 *
 * Options:
 *   --seed N            seed of the schedule and of every random choice (default 1)
 *   --peers N           nodes in the swarm (default 20)
 *   --steps N           operations (default 10000)
 *   --schedule S        run this schedule instead of generating one (a file, or base64 of its JSON)
 *   --trace-out FILE    write the whole trace to FILE
 *   --trace             print the whole trace
 *   --shrink-seconds N  time allowed for shrinking a failure (default 60; 0: do not shrink)
 *   --out DIR           where a shrunk failing schedule is saved (default the system temp dir)
 *
 * Exit code 0 when every invariant held, 1 when one broke (the report names
 * it, shows the end of the trace and the command that reruns the shrunk
 * schedule), 2 on bad arguments.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describeOp, encode, generate, load, type Schedule } from './schedule.js';
import { shrink } from './shrink.js';
import { simulate, type SimOptions, type SimResult } from './world.js';

export interface CliOptions {
  seed: number;
  peers: number;
  steps: number;
  schedule: string | undefined;
  traceOut: string | undefined;
  trace: boolean;
  shrinkSeconds: number;
  out: string;
}

export function parseArgs(argv: readonly string[]): CliOptions {
  const options: CliOptions = {
    seed: 1,
    peers: 20,
    steps: 10_000,
    schedule: undefined,
    traceOut: undefined,
    trace: false,
    shrinkSeconds: 60,
    out: tmpdir(),
  };
  const number = (name: string, value: string | undefined): number => {
    const n = Number(value);
    if (value === undefined || !Number.isFinite(n) || n < 0) throw new Error(`${name} needs a number >= 0`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = argv[i + 1];
    switch (arg) {
      case '--seed':
        options.seed = number(arg, value);
        i++;
        break;
      case '--peers':
        options.peers = number(arg, value);
        i++;
        break;
      case '--steps':
        options.steps = number(arg, value);
        i++;
        break;
      case '--schedule':
        if (value === undefined) throw new Error('--schedule needs a file or base64');
        options.schedule = value;
        i++;
        break;
      case '--trace-out':
        options.traceOut = value;
        i++;
        break;
      case '--trace':
        options.trace = true;
        break;
      case '--shrink-seconds':
        options.shrinkSeconds = number(arg, value);
        i++;
        break;
      case '--out':
        if (value === undefined) throw new Error('--out needs a directory');
        options.out = value;
        i++;
        break;
      default:
        throw new Error(`unknown argument ${String(arg)}`);
    }
  }
  return options;
}

/** The command that reruns `schedule`: inline when short, else from a file saved under `dir`. */
export function rerunCommand(schedule: Schedule, dir: string): string {
  const inline = encode(schedule);
  if (inline.length <= 2_000) return `npx tsx sim/cli.ts --schedule ${inline}`;
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `peerline-sim-seed${schedule.seed}-${schedule.steps.length}steps.json`);
  writeFileSync(file, JSON.stringify(schedule));
  return `npx tsx sim/cli.ts --schedule ${file}`;
}

export function summary(result: SimResult): string {
  const s = result.stats;
  const failed = Object.entries(s.failed)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([code, n]) => `${code} ${n}`)
    .join(', ');
  return (
    `seed ${result.schedule.seed}, ${result.schedule.peers} peers: ${result.steps}/${result.schedule.steps.length} steps, ` +
    `${s.virtualMs} ms virtual; ${s.requests} requests (${s.ok} ok${failed === '' ? '' : `; ${failed}`}), ` +
    `${s.leases} leases, ${s.stops} stops, ${s.starts} restarts, ${s.transitions} transitions; trace sha256 ${result.traceHash.slice(0, 16)}`
  );
}

/** The report for a failing run: the invariant, the end of the trace, and how to rerun it shrunk. */
export async function failureReport(
  result: SimResult,
  options: { shrinkSeconds: number; out: string; command: string; log?: (line: string) => void; sim?: SimOptions },
): Promise<string> {
  const v = result.violation!;
  const lines: string[] = [];
  lines.push(`INVARIANT BROKEN: ${v.invariant} at step ${v.step} (t=${v.at} ms)`);
  lines.push(`  ${v.message}`);
  lines.push('', 'trace tail:');
  for (const line of result.trace.slice(-40)) lines.push(`  ${line}`);
  lines.push('', `rerun: ${options.command}`);
  if (options.shrinkSeconds > 0) {
    const shrunk = await shrink(result, {
      ...options.sim,
      budgetMs: options.shrinkSeconds * 1000,
      ...(options.log === undefined ? {} : { log: options.log }),
    });
    lines.push(
      '',
      `shrunk to ${shrunk.schedule.steps.length} of ${result.schedule.steps.length} steps (${shrunk.runs} runs, ${Math.round(shrunk.ms)} ms), still breaking ${shrunk.result.violation?.invariant}:`,
    );
    for (const step of shrunk.schedule.steps) lines.push(`  #${step.id} ${describeOp(step.op)}${step.dt > 0 ? ` +${step.dt}ms` : ''}`);
    lines.push(`  -> ${shrunk.result.violation?.message}`);
    lines.push('', `rerun shrunk: ${rerunCommand(shrunk.schedule, options.out)} --peers ${result.schedule.peers}`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  let options: CliOptions;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    process.exitCode = 2;
    return;
  }
  const schedule = options.schedule === undefined ? generate(options.seed, options.peers, options.steps) : load(options.schedule);
  const result = await simulate(schedule);
  if (options.trace) process.stdout.write(`${result.trace.join('\n')}\n`);
  if (options.traceOut !== undefined) writeFileSync(options.traceOut, `${result.trace.join('\n')}\n`);
  process.stdout.write(`${summary(result)}\n`);
  if (result.violation === undefined) return;
  process.exitCode = 1;
  const command =
    options.schedule === undefined
      ? `npx tsx sim/cli.ts --seed ${options.seed} --peers ${options.peers} --steps ${options.steps}`
      : `npx tsx sim/cli.ts --schedule ${options.schedule}`;
  process.stdout.write(`${await failureReport(result, { shrinkSeconds: options.shrinkSeconds, out: options.out, command, log: (l) => process.stderr.write(`${l}\n`) })}\n`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) void main();
