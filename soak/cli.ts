/**
 * The chaos soak over real QUIC (`npm run soak`):
 *
 *   npm run soak -- --minutes 3 --seed 1
 *   npm run soak -- --seconds 60 --seed 7 --engines 6 --quiet
 *
 * Options: --minutes M or --seconds S (length of the faults and traffic;
 * default 1 minute), --seed N (default 1; the same seed gives the same fault
 * schedule), --engines K (default 5), --quiet (no fault or progress lines).
 * Prints the schedule's hash and first faults, each fault as it happens, a
 * progress line every 5 s, and a closing table. Exit code 0 when the run
 * passed, 1 on any crash, unhandled rejection, leaked handle, unanswered
 * request or wrong echo (see `verdict` in `world.ts`), 2 on bad arguments.
 * Ctrl-C ends the run early; it still shuts down and prints the table.
 *
 * Run it with `node --expose-gc --import tsx` (the npm script does) so the
 * heap figures are read after a collection.
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { formatResult, runSoak, verdict } from './world.js';

export interface SoakArgs {
  durationMs: number;
  seed: number;
  engines: number;
  quiet: boolean;
}

export const USAGE = 'usage: npm run soak -- [--minutes M | --seconds S] [--seed N] [--engines K] [--quiet]';

/** Parses the command line; throws an Error with a message for the user on a bad argument. */
export function parseSoakArgs(argv: readonly string[]): SoakArgs {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      minutes: { type: 'string' },
      seconds: { type: 'string' },
      seed: { type: 'string' },
      engines: { type: 'string' },
      quiet: { type: 'boolean' },
    },
    strict: true,
  });
  const number = (name: string, raw: string | undefined, check: (n: number) => boolean, what: string): number | undefined => {
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n) || !check(n)) throw new Error(`--${name} must be ${what}, got ${raw}`);
    return n;
  };
  if (values.minutes !== undefined && values.seconds !== undefined) throw new Error('give --minutes or --seconds, not both');
  const minutes = number('minutes', values.minutes, (n) => n > 0 && n <= 24 * 60, 'a number of minutes > 0 (at most a day)');
  const seconds = number('seconds', values.seconds, (n) => n >= 2 && n <= 24 * 3600, 'a number of seconds >= 2 (at most a day)');
  const seed = number('seed', values.seed, (n) => Number.isInteger(n) && n >= 0 && n < 2 ** 32, 'a whole number 0..2^32-1') ?? 1;
  const engines = number('engines', values.engines, (n) => Number.isInteger(n) && n >= 2 && n <= 32, 'a whole number 2..32') ?? 5;
  const durationMs = Math.round(seconds !== undefined ? seconds * 1000 : (minutes ?? 1) * 60_000);
  return { durationMs, seed, engines, quiet: values.quiet === true };
}

async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  let args: SoakArgs;
  try {
    args = parseSoakArgs(argv);
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n${USAGE}\n`);
    return 2;
  }
  const say = (line: string): void => void process.stdout.write(`${line}\n`);
  const stopper = new AbortController();
  const stop = (): void => stopper.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  say(`peerline soak: ${args.engines} engines over QUIC on 127.0.0.1, every pair through a fault proxy, ${args.durationMs / 1000} s, seed ${args.seed}`);
  let announced = false;
  try {
    const result = await runSoak({
      seed: args.seed,
      durationMs: args.durationMs,
      engines: args.engines,
      progressEveryMs: args.quiet ? 0 : 5000,
      signal: stopper.signal,
      out: (line) => {
        if (!args.quiet) say(line);
      },
      onSchedule: (schedule) => {
        announced = true;
        say(`schedule ${schedule.hash}: ${schedule.faults} faults; first ones:`);
        for (const line of schedule.head) say(`  ${line}`);
      },
    });
    if (!announced) say(`schedule ${result.schedule.hash}: ${result.schedule.faults} faults`);
    say(formatResult(result));
    return verdict(result).length === 0 ? 0 : 1;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`soak: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
