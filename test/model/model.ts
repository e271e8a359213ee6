/**
 * The model the generated tests walk: the pure peer connection machine, run
 * with the same delays and limits as the engine under test, inside a small
 * timed model of its surroundings (the engine's dial queue with two blocking
 * peers, the transport connections, streams and leases the test holds, and a
 * scripted remote peer that does nothing unless a step tells it to).
 *
 * The heartbeat is the runtime's (runtime/heartbeat.ts), not the machine's:
 * the machine starts it on entering `ready` and stops it on leaving, and hears
 * of it only when it fails (`HEARTBEAT.FAILED`). The model keeps it as the
 * scheduler does (phase, sequence number, misses) with one timer, `hb`.
 *
 * A step is a stimulus the test can cause from outside: an engine call, an
 * action of the scripted remote, a network fault, or letting the clock run to
 * the next timer. The model knows what each one costs in virtual time and
 * which machine events it leads to, in the order the engine delivers them
 * (events the machine sends itself first, then promise callbacks). Time is
 * part of the model: a step is only offered if no timer falls due before it
 * completes, so every generated path is one the real engine can follow
 * exactly. The abstract key of a state (see `keyOf`) keeps what decides the
 * future (state value, counts, the order of pending timers) and drops what
 * only grows (ids, sequence numbers, absolute times), so the graph is finite.
 */
import { createEmptyActor, type AnyEventObject, type AnyMachineSnapshot, type InspectionEvent } from 'xstate';
import { canRetry, connectionMachine } from '../../machines/connection-machine.js';
import { ConnectionErrorCode, reasonFor, type ErrorInfo } from '../../machines/codes.js';
import { PROTOCOL_VERSION, type ConnectionContext, type ConnectionLimits, type ConnectionState } from '../../machines/types.js';
import type { EngineInit } from '../../runtime/index.js';
import { keyOf as transitionKey } from './transitions.js';

// ------------------------------------------------------------------ settings

/** One-way latency of the memory network in model runs (ms). */
export const LATENCY = 2;
/** The engine under test. The remote is `b` (sorts below it) or `x` (above). */
export const LOCAL = 'm';
/** Peers that only exist to hold the engine's single dial slot. Their dials stall. */
export const BLOCKERS = ['z1', 'z2'] as const;
/** The protocol the local engine handles; inbound streams of any other are refused. */
export const KNOWN = '/known';
export const UNKNOWN = '/unknown';
/** A handled protocol with `maxStreamsPerConnection: 1`: a second inbound stream of it on one connection is refused. */
export const CAPPED = '/capped';

/** Distinct delays, so a timer firing in the wrong place shows. */
export const TIMING = {
  dialQueueTimeoutMs: 300,
  connectTimeoutMs: 400,
  handshakeTimeoutMs: 200,
  streamOpenTimeoutMs: 150,
  heartbeat: { intervalMs: 1000, timeoutMs: 400, misses: 2 },
  idleTimeoutMs: 2500,
  drainDeadlineMs: 700,
  forceCloseGraceMs: 100,
  pinnedBackoffMs: 250,
  /** Dial backoff of an unpinned peer whose dial failed (no retry left). */
  dialBackoffMs: 350,
  /** A pinned peer gives up after this many consecutive failed attempts... */
  pinnedMaxAttempts: 3,
  /** ...or after more than this many failures within `restartPeriodMs`. */
  maxRestarts: 2,
  restartPeriodMs: 1200,
} as const;

/** Small limits, so every bound is reached within a few steps. */
export const LIMITS: ConnectionLimits = {
  maxQueued: 1,
  maxStreams: 1,
  maxInboundStreams: 1,
  // Unpinned peers do not retry (policy `none`) but back off after a failed
  // dial; pinned peers retry until their attempts or restart intensity run out.
  maxAttempts: 1,
  pinnedMaxAttempts: TIMING.pinnedMaxAttempts,
  maxRestarts: TIMING.maxRestarts,
  dialBackoff: true,
};

/** The engine options that make the engine match the model. */
export function engineOptions(config: ModelConfig): EngineInit {
  return {
    ...(config.crowded ? { maxConnections: 1 } : {}),
    dialQueueTimeoutMs: TIMING.dialQueueTimeoutMs,
    connectTimeoutMs: TIMING.connectTimeoutMs,
    handshakeTimeoutMs: TIMING.handshakeTimeoutMs,
    streamOpenTimeoutMs: TIMING.streamOpenTimeoutMs,
    heartbeat: { ...TIMING.heartbeat },
    idleTimeoutMs: TIMING.idleTimeoutMs,
    drainDeadlineMs: TIMING.drainDeadlineMs,
    forceCloseGraceMs: TIMING.forceCloseGraceMs,
    retry: { strategy: 'none' },
    pinnedRetry: { strategy: 'fixed', delayMs: TIMING.pinnedBackoffMs, maxAttempts: TIMING.pinnedMaxAttempts },
    pinnedRestartIntensity: { maxRestarts: TIMING.maxRestarts, periodMs: TIMING.restartPeriodMs },
    dialBackoff: { strategy: 'fixed', delayMs: TIMING.dialBackoffMs },
    maxQueuedPerPeer: LIMITS.maxQueued,
    maxStreamsPerConnection: LIMITS.maxStreams,
    maxInboundStreamsPerConnection: LIMITS.maxInboundStreams,
    dialConcurrency: 1,
    dialQueueLimit: 1,
  };
}

/** The environment the model's `protocolLimited` guard reads (set around each machine step). */
let guardEnv: Env | undefined;

/** The machine as the model runs it: the engine's delays, and handlers for KNOWN and CAPPED only. */
export const modelMachine = connectionMachine.provide({
  guards: {
    hasHandler: (_args, params: { protocol: string }) => params.protocol === KNOWN || params.protocol === CAPPED,
    // The engine's per-protocol limit: CAPPED allows one open inbound stream per connection.
    protocolLimited: ({ event }) =>
      event.type === 'STREAM.INBOUND' &&
      event.protocol === CAPPED &&
      (guardEnv?.streams.some((s) => s.kind === 'in' && s.conn === event.connectionId && s.protocol === CAPPED) ?? false),
  },
  delays: {
    dialQueueTimeout: TIMING.dialQueueTimeoutMs,
    connectTimeout: TIMING.connectTimeoutMs,
    handshakeTimeout: TIMING.handshakeTimeoutMs,
    streamOpenTimeout: TIMING.streamOpenTimeoutMs,
    idleTimeout: TIMING.idleTimeoutMs,
    drainDeadline: TIMING.drainDeadlineMs,
    forceCloseGrace: TIMING.forceCloseGraceMs,
    retryBackoff: ({ context }: { context: ConnectionContext }) =>
      !canRetry(context) ? TIMING.dialBackoffMs : context.pinned ? TIMING.pinnedBackoffMs : 0,
    restartPeriod: TIMING.restartPeriodMs,
  },
});

