/**
 * Schedules: the list of operations a simulation runs, one per step. A
 * schedule is made from a seed up front (so the same seed always gives the
 * same operations), can be saved and loaded (JSON, or base64 of it, for a
 * command line), and can be cut down by the shrinker: every operation is
 * self-contained and does nothing when what it names is not there.
 */
import { readFileSync } from 'node:fs';
import { seededRandom, type Random } from '../runtime/index.js';

export type Protocol = 'echo' | 'hold' | 'none';

export type Op =
  /**
   * `from` opens a stream to `to` (with a deadline `timeout` ms ahead, or none
   * when null; `wait`: with waitForReady, only with a deadline); on success it
   * writes, then closes (or aborts) it after `hold` ms.
   */
  | {
      readonly k: 'open';
      readonly from: string;
      readonly to: string;
      readonly proto: Protocol;
      readonly timeout: number | null;
      readonly hold: number;
      readonly abortAt: number | null;
      readonly wait?: boolean;
    }
  /** `from` leases its connection to `to` for `hold` ms, optionally opening a stream through it. */
  | { readonly k: 'lease'; readonly from: string; readonly to: string; readonly timeout: number; readonly hold: number; readonly inner: boolean }
  /** Aborts the request(s) made by step `step`, if still waiting. */
  | { readonly k: 'abort'; readonly step: number }
  | { readonly k: 'drain'; readonly at: string; readonly peer: string }
  | { readonly k: 'force'; readonly at: string; readonly peer: string }
  /** Stops node `node`'s engine (a no-op unless it runs); a new engine starts there `down` ms later. */
  | { readonly k: 'stop'; readonly node: string; readonly force: boolean; readonly down: number }
  /** Starts a new engine on node `node` (a no-op unless its last one has stopped). */
  | { readonly k: 'start'; readonly node: string }
  /** Cuts the network in two for `ms` (then heals every partition). */
  | { readonly k: 'partition'; readonly a: readonly string[]; readonly b: readonly string[]; readonly ms: number }
  | { readonly k: 'heal' }
  | { readonly k: 'drop'; readonly a: string; readonly b: string | null }
  /** A fault on `node` for `ms`. */
  | { readonly k: 'stallDials' | 'stallHandshake' | 'refuse'; readonly node: string; readonly ms: number }
  | { readonly k: 'ack'; readonly node: string; readonly lose: boolean; readonly delayMs: number; readonly ms: number }
  /** `a` and `b` open streams to each other at the same instant (simultaneous dial). */
  | { readonly k: 'both'; readonly a: string; readonly b: string; readonly timeout: number; readonly hold: number }
  /** `node` is told the network changed: its ready peers are probed. */
  | { readonly k: 'probe'; readonly node: string }
  /** `at` pins or unpins `peer` (addPeer with the same address). */
  | { readonly k: 'pin'; readonly at: string; readonly peer: string; readonly pinned: boolean }
  /** Nothing but the step's time. */
  | { readonly k: 'wait' };

export interface Step {
  /** Index in the schedule the seed made; kept when shrinking, so `abort` still names its step. */
  readonly id: number;
  readonly op: Op;
  /** Virtual time to let pass after the operation (ms). */
  readonly dt: number;
}

export interface Schedule {
  readonly version: 1;
  readonly seed: number;
  readonly peers: number;
  readonly steps: readonly Step[];
}

export function nodeName(i: number): string {
  return `n${String(i).padStart(2, '0')}`;
}

export function nodeNames(peers: number): string[] {
  return Array.from({ length: peers }, (_, i) => nodeName(i));
}

/** Relative weights of the operations a seed draws. */
const WEIGHTS: ReadonlyArray<readonly [Op['k'] | 'jump', number]> = [
  ['open', 40],
  ['lease', 8],
  ['both', 4],
  ['abort', 6],
  ['wait', 12],
  ['drain', 2],
  ['force', 2],
  ['stop', 0.6],
  ['start', 0.5],
  ['partition', 1.2],
  ['heal', 1.5],
  ['drop', 2],
  ['stallDials', 1],
  ['stallHandshake', 1],
  ['refuse', 1],
  ['ack', 1.5],
  ['probe', 0.5],
  ['pin', 0.5],
  ['jump', 0.6],
];

const TOTAL = WEIGHTS.reduce((n, [, w]) => n + w, 0);

function pick<T>(random: Random, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)]!;
}

function int(random: Random, lo: number, hi: number): number {
  return lo + Math.floor(random() * (hi - lo + 1));
}

