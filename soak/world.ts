/**
 * The chaos soak over real QUIC: K engines on 127.0.0.1, every pair talking
 * through a UDP fault proxy, each engine sending a steady, bounded stream of
 * echo requests with payloads to the others, while a seeded schedule of
 * faults (`schedule.ts`) stops and restarts engines, partitions pairs, loses
 * and delays their datagrams, drains and force closes connections.
 *
 * Every request must end with exactly one answer: its echo, byte for byte,
 * or a typed error. At the end the faults heal, requests in flight get a
 * bounded grace to finish, everything stops, and the result says what
 * happened: requests by outcome, what escaped to the process, open handles
 * and heap before and after. `verdict()` lists what makes a run fail.
 */
import { LIVELY_TIMINGS, QuicSwarm, watchProcess, type RequestTally } from '../bin/quic-swarm.js';
import type { UdpProxy } from '../bin/udp-proxy.js';
import { seededRandom, type EngineInit, type Random } from '../runtime/index.js';
import { countByKind, describeFault, generateSchedule, scheduleHash, type Fault, type FaultKind } from './schedule.js';

export interface SoakOptions {
  readonly seed: number;
  /** Length of the run (faults and traffic), ms. */
  readonly durationMs: number;
  /** @default 5 */
  readonly engines?: number;
  /** Each engine sends one request per interval (while it has fewer than `maxInFlight` open). @default 100 */
  readonly requestIntervalMs?: number;
  /** Requests in flight per engine. @default 8 */
  readonly maxInFlight?: number;
  /** The engine answers each request within this (open and ACK). @default 3000 */
  readonly requestTimeoutMs?: number;
  /** Largest payload, bytes (sizes lean towards small ones). @default 8192 */
  readonly maxPayload?: number;
  /** After the faults healed, how long requests in flight may take to end. @default 15000 */
  readonly graceMs?: number;
  /** Fault lines and progress; nothing when absent. */
  readonly out?: (line: string) => void;
  /** A progress line this often, ms (0: none). @default 5000 */
  readonly progressEveryMs?: number;
  /** Ends the run early; it still shuts down and reports. */
  readonly signal?: AbortSignal;
  /** Told the schedule before the engines start. */
  readonly onSchedule?: (schedule: SoakResult['schedule']) => void;
}

export interface SoakResult {
  readonly seed: number;
  readonly engines: number;
  readonly durationMs: number;
  /** Wall time of the whole run, shutdown included, ms. */
  elapsedMs: number;
  readonly schedule: { readonly faults: number; readonly hash: string; readonly byKind: Record<FaultKind, number>; readonly head: string[] };
  /** Faults carried out, by kind (a drain or force close by a stopped engine is skipped). */
  readonly applied: Record<FaultKind, number>;
  skipped: number;
  requests: RequestTally & {
    /** Still in flight after the grace, before the engines stopped. */
    unanswered: number;
    /** Still in flight after everything stopped. */
    unansweredAfterStop: number;
  };
  /** The oldest requests still in flight after the grace, for diagnosis. */
  unansweredDetails: string[];
  crashes: number;
  unhandledRejections: number;
  /** The first few errors that escaped to the process. */
  escaped: string[];
  /** Chaos steps (stop, start, drain, force close) that did not end within their bound. */
  hungSteps: string[];
  handles: { before: Record<string, number>; after: Record<string, number>; leaked: Record<string, number> };
  /** Heap used, bytes; `gc` says whether a collection ran before each reading. */
  heap: { before: number; after: number; peak: number; gc: boolean };
  /** Engines not stopped or adapters with connections after shutdown. */
  leftover: string[];
  warnings: number;
  warningLines: string[];
  /** Errors of @matrixai/quic the adapters caught. */
  libraryErrors: number;
  /** Errors caught inside the engines' effects. */
  internalErrors: number;
  transitions: number;
  retries: number;
  interrupted: boolean;
}

const PROTOCOL = '/soak/echo/1';
/** Engine timings of the soak: the demo's lively ones, and pinned peers that come back quickly. */
export const SOAK_TIMINGS: Readonly<EngineInit> = Object.freeze<EngineInit>({
  ...LIVELY_TIMINGS,
  pinnedRetry: { strategy: 'exponential', initialDelayMs: 300, multiplier: 1.6, maxDelayMs: 3000, jitter: 0.2 },
});
/** Longest an engine's stop may take: drain deadline + force-close grace + the adapter's socket close, with room. */
export const STOP_BOUND_MS = 1500 + 300 + 2000;
/** How long each chaos step may take at most before it counts as hung. */
const STEP_BOUND_MS = STOP_BOUND_MS + 10_000;
const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_';