export interface ModelConfig {
  /** The peer is pinned: the engine connects it at start and reconnects forever. */
  readonly pinned: boolean;
  /** The remote's id sorts below the local one (it wins simultaneous opens). */
  readonly remoteLower: boolean;
  /**
   * The engine allows one live machine (`maxConnections: 1`): a request to a
   * new peer prunes an idle one. No blocking peers then (they would not fit).
   */
  readonly crowded: boolean;
}

export function remoteOf(config: ModelConfig): string {
  return config.remoteLower ? 'b' : 'x';
}

export function configName(config: ModelConfig): string {
  return `${config.pinned ? 'pinned' : 'unpinned'}, remote ${config.remoteLower ? 'lower' : 'higher'}${config.crowded ? ', one connection' : ''}`;
}

/** A peer with no address: a request to it makes the engine prune an idle peer, then fails NO_ADDRESS. */
export const NEWCOMER = 'p';

// ------------------------------------------------------------------ stimuli

/** What a test step does. Serializable: it is the path's event. */
export type Stimulus =
  /** engine.openStream (stream) or engine.withConnection (lease); `wait`: with waitForReady. */
  | { readonly type: 'REQ'; readonly kind: 'stream' | 'lease'; readonly wait?: true }
  /** Aborts the signal of our request `id`. */
  | { readonly type: 'CANCEL'; readonly id: string }
  /** A request to a blocking peer, which takes (or waits for) the dial slot. */
  | { readonly type: 'BLOCK' }
  /** Our dial completes (one round trip). */
  | { readonly type: 'DIAL_DONE' }
  /** Our dial is refused (`refuseDials`, one round trip). */
  | { readonly type: 'DIAL_FAIL' }
  /** The remote dials us. */
  | { readonly type: 'REMOTE_DIAL' }
  | { readonly type: 'HELLO'; readonly ok: boolean }
  | { readonly type: 'HELLO_ACK'; readonly ok: boolean }
  /** The remote pings us: the engine answers on the current connection, with no machine step. */
  | { readonly type: 'PING' }
  /** The remote answers the last ping. */
  | { readonly type: 'PONG' }
  | { readonly type: 'GOAWAY' }
  /** The remote closes the current connection with `code`. */
  | { readonly type: 'CLOSE_REMOTE'; readonly code: number }
  /** network.drop(local, remote): every connection between them fails. */
  | { readonly type: 'DROP' }
  /** The remote ACKs / NACKs the stream header of request `id`. */
  | { readonly type: 'ACK'; readonly id: string }
  | { readonly type: 'NACK'; readonly id: string }
  /** The remote opens a stream of a known, an unknown, or the capped protocol. */
  | { readonly type: 'STREAM_IN'; readonly proto: 'known' | 'unknown' | 'capped' }
  /** engine.networkChanged(): a ready peer's heartbeat pings at once (no machine step). */
  | { readonly type: 'PROBE' }
  /** engine.addPeer(remote, [address], { pinned }): pins or unpins the live machine. */
  | { readonly type: 'PIN'; readonly pinned: boolean }
  /** We abort an open stream (outbound: our request id; inbound: its stream id). */
  | { readonly type: 'CLOSE_STREAM'; readonly id: string }
  /** We end the oldest `withConnection` callback we hold. */
  | { readonly type: 'RELEASE' }
  | { readonly type: 'DRAIN' }
  | { readonly type: 'FORCE_CLOSE' }
  | { readonly type: 'STOP'; readonly force: boolean }
  /** From now on the local transport never confirms a close it was asked for (as QUIC may not). */
  | { readonly type: 'LOSE_CLOSE' }
  /** A request to a new peer while the engine is at `maxConnections`. */
  | { readonly type: 'NEWCOMER' }
  /**
   * Sent straight into the machine: a STREAM.OPENED for a request it does not
   * hold. The engine never sends one (it drops an ACK whose open the machine
   * gave up), so the machine's handlers for it are reached this way only.
   */
  | { readonly type: 'GHOST_OPENED' }
  /** Let virtual time run to the next timer (and fire every timer due then). */
  | { readonly type: 'TIMER' };

export function protocolOf(proto: 'known' | 'unknown' | 'capped'): string {
  return proto === 'known' ? KNOWN : proto === 'capped' ? CAPPED : UNKNOWN;
}

export function describeStimulus(s: Stimulus): string {
  switch (s.type) {
    case 'REQ':
      return `REQ ${s.kind}${s.wait === true ? ' waitForReady' : ''}`;
    case 'PIN':
      return s.pinned ? 'PIN' : 'UNPIN';
    case 'CANCEL':
    case 'ACK':
    case 'NACK':
    case 'CLOSE_STREAM':
      return `${s.type} ${s.id}`;
    case 'HELLO':
    case 'HELLO_ACK':
      return `${s.type}${s.ok ? '' : ' (bad version)'}`;
    case 'CLOSE_REMOTE':
      return `CLOSE_REMOTE ${ConnectionErrorCode[s.code] ?? s.code}`;
    case 'STREAM_IN':
      return `STREAM_IN ${protocolOf(s.proto)}`;
    case 'STOP':
      return `STOP${s.force ? ' force' : ''}`;
    default:
      return s.type;
  }
}

// ------------------------------------------------------------------ state

export interface Timer {
  /** Machine timers: XState's send id. Environment timers start with `env:`. */
  readonly id: string;
  readonly event: AnyEventObject;
  readonly delay: number;
  readonly at: number;
  readonly seq: number;
}

