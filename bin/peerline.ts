#!/usr/bin/env -S node --import tsx
/**
 * peerline's command line.
 *   peerline demo [--peers N] [--duration S] [--seed N] [--no-chaos] [--port P] [--memory] [--quiet]
 *   peerline inspect [--agents N] [--port P] [--seed N] [--no-chaos]
 *   peerline diagram [--out DIR]
 */
import { parseArgs } from 'node:util';
import { MemoryNetwork } from '../adapters/memory/index.js';
import { systemClock } from '../runtime/index.js';
import { runInspectDemo } from '../visualizer/index.js';
import { formatReport, runMemoryDemo } from './demo.js';
import { formatQuicReport, runQuicDemo } from './quic-demo.js';
import { writeDiagram } from './diagram.js';

const USAGE = `usage: peerline demo [--peers N] [--duration SECONDS] [--seed N] [--no-chaos] [--port P] [--memory] [--quiet]
       peerline inspect [--agents N] [--port P] [--seed N] [--no-chaos]
       peerline diagram [--out DIR]

  demo     a swarm of agents over real QUIC on 127.0.0.1 (wall clock, default
           6 agents for 60 s) opening echo streams to each other under a
           chaos schedule (drain, partition, stop and restart), with the
           inspector page on --port (default: any free one), a progress line
           every second and a final report; Ctrl-C ends it early, cleanly.
           --memory runs the swarm on the in-memory network instead (virtual
           clock, every transition printed). Exits 1 if anything crashed or a
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
      port: { type: 'string' },
      'no-chaos': { type: 'boolean' },
      memory: { type: 'boolean' },
      quiet: { type: 'boolean' },
    },
    strict: true,
  });
  const peers = wholeNumber('peers', values.peers, 6, 2);
  const durationS = wholeNumber('duration', values.duration, 60);
  const seed = wholeNumber('seed', values.seed, 42);
  const chaos = values['no-chaos'] !== true;
  if (values.memory === true) {
    process.stdout.write(`peerline demo: ${peers} agents, ${durationS} s of virtual time, seed ${seed}\n`);
    const report = await runMemoryDemo({
      peers,
      durationS,
      seed,
      chaos,
      verbose: values.quiet !== true,
      out: (line) => process.stdout.write(`${line}\n`),
    });
    process.stdout.write(`${formatReport(report)}\n`);
    return report.crashes === 0 && report.requests.unanswered === 0 ? 0 : 1;
  }
  return quicDemo({ peers, durationS, seed, chaos, port: wholeNumber('port', values.port, 0, 0), quiet: values.quiet === true });
}

async function quicDemo(options: { peers: number; durationS: number; seed: number; chaos: boolean; port: number; quiet: boolean }): Promise<number> {
  const tty = process.stdout.isTTY === true;
  // On a terminal the progress line rewrites itself; other lines clear it first.
  let progressShown = false;
  const clear = (): void => {
    if (progressShown) process.stdout.write('\r\x1b[K');
    progressShown = false;
  };
  const out = (line: string): void => {
    clear();
    process.stdout.write(`${line}\n`);
  };
  const progress = (line: string): void => {
    if (options.quiet) return;
    if (tty) {
      clear();
      process.stdout.write(line);
      progressShown = true;
    } else {
      process.stdout.write(`${line}\n`);
    }
  };
  const stopper = new AbortController();
  const stop = (): void => stopper.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  out(`peerline demo: ${options.peers} agents over QUIC on 127.0.0.1, ${options.durationS} s, seed ${options.seed}${options.chaos ? '' : ', no chaos'}`);
  try {
    const report = await runQuicDemo({
      peers: options.peers,
      durationS: options.durationS,
      seed: options.seed,
      chaos: options.chaos,
      port: options.port,
      out,
      progress,
      onServing: (url) => out(`peerline inspector: ${url}  (Ctrl-C to stop)`),
      signal: stopper.signal,
    });
    clear();
    process.stdout.write(`${formatQuicReport(report)}\n`);
    return report.crashes === 0 && report.requests.unanswered === 0 ? 0 : 1;
  } finally {
    clear();
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
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