/** Active resources of the process by type (`process.getActiveResourcesInfo()`). */
export function activeResources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) counts[kind] = (counts[kind] ?? 0) + 1;
  return counts;
}

/** Types with more resources in `after` than in `before`, and how many more. */
export function leakedResources(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const leaked: Record<string, number> = {};
  for (const [kind, n] of Object.entries(after)) if (n > (before[kind] ?? 0)) leaked[kind] = n - (before[kind] ?? 0);
  return leaked;
}

const gc = (globalThis as { gc?: () => void }).gc;

function heapUsed(): number {
  gc?.();
  return process.memoryUsage().heapUsed;
}

function payload(random: Random, maxBytes: number): string {
  // Squared: most payloads are small, some are large.
  const length = 1 + Math.floor(random() * random() * maxBytes);
  let text = '';
  for (let i = 0; i < length; i++) text += ALPHABET[Math.floor(random() * ALPHABET.length)];
  return text;
}

interface LinkState {
  blackholes: number;
  losses: number[];
  delays: number[];
}

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const engines = options.engines ?? 5;
  const startedAt = performance.now();

  const faults = generateSchedule({ seed: options.seed, engines, durationMs: options.durationMs, stopBoundMs: STOP_BOUND_MS });
  const names = Array.from({ length: engines }, (_, i) => `e${i + 1}`);
  const nameOf = (i: number): string => names[i]!;
  const result: SoakResult = {
    seed: options.seed,
    engines,
    durationMs: options.durationMs,
    elapsedMs: 0,
    schedule: { faults: faults.length, hash: scheduleHash(faults), byKind: countByKind(faults), head: faults.slice(0, 5).map((f) => describeFault(f, nameOf)) },
    applied: countByKind([]),
    skipped: 0,
    requests: { sent: 0, ok: 0, failed: 0, byCode: {}, wrongEcho: 0, doubleAnswers: 0, untyped: [], unanswered: 0, unansweredAfterStop: 0 },
    unansweredDetails: [],
    crashes: 0,
    unhandledRejections: 0,
    escaped: [],
    hungSteps: [],
    handles: { before: {}, after: {}, leaked: {} },
    heap: { before: 0, after: 0, peak: 0, gc: gc !== undefined },
    leftover: [],
    warnings: 0,
    warningLines: [],
    libraryErrors: 0,
    internalErrors: 0,
    transitions: 0,
    retries: 0,
    interrupted: false,
  };

  options.onSchedule?.(result.schedule);
  result.handles.before = activeResources();
  result.heap.before = heapUsed();
  result.heap.peak = result.heap.before;
  const watch = watchProcess();
  try {
    // The engines, proxies and traffic live in drive(): once it returned they
    // are garbage, so the heap read after it is what the run left behind.
    await drive(options, result, faults);
  } finally {
    // Closed sockets and timers leave the list on later ticks: wait for it (bounded).
    for (let i = 0; i < 60; i++) {
      gc?.();
      result.handles.after = activeResources();
      result.handles.leaked = leakedResources(result.handles.before, result.handles.after);
      if (Object.keys(result.handles.leaked).length === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    result.heap.after = heapUsed();
    // Let rejections created during shutdown reach the handlers before counting.
    await new Promise((resolve) => setImmediate(resolve));
    result.crashes = watch.uncaughtExceptions;
    result.unhandledRejections = watch.unhandledRejections;
    result.escaped = [...watch.errors];
    watch.off();
    result.elapsedMs = Math.round(performance.now() - startedAt);
  }
  return result;
}

/** Starts the engines, runs traffic and faults for the run's length, heals, waits the grace, stops everything, and fills in `result`. */
async function drive(options: SoakOptions, result: SoakResult, faults: readonly Fault[]): Promise<void> {
  const engines = result.engines;
  const requestIntervalMs = options.requestIntervalMs ?? 100;
  const maxInFlight = options.maxInFlight ?? 8;
  const requestTimeoutMs = options.requestTimeoutMs ?? 3000;
  const maxPayload = options.maxPayload ?? 8192;
  const graceMs = options.graceMs ?? 15_000;
  const progressEveryMs = options.progressEveryMs ?? 5000;
  const out = options.out ?? ((): void => {});
  const names = Array.from({ length: engines }, (_, i) => `e${i + 1}`);
  const nameOf = (i: number): string => names[i]!;

  // Link faults: both directions of a pair, overlapping faults combined.
  const links = new Map<string, LinkState>();
  const linkKey = (a: string, b: string): string => (a < b ? `${a}|${b}` : `${b}|${a}`);
  const linkOf = (a: string, b: string): LinkState => {
    let link = links.get(linkKey(a, b));
    if (link === undefined) {
      link = { blackholes: 0, losses: [], delays: [] };
      links.set(linkKey(a, b), link);
    }
    return link;
  };
  const shape = (proxy: UdpProxy | undefined, link: LinkState): void => {
    if (proxy === undefined) return;
    proxy.heal();
    if (link.losses.length > 0) proxy.drop(Math.max(...link.losses));
    if (link.delays.length > 0) proxy.delay(Math.max(...link.delays));
    if (link.blackholes > 0) proxy.blackhole();
  };

  const swarm = await QuicSwarm.create({
    names,
    protocol: PROTOCOL,
    timings: SOAK_TIMINGS,
    random: seededRandom(options.seed + 1),
    proxySeed: options.seed,
    proxied: () => true,
    // A ring of pinned peers: they reconnect by backoff after every fault.
    pinned: (from, to) => names.indexOf(to) === (names.indexOf(from) + 1) % engines,
    onEngine: (_name, engine) => {
      engine.transitions$.subscribe(() => {
        result.transitions += 1;
      });
    },
    // A proxy made again (its engine moved to another port) takes the link's faults.
    onProxy: (from, to, proxy) => shape(proxy, linkOf(from, to)),
  });
  const shapeLink = (a: string, b: string): void => {
    const link = linkOf(a, b);
    shape(swarm.proxy(a, b), link);
    shape(swarm.proxy(b, a), link);
  };

  const timers = new Set<ReturnType<typeof setTimeout>>();
  const later = (ms: number, fn: () => void): void => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  };
  /** Chaos steps under way, with what they are. */
  const steps = new Map<Promise<void>, string>();
  /** Pauses of restarts (an engine kept down); the end of the run cuts them short. */
  const pauses = new Set<() => void>();
  const pause = (ms: number): Promise<void> =>
    new Promise<void>((resolve) => {
      const done = (): void => {
        pauses.delete(done);
        resolve();
      };
      pauses.add(done);
      later(ms, done);
    });
  const step = (what: string, act: () => Promise<void>): void => {
    const running: Promise<void> = act()
      .catch((error: unknown) => out(`  chaos step failed: ${what}: ${error instanceof Error ? error.message : String(error)}`))
      .finally(() => steps.delete(running));
    steps.set(running, what);
  };

  let finishing = false;
  const apply = (fault: Fault): void => {
    if (finishing) return;
    const line = describeFault(fault, nameOf);
    switch (fault.kind) {
      case 'restart': {
        const name = nameOf(fault.engine);
        if (swarm.engine(name) === undefined) {
          result.skipped += 1;
          return;
        }
        step(line, async () => {
          await swarm.stop(name, { force: fault.force });
          await pause(fault.downMs);
          await swarm.start(name);
        });
        break;
      }
      case 'drain':
      case 'forceClose': {
        const engine = swarm.engine(nameOf(fault.from));
        if (engine === undefined) {
          result.skipped += 1;
          return;
        }
        const peer = swarm.peerId(nameOf(fault.to));
        step(line, () => (fault.kind === 'drain' ? engine.drain(peer) : engine.forceClose(peer, 'chaos soak')));
        break;
      }
      case 'partition':
      case 'loss':
      case 'delay': {
        const [a, b] = [nameOf(fault.a), nameOf(fault.b)];
        const link = linkOf(a, b);
        if (fault.kind === 'partition') link.blackholes += 1;
        else if (fault.kind === 'loss') link.losses.push(fault.probability);
        else link.delays.push(fault.delayMs);
        shapeLink(a, b);
        later(fault.forMs, () => {
          if (fault.kind === 'partition') link.blackholes -= 1;
          else if (fault.kind === 'loss') link.losses.splice(link.losses.indexOf(fault.probability), 1);
          else link.delays.splice(link.delays.indexOf(fault.delayMs), 1);
          shapeLink(a, b);
        });
        break;
      }
    }
    result.applied[fault.kind] += 1;
    out(`  ${line}`);
  };

  const traffic = seededRandom(options.seed ^ 0x5eed);
  let sender: ReturnType<typeof setInterval> | undefined;
  let sampler: ReturnType<typeof setInterval> | undefined;
  try {
    await swarm.startAll();
    const runStart = performance.now();
    for (const fault of faults) later(fault.at, () => apply(fault));

    sender = setInterval(() => {
      if (finishing) return;
      for (const from of names) {
        if (swarm.inFlightFrom(from) >= maxInFlight) continue;
        const index = names.indexOf(from);
        const to = names[(index + 1 + Math.floor(traffic() * (engines - 1))) % engines]!;
        swarm.request(from, to, payload(traffic, maxPayload), requestTimeoutMs);
      }
    }, requestIntervalMs);
    let nextProgress = runStart + progressEveryMs;
    sampler = setInterval(() => {
      result.heap.peak = Math.max(result.heap.peak, process.memoryUsage().heapUsed);
      const now = performance.now();
      if (progressEveryMs <= 0 || now < nextProgress) return;
      nextProgress += progressEveryMs;
      const up = names.filter((n) => swarm.engine(n) !== undefined).length;
      const { ok, failed, wrongEcho } = swarm.tally;
      const t = `${((now - runStart) / 1000).toFixed(1)}s`.padStart(7);
      out(`  ${t}  [ok ${ok}, failed ${failed}, wrong ${wrongEcho}, in flight ${swarm.inFlight.size}, engines up ${up}/${engines}]`);
    }, 1000);

    await new Promise<void>((resolve) => {
      later(options.durationMs, resolve);
      if (options.signal?.aborted === true) {
        result.interrupted = true;
        resolve();
      }
      options.signal?.addEventListener(
        'abort',
        () => {
          result.interrupted = true;
          resolve();
        },
        { once: true },
      );
    });
  } finally {
    finishing = true;
    clearInterval(sender);
    clearInterval(sampler);
    for (const timer of timers) clearTimeout(timer);
    timers.clear();
    for (const resume of [...pauses]) resume();
    // Every fault ends: the network heals.
    for (const link of links.values()) {
      link.blackholes = 0;
      link.losses.length = 0;
      link.delays.length = 0;
    }
    for (const a of names) for (const b of names) if (a < b) shapeLink(a, b);

    // Chaos steps under way end (bounded: a stop is bounded by the drain deadline).
    let boundTimer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.allSettled([...steps.keys()]),
      new Promise<void>((resolve) => {
        boundTimer = setTimeout(resolve, STEP_BOUND_MS);
      }),
    ]);
    clearTimeout(boundTimer);
    result.hungSteps = [...steps.values()];

    // Requests in flight get a grace to end; what is still open after it never got its answer.
    result.requests.unanswered = await swarm.settle(graceMs);
    const now = performance.now();
    result.unansweredDetails = [...swarm.inFlight.values()]
      .slice(0, 10)
      .map((f) => `${f.from} -> ${f.to} ${f.phase} for ${((now - f.since) / 1000).toFixed(1)}s`);

    result.leftover = await swarm.close();
    // Stopped engines answer what they still owed; those answers come on later ticks.
    result.requests.unansweredAfterStop = await swarm.settle(2000);
    Object.assign(result.requests, { ...swarm.tally, byCode: { ...swarm.tally.byCode }, untyped: [...swarm.tally.untyped] });
    for (const engine of swarm.engines) {
      const metrics = engine.metrics();
      result.retries += metrics.retries;
      result.internalErrors += metrics.internalErrors;
    }
    for (const adapter of swarm.adapters) result.libraryErrors += adapter.stats().libraryErrors;
    result.warnings = swarm.warnings;
    result.warningLines = [...swarm.warningLines];
  }
}