export interface ConnRecord {
  /** Symbolic id `c1`, `c2`, ... in creation order; the driver maps it to the real one. */
  readonly sym: string;
  /** Who dialled: `out` = we did. */
  readonly dir: 'in' | 'out';
  /** The local transport side is still up. */
  localOpen: boolean;
  /** From this time on the remote holds its side of the connection. */
  readonly remoteFrom: number;
}

export interface StreamRecord {
  /** `open`: header sent, waiting for the remote's answer; `out`: delivered to us; `in`: accepted from the remote. */
  kind: 'open' | 'out' | 'in';
  /** Request id (open, out) or inbound stream id (in). */
  readonly id: string;
  readonly conn: string;
  /** Inbound streams: their protocol. */
  readonly protocol?: string;
  /** When the header reaches the remote (open). */
  readonly arrives: number;
}

export interface Env {
  now: number;
  seq: number;
  /** Requests submitted to the engine so far (ours and the blockers'): the engine numbers them the same way. */
  nextReq: number;
  nextConn: number;
  /** Inbound streams the remote opened (their ids). */
  nextIn: number;
  /** Machine generations: 0 before the first one. */
  life: number;
  /** The address book pins the peer (the next machine is created pinned). */
  pinned: boolean;
  /** Protocols of the inbound streams the remote opened, by stream id. */
  inProto: Record<string, string>;
  conns: ConnRecord[];
  streams: StreamRecord[];
  /** Leases granted and held by the test, with the machine generation that granted them. */
  leases: Array<{ readonly id: string; readonly life: number; readonly connectionId: string }>;
  /** Our dial started at this time and is in progress. */
  dialAt: number | null;
  /** The engine's dial queue (concurrency 1, queue limit 1). */
  active: string | null;
  waiting: string[];
  blockers: number;
  /** The last ping the remote got (or will get). */
  ping: { readonly seq: number; readonly conn: string; readonly arrives: number } | null;
  /** The peer's heartbeat, as the engine's scheduler keeps it; null outside `ready`. Its timer is `hb`. */
  hb: Heartbeat | null;
  /** Pongs the engine sent in answer to the remote's pings. */
  pongs: number;
  stopped: boolean;
  loseClose: boolean;
  /** Our requests and how they were answered: `ok`, `lease`, or an error code. */
  answers: Record<string, string>;
  /** Our requests (ids) in submission order. */
  requests: string[];
  /** Inbound streams the machine accepted, in order (the handler sees them in this order). */
  accepted: string[];
  /** Things the model saw that break the machine's own promises. */
  anomalies: string[];
}

export interface Heartbeat {
  phase: 'waiting' | 'pinging' | 'missed' | 'probing';
  seq: number;
  misses: number;
  /** The last ping was answered. */
  answered: boolean;
  readonly conn: string;
}

export interface ModelState {
  /** The peer's machine; null when it does not exist (not yet, or removed). */
  readonly m: AnyMachineSnapshot | null;
  readonly env: Env;
  readonly timers: readonly Timer[];
  readonly depth: number;
  /** Transition keys taken while reaching this state from the previous one. */
  readonly took: readonly string[];
  readonly config: ModelConfig;
}

function contextOf(m: AnyMachineSnapshot): ConnectionContext {
  return m.context as ConnectionContext;
}

export function topState(m: AnyMachineSnapshot): ConnectionState | 'start' {
  const value: unknown = m.value;
  if (typeof value === 'string') return value as ConnectionState;
  return Object.keys(value as object)[0] as ConnectionState;
}

/** The machine's current state nodes' own event types (XState's event descriptors). */
function ownEvents(m: AnyMachineSnapshot): string[] {
  const nodes = (m as unknown as { _nodes: Array<{ ownEvents: string[] }> })._nodes;
  return nodes.flatMap((n) => n.ownEvents);
}

function inState(m: AnyMachineSnapshot | null, ...paths: string[]): boolean {
  if (m === null || m.status !== 'active') return false;
  return paths.some((p) => m.matches(p.includes('.') ? toValue(p) : (p as never)));
}

function toValue(path: string): never {
  const parts = path.split('.');
  let value: unknown = parts.pop();
  while (parts.length > 0) value = { [parts.pop()!]: value };
  return value as never;
}

// ------------------------------------------------------------------ running the machine

interface ExecutedAction {
  readonly type: string;
  readonly params: Record<string, unknown> | undefined;
}

const executed: ExecutedAction[] = [];
const tookSink: string[] = [];
const empty = createEmptyActor();
empty.system.inspect((event: InspectionEvent) => {
  if (event.type !== '@xstate.microstep') return;
  const transitions = (event as unknown as { _transitions?: Parameters<typeof transitionKey>[0][] })._transitions ?? [];
  for (const t of transitions) tookSink.push(transitionKey(t));
});

/** A mock actor scope whose executor records actions instead of running them. */
const scope = {
  self: empty,
  logger: () => {},
  id: '',
  sessionId: 'model',
  defer: () => {},
  system: empty.system,
  stopChild: () => {},
  emit: () => {},
  actionExecutor: (action: { type: string; params: unknown }) => {
    executed.push({ type: action.type, params: action.params as Record<string, unknown> | undefined });
  },
} as unknown as Parameters<typeof modelMachine.transition>[2];

type Job = () => void;

/** A mutable copy of a state while a step runs. */
class Work {
  m: AnyMachineSnapshot | null;
  env: Env;
  timers: Timer[];
  readonly took: string[] = [];
  /** Events the machine gets before any promise callback (its children's sendBack, synchronous sends). */
  readonly mailbox: Job[] = [];
  /** Promise callbacks and microtasks, in order. */
  readonly micro: Job[] = [];
  readonly config: ModelConfig;
  readonly remote: string;

  constructor(state: ModelState) {
    this.m = state.m;
    this.env = structuredClone(state.env);
    this.timers = [...state.timers];
    this.config = state.config;
    this.remote = remoteOf(state.config);
  }

  get L(): number {
    return LATENCY;
  }

  conn(sym: string | null): ConnRecord | undefined {
    return sym === null ? undefined : this.env.conns.find((c) => c.sym === sym);
  }

  current(): ConnRecord | undefined {
    return this.m === null ? undefined : this.conn(contextOf(this.m).connectionId);
  }

