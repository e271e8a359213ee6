#!/usr/bin/env -S node --import tsx
/**
 * peerline's command line.
 *   peerline demo [--peers N] [--duration S] [--seed N] [--no-chaos] [--quiet]
 *   peerline inspect [--agents N] [--port P] [--seed N] [--no-chaos]
 *   peerline diagram [--out DIR]
 */
import { parseArgs } from 'node:util';
import { MemoryNetwork } from '../adapters/memory/index.js';
import { systemClock } from '../runtime/index.js';
import { runInspectDemo } from '../visualizer/index.js';
import { formatReport, runMemoryDemo } from './demo.js';
import { writeDiagram } from './diagram.js';

const USAGE = `usage: peerline demo [--peers N] [--duration SECONDS] [--seed N] [--no-chaos] [--quiet]
       peerline inspect [--agents N] [--port P] [--seed N] [--no-chaos]
       peerline diagram [--out DIR]

  demo     a swarm of agents on the in-memory network (virtual clock) opening
           streams to each other under a chaos schedule; prints every
           transition and a final report. Exits 1 if anything crashed or a
           request went unanswered.
  inspect  a live swarm on the in-memory network (real time) and the
           inspector page watching it, on 127.0.0.1; Ctrl-C stops both.
  diagram  writes the connection machine as SVG and Mermaid (default: docs/).`;

function wholeNumber(name: string, raw: string | undefined, fallback: number, min = 1): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    process.stderr.write(`--${name} must be a whole number >= ${min}, got ${raw}\n`);
    process.exit(2);
  }
  return n;
}

async function inspect(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { agents: { type: 'string' }, port: { type: 'string' }, seed: { type: 'string' }, 'no-chaos': { type: 'boolean' } },
    strict: true,
  });
  const demo = await runInspectDemo({
    network: new MemoryNetwork({ clock: systemClock, latencyMs: 2 }),
    agents: wholeNumber('agents', values.agents, 8),
    port: wholeNumber('port', values.port, 0, 0),
    seed: wholeNumber('seed', values.seed, 42),
    chaosIntervalMs: values['no-chaos'] === true ? 0 : 4000,
  });
  process.stdout.write(`peerline inspector: ${demo.url}  (Ctrl-C to stop)\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await demo.close();
  return 0;
}

async function diagram(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { out: { type: 'string' } }, strict: true });
  const files = await writeDiagram(values.out ?? 'docs');
  process.stdout.write(`${Object.values(files).join('\n')}\n`);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === 'inspect') return inspect(rest);
  if (command === 'diagram') return diagram(rest);
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
  const peers = wholeNumber('peers', values.peers, 6);
  const durationS = wholeNumber('duration', values.duration, 60);
  const seed = wholeNumber('seed', values.seed, 42);
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