/** What makes a run fail; empty when it passed. */
export function verdict(result: SoakResult): string[] {
  const failures: string[] = [];
  const r = result.requests;
  if (result.crashes > 0) failures.push(`${result.crashes} uncaught exception(s)`);
  if (result.unhandledRejections > 0) failures.push(`${result.unhandledRejections} unhandled rejection(s)`);
  const leaked = Object.entries(result.handles.leaked);
  if (leaked.length > 0) failures.push(`leaked handles: ${leaked.map(([kind, n]) => `${kind} +${n}`).join(', ')}`);
  if (r.unanswered > 0) failures.push(`${r.unanswered} request(s) unanswered after the grace`);
  if (r.unansweredAfterStop > 0) failures.push(`${r.unansweredAfterStop} request(s) unanswered after every engine stopped`);
  if (r.wrongEcho > 0) failures.push(`${r.wrongEcho} wrong echo(es)`);
  if (r.doubleAnswers > 0) failures.push(`${r.doubleAnswers} request(s) answered more than once`);
  if ((r.byCode.UNTYPED ?? 0) > 0) failures.push(`${r.byCode.UNTYPED} failure(s) without a typed error`);
  if (result.hungSteps.length > 0) failures.push(`${result.hungSteps.length} chaos step(s) did not end`);
  if (result.leftover.length > 0) failures.push(`left open: ${result.leftover.join('; ')}`);
  // Errors the engines and adapters caught instead of crashing: each one is a bug.
  if (result.internalErrors > 0) failures.push(`${result.internalErrors} internal error(s) in the engines`);
  if (result.libraryErrors > 0) failures.push(`${result.libraryErrors} error(s) thrown inside @matrixai/quic`);
  return failures;
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function counts(record: Record<string, number>): string {
  const entries = Object.entries(record).sort(([a], [b]) => a.localeCompare(b));
  return entries.length === 0 ? 'none' : entries.map(([kind, n]) => `${kind} ${n}`).join(', ');
}

/** The closing table of a run. */
export function formatResult(result: SoakResult): string {
  const r = result.requests;
  const failures = verdict(result);
  const rows: [string, string][] = [
    ['seed', `${result.seed} (schedule ${result.schedule.hash})`],
    ['engines', String(result.engines)],
    ['run', `${(result.durationMs / 1000).toFixed(0)} s of faults and traffic, ${(result.elapsedMs / 1000).toFixed(1)} s in all${result.interrupted ? ' (interrupted)' : ''}`],
    ['faults applied', `${counts(result.applied)}${result.skipped > 0 ? `; skipped ${result.skipped}` : ''}`],
    ['requests sent', String(r.sent)],
    ['requests ok', String(r.ok)],
    ['requests failed', String(r.failed)],
    ...Object.entries(r.byCode)
      .sort(([, a], [, b]) => b - a)
      .map(([code, n]): [string, string] => [`  ${code}`, String(n)]),
    ['wrong echoes', String(r.wrongEcho)],
    ['answered twice', String(r.doubleAnswers)],
    ['unanswered', `${r.unanswered} after the grace, ${r.unansweredAfterStop} after stop`],
    ['crashes', String(result.crashes)],
    ['unhandled rejections', String(result.unhandledRejections)],
    ['chaos steps hung', String(result.hungSteps.length)],
    ['handles before', counts(result.handles.before)],
    ['handles after', counts(result.handles.after)],
    ['handles leaked', counts(result.handles.leaked)],
    ['heap before', `${mb(result.heap.before)}${result.heap.gc ? '' : ' (no gc: run node with --expose-gc)'}`],
    ['heap after', mb(result.heap.after)],
    ['heap peak', mb(result.heap.peak)],
    ['left open', result.leftover.length === 0 ? 'nothing' : result.leftover.join('; ')],
    ['transitions', String(result.transitions)],
    ['retries', String(result.retries)],
    ['internal errors', String(result.internalErrors)],
    ['library errors', String(result.libraryErrors)],
    ['warnings', String(result.warnings)],
    ['result', failures.length === 0 ? 'PASS' : `FAIL: ${failures.join('; ')}`],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  const lines = ['peerline QUIC chaos soak', ...rows.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`)];
  for (const detail of result.unansweredDetails) lines.push(`  unanswered: ${detail}`);
  for (const hung of result.hungSteps) lines.push(`  hung: ${hung}`);
  for (const error of result.escaped) lines.push(`  escaped: ${error.split('\n').slice(0, 4).join('\n    ')}`);
  for (const untyped of r.untyped) lines.push(`  untyped: ${untyped}`);
  for (const warning of result.warningLines) lines.push(`  warning: ${warning}`);
  return lines.join('\n');
}