  schedule(id: string, event: AnyEventObject, delay: number): void {
    this.timers.push({ id, event, delay, at: this.env.now + delay, seq: this.env.seq++ });
  }

  cancel(id: string): void {
    this.timers = this.timers.filter((t) => t.id !== id);
  }

  /** Runs queued jobs: the machine's mailbox first, then microtasks, until both are empty. */
  drain(): void {
    for (let guard = 0; guard < 10_000; guard++) {
      const job = this.mailbox.shift() ?? this.micro.shift();
      if (job === undefined) return;
      job();
    }
    throw new Error('model: event cascade does not end');
  }

  /** Sends `event` to the machine (if it still lives) and carries out its effects. */
  send(event: AnyEventObject): void {
    const m = this.m;
    if (m === null || m.status !== 'active') return;
    executed.length = 0;
    tookSink.length = 0;
    guardEnv = this.env;
    const next = modelMachine.transition(m as never, event as never, scope) as AnyMachineSnapshot;
    guardEnv = undefined;
    const actions = executed.splice(0);
    this.took.push(...tookSink.splice(0));
    this.m = next;
    for (const action of actions) this.effect(action);
    if (next.status !== 'active') this.removed(null);
  }

  /** Creates the peer's machine (outbound for a request or a pinned peer, inbound for a remote dial). */
  create(direction: 'outbound' | 'inbound', connectionId?: string): void {
    this.env.life += 1;
    executed.length = 0;
    tookSink.length = 0;
    const input = {
      peerId: this.remote,
      localPeerId: LOCAL,
      direction,
      pinned: this.env.pinned,
      limits: LIMITS,
      ...(connectionId === undefined ? {} : { connectionId }),
    };
    this.m = modelMachine.getInitialSnapshot(scope, input as never) as AnyMachineSnapshot;
    const actions = executed.splice(0);
    this.took.push(...tookSink.splice(0));
    for (const action of actions) this.effect(action);
  }

  /**
   * The engine removes the entry: the machine reached `closed`, or stop()'s
   * bound ran out (`leftover` answers what it still held). Connections still
   * attached are closed (Abandoned); nothing reaches the machine any more.
   */
  removed(leftover: string | null): void {
    const m = this.m;
    this.lastError = m === null ? undefined : (contextOf(m).lastError?.code ?? undefined);
    if (m !== null && leftover !== null) {
      const c = contextOf(m);
      for (const r of [...c.opening, ...c.queue]) this.answer(r.id, leftover);
    }
    this.m = null;
    this.env.dialAt = null;
    // The engine stops a removed machine's heartbeat.
    this.env.hb = null;
    this.release('us');
    for (const c of this.env.conns) if (c.localOpen) this.closeLocal(c.sym, ConnectionErrorCode.Abandoned, false);
    this.timers = this.timers.filter((t) => t.id.startsWith('env:'));
    if (this.env.stopped) {
      this.cancel('env:stop');
      // The registry is empty: stop() answers every request still pending.
      for (const id of this.env.requests) if (this.env.answers[id] === undefined) this.answer(id, 'ENGINE_STOPPED');
    }
  }

  /** The last error of the machine that was removed last (what the engine answers with after it). */
  lastError: string | undefined;

  answer(id: string, outcome: string): void {
    if (!this.env.requests.includes(id)) return;
    if (this.env.answers[id] !== undefined) {
      this.env.anomalies.push(`request ${id} answered twice (${this.env.answers[id]}, then ${outcome})`);
      return;
    }
    this.env.answers[id] = outcome;
  }

  effect(action: ExecutedAction): void {
    const p = action.params ?? {};
    switch (action.type) {
      case 'xstate.raise':
        if (typeof p.delay === 'number') this.schedule(String(p.id), p.event as AnyEventObject, p.delay);
        return;
      case 'xstate.cancel':
        this.cancel(String(p.sendId));
        return;
      case 'xstate.spawnChild':
        if (p.src === 'dialSlot') this.acquire('us');
        if (p.src === 'dial') this.env.dialAt = this.env.now;
        return;
      case 'xstate.stopChild':
        if (p.src === 'dialSlot') this.release('us');
        if (p.src === 'dial') this.env.dialAt = null;
        return;
      case 'answer':
        this.answer(String(p.id), (p.error as ErrorInfo).code);
        return;
      case 'deliverStream': {
        this.answer(String(p.id), 'ok');
        const s = this.env.streams.find((x) => x.id === p.id && x.kind === 'open');
        if (s !== undefined) s.kind = 'out';
        return;
      }
      case 'grantLease':
        this.answer(String(p.id), 'lease');
        this.env.leases.push({ id: String(p.id), life: this.env.life, connectionId: String(p.connectionId) });
        return;
      case 'openStream': {
        const id = String(p.id);
        const conn = this.conn(String(p.connectionId));
        if (conn?.localOpen === true) {
          this.env.streams.push({ kind: 'open', id, conn: conn.sym, arrives: this.env.now + this.L });
        } else {
          this.micro.push(() => this.send({ type: 'STREAM.OPEN_FAILED', id, error: lost('connection is closed') }));
        }
        return;
      }
      case 'abortOpen':
      case 'discardStream':
        this.env.streams = this.env.streams.filter((s) => !(s.id === p.id && s.kind === 'open'));
        return;
      case 'acceptInbound': {
        const streamId = String(p.streamId);
        this.env.accepted.push(streamId);
        const protocol = this.env.inProto[streamId] ?? KNOWN;
        this.env.streams.push({ kind: 'in', id: streamId, conn: String(p.connectionId), arrives: this.env.now, protocol });
        return;
      }
      case 'rejectConnection':
      case 'closeConnection':
        this.closeLocal(String(p.connectionId), p.code as ConnectionErrorCode, true);
        return;
      case 'startHeartbeat':
        this.env.hb = { phase: 'waiting', seq: 0, misses: 0, answered: false, conn: String(p.connectionId) };
        this.cancel('hb');
        this.schedule('hb', { type: 'hb' }, TIMING.heartbeat.intervalMs);
        return;
      case 'stopHeartbeat':
        this.env.hb = null;
        this.cancel('hb');
        return;
      default:
        return;
    }
  }