/** Makes the schedule for `seed`: `steps` operations over `peers` nodes. */
export function generate(seed: number, peers: number, steps: number): Schedule {
  if (!Number.isInteger(peers) || peers < 2) throw new RangeError('peers must be an integer >= 2');
  const random = seededRandom(seed ^ 0x5eed);
  const names = nodeNames(peers);
  const two = (): [string, string] => {
    const a = pick(random, names);
    let b = pick(random, names);
    if (b === a) b = names[(names.indexOf(a) + 1) % names.length]!;
    return [a, b];
  };
  const out: Step[] = [];
  for (let id = 0; id < steps; id++) {
    let r = random() * TOTAL;
    let kind: Op['k'] | 'jump' = 'wait';
    for (const [k, w] of WEIGHTS) {
      r -= w;
      if (r < 0) {
        kind = k;
        break;
      }
    }
    let dt = random() < 0.3 ? 0 : int(random, 1, 12);
    let op: Op;
    switch (kind) {
      case 'open': {
        const [from, to] = two();
        const roll = random();
        const proto: Protocol = roll < 0.55 ? 'echo' : roll < 0.93 ? 'hold' : 'none';
        const abortAt = random() < 0.12 ? int(random, 0, 40) : null;
        const timeout = random() < 0.1 ? null : int(random, 100, 3000);
        const wait = timeout !== null && random() < 0.15;
        op = { k: 'open', from, to, proto, timeout, hold: int(random, 0, 1500), abortAt, ...(wait ? { wait } : {}) };
        break;
      }
      case 'lease': {
        const [from, to] = two();
        op = { k: 'lease', from, to, timeout: int(random, 100, 3000), hold: int(random, 0, 2500), inner: random() < 0.5 };
        break;
      }
      case 'both': {
        const [a, b] = two();
        op = { k: 'both', a, b, timeout: int(random, 300, 3000), hold: int(random, 0, 800) };
        break;
      }
      case 'abort':
        op = { k: 'abort', step: Math.max(0, id - int(random, 1, 30)) };
        break;
      case 'drain': {
        const [at, peer] = two();
        op = { k: 'drain', at, peer };
        break;
      }
      case 'force': {
        const [at, peer] = two();
        op = { k: 'force', at, peer };
        break;
      }
      case 'stop':
        op = { k: 'stop', node: pick(random, names), force: random() < 0.3, down: int(random, 0, 3000) };
        break;
      case 'start':
        op = { k: 'start', node: pick(random, names) };
        break;
      case 'partition': {
        const side = names.filter(() => random() < 0.3);
        const a = side.length === 0 ? [pick(random, names)] : side;
        op = { k: 'partition', a, b: names.filter((n) => !a.includes(n)), ms: int(random, 50, 2500) };
        break;
      }
      case 'heal':
        op = { k: 'heal' };
        break;
      case 'drop': {
        const [a, b] = two();
        op = { k: 'drop', a, b: random() < 0.8 ? b : null };
        break;
      }
      case 'stallDials':
      case 'stallHandshake':
      case 'refuse':
        op = { k: kind, node: pick(random, names), ms: int(random, 20, 2000) };
        break;
      case 'ack': {
        const lose = random() < 0.4;
        op = { k: 'ack', node: pick(random, names), lose, delayMs: lose ? 0 : int(random, 5, 500), ms: int(random, 20, 2000) };
        break;
      }
      case 'probe':
        op = { k: 'probe', node: pick(random, names) };
        break;
      case 'pin': {
        const [at, peer] = two();
        op = { k: 'pin', at, peer, pinned: random() < 0.5 };
        break;
      }
      case 'jump':
        op = { k: 'wait' };
        dt = int(random, 300, 4000);
        break;
      default:
        op = { k: 'wait' };
    }
    out.push({ id, op, dt });
  }
  return { version: 1, seed, peers, steps: out };
}

export function describeOp(op: Op): string {
  switch (op.k) {
    case 'open':
      return `open ${op.from}->${op.to} /${op.proto} ${op.timeout === null ? 'no deadline' : `timeout ${op.timeout}`}${op.wait === true ? ' waitForReady' : ''} hold ${op.hold}${op.abortAt === null ? '' : ` abort@+${op.abortAt}`}`;
    case 'lease':
      return `lease ${op.from}->${op.to} timeout ${op.timeout} hold ${op.hold}${op.inner ? ' +stream' : ''}`;
    case 'both':
      return `simultaneous ${op.a}<->${op.b} timeout ${op.timeout} hold ${op.hold}`;
    case 'abort':
      return `abort requests of step ${op.step}`;
    case 'drain':
      return `${op.at}.drain(${op.peer})`;
    case 'force':
      return `${op.at}.forceClose(${op.peer})`;
    case 'stop':
      return `${op.node}.stop(${op.force ? '{ force }' : ''}), restart after ${op.down} ms`;
    case 'start':
      return `start ${op.node}`;
    case 'partition':
      return `partition [${op.a.join(' ')}] | [${op.b.join(' ')}] for ${op.ms} ms`;
    case 'heal':
      return 'heal';
    case 'drop':
      return `drop ${op.a}${op.b === null ? ' (all)' : `<->${op.b}`}`;
    case 'stallDials':
    case 'stallHandshake':
    case 'refuse':
      return `${op.k} ${op.node} for ${op.ms} ms`;
    case 'ack':
      return `ackFault ${op.node} ${op.lose ? 'lose' : `delay ${op.delayMs}`} for ${op.ms} ms`;
    case 'probe':
      return `${op.node}.networkChanged()`;
    case 'pin':
      return `${op.at}.addPeer(${op.peer}, { pinned: ${op.pinned} })`;
    case 'wait':
      return 'wait';
  }
}

export function encode(schedule: Schedule): string {
  return Buffer.from(JSON.stringify(schedule)).toString('base64url');
}

/** Reads a schedule from a file path, or from base64 of its JSON. */
export function load(source: string): Schedule {
  let text: string;
  try {
    text = readFileSync(source, 'utf8');
  } catch {
    text = Buffer.from(source, 'base64url').toString('utf8');
  }
  const parsed = JSON.parse(text) as Schedule;
  if (parsed.version !== 1 || !Array.isArray(parsed.steps) || typeof parsed.peers !== 'number') {
    throw new Error('not a peerline simulation schedule');
  }
  return parsed;
}
