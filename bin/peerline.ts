#!/usr/bin/env -S node --import tsx
/**
 * peerline's command line.
 *   peerline demo [--peers N] [--duration S] [--seed N] [--no-chaos] [--quiet]
 */
import { parseArgs } from 'node:util';
import { formatReport, runMemoryDemo } from './demo.js';

const USAGE = `usage: peerline demo [--peers N] [--duration SECONDS] [--seed N] [--no-chaos] [--quiet]

  demo   a swarm of agents on the in-memory network (virtual clock) opening
         streams to each other under a chaos schedule; prints every
         transition and a final report. Exits 1 if anything crashed or a
         request went unanswered.`;

function positiveInt(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write(`--${name} must be a whole number >= 1, got ${raw}\n`);
    process.exit(2);
  }
  return n;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command !== 'demo') {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined || command === '--help' || command === 'help' ? 0 : 2;
  }
  const { values } = parseArgs({
    args: rest,
    options: {
      peers: { type: 'string' },
      duration: { type: 'string' },
      seed: { type: 'string' },
      'no-chaos': { type: 'boolean' },
      quiet: { type: 'boolean' },
    },
    strict: true,
  });
  const peers = positiveInt('peers', values.peers, 6);
  const durationS = positiveInt('duration', values.duration, 60);
  const seed = positiveInt('seed', values.seed, 42);
  process.stdout.write(`peerline demo: ${peers} agents, ${durationS} s of virtual time, seed ${seed}\n`);
  const report = await runMemoryDemo({
    peers,
    durationS,
    seed,
    chaos: values['no-chaos'] !== true,
    verbose: values.quiet !== true,
    out: (line) => process.stdout.write(`${line}\n`),
  });
  process.stdout.write(`${formatReport(report)}\n`);
  return report.crashes === 0 && report.requests.unanswered === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`peerline: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