  /** This side closes connection `sym` on purpose. */
  closeLocal(sym: string, code: ConnectionErrorCode, notify: boolean): void {
    const conn = this.conn(sym);
    if (conn === undefined || !conn.localOpen) return;
    conn.localOpen = false;
    this.endStreams(sym);
    if (notify && !this.env.loseClose) {
      this.micro.push(() =>
        this.send({ type: 'CONNECTION.CLOSED', connectionId: sym, code, error: false, reason: reasonFor(code) }),
      );
    }
  }

  /** The local side of `sym` ended: its streams end (their callbacks are microtasks). */
  endStreams(sym: string): void {
    for (const s of this.env.streams.filter((x) => x.conn === sym)) {
      if (s.kind === 'open') {
        this.micro.push(() => this.send({ type: 'STREAM.OPEN_FAILED', id: s.id, error: lost('connection closed') }));
      } else {
        const inbound = s.kind === 'in';
        this.micro.push(() => this.send({ type: 'STREAM.CLOSED', connectionId: sym, inbound }));
      }
    }
    this.env.streams = this.env.streams.filter((x) => x.conn !== sym);
  }

  // ---- the engine's dial queue: concurrency 1, one waiter

  acquire(who: string): void {
    if (this.env.active === null) {
      this.grant(who);
    } else if (this.env.waiting.length >= 1) {
      if (who === 'us') this.mailbox.push(() => this.send({ type: 'DIAL.QUEUE_FULL' }));
    } else {
      this.env.waiting.push(who);
      if (who !== 'us') this.schedule(`env:${who}:queue`, { type: `env.${who}.queue` }, TIMING.dialQueueTimeoutMs);
    }
  }

  grant(who: string): void {
    this.env.active = who;
    if (who === 'us') {
      this.mailbox.push(() => this.send({ type: 'DIAL.SLOT' }));
    } else {
      this.cancel(`env:${who}:queue`);
      this.schedule(`env:${who}:connect`, { type: `env.${who}.connect` }, TIMING.connectTimeoutMs);
    }
  }

  release(who: string): void {
    if (this.env.active === who) {
      this.env.active = null;
      const next = this.env.waiting.shift();
      if (next !== undefined) this.grant(next);
    } else {
      this.env.waiting = this.env.waiting.filter((w) => w !== who);
    }
  }

  // ---- the heartbeat (runtime/heartbeat.ts)

  /** Sends the heartbeat's next ping on its connection (if it is still open) and waits `timeout` for the pong. */
  ping(hb: Heartbeat, phase: 'pinging' | 'probing'): void {
    hb.seq += 1;
    hb.answered = false;
    hb.phase = phase;
    this.schedule('hb', { type: 'hb' }, TIMING.heartbeat.timeoutMs);
    const conn = this.conn(hb.conn);
    if (conn?.localOpen === true) this.env.ping = { seq: hb.seq, conn: hb.conn, arrives: this.env.now + this.L };
  }

  /** The heartbeat's timer fired. */
  beat(): void {
    const hb = this.env.hb;
    if (hb === null) return;
    const { intervalMs, timeoutMs, misses } = TIMING.heartbeat;
    if (hb.phase === 'waiting' || hb.phase === 'missed') return this.ping(hb, 'pinging');
    if (hb.phase === 'pinging' && hb.misses + 1 < misses) {
      hb.misses += 1;
      hb.phase = 'missed';
      this.schedule('hb', { type: 'hb' }, intervalMs - timeoutMs);
      return;
    }
    this.env.hb = null;
    const probe = hb.phase === 'probing';
    this.send({ type: 'HEARTBEAT.FAILED', connectionId: hb.conn, misses: probe ? hb.misses : hb.misses + 1, probe });
  }

  /** The remote's pong of ping `seq`. */
  pong(seq: number): void {
    const hb = this.env.hb;
    if (hb === null || seq !== hb.seq || seq === 0) return;
    hb.answered = true;
    hb.misses = 0;
    if (hb.phase === 'pinging' || hb.phase === 'probing') {
      hb.phase = 'waiting';
      this.cancel('hb');
      this.schedule('hb', { type: 'hb' }, TIMING.heartbeat.intervalMs);
    }
  }

  /** engine.networkChanged(). */
  probe(): void {
    const hb = this.env.hb;
    if (hb === null) return;
    this.cancel('hb');
    this.ping(hb, 'probing');
  }

  /** Fires one timer. */
  fire(timer: Timer): void {
    this.timers = this.timers.filter((t) => t !== timer);
    if (timer.id === 'hb') {
      this.beat();
      return;
    }
    const env = /^env:(.+):(connect|queue)$/.exec(timer.id);
    if (env !== null) {
      // A blocker's dial timed out, or it gave up waiting: it closes and frees its place.
      this.release(env[1]!);
      return;
    }
    if (timer.id === 'env:stop') {
      this.removed('ENGINE_STOPPED');
      return;
    }
    this.send(timer.event);
  }
}

function lost(message: string): ErrorInfo {
  return { code: 'CONNECTION_LOST', message };
}

// ------------------------------------------------------------------ the logic

export function initialState(config: ModelConfig): ModelState {
  const env: Env = {
    now: 0,
    seq: 0,
    nextReq: 0,
    nextConn: 0,
    nextIn: 0,
    life: 0,
    pinned: config.pinned,
    inProto: {},
    conns: [],
    streams: [],
    leases: [],
    dialAt: null,
    active: null,
    waiting: [],
    blockers: 0,
    ping: null,
    hb: null,
    pongs: 0,
    stopped: false,
    loseClose: false,
    answers: {},
    requests: [],
    accepted: [],
    anomalies: [],
  };
  const state: ModelState = { m: null, env, timers: [], depth: 0, took: [], config };
  if (!config.pinned) return state;
  // A pinned peer's machine starts with the engine.
  const w = new Work(state);
  w.create('outbound');
  w.drain();
  return { m: w.m, env: w.env, timers: w.timers, depth: 0, took: w.took, config };
}

/** The remote holds an unanswered ping of the heartbeat on `sym`, which a pong would answer. */
function pongable(env: Env, sym: string): boolean {
  const hb = env.hb;
  return hb !== null && !hb.answered && hb.conn === sym && env.ping !== null && env.ping.conn === sym && env.ping.seq === hb.seq;
}

