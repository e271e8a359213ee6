#!/usr/bin/env node
/**
 * peerline's command line (the package's `peerline` bin; `npm start` runs it
 * from the sources through tsx).
 *   peerline demo [--peers N] [--duration S] [--seed N] [--no-chaos] [--port P] [--memory] [--quiet]
 *   peerline inspect [--agents N] [--port P] [--seed N] [--no-chaos]
 *   peerline diagram [--out DIR]
 *
 * Each command loads what it needs when it runs: `demo --memory` only the
 * core, `demo` the QUIC transport and the visualizer, `inspect` and
 * `diagram` the visualizer. Those are optional peer dependencies of the
 * package, so a missing one is reported as one line naming what to install.
 * A mistake on the command line is one line on stderr and exit code 2.
 */
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

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
  diagram  writes the connection machine as SVG and Mermaid (default: docs/).

  peerline --help | --version`;

/** A mistake on the command line: one line on stderr, exit code 2. */
class UsageError extends Error {}

/** An optional package a command needs is not installed: one line on stderr, exit code 1. */
class MissingPackageError extends Error {}

/** The optional parts (the package's optional peer dependencies) and the packages each needs. */
const PARTS = {
  quic: { what: 'the QUIC transport', install: ['@matrixai/quic@2.0.9', '@peculiar/x509', 'reflect-metadata'] },
  visualizer: { what: 'the visualizer', install: ['elkjs', 'ws'] },
} as const;
type Part = keyof typeof PARTS;

/** The package named by a failed import's "Cannot find package" error, if that is what it is. */
function missingPackage(error: unknown): string | undefined {
  if ((error as { code?: unknown } | undefined)?.code !== 'ERR_MODULE_NOT_FOUND') return undefined;
  return /Cannot find package '([^']+)'/.exec(String((error as Error).message))?.[1];
}

/**
 * Imports what `command` needs. A package that is not installed becomes one
 * `MissingPackageError` naming everything the command's parts need, so one
 * install is enough.
 */
async function load<T>(command: string, parts: readonly Part[], importer: () => Promise<T>): Promise<T> {
  try {
    return await importer();
  } catch (error) {
    const name = missingPackage(error);
    if (name === undefined) throw error;
    const packages: string[] = parts.flatMap((part) => PARTS[part].install);
    if (!packages.some((p) => p === name || p.startsWith(`${name}@`))) packages.push(name);
    const what = parts.length === 0 ? `the package ${name}` : parts.map((part) => PARTS[part].what).join(' and ');
    throw new MissingPackageError(`peerline ${command} needs ${what} (${name} is not installed): npm install ${packages.join(' ')}`);
  }
}

type Flags = Record<string, { type: 'string' | 'boolean' }>;

/** Parses a command's flags strictly (`--help` is always allowed); a bad flag is a `UsageError`. */
function flags<const F extends Flags>(command: string, args: string[], options: F) {
  try {
    return parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false }).values;
  } catch (error) {
    // Node's messages go on to explain `--`; the first sentence names the problem.
    const first = (error instanceof Error ? error.message : String(error)).split(/\.(?:\s|$)/)[0] ?? '';
    throw new UsageError(`peerline ${command}: ${first.charAt(0).toLowerCase()}${first.slice(1)} (see peerline --help)`);
  }
}

function wholeNumber(name: string, raw: string | undefined, fallback: number, min = 1): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    throw new UsageError(`peerline: --${name} must be a whole number >= ${min}, got ${raw}`);
  }
  return n;
}

async function inspect(args: string[]): Promise<number> {
  const values = flags('inspect', args, { agents: { type: 'string' }, port: { type: 'string' }, seed: { type: 'string' }, 'no-chaos': { type: 'boolean' } });
  if (values.help === true) return usage();
  const agents = wholeNumber('agents', values.agents, 8);
  const port = wholeNumber('port', values.port, 0, 0);
  const seed = wholeNumber('seed', values.seed, 42);
  const [{ MemoryNetwork }, { systemClock }, { runInspectDemo }] = await load('inspect', ['visualizer'], () =>
    Promise.all([import('../adapters/memory/index.js'), import('../runtime/index.js'), import('../visualizer/index.js')]),
  );
  const demo = await runInspectDemo({
    network: new MemoryNetwork({ clock: systemClock, latencyMs: 2 }),
    agents,
    port,
    seed,
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
  const values = flags('diagram', args, { out: { type: 'string' } });
  if (values.help === true) return usage();
  const { writeDiagram } = await load('diagram', ['visualizer'], () => import('./diagram.js'));
  const files = await writeDiagram(values.out ?? 'docs');
  process.stdout.write(`${Object.values(files).join('\n')}\n`);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      return usage();
    case '--version':
    case '-v':
      process.stdout.write(`${(createRequire(import.meta.url)('peerline/package.json') as { version: string }).version}\n`);
      return 0;
    case 'demo':
      return demo(rest);
    case 'inspect':
      return inspect(rest);
    case 'diagram':
      return diagram(rest);
    default:
      throw new UsageError(
        `peerline: unknown ${command.startsWith('-') ? 'option' : 'command'} '${command}' (commands: demo, inspect, diagram; see peerline --help)`,
      );
  }
}

function usage(): number {
  process.stdout.write(`${USAGE}\n`);
  return 0;
}

async function demo(args: string[]): Promise<number> {
  const values = flags('demo', args, {
    peers: { type: 'string' },
    duration: { type: 'string' },
    seed: { type: 'string' },
    port: { type: 'string' },
    'no-chaos': { type: 'boolean' },
    memory: { type: 'boolean' },
    quiet: { type: 'boolean' },
  });
  if (values.help === true) return usage();
  const peers = wholeNumber('peers', values.peers, 6, 2);
  const durationS = wholeNumber('duration', values.duration, 60);
  const seed = wholeNumber('seed', values.seed, 42);
  const chaos = values['no-chaos'] !== true;
  const port = wholeNumber('port', values.port, 0, 0);
  if (values.memory === true) {
    const { formatReport, runMemoryDemo } = await load('demo --memory', [], () => import('./demo.js'));
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
  return quicDemo({ peers, durationS, seed, chaos, port, quiet: values.quiet === true });
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
  const { formatQuicReport, runQuicDemo } = await load('demo', ['quic', 'visualizer'], () => import('./quic-demo.js'));
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
    if (error instanceof UsageError || error instanceof MissingPackageError) {
      process.stderr.write(`${error.message}\n`);
      process.exitCode = error instanceof UsageError ? 2 : 1;
      return;
    }
    // Anything else is a fault of peerline's: the stack helps to report it.
    process.stderr.write(`peerline: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
