/**
 * Small helpers shared by the benchmarks: argument parsing, medians, number
 * formatting, and a driver that moves a virtual clock until a condition holds.
 */
import { MemoryNetwork, VirtualClock } from '../adapters/memory/index.js';
import { createEngine, type Engine, type EngineInit, type StreamHandler } from '../runtime/index.js';

/** Reads `--name value` (or `--name=value`) from argv as a number. */
export function numberArg(name: string, fallback: number, argv: readonly string[] = process.argv.slice(2)): number {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    let raw: string | undefined;
    if (arg === `--${name}`) raw = argv[i + 1];
    else if (arg.startsWith(`--${name}=`)) raw = arg.slice(name.length + 3);
    if (raw === undefined) continue;
    const value = Number(raw.replace(/_/g, ''));
    if (!Number.isFinite(value) || value <= 0) throw new RangeError(`--${name} needs a number > 0, got ${raw}`);
    return value;
  }
  return fallback;
}

export function flagArg(name: string, argv: readonly string[] = process.argv.slice(2)): boolean {
  return argv.includes(`--${name}`);
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Milliseconds since `start` (a `process.hrtime.bigint()` reading). */
export function msSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** 12345.6 -> "12,346" */
export function int(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

export function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** Runs a full garbage collection when the process was started with --expose-gc. */
export function gc(): boolean {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (collect === undefined) return false;
  collect();
  collect();
  return true;
}

/**
 * Moves the clock by `stepMs` at a time (0: fires only what is due now, and
 * what that schedules for now) until `done()` holds. Throws with `what` when
 * nothing is left to fire or `maxSteps` is reached, so a stuck benchmark fails
 * loudly instead of hanging.
 */
export async function drive(clock: VirtualClock, done: () => boolean, what: string, stepMs = 0, maxSteps = 100_000): Promise<void> {
  let idle = 0;
  for (let step = 0; step < maxSteps; step++) {
    if (done()) return;
    const before = clock.now();
    await clock.advance(stepMs);
    if (stepMs === 0) {
      const next = clock.nextAt();
      // Nothing due now: a few more turns for promise chains, then give up.
      if (next === undefined || next > before) idle += 1;
      else idle = 0;
      if (idle > 3 && !done()) throw new Error(`stalled: ${what} (virtual time ${clock.now()} ms)`);
    }
  }
  if (!done()) throw new Error(`not done after ${maxSteps} steps: ${what}`);
}

/** Prints a line, and makes sure it is on stdout even if the process is killed later. */
export function say(line = ''): void {
  process.stdout.write(`${line}\n`);
}

/** Marker of the machine-readable line a child benchmark prints for `bench/run.ts`. */
export const RESULT_PREFIX = 'BENCH_RESULT ';

/** A logger (engine's or adapter's) that drops everything: the benchmarks print their own lines. */
export const quietLogger = { trace: (): void => {}, warn: (): void => {} };

/** A hub engine `ready` with its remote engines, see `hubWithPeers`. */
export interface HubWorld {
  readonly clock: VirtualClock;
  readonly network: MemoryNetwork;
  readonly hub: Engine;
  readonly remotes: Engine[];
  /** The remotes' peer ids: `peer-0`, `peer-1`, ... */
  readonly peers: readonly string[];
}

/**
 * A hub engine and `peerCount` remote engines on one memory network with
 * latency 0 and a fresh virtual clock, every remote serving `protocol` with
 * `handler`; resolves once the hub is `ready` with every remote. Engines trace
 * nothing; the remotes never idle out.
 */
export async function hubWithPeers(
  peerCount: number,
  options: { readonly hub: EngineInit; readonly protocol: string; readonly handler: StreamHandler },
): Promise<HubWorld> {
  const clock = new VirtualClock();
  const network = new MemoryNetwork({ clock, latencyMs: 0 });
  const hub = createEngine({ adapter: network.node('hub'), clock, trace: false, ...options.hub });
  await hub.start();
  const peers = Array.from({ length: peerCount }, (_, i) => `peer-${i}`);
  const remotes: Engine[] = [];
  for (const peerId of peers) {
    const remote = createEngine({ adapter: network.node(peerId), clock, trace: false, idleTimeoutMs: Infinity });
    remote.handle(options.protocol, options.handler);
    await remote.start();
    remotes.push(remote);
    hub.addPeer(peerId, [network.address(peerId)]);
  }
  let connected = 0;
  for (const peerId of peers) void hub.withConnection(peerId, () => void (connected += 1));
  await drive(clock, () => connected === peerCount, 'connecting the hub to its peers');
  return { clock, network, hub, remotes, peers };
}