function nextTimer(timers: readonly Timer[]): Timer | undefined {
  let best: Timer | undefined;
  for (const t of timers) if (best === undefined || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
  return best;
}

/** Virtual time a stimulus takes before its effect reaches the local engine. */
export function costOf(state: ModelState, s: Stimulus): number {
  const env = state.env;
  const L = LATENCY;
  const current = state.m === null ? undefined : env.conns.find((c) => c.sym === contextOf(state.m!).connectionId);
  const wait = (c: ConnRecord | undefined): number => Math.max(0, (c?.remoteFrom ?? env.now) - env.now);
  switch (s.type) {
    case 'DIAL_DONE':
    case 'DIAL_FAIL':
      return 2 * L;
    case 'REMOTE_DIAL':
      return L;
    case 'HELLO':
    case 'HELLO_ACK':
    case 'PING':
    case 'GOAWAY':
    case 'CLOSE_REMOTE':
    case 'STREAM_IN':
      return wait(current) + L;
    case 'PONG':
      return Math.max(wait(current), (env.ping?.arrives ?? env.now) - env.now) + L;
    case 'ACK':
    case 'NACK': {
      const rec = env.streams.find((x) => x.id === s.id && x.kind === 'open');
      const conn = env.conns.find((c) => c.sym === rec?.conn);
      return Math.max(0, (rec?.arrives ?? env.now) - env.now, wait(conn)) + L;
    }
    case 'TIMER': {
      const t = nextTimer(state.timers);
      return t === undefined ? 0 : t.at - env.now;
    }
    default:
      return 0;
  }
}

/** How many more steps a path may take: keeps the breadth-first walk small. */
export const MAX_DEPTH = 8;

/** The stimuli that make sense in `state`, each one the real engine can follow exactly. */
export interface StimuliOptions {
  /** No stimulus past this depth (the breadth-first walk's bound). @default MAX_DEPTH */
  readonly maxDepth?: number;
  /** Offer a request once the machine was removed, starting a new one (random walks only). */
  readonly rebirth?: boolean;
}

export function stimuli(state: ModelState, options: StimuliOptions = {}): Stimulus[] {
  const env = state.env;
  const m = state.m;
  if (state.depth >= (options.maxDepth ?? MAX_DEPTH)) return [];
  if (env.stopped && m === null) return [];
  const out: Stimulus[] = [];
  const c = m === null ? undefined : contextOf(m);
  const current = c === undefined ? undefined : env.conns.find((x) => x.sym === c.connectionId);
  const live = env.conns.filter((x) => x.localOpen);
  const alive = m !== null && m.status === 'active';

  if (!env.stopped) {
    const outstanding = c === undefined ? 0 : c.queue.length + c.opening.length;
    const fresh = m === null && (env.life === 0 || options.rebirth === true);
    if (fresh || (alive && outstanding < 2 && env.leases.length + env.streams.length < 3)) {
      out.push({ type: 'REQ', kind: 'stream' }, { type: 'REQ', kind: 'lease' });
      // Waiting for ready only differs from a plain request while the peer backs off.
      if (inState(m, 'errored')) out.push({ type: 'REQ', kind: 'stream', wait: true });
    }
    if (m === null && env.life === 0 && !state.config.pinned && !state.config.crowded && env.blockers < BLOCKERS.length && env.waiting.length === 0) {
      out.push({ type: 'BLOCK' });
    }
    if ((m === null || alive) && live.length < 2) out.push({ type: 'REMOTE_DIAL' });
  }
  if (alive && c !== undefined) {
    for (const r of [...c.queue, ...c.opening]) out.push({ type: 'CANCEL', id: r.id });
    if (inState(m, 'connecting.dialing') && env.dialAt === env.now) out.push({ type: 'DIAL_DONE' }, { type: 'DIAL_FAIL' });
    if (current?.localOpen === true) {
      if (inState(m, 'handshaking')) {
        out.push({ type: current.dir === 'in' ? 'HELLO' : 'HELLO_ACK', ok: true });
        out.push({ type: current.dir === 'in' ? 'HELLO' : 'HELLO_ACK', ok: false });
        // The message the other side of this connection should not send.
        out.push({ type: current.dir === 'in' ? 'HELLO_ACK' : 'HELLO', ok: true });
      }
      out.push({ type: 'PING' });
      if (pongable(env, current.sym)) out.push({ type: 'PONG' });
      out.push({ type: 'GOAWAY' });
      out.push({ type: 'CLOSE_REMOTE', code: ConnectionErrorCode.Drain });
      if (inState(m, 'handshaking')) out.push({ type: 'CLOSE_REMOTE', code: ConnectionErrorCode.DuplicateConnection });
      if (env.streams.filter((s) => s.kind === 'in').length < 2) {
        out.push({ type: 'STREAM_IN', proto: 'known' }, { type: 'STREAM_IN', proto: 'unknown' }, { type: 'STREAM_IN', proto: 'capped' });
      }
      if (!env.stopped && inState(m, 'ready')) out.push({ type: 'PROBE' });
    }
    for (const s of env.streams) if (s.kind === 'open') out.push({ type: 'ACK', id: s.id }, { type: 'NACK', id: s.id });
    if (!env.loseClose && inState(m, 'ready', 'draining')) out.push({ type: 'LOSE_CLOSE' });
    // At the limit the engine prunes an idle peer, or one backing off with nobody waiting.
    const prunable = inState(m, 'ready.idle') || (inState(m, 'errored') && c.queue.length === 0);
    if (state.config.crowded && !c.pinned && !env.stopped && prunable) out.push({ type: 'NEWCOMER' });
    // Pinning matters where the machine reads it: backing off, and idle in ready.
    if (!env.stopped && inState(m, 'errored', 'ready')) out.push({ type: 'PIN', pinned: !c.pinned });
    out.push({ type: 'GHOST_OPENED' });
    if (!env.stopped) {
      out.push({ type: 'DRAIN' }, { type: 'FORCE_CLOSE' }, { type: 'STOP', force: false }, { type: 'STOP', force: true });
    }
  }
  if (live.length > 0) out.push({ type: 'DROP' });
  for (const s of env.streams) if (s.kind !== 'open') out.push({ type: 'CLOSE_STREAM', id: s.id });
  if (env.leases.length > 0) out.push({ type: 'RELEASE' });

  // Only what completes before the next timer: the real clock would fire it first.
  const next = nextTimer(state.timers);
  const feasible = out.filter((s) => {
    const cost = costOf(state, s);
    return cost === 0 || next === undefined || env.now + cost < next.at;
  });
  if (next !== undefined) feasible.push({ type: 'TIMER' });
  return feasible;
}

const memo = new WeakMap<ModelState, Map<string, ModelState>>();

/** Applies one stimulus. Pure: returns a new state (the same object for the same state and stimulus). */
export function transition(state: ModelState, s: Stimulus): ModelState {
  let known = memo.get(state);
  if (known === undefined) {
    known = new Map();
    memo.set(state, known);
  }
  const key = JSON.stringify(s);
  const hit = known.get(key);
  if (hit !== undefined) return hit;
  const next = step(state, s);
  known.set(key, next);
  return next;
}

function step(state: ModelState, s: Stimulus): ModelState {
  const w = new Work(state);
  const env = w.env;
  const L = LATENCY;
  const cost = costOf(state, s);
  const ctx = (): ConnectionContext | undefined => (w.m === null ? undefined : contextOf(w.m));
  const currentSym = (): string => ctx()?.connectionId ?? '';
  const newRequest = (): string => (env.nextReq++).toString(36);

  switch (s.type) {
    case 'REQ': {
      const id = newRequest();
      env.requests.push(id);
      if (w.m === null) {
        w.create('outbound');
        w.drain();
        if (w.m === null) {
          // The machine it just created has already closed (the dial queue refused it): the engine answers with the cause.
          w.answer(id, w.lastError ?? 'CONNECTION_LOST');
          break;
        }
      }
      const protocol = s.kind === 'stream' ? `/r/${id}` : '';
      w.send({ type: 'REQUEST', request: s.wait === true ? { id, kind: s.kind, protocol, waitForReady: true } : { id, kind: s.kind, protocol } });
      break;
    }
    case 'CANCEL': {
      const error: ErrorInfo = { code: 'ABORTED', message: 'the request was aborted' };
      w.send({ type: 'REQUEST.CANCEL', id: s.id, error });
      w.drain();
      // A request the machine no longer holds is answered by the engine.
      if (env.answers[s.id] === undefined) w.answer(s.id, 'ABORTED');
      break;
    }
    case 'BLOCK': {
      const who = BLOCKERS[env.blockers++]!;
      newRequest();
      w.acquire(who);
      break;
    }
    case 'DIAL_DONE': {
      env.now += cost;
      const sym = `c${++env.nextConn}`;
      env.conns.push({ sym, dir: 'out', localOpen: true, remoteFrom: env.now - L });
      const type = ownEvents(w.m!).find((e) => e.startsWith('xstate.done.actor.'))!;
      w.send({ type, output: { connectionId: sym } });
      break;
    }
    case 'DIAL_FAIL': {
      env.now += cost;
      const type = ownEvents(w.m!).find((e) => e.startsWith('xstate.error.actor.'))!;
      w.send({ type, error: { code: 'CONNECT_REFUSED', message: `nothing listens at memory://${w.remote}` } });
      break;
    }
    case 'REMOTE_DIAL': {
      env.now += cost;
      const sym = `c${++env.nextConn}`;
      env.conns.push({ sym, dir: 'in', localOpen: true, remoteFrom: env.now + L });
      if (w.m === null) {
        w.create('inbound', sym);
      } else {
        w.send({ type: 'CONNECTION.INBOUND', connectionId: sym });
      }
      break;
    }
    case 'HELLO':
    case 'HELLO_ACK': {
      env.now += cost;
      const sym = currentSym();
      if (w.conn(sym)?.localOpen === true) {
        w.send({
          type: s.type === 'HELLO' ? 'CONTROL.HELLO' : 'CONTROL.HELLO_ACK',
          connectionId: sym,
          version: s.ok ? PROTOCOL_VERSION : PROTOCOL_VERSION + 1,
          peerId: w.remote,
        });
      }
      break;
    }
    case 'PING':
    case 'PONG':
    case 'GOAWAY': {
      // The remote answers the last ping it got.
      const seq = env.ping?.seq ?? 0;
      env.now += cost;
      const sym = currentSym();
      if (w.conn(sym)?.localOpen !== true) break;
      if (s.type === 'PING' && w.m !== null && w.m.status === 'active') env.pongs += 1;
      if (s.type === 'PONG' && env.hb?.conn === sym) w.pong(seq);
      if (s.type === 'GOAWAY') w.send({ type: 'CONTROL.GOAWAY', connectionId: sym });
      break;
    }
    case 'CLOSE_REMOTE': {
      env.now += cost;
      const conn = w.conn(currentSym());
      if (conn === undefined || !conn.localOpen) break;
      // The close notice ends the local side at once: onClose runs before the streams' callbacks.
      conn.localOpen = false;
      w.endStreams(conn.sym);
      w.send({ type: 'CONNECTION.CLOSED', connectionId: conn.sym, code: s.code, error: false, reason: reasonFor(s.code) });
      break;
    }
    case 'DROP': {
      for (const conn of env.conns.filter((x) => x.localOpen)) {
        conn.localOpen = false;
        w.endStreams(conn.sym);
        const sym = conn.sym;
        w.micro.push(() =>
          w.send({ type: 'CONNECTION.CLOSED', connectionId: sym, code: undefined, error: true, reason: 'connection lost' }),
        );
      }
      break;
    }
    case 'ACK':
    case 'NACK': {
      env.now += cost;
      const rec = env.streams.find((x) => x.id === s.id && x.kind === 'open');
      if (rec === undefined) break;
      if (s.type === 'ACK') {
        // deliverStream turns the record into an open stream; a machine that discards it closes it.
        w.send({ type: 'STREAM.OPENED', id: s.id });
        if (rec.kind === 'open') env.streams = env.streams.filter((x) => x !== rec);
      } else {
        env.streams = env.streams.filter((x) => x !== rec);
        w.send({ type: 'STREAM.OPEN_FAILED', id: s.id, error: { code: 'STREAM_REJECTED', message: 'refused' } });
      }
      break;
    }
    case 'STREAM_IN': {
      env.now += cost;
      const sym = currentSym();
      if (w.conn(sym)?.localOpen !== true) break;
      const streamId = `in${env.nextIn++}`;
      const protocol = protocolOf(s.proto);
      env.inProto[streamId] = protocol;
      w.send({ type: 'STREAM.INBOUND', connectionId: sym, streamId, protocol });
      break;
    }
    case 'PROBE':
      w.probe();
      break;
    case 'PIN':
      env.pinned = s.pinned;
      w.send({ type: 'PIN', pinned: s.pinned });
      break;
    case 'CLOSE_STREAM': {
      const rec = env.streams.find((x) => x.id === s.id && x.kind !== 'open');
      if (rec === undefined) break;
      env.streams = env.streams.filter((x) => x !== rec);
      w.micro.push(() => w.send({ type: 'STREAM.CLOSED', connectionId: rec.conn, inbound: rec.kind === 'in' }));
      break;
    }
    case 'RELEASE': {
      const lease = env.leases.shift();
      if (lease !== undefined && lease.life === env.life) w.micro.push(() => w.send({ type: 'LEASE.RELEASE', connectionId: lease.connectionId }));
      break;
    }
    case 'DRAIN':
      w.send({ type: 'DRAIN' });
      break;
    case 'FORCE_CLOSE':
      w.send({ type: 'FORCE_CLOSE' });
      break;
    case 'STOP': {
      env.stopped = true;
      // Entries get SHUTDOWN in creation order: the blockers came first.
      for (const who of BLOCKERS) {
        w.cancel(`env:${who}:connect`);
        w.cancel(`env:${who}:queue`);
        w.release(who);
        w.drain();
      }
      if (w.m === null) {
        w.removed(null);
      } else {
        w.send({ type: 'SHUTDOWN', force: s.force });
      }
      w.drain();
      // stop() then waits for the registry to empty, bounded by the drain deadline plus the grace.
      if (w.m !== null) {
        w.schedule('env:stop', { type: 'env.stop' }, (s.force ? 0 : TIMING.drainDeadlineMs) + TIMING.forceCloseGraceMs + 1);
      }
      break;
    }
    case 'LOSE_CLOSE':
      env.loseClose = true;
      break;
    case 'NEWCOMER':
      // The engine's admission check prunes our idle machine, then the newcomer fails at once (no address).
      newRequest();
      w.send({ type: 'PRUNE' });
      break;
    case 'GHOST_OPENED':
      w.send({ type: 'STREAM.OPENED', id: 'ghost' });
      break;
    case 'TIMER': {
      const first = nextTimer(w.timers);
      if (first === undefined) break;
      env.now = first.at;
      for (;;) {
        const t = nextTimer(w.timers);
        if (t === undefined || t.at !== first.at) break;
        w.fire(t);
        w.drain();
      }
      break;
    }
  }
  w.drain();
  if (w.m !== null && w.m.status === 'active' && !w.timers.some((t) => !t.id.startsWith('env:'))) {
    env.anomalies.push(`machine in ${JSON.stringify(w.m.value)} has no pending timer`);
  }
  return { m: w.m, env: w.env, timers: w.timers, depth: state.depth + 1, took: w.took, config: state.config };
}

// ------------------------------------------------------------------ abstraction

/** What the engine's snapshot shows of the peer, as the model predicts it. */
export interface PeerView {
  readonly state: ConnectionState;
  readonly value: string;
  readonly queued: number;
  readonly opening: number;
  readonly streams: number;
  readonly leases: number;
  readonly attempts: number;
  readonly lastError: string | null;
}

export function viewOf(state: ModelState): PeerView | null {
  const m = state.m;
  if (m === null || m.status !== 'active') return null;
  const c = contextOf(m);
  const top = topState(m);
  return {
    state: top === 'start' ? 'connecting' : top,
    value: JSON.stringify(m.value),
    queued: c.queue.length,
    opening: c.opening.length,
    streams: c.streams,
    leases: c.leases,
    attempts: c.attempts,
    lastError: c.lastError?.code ?? null,
  };
}

function timerName(t: Timer): string {
  if (t.id.startsWith('open:')) return 'open';
  if (t.id.startsWith('restart:')) return 'restart';
  if (t.id === 'hb') return `hb.${t.delay}`;
  const after = /^xstate\.after\.([^.]+)\./.exec(t.id);
  return after === null ? t.id : after[1]!;
}

/**
 * The abstract key of a state. Two states with the same key have the same
 * futures as far as the machine's transitions go: same state value and
 * counts, same pending timers in the same order, same connections and
 * streams in the same roles. Ids, sequence numbers and absolute times are left
 * out, so the walk ends.
 */
export function keyOf(state: ModelState): string {
  const m = state.m;
  const env = state.env;
  const c = m === null ? undefined : contextOf(m);
  const role = (sym: string): string => (c?.connectionId === sym ? 'cur' : 'old');
  const timers = [...state.timers].sort((a, b) => a.at - b.at || a.seq - b.seq).map(timerName);
  return JSON.stringify({
    m:
      m === null || c === undefined
        ? null
        : [
            m.status,
            m.value,
            c.queue.map((r) => (r.waitForReady === true ? 'wait' : r.kind)),
            c.opening.length,
            c.streams,
            c.inboundStreams,
            c.heldInbound.length,
            c.leases,
            Math.min(c.attempts, TIMING.pinnedMaxAttempts),
            c.restarts,
            c.pinned,
            c.wasReady,
            c.direction,
            c.connectionId === null,
            c.lastError?.code ?? null,
            c.ending === null ? null : [c.ending.code, c.ending.remote, c.ending.error.code],
          ],
    hb: env.hb === null ? null : [env.hb.phase, env.hb.misses, env.hb.conn === c?.connectionId, pongable(env, env.hb.conn)],
    born: env.life > 0,
    pinned: env.pinned,
    t: timers,
    conns: env.conns.filter((x) => x.localOpen).map((x) => [role(x.sym), x.dir, x.remoteFrom > env.now]),
    streams: env.streams.map((s) => [s.kind, role(s.conn), s.protocol === CAPPED]),
    leases: env.leases.map((l) => l.life === env.life),
    dial: env.dialAt === null ? null : env.dialAt === env.now,
    slot: [env.active, env.waiting, env.blockers],
    stopped: env.stopped,
    lose: env.loseClose,
  });
}
