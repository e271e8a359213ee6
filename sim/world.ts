/**
 * The deterministic simulator: a swarm of engines on one in-memory network
 * and one virtual clock, driven by a schedule (see schedule.ts), with the
 * invariants checked after every step. Nothing here reads the wall clock or
 * an unseeded random source: the same schedule always gives the same trace.
 */
import { createHash } from 'node:crypto';
import { MemoryNetwork, VirtualClock, flushMicrotasks } from '../adapters/memory/index.js';
import type { Clock } from '../adapters/adapter.js';
import type { ConnectionContext } from '../machines/types.js';
import {
  createEngine,
  Engine,
  seededRandom,
  type EngineInit,
  type PeerStream,
  type StreamAnswer,
} from '../runtime/index.js';
import { describeOp, nodeNames, type Op, type Schedule, type Step } from './schedule.js';

/** A clock for one engine: the shared virtual clock, counting the timers this engine has pending. */
export class EngineClock implements Clock {
  readonly #inner: VirtualClock;
  readonly #live = new Set<unknown>();

  constructor(inner: VirtualClock) {
    this.#inner = inner;
  }

  now(): number {
    return this.#inner.now();
  }

  setTimeout(fn: () => void, ms: number): unknown {
    if (ms === Infinity) return this.#inner.setTimeout(fn, ms);
    const handle: unknown = this.#inner.setTimeout(() => {
      this.#live.delete(handle);
      fn();
    }, ms);
    this.#live.add(handle);
    return handle;
  }

  clearTimeout(handle: unknown): void {
    this.#live.delete(handle);
    this.#inner.clearTimeout(handle);
  }

  /** Timers this engine set that have neither fired nor been cleared. */
  pending(): number {
    return this.#live.size;
  }
}

export interface SimOptions {
  /** One-way network latency (ms). @default 3 */
  readonly latencyMs?: number;
  /** Engine options for every node (merged over the simulation defaults). */
  readonly engine?: EngineInit;
  /** Keep the full trace (the failure report only needs its tail). @default true */
  readonly keepTrace?: boolean;
  /** Extra invariants (tests use them to check that the simulator reports and shrinks failures). */
  readonly invariants?: ReadonlyArray<{ readonly name: string; readonly check: (world: World) => string | null }>;
  /** Watch process-level `unhandledRejection` / `uncaughtException` during the run. @default true */
  readonly processHooks?: boolean;
}

/**
 * How long a request without a deadline may wait for its answer: longer than
 * any chain of the timeouts below (dial queue, connect, handshake, open, a
 * drain) plus a held stream giving back its credit.
 */
export const NO_DEADLINE_BOUND_MS = 10_000;

/** Timings short enough that every lifecycle path happens within a few thousand steps. */
export const SIM_ENGINE: EngineInit = {
  connectTimeoutMs: 300,
  dialQueueTimeoutMs: 600,
  handshakeTimeoutMs: 300,
  streamOpenTimeoutMs: 400,
  heartbeat: { intervalMs: 1_000, timeoutMs: 300, misses: 2 },
  idleTimeoutMs: 3_000,
  drainDeadlineMs: 600,
  forceCloseGraceMs: 150,
  retry: { strategy: 'exponential', initialDelayMs: 50, multiplier: 2, maxDelayMs: 800, jitter: 0.2, maxAttempts: 3 },
  // Pinned peers give up now and then: after 5 failed attempts in a row, or more than 4 failures in 3 s.
  pinnedRetry: { strategy: 'exponential', initialDelayMs: 100, multiplier: 2, maxDelayMs: 1_600, jitter: 0.2, maxAttempts: 5 },
  pinnedRestartIntensity: { maxRestarts: 4, periodMs: 3_000 },
  dialBackoff: { strategy: 'exponential', initialDelayMs: 200, multiplier: 2, maxDelayMs: 1_600, jitter: 0.2 },
  maxQueuedPerPeer: 16,
  maxStreamsPerConnection: 6,
  maxInboundStreamsPerConnection: 6,
  dialConcurrency: 3,
  dialQueueLimit: 6,
};

