/**
 * The chaos soak's fault schedule: a seed and a run length give a list of
 * faults at offsets from the start of the run. Nothing here reads the clock
 * or an unseeded random source, so the same seed (with the same engine count
 * and length) always gives the same schedule, and `scheduleHash` names it.
 *
 * Engines are numbered 0..K-1. A link fault (partition, loss, delay) applies
 * to both directions between two engines and ends after `forMs`. A restart
 * stops an engine (gracefully, or with `force`), keeps it down `downMs`, and
 * starts it again with the same identity. Drain and force close act on one
 * engine's connection to another.
 */
import { createHash } from 'node:crypto';
import { seededRandom, type Random } from '../runtime/index.js';

export type Fault =
  | { readonly at: number; readonly kind: 'restart'; readonly engine: number; readonly downMs: number; readonly force: boolean }
  | { readonly at: number; readonly kind: 'partition'; readonly a: number; readonly b: number; readonly forMs: number }
  | { readonly at: number; readonly kind: 'loss'; readonly a: number; readonly b: number; readonly probability: number; readonly forMs: number }
  | { readonly at: number; readonly kind: 'delay'; readonly a: number; readonly b: number; readonly delayMs: number; readonly forMs: number }
  | { readonly at: number; readonly kind: 'drain'; readonly from: number; readonly to: number }
  | { readonly at: number; readonly kind: 'forceClose'; readonly from: number; readonly to: number };

export type FaultKind = Fault['kind'];

export const FAULT_KINDS: readonly FaultKind[] = ['restart', 'partition', 'loss', 'delay', 'drain', 'forceClose'];

export interface ScheduleOptions {
  readonly seed: number;
  readonly engines: number;
  /** Length of the run, ms. Every fault ends before it. */
  readonly durationMs: number;
  /** Longest time an engine's stop may take (drain deadline + grace + socket close), ms. */
  readonly stopBoundMs: number;
}

/** Relative weights of the fault kinds. */
const WEIGHTS: Readonly<Record<FaultKind, number>> = { restart: 3, partition: 4, loss: 4, delay: 3, drain: 3, forceClose: 3 };
/** Time between two faults, ms. */
const GAP_MS = [800, 2800] as const;

function between(random: Random, [low, high]: readonly [number, number]): number {
  return Math.round(low + random() * (high - low));
}

function weighted(random: Random): FaultKind {
  const total = FAULT_KINDS.reduce((sum, kind) => sum + WEIGHTS[kind], 0);
  let r = random() * total;
  for (const kind of FAULT_KINDS) {
    r -= WEIGHTS[kind];
    if (r < 0) return kind;
  }
  return FAULT_KINDS.at(-1)!;
}

function twoEngines(random: Random, engines: number): [number, number] {
  const a = Math.floor(random() * engines);
  const b = (a + 1 + Math.floor(random() * (engines - 1))) % engines;
  return [a, b];
}

export function generateSchedule(options: ScheduleOptions): Fault[] {
  const { seed, engines, durationMs, stopBoundMs } = options;
  if (!Number.isInteger(engines) || engines < 2) throw new RangeError(`engines must be a whole number >= 2, got ${engines}`);
  if (!(durationMs > 0)) throw new RangeError(`durationMs must be > 0, got ${durationMs}`);
  const random = seededRandom(seed);
  const faults: Fault[] = [];
  // Faults end half a second before the run does, so its last moments are calm.
  const endBy = durationMs - 500;
  /** Until when each engine is stopped or restarting. */
  const busyUntil = new Array<number>(engines).fill(0);
  // With 2 or 3 engines one may be down at a time; with more, up to half of them less one.
  const maxDown = Math.max(1, Math.floor((engines - 1) / 2));
  let at = Math.min(2000, Math.round(durationMs / 10));
  for (let guard = 0; guard < 100_000; guard++) {
    at += between(random, GAP_MS);
    if (at >= endBy) break;
    let kind = weighted(random);
    if (kind === 'restart') {
      const downMs = between(random, [300, 4000]);
      const force = random() < 0.3;
      const up = busyUntil.map((until, i) => (until <= at ? i : -1)).filter((i) => i >= 0);
      const down = engines - up.length;
      const pick = up[Math.floor(random() * up.length)];
      // A restart must be over (started again) before the end, and leave enough engines up.
      const over = at + stopBoundMs + downMs + 1000;
      if (pick !== undefined && down < maxDown && over <= endBy) {
        busyUntil[pick] = over;
        faults.push({ at, kind, engine: pick, downMs, force });
        continue;
      }
      kind = 'drain';
    }
    if (kind === 'drain' || kind === 'forceClose') {
      const [from, to] = twoEngines(random, engines);
      faults.push({ at, kind, from, to });
      continue;
    }
    const [a, b] = twoEngines(random, engines);
    const forMs = Math.min(between(random, kind === 'partition' ? [1500, 6000] : [2000, 8000]), endBy - at);
    if (forMs < 300) {
      faults.push({ at, kind: 'drain', from: a, to: b });
      continue;
    }
    if (kind === 'partition') faults.push({ at, kind, a, b, forMs });
    else if (kind === 'loss') faults.push({ at, kind, a, b, forMs, probability: Math.round((0.05 + random() * 0.35) * 100) / 100 });
    else faults.push({ at, kind, a, b, forMs, delayMs: between(random, [20, 300]) });
  }
  return faults;
}

/** One line for a fault, e.g. `12.3s  partition e2|e4 for 3.1s`, with engines named `name(i)`. */
export function describeFault(fault: Fault, name: (engine: number) => string = (i) => `e${i + 1}`): string {
  const s = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;
  const head = `${s(fault.at).padStart(7)}  `;
  switch (fault.kind) {
    case 'restart':
      return `${head}restart ${name(fault.engine)}${fault.force ? ' (force stop)' : ''}, down ${s(fault.downMs)}`;
    case 'partition':
      return `${head}partition ${name(fault.a)}|${name(fault.b)} for ${s(fault.forMs)}`;
    case 'loss':
      return `${head}loss ${Math.round(fault.probability * 100)}% ${name(fault.a)}|${name(fault.b)} for ${s(fault.forMs)}`;
    case 'delay':
      return `${head}delay ${fault.delayMs}ms ${name(fault.a)}|${name(fault.b)} for ${s(fault.forMs)}`;
    case 'drain':
      return `${head}${name(fault.from)} drains its connection to ${name(fault.to)}`;
    case 'forceClose':
      return `${head}${name(fault.from)} force closes its connection to ${name(fault.to)}`;
  }
}

/** The first 16 hex digits of the sha256 of the schedule: equal hashes, equal schedules. */
export function scheduleHash(faults: readonly Fault[]): string {
  return createHash('sha256').update(JSON.stringify(faults)).digest('hex').slice(0, 16);
}

/** How many faults of each kind. */
export function countByKind(faults: readonly Fault[]): Record<FaultKind, number> {
  const counts = Object.fromEntries(FAULT_KINDS.map((kind) => [kind, 0])) as Record<FaultKind, number>;
  for (const fault of faults) counts[fault.kind] += 1;
  return counts;
}