export interface Violation {
  readonly invariant: string;
  readonly message: string;
  /** Schedule step id during or after which it was seen. */
  readonly step: number;
  readonly at: number;
}

export interface SimResult {
  readonly schedule: Schedule;
  readonly violation: Violation | undefined;
  /** Steps executed (all of them unless a violation stopped the run). */
  readonly steps: number;
  readonly trace: readonly string[];
  /** sha256 of the whole trace text. */
  readonly traceHash: string;
  readonly stats: SimStats;
}

export interface SimStats {
  requests: number;
  ok: number;
  failed: Record<string, number>;
  leases: number;
  stops: number;
  starts: number;
  transitions: number;
  virtualMs: number;
}

interface Request {
  readonly n: number;
  readonly step: number;
  readonly from: string;
  readonly to: string;
  readonly kind: 'stream' | 'lease' | 'inner';
  /** Its deadline, or for a request without one, the bound it must be answered by. */
  readonly deadline: number;
  readonly controller: AbortController;
  answers: number;
  grants: number;
  grantedAt: number | undefined;
  hold: number;
  outcome: string | undefined;
}

interface PairView {
  readonly state: string;
  readonly streams: number;
  readonly opening: number;
  readonly conn: string | null;
  /** Since when state, counts and connection are what they are. */
  readonly since: number;
}

interface SimNode {
  readonly name: string;
  readonly index: number;
  engine: Engine;
  clock: EngineClock;
  generation: number;
  /** `starting` until engine.start() returned: only a started engine is stopped (see races.spec: stop during start). */
  status: 'starting' | 'running' | 'stopping' | 'stopped';
  /** Set when stop() returned; checked (and cleared) by the next invariant pass. */
  justStopped: boolean;
  /** Start a new engine as soon as this one has stopped. */
  restart: boolean;
  /** Dials the engine had started when stop() was called. */
  dialsAtStop: number;
  warnings: string[];
}

class Failure extends Error {
  constructor(readonly violation: Violation) {
    super(`${violation.invariant}: ${violation.message}`);
  }
}

/** Read by echo and hold handlers until the other side finishes. */
async function drainReadable(stream: PeerStream, echo: boolean): Promise<void> {
  const reader = stream.readable.getReader();
  const writer = echo ? stream.writable.getWriter() : undefined;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (writer !== undefined) await writer.write(value);
    }
    stream.close();
  } catch {
    stream.abort('handler gave up');
  }
}

/** Which node keeps which peer pinned: a few fixed pairs. */
export function pinnedPairs(names: readonly string[]): Set<string> {
  const pairs = new Set<string>();
  if (names.length >= 2) pairs.add(`${names[0]}>${names[1]}`);
  if (names.length >= 4) pairs.add(`${names[2]}>${names[3]}`);
  if (names.length >= 6) pairs.add(`${names[5]}>${names[4]}`);
  return pairs;
}

export class World {
  readonly schedule: Schedule;
  readonly clock = new VirtualClock();
  readonly network: MemoryNetwork;
  readonly names: readonly string[];
  readonly nodes = new Map<string, SimNode>();
  readonly requests: Request[] = [];
  /** Requests with no answer yet (the ones the deadline check looks at). */
  readonly #unanswered = new Set<Request>();
  #doubleAnswer: string | undefined;
  readonly trace: string[] = [];
  readonly stats: SimStats = { requests: 0, ok: 0, failed: {}, leases: 0, stops: 0, starts: 0, transitions: 0, virtualMs: 0 };
  readonly #options: SimOptions;
  readonly #engineInit: EngineInit;
  readonly #pins: Set<string>;
  readonly #timers = new Set<unknown>();
  readonly #streams = new Set<PeerStream>();
  readonly #byStep = new Map<number, Request[]>();
  readonly #leaseEnds = new Set<() => void>();
  /** When a partition last healed: what it held is still on its way for a while. */
  #healedAt = Number.NEGATIVE_INFINITY;
  /** Per `node>peer`: what the stream-count check last saw, and since when. */
  readonly #seen = new Map<string, { key: string; since: number }>();
  #hash = createHash('sha256');
  #step = -1;
  #finishing = false;
  #escaped: unknown[] = [];

  constructor(schedule: Schedule, options: SimOptions = {}) {
    this.schedule = schedule;
    this.#options = options;
    this.network = new MemoryNetwork({ clock: this.clock, latencyMs: options.latencyMs ?? 3, seed: schedule.seed });
    this.names = nodeNames(schedule.peers);
    this.#pins = pinnedPairs(this.names);
    this.#engineInit = {
      ...SIM_ENGINE,
      // Fewer machines than peers: a busy node prunes idle connections.
      maxConnections: Math.max(3, schedule.peers - 2),
      ...options.engine,
    };
  }

  get now(): number {
    return this.clock.now();
  }

  log(line: string): void {
    this.#hash.update(line);
    this.#hash.update('\n');
    if (this.#options.keepTrace !== false || this.trace.length < 200) this.trace.push(line);
    else {
      this.trace.shift();
      this.trace.push(line);
    }
  }

  node(name: string): SimNode | undefined {
    return this.nodes.get(name);
  }

  // ------------------------------------------------------------ engines

  async #startNode(name: string): Promise<void> {
    const index = this.names.indexOf(name);
    const previous = this.nodes.get(name);
    const generation = previous === undefined ? 0 : previous.generation + 1;
    const clock = new EngineClock(this.clock);
    const warnings: string[] = [];
    const engine = createEngine({
      adapter: this.network.node(name),
      clock,
      random: seededRandom(this.schedule.seed * 7919 + index * 101 + generation),
      trace: false,
      logger: {
        trace: () => {},
        warn: (line, error) => void warnings.push(`${line}${error === undefined ? '' : `: ${String(error)}`}`),
      },
      ...this.#engineInit,
    });
    engine.handle('/echo', (stream) => drainReadable(stream, true));
    // Per-protocol limits: a burst of /hold streams runs into them now and then.
    engine.handle('/hold', (stream) => drainReadable(stream, false), { maxStreamsPerConnection: 2, inboundRate: { opens: 4, windowMs: 1_000 } });
    for (const [i, other] of this.names.entries()) {
      if (other === name) continue;
      // Priorities for pruning: a rank by position.
      engine.addPeer(other, [this.network.address(other)], { pinned: this.#pins.has(`${name}>${other}`), tags: { rank: i % 3 } });
    }
    engine.transitions$.subscribe((t) => {
      this.stats.transitions += 1;
      this.log(`  t=${t.at} ${name}: ${t.peerId} ${t.from ?? 'new'} -> ${t.to} (${t.event})`);
    });
    const node: SimNode = { name, index, engine, clock, generation, status: 'starting', justStopped: false, restart: false, dialsAtStop: 0, warnings };
    this.nodes.set(name, node);
    await engine.start();
    node.status = 'running';
  }

  // ------------------------------------------------------------ requests

  #track(step: number, from: string, to: string, kind: Request['kind'], timeout: number | null, hold: number): Request {
    const request: Request = {
      n: this.stats.requests++,
      step,
      from,
      to,
      kind,
      deadline: this.now + (timeout ?? NO_DEADLINE_BOUND_MS),
      controller: new AbortController(),
      answers: 0,
      grants: 0,
      grantedAt: undefined,
      hold,
      outcome: undefined,
    };
    this.requests.push(request);
    this.#unanswered.add(request);
    const list = this.#byStep.get(step) ?? [];
    list.push(request);
    this.#byStep.set(step, list);
    return request;
  }

  #answered(request: Request, outcome: string): void {
    request.answers += 1;
    this.#unanswered.delete(request);
    if (request.answers > 1) this.#doubleAnswer ??= `req#${request.n} (${request.kind} ${request.from}->${request.to}) was answered ${request.answers} times (${request.outcome}, then ${outcome})`;
    request.outcome = outcome;
    if (outcome === 'ok' || outcome === 'done') this.stats.ok += 1;
    else this.stats.failed[outcome] = (this.stats.failed[outcome] ?? 0) + 1;
    this.log(`  t=${this.now} ${request.from} req#${request.n} (${request.kind} -> ${request.to}) ${outcome}`);
  }

  #later(ms: number, fn: () => void): void {
    // While the run ends, holds end at once: nothing may keep a timer past the final stop.
    if (this.#finishing) {
      queueMicrotask(fn);
      return;
    }
    const handle = this.clock.setTimeout(() => {
      this.#timers.delete(handle);
      fn();
    }, ms);
    this.#timers.add(handle);
  }

  /** Holds an open stream for `hold` ms, then closes it (every fifth is aborted instead). */
  #hold(stream: PeerStream, hold: number, n: number): void {
    this.#streams.add(stream);
    const writer = stream.writable.getWriter();
    writer.write(new Uint8Array([n & 0xff])).catch(() => {});
    writer.releaseLock();
    void stream.closed.then(() => this.#streams.delete(stream));
    this.#later(hold, () => (n % 5 === 0 ? stream.abort('done') : stream.close()));
  }

  #open(step: Step, from: string, to: string, proto: string, timeout: number | null, hold: number, abortAt: number | null, wait = false): void {
    const node = this.nodes.get(from);
    if (node === undefined) return;
    const request = this.#track(step.id, from, to, 'stream', timeout, hold);
    if (abortAt !== null) this.#later(abortAt, () => request.controller.abort());
    node.engine.requests.next({
      peerId: to,
      protocol: `/${proto}`,
      ...(timeout === null ? {} : { deadline: request.deadline }),
      ...(wait && timeout !== null ? { waitForReady: true } : {}),
      signal: request.controller.signal,
      reply: (answer: StreamAnswer) => {
        this.#answered(request, answer.ok ? 'ok' : answer.error.code);
        if (answer.ok) this.#hold(answer.stream, hold, request.n);
      },
    });
  }

  #lease(step: Step, op: Extract<Op, { k: 'lease' }>): void {
    const node = this.nodes.get(op.from);
    if (node === undefined) return;
    const request = this.#track(step.id, op.from, op.to, 'lease', op.timeout, op.hold);
    node.engine
      .withConnection(
        op.to,
        async (connection) => {
          request.grants += 1;
          request.grantedAt = this.now;
          if (request.grants > 1) this.#doubleAnswer ??= `lease req#${request.n} was granted ${request.grants} times`;
          this.stats.leases += 1;
          this.log(`  t=${this.now} ${op.from} req#${request.n} (lease -> ${op.to}) granted`);
          if (op.inner) {
            const inner = this.#track(step.id, op.from, op.to, 'inner', 500, 0);
            await connection.openStream('/echo', { timeoutMs: 500, signal: inner.controller.signal }).then(
              (stream) => {
                this.#answered(inner, 'ok');
                this.#hold(stream, 0, inner.n);
              },
              (error: { code?: string }) => this.#answered(inner, error.code ?? 'thrown'),
            );
          }
          await new Promise<void>((resolve) => {
            this.#leaseEnds.add(resolve);
            this.#later(op.hold, () => {
              this.#leaseEnds.delete(resolve);
              resolve();
            });
          });
        },
        { signal: request.controller.signal, timeoutMs: op.timeout },
      )
      .then(
        () => this.#answered(request, 'done'),
        (error: { code?: string }) => this.#answered(request, error.code ?? 'thrown'),
      );
  }

  // ------------------------------------------------------------ steps

  async #apply(step: Step): Promise<void> {
    const op = step.op;
    const net = this.network;
    const running = (name: string): SimNode | undefined => {
      const node = this.nodes.get(name);
      return node?.status === 'running' ? node : undefined;
    };
    switch (op.k) {
      case 'open':
        this.#open(step, op.from, op.to, op.proto, op.timeout, op.hold, op.abortAt, op.wait === true);
        return;
      case 'both':
        this.#open(step, op.a, op.b, 'echo', op.timeout, op.hold, null);
        this.#open(step, op.b, op.a, 'echo', op.timeout, op.hold, null);
        return;
      case 'lease':
        this.#lease(step, op);
        return;
      case 'abort':
        for (const request of this.#byStep.get(op.step) ?? []) request.controller.abort();
        return;
      case 'drain':
        void running(op.at)?.engine.drain(op.peer);
        return;
      case 'force':
        void running(op.at)?.engine.forceClose(op.peer, 'simulated force close');
        return;
      case 'stop': {
        const node = running(op.node);
        if (node === undefined) return;
        node.status = 'stopping';
        this.stats.stops += 1;
        this.#stopping(node);
        void node.engine.stop({ force: op.force }).then(() => {
          node.status = 'stopped';
          node.justStopped = true;
          this.log(`  t=${this.now} ${node.name} stopped`);
          if (node.restart) this.#restart(node.name);
        });
        this.#later(op.down, () => {
          if (this.nodes.get(op.node) !== node) return;
          if (node.status === 'stopped') this.#restart(node.name);
          else node.restart = true;
        });
        return;
      }
      case 'start': {
        const node = this.nodes.get(op.node);
        if (node?.status !== 'stopped') return;
        this.stats.starts += 1;
        await this.#startNode(op.node);
        return;
      }
      case 'partition':
        net.partition(op.a, op.b);
        this.#later(op.ms, () => this.#heal());
        return;
      case 'heal':
        this.#heal();
        return;
      case 'drop':
        if (op.b === null) net.drop(op.a);
        else net.drop(op.a, op.b);
        return;
      case 'stallDials':
        net.stallDials(op.node, true);
        this.#later(op.ms, () => net.stallDials(op.node, false));
        return;
      case 'stallHandshake':
        net.stallHandshake(op.node, true);
        this.#later(op.ms, () => net.stallHandshake(op.node, false));
        return;
      case 'refuse':
        net.refuseDials(op.node, true);
        this.#later(op.ms, () => net.refuseDials(op.node, false));
        return;
      case 'ack':
        net.ackFault(op.node, { lose: op.lose, delayMs: op.delayMs });
        this.#later(op.ms, () => net.ackFault(op.node, null));
        return;
      case 'probe':
        running(op.node)?.engine.networkChanged();
        return;
      case 'pin':
        running(op.at)?.engine.addPeer(op.peer, [net.address(op.peer)], { pinned: op.pinned });
        return;
      case 'wait':
        return;
    }
  }

  #heal(): void {
    this.network.heal();
    this.#healedAt = this.now;
  }

  /** Notes what a stopping engine must not do any more. */
  #stopping(node: SimNode): void {
    node.dialsAtStop = node.engine.metrics().dials.started;
  }

  /** Starts a new engine on a node whose engine stopped (from a timer: errors are reported, not thrown). */
  #restart(name: string): void {
    const node = this.nodes.get(name);
    if (node?.status !== 'stopped' || this.#finishing) return;
    this.stats.starts += 1;
    this.#startNode(name).catch((error: unknown) => void this.#escaped.push(error));
  }

  // ------------------------------------------------------------ invariants

  #fail(invariant: string, message: string): never {
    throw new Failure({ invariant, message, step: this.#step, at: this.now });
  }

  /** Every invariant that must hold between steps. */
  check(): void {
    const now = this.now;
    if (this.#escaped.length > 0) {
      const e = this.#escaped[0];
      this.#fail('no-unhandled-error', e instanceof Error ? (e.stack ?? e.message) : String(e));
    }
    if (this.#doubleAnswer !== undefined) this.#fail('answered-once', this.#doubleAnswer);
    for (const r of this.#unanswered) {
      if (r.grants === 0 && now > r.deadline) {
        this.#fail('answered-in-time', `req#${r.n} (${r.kind} ${r.from}->${r.to}, step ${r.step}) has no answer ${now - r.deadline} ms past its deadline (or bound)`);
      }
      // A lease is given back when its holder's work ends (the hold, plus an inner open bounded at 500 ms).
      if (r.grantedAt !== undefined && now > r.grantedAt + r.hold + 1_000) {
        this.#fail('answered-in-time', `lease req#${r.n} granted at ${r.grantedAt} never ended`);
      }
    }
    const views = new Map<string, PairView>();
    for (const node of this.nodes.values()) {
      const engine = node.engine;
      if (node.warnings.length > 0) this.#fail('no-internal-error', `${node.name}: ${node.warnings.join(' | ')}`);
      if (node.justStopped) {
        node.justStopped = false;
        const metrics = engine.metrics();
        if (metrics.dials.started > node.dialsAtStop) {
          this.#fail('no-dial-after-stop', `${node.name} started ${metrics.dials.started - node.dialsAtStop} dial(s) after stop() was called`);
        }
        const left: string[] = [];
        if (metrics.internalErrors > 0) left.push(`${metrics.internalErrors} internal errors`);
        if (engine.snapshot().peers.length > 0) left.push(`${engine.snapshot().peers.length} machines`);
        if (node.clock.pending() > 0) left.push(`${node.clock.pending()} timers`);
        if (metrics.pendingRequests > 0) left.push(`${metrics.pendingRequests} pending requests`);
        if (engine.status !== 'stopped') left.push(`status ${engine.status}`);
        for (const name of this.names) if (Engine.actorOf(engine, name) !== undefined) left.push(`a machine for ${name}`);
        if (left.length > 0) this.#fail('clean-stop', `${node.name} after stop(): ${left.join(', ')}`);
      }
      if (node.status === 'stopped') continue;
      if (node.status === 'stopping') {
        const dials = engine.metrics().dials.started;
        if (dials > node.dialsAtStop) this.#fail('no-dial-after-stop', `${node.name} started ${dials - node.dialsAtStop} dial(s) after stop() was called`);
      }
      const peers = engine.snapshot().peers;
      const seen = new Set<string>();
      let scheduled = 0;
      /** When the engine's one heartbeat timer must fire at the latest (the earliest heartbeat due). */
      let heartbeatDue = Infinity;
      let heartbeatArmed = Infinity;
      for (const peer of peers) {
        if (seen.has(peer.peerId)) this.#fail('one-entry-per-machine', `${node.name} has two entries for ${peer.peerId}`);
        seen.add(peer.peerId);
        const actor = Engine.actorOf(engine, peer.peerId);
        if (actor === undefined || actor.getSnapshot().status !== 'active') {
          this.#fail('one-entry-per-machine', `${node.name}: entry ${peer.peerId} has no live machine`);
        }
        // XState keeps each actor system's pending delayed events here (what it persists as `scheduler`).
        const pending = (actor.system as unknown as { _snapshot: { _scheduledEvents: Record<string, { source: unknown }> } })._snapshot
          ._scheduledEvents;
        let timers = 0;
        for (const id in pending) if (pending[id]!.source === actor) timers += 1;
        // A `ready` machine's heartbeat is its timer: on the engine's heartbeat scheduler, which holds one clock timer for all.
        const beat = Engine.heartbeatOf(engine, peer.peerId);
        if (beat !== undefined) {
          heartbeatDue = Math.min(heartbeatDue, beat.dueAt);
          heartbeatArmed = beat.armedAt;
        }
        if (timers === 0 && beat === undefined) {
          this.#fail('timer-in-every-state', `${node.name}: machine for ${peer.peerId} is in ${JSON.stringify(actor.getSnapshot().value)} with no timer`);
        }
        if (peer.state === 'ready' && beat === undefined) this.#fail('timer-in-every-state', `${node.name}: ready peer ${peer.peerId} has no heartbeat`);
        if (peer.state !== 'ready' && beat !== undefined) this.#fail('timer-in-every-state', `${node.name}: ${peer.state} peer ${peer.peerId} still has a heartbeat`);
        scheduled += timers;
        const context = actor.getSnapshot().context as ConnectionContext;
        views.set(`${node.name}>${peer.peerId}`, this.#pairView(`${node.name}>${peer.peerId}`, peer.state, peer.streams, peer.opening, context.connectionId));
      }
      if (heartbeatDue !== Infinity) {
        if (!(heartbeatArmed <= heartbeatDue)) this.#fail('timer-in-every-state', `${node.name}: a heartbeat is due at ${heartbeatDue}, the heartbeat timer is armed for ${heartbeatArmed}`);
        scheduled += 1;
      }
      if (node.clock.pending() < scheduled) {
        this.#fail('timer-in-every-state', `${node.name}: ${scheduled} scheduled events but only ${node.clock.pending()} timers on its clock`);
      }
      // The cheap per-step checks above; the gauges every few steps.
      if (this.#step % 16 === 0) {
        const metrics = engine.metrics();
        if (metrics.internalErrors > 0) this.#fail('no-internal-error', `${node.name}: ${metrics.internalErrors} internal errors`);
        const gauges = Object.values(metrics.peers).reduce((a, b) => a + b, 0);
        if (gauges !== peers.length) this.#fail('one-entry-per-machine', `${node.name}: ${peers.length} entries, state gauges add up to ${gauges}`);
      }
    }
    this.#checkStreamCounts(views);
    for (const extra of this.#options.invariants ?? []) {
      const problem = extra.check(this);
      if (problem !== null) this.#fail(extra.name, problem);
    }
  }

  #pairView(key: string, state: string, streams: number, opening: number, conn: string | null): PairView {
    const signature = `${state}/${streams}/${opening}/${conn}`;
    const seen = this.#seen.get(key);
    const since = seen !== undefined && seen.key === signature ? seen.since : this.now;
    if (seen === undefined || seen.key !== signature) this.#seen.set(key, { key: signature, since });
    return { state, streams, opening, conn, since };
  }

  /**
   * Where a connection is up on both sides and quiet (nothing about it has
   * changed on either side for a while), both sides count the same streams.
   */
  #checkStreamCounts(views: ReadonlyMap<string, PairView>): void {
    const quietMs = 25 * (this.#options.latencyMs ?? 3);
    for (const [key, a] of views) {
      if (a.state !== 'ready' || a.conn === null || a.opening > 0) continue;
      const [from, to] = key.split('>') as [string, string];
      if (from > to) continue;
      const b = views.get(`${to}>${from}`);
      if (b === undefined || b.state !== 'ready' || a.conn !== b.conn || b.opening > 0) continue;
      // A partition holds what crosses it until the heal (as QUIC retransmits): not quiet, only cut off.
      if (this.network.isPartitioned(from, to)) continue;
      if (this.now - Math.max(a.since, b.since, this.#healedAt) < quietMs) continue;
      if (a.streams !== b.streams) {
        this.#fail('stream-counts-agree', `${from} counts ${a.streams} streams with ${to}, ${to} counts ${b.streams} (connection ${a.conn}, quiet since ${Math.max(a.since, b.since)})`);
      }
    }
  }

  /** Stops every engine and checks that nothing is left: no machine, no timer, no connection, no unanswered request. */
  async #finish(): Promise<void> {
    this.#finishing = true;
    this.network.heal();
    for (const name of this.names) {
      this.network.stallDials(name, false);
      this.network.stallHandshake(name, false);
      this.network.refuseDials(name, false);
      this.network.ackFault(name, null);
    }
    for (const handle of this.#timers) this.clock.clearTimeout(handle);
    this.#timers.clear();
    for (const end of this.#leaseEnds) end();
    this.#leaseEnds.clear();
    for (const stream of this.#streams) stream.close();
    await flushMicrotasks();
    if ([...this.nodes.values()].some((n) => n.status === 'starting')) this.#fail('clean-stop', 'an engine did not finish start()');
    const stops = [...this.nodes.values()].map((node) => {
      node.restart = false;
      if (node.status === 'stopped') return Promise.resolve();
      // stop() again on a stopping engine returns the same promise.
      const first = node.status === 'running';
      node.status = 'stopping';
      if (first) this.#stopping(node);
      return node.engine.stop().then(() => {
        node.status = 'stopped';
        node.justStopped = true;
      });
    });
    let done = false;
    void Promise.all(stops).then(() => (done = true));
    // Every stop is bounded by drain deadline + grace; move the clock until they all returned.
    for (let i = 0; i < 10_000 && !done; i++) {
      const next = this.clock.nextAt();
      await (next === undefined ? flushMicrotasks() : this.clock.advance(Math.max(0, next - this.now)));
    }
    if (!done) this.#fail('clean-stop', 'stop() did not return for every engine');
    await this.clock.advance(50);
    this.check();
    const left: string[] = [];
    if (this.clock.pending() > 0) left.push(`${this.clock.pending()} timers on the clock`);
    if (this.network.connectionCount() > 0) left.push(`${this.network.connectionCount()} connections`);
    const unanswered = this.requests.filter((r) => r.answers === 0);
    if (unanswered.length > 0) left.push(`${unanswered.length} requests never answered (first: req#${unanswered[0]!.n} ${unanswered[0]!.kind} ${unanswered[0]!.from}->${unanswered[0]!.to})`);
    if (left.length > 0) this.#fail('clean-stop', `after every engine stopped: ${left.join(', ')}`);
  }

  async run(): Promise<SimResult> {
    const hooks = this.#options.processHooks !== false;
    const onEscape = (error: unknown): void => void this.#escaped.push(error);
    if (hooks) {
      process.on('unhandledRejection', onEscape);
      process.on('uncaughtException', onEscape);
    }
    let violation: Violation | undefined;
    let executed = 0;
    try {
      for (const name of this.names) await this.#startNode(name);
      this.check();
      for (const step of this.schedule.steps) {
        this.#step = step.id;
        this.log(`#${step.id} t=${this.now} ${describeOp(step.op)}${step.dt > 0 ? ` +${step.dt}ms` : ''}`);
        await this.#apply(step);
        // A step without time only needs its promise callbacks to run.
        await (step.dt === 0 ? flushMicrotasks() : this.clock.advance(step.dt));
        executed += 1;
        this.check();
      }
      this.#step = this.schedule.steps.at(-1)?.id ?? -1;
      this.log(`end t=${this.now}`);
      await this.#finish();
    } catch (error) {
      if (!(error instanceof Failure)) throw error;
      violation = error.violation;
      this.log(`VIOLATION ${violation.invariant} at step ${violation.step} t=${violation.at}: ${violation.message}`);
    } finally {
      if (hooks) {
        // Rejections created in the last step reach the hooks after a turn of the event loop.
        await new Promise((resolve) => setImmediate(resolve));
        process.off('unhandledRejection', onEscape);
        process.off('uncaughtException', onEscape);
      }
      for (const handle of this.#timers) this.clock.clearTimeout(handle);
    }
    if (violation === undefined && this.#escaped.length > 0) {
      const e = this.#escaped[0];
      violation = { invariant: 'no-unhandled-error', message: e instanceof Error ? e.message : String(e), step: this.#step, at: this.now };
    }
    this.stats.virtualMs = this.now;
    const traceHash = this.#hash.digest('hex');
    this.#hash = createHash('sha256');
    return { schedule: this.schedule, violation, steps: executed, trace: this.trace, traceHash, stats: this.stats };
  }
}

/** Runs a schedule once. */
export function simulate(schedule: Schedule, options: SimOptions = {}): Promise<SimResult> {
  return new World(schedule, options).run();
}
