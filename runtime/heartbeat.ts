/**
 * The heartbeats of every `ready` connection of an engine, on one clock timer.
 *
 * A heartbeat per connection used to be a region of the peer machine: an
 * XState `after` timer per ping and two macrosteps per round trip (the timer,
 * the pong), about 65 us of CPU per peer per interval, 1.3 cores for 100,000
 * peers. Here the machine only says when a heartbeat starts and stops (entry
 * and exit of `ready`, so it lives inside `ready` and dies with it) and hears
 * of it once, when it fails (`HEARTBEAT.FAILED`). Pings go out, pongs are
 * matched and round trips measured here, with no machine event per ping.
 *
 * One heartbeat does what the machine's region did, to the millisecond:
 *
 *   waiting --interval--> pinging (ping seq+1 sent)
 *   pinging --pong(seq)--> waiting            (misses = 0)
 *   pinging --timeout--> missed               (misses + 1), or fails when misses + 1 reaches `misses`
 *   missed  --interval - timeout--> pinging   (the next ping keeps the cadence)
 *   missed  --pong(seq)--> missed             (a late pong: misses = 0)
 *   any     --probe--> probing (ping seq+1 sent)
 *   probing --pong(seq)--> waiting            (misses = 0)
 *   probing --timeout--> fails, whatever `misses` allows
 *
 * so a connection that stops answering fails exactly `interval x misses +
 * timeout` after its last answer, and an unanswered probe `timeout` after it.
 *
 * Why one timer is enough, exactly: every heartbeat of an engine waits one of
 * three delays (interval, timeout, interval - timeout), always counted from
 * the moment it is queued. Queued in time order, each delay's queue is
 * already sorted by due time: a FIFO per delay (a linked list through the
 * heartbeats themselves) gives the earliest due heartbeat in O(1), and one
 * clock timer, armed for the earliest of the three heads, serves them all.
 * Starting, stopping, answering and probing are O(1) and allocate nothing
 * (a start allocates the heartbeat itself).
 *
 * Invariants:
 * - a live heartbeat is in exactly one queue, the one of the delay it waits;
 *   a stopped one (`phase` STOPPED) is in none and never comes back;
 * - within a queue, due times never decrease from head to tail;
 * - while any heartbeat is live, the clock timer is armed for the earliest due
 *   time of all (`armedAt`); with none live, no timer is pending;
 * - heartbeats due at the same instant run in the order they were queued
 *   (`order`), as separate timers set in that order would.
 */
import type { Clock, Connection } from '../adapters/adapter.js';
import type { Metrics } from './metrics.js';
import type { Entry } from './entry.js';
import { diagnostics } from './diagnostics.js';

export interface HeartbeatTiming {
  /** Wait after an answer (or the start) before the next ping. */
  readonly intervalMs: number;
  /** Wait for each pong; below `intervalMs`. */
  readonly timeoutMs: number;
  /** Consecutive unanswered pings that fail the heartbeat (at least 1). */
  readonly misses: number;
}

/** What a heartbeat is doing (the states the machine's heartbeat region had). */
export type HeartbeatPhase = 'waiting' | 'pinging' | 'missed' | 'probing' | 'stopped';

const WAITING = 0;
const PINGING = 1;
const MISSED = 2;
const PROBING = 3;
const STOPPED = 4;
const PHASES: readonly HeartbeatPhase[] = ['waiting', 'pinging', 'missed', 'probing', 'stopped'];

/** Why a heartbeat failed. */
export interface HeartbeatFailure {
  /** Consecutive unanswered pings (`misses` of the timing; 0 for a probe). */
  readonly misses: number;
  /** An unanswered probe (`probe()`), not the regular cadence. */
  readonly probe: boolean;
}

export interface HeartbeatCallbacks<T> {
  /** Sends ping `seq` on the heartbeat's connection. */
  ping(beat: Heartbeat<T>, seq: number): void;
  /** The pong of the last ping came back: its round trip, and when it arrived. */
  answered(beat: Heartbeat<T>, rttMs: number, at: number): void;
  /** The heartbeat failed; it is stopped already. */
  failed(beat: Heartbeat<T>, failure: HeartbeatFailure): void;
  /** A callback above threw; the other heartbeats go on. */
  error(what: string, error: unknown): void;
}

/** One connection's heartbeat. Its fields are the scheduler's; read them through `view()`. */
export class Heartbeat<T> {
  readonly owner: T;
  readonly connectionId: string;
  /** @internal One of WAITING ... STOPPED. */
  phase = WAITING;
  /** @internal Sequence number of the last ping sent (the first is 1). */
  seq = 0;
  /** @internal Consecutive unanswered pings. */
  misses = 0;
  /** @internal When the last ping went out; -1 once it was answered (or before the first). */
  sentAt = -1;
  /** @internal When its queue gives it back. */
  due = 0;
  /** @internal Queueing order: breaks ties between queues. */
  order = 0;
  /** @internal The queue it is in (undefined when stopped) and its neighbours there. */
  lane: Lane<T> | undefined = undefined;
  prev: Heartbeat<T> | undefined = undefined;
  next: Heartbeat<T> | undefined = undefined;

  constructor(owner: T, connectionId: string) {
    this.owner = owner;
    this.connectionId = connectionId;
  }
}

/** What a heartbeat is doing, for tests, tools and invariants. */
export interface HeartbeatView {
  readonly phase: HeartbeatPhase;
  /** When it next acts (a ping, a miss, a failure); Infinity once stopped. */
  readonly dueAt: number;
  readonly seq: number;
  readonly misses: number;
}

/** A FIFO of heartbeats that all wait `delay`. */
class Lane<T> {
  readonly delay: number;
  head: Heartbeat<T> | undefined = undefined;
  tail: Heartbeat<T> | undefined = undefined;

  constructor(delay: number) {
    this.delay = delay;
  }
}

function before<T>(a: Heartbeat<T>, b: Heartbeat<T>): boolean {
  return a.due < b.due || (a.due === b.due && a.order < b.order);
}

export class HeartbeatScheduler<T> {
  readonly #clock: Clock;
  readonly #misses: number;
  readonly #callbacks: HeartbeatCallbacks<T>;
  /** Waiting for the next ping (interval). */
  readonly #waiting: Lane<T>;
  /** Waiting for a pong (timeout): pinging and probing. */
  readonly #replies: Lane<T>;
  /** After a miss, waiting for the next ping (interval - timeout). */
  readonly #gaps: Lane<T>;
  #size = 0;
  #order = 0;
  #timer: unknown = undefined;
  /** When the clock timer fires; Infinity when none is armed. */
  #armedAt = Infinity;
  /** True while due heartbeats run: the timer is armed once, after them. */
  #ticking = false;

  constructor(clock: Clock, timing: HeartbeatTiming, callbacks: HeartbeatCallbacks<T>) {
    const { intervalMs, timeoutMs, misses } = timing;
    if (!(timeoutMs > 0 && intervalMs > timeoutMs)) {
      throw new RangeError(`timing.timeoutMs must be above 0 and below timing.intervalMs (${intervalMs}); received ${timeoutMs}`);
    }
    if (!(Number.isInteger(misses) && misses >= 1)) throw new RangeError(`timing.misses must be an integer of at least 1; received ${misses}`);
    this.#clock = clock;
    this.#misses = misses;
    this.#callbacks = callbacks;
    this.#waiting = new Lane(intervalMs);
    this.#replies = new Lane(timeoutMs);
    this.#gaps = new Lane(intervalMs - timeoutMs);
  }

  /** Live heartbeats. */
  get size(): number {
    return this.#size;
  }

  /** When the one clock timer fires; Infinity when none is armed (no live heartbeat). */
  get armedAt(): number {
    return this.#armedAt;
  }

  /** Starts a heartbeat: the first ping goes out one interval from now. */
  start(owner: T, connectionId: string): Heartbeat<T> {
    const beat = new Heartbeat(owner, connectionId);
    this.#size += 1;
    this.#push(this.#waiting, beat, this.#clock.now());
    this.#rearm(beat);
    return beat;
  }

  /** Stops a heartbeat for good; nothing it does comes after. Idempotent. */
  stop(beat: Heartbeat<T>): void {
    if (beat.phase === STOPPED) return;
    this.#unlink(beat);
    beat.phase = STOPPED;
    this.#size -= 1;
    this.#rearm();
  }

  /**
   * A pong with `seq` arrived on the heartbeat's connection. It answers the
   * last ping sent, or nothing (a stale or unknown seq is ignored). Returns
   * whether it answered.
   */
  pong(beat: Heartbeat<T>, seq: number): boolean {
    if (beat.phase === STOPPED || seq !== beat.seq || beat.seq === 0) return false;
    const now = this.#clock.now();
    if (beat.sentAt >= 0) {
      const rttMs = now - beat.sentAt;
      beat.sentAt = -1;
      try {
        this.#callbacks.answered(beat, rttMs, now);
      } catch (error) {
        this.#callbacks.error('heartbeat answer', error);
      }
      // The callback may have stopped it.
      if (beat.phase === STOPPED) return true;
    }
    beat.misses = 0;
    if (beat.phase === PINGING || beat.phase === PROBING) {
      this.#unlink(beat);
      beat.phase = WAITING;
      this.#push(this.#waiting, beat, now);
      this.#rearm(beat);
    }
    return true;
  }

  /**
   * Checks the connection now (the network changed): a ping at once, to be
   * answered within the timeout or the heartbeat fails, whatever `misses`
   * allows. A ping still out no longer counts: only the probe's pong does.
   */
  probe(beat: Heartbeat<T>): void {
    if (beat.phase === STOPPED) return;
    this.#unlink(beat);
    this.#ping(beat, PROBING, this.#clock.now());
    this.#rearm(beat);
  }

  view(beat: Heartbeat<T>): HeartbeatView {
    return {
      phase: PHASES[beat.phase]!,
      dueAt: beat.phase === STOPPED ? Infinity : beat.due,
      seq: beat.seq,
      misses: beat.misses,
    };
  }

  // ------------------------------------------------------------ the queues

  #push(lane: Lane<T>, beat: Heartbeat<T>, now: number): void {
    const tail = lane.tail;
    // A clock never goes back; if one did, the queue stays sorted (and late) rather than wrong.
    beat.due = tail === undefined ? now + lane.delay : Math.max(now + lane.delay, tail.due);
    beat.order = this.#order++;
    beat.lane = lane;
    beat.prev = tail;
    beat.next = undefined;
    if (tail === undefined) lane.head = beat;
    else tail.next = beat;
    lane.tail = beat;
  }

  #unlink(beat: Heartbeat<T>): void {
    const lane = beat.lane;
    if (lane === undefined) return;
    const { prev, next } = beat;
    if (prev === undefined) lane.head = next;
    else prev.next = next;
    if (next === undefined) lane.tail = prev;
    else next.prev = prev;
    beat.lane = undefined;
    beat.prev = undefined;
    beat.next = undefined;
  }

  /** The live heartbeat due first (ties: queued first). */
  #earliest(): Heartbeat<T> | undefined {
    let best = this.#waiting.head;
    const reply = this.#replies.head;
    if (reply !== undefined && (best === undefined || before(reply, best))) best = reply;
    const gap = this.#gaps.head;
    if (gap !== undefined && (best === undefined || before(gap, best))) best = gap;
    return best;
  }

  /**
   * Arms the clock timer for the earliest due time, if it is not armed for it
   * already. A heartbeat just queued (`queued`) that is now the earliest gets
   * a timer set now, even for the same instant: the timer it would have had
   * of its own, set when it was queued (a lone heartbeat's events then fall
   * among other timers due at the same instant exactly where its own timers
   * would; between heartbeats, `order` decides).
   */
  #rearm(queued?: Heartbeat<T>): void {
    if (this.#ticking) return;
    const first = this.#earliest();
    const at = first?.due ?? Infinity;
    if (at === this.#armedAt && (queued === undefined || first !== queued)) return;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedAt = at;
    if (at !== Infinity) this.#timer = this.#clock.setTimeout(this.#tick, at - this.#clock.now());
  }

  readonly #tick = (): void => {
    // Everything due by the time the timer was armed for is due now (a host timer may fire a little early).
    const horizon = Math.max(this.#clock.now(), this.#armedAt);
    // Heartbeats queued while these run wait for the next tick, even if due (a very short delay).
    const fresh = this.#order;
    this.#timer = undefined;
    this.#armedAt = Infinity;
    this.#ticking = true;
    try {
      for (;;) {
        const beat = this.#earliest();
        if (beat === undefined || beat.due > horizon || beat.order >= fresh) break;
        this.#unlink(beat);
        this.#due(beat, this.#clock.now());
      }
    } finally {
      this.#ticking = false;
      this.#rearm();
    }
  };

  /** `beat` left its queue: its wait is over. */
  #due(beat: Heartbeat<T>, now: number): void {
    switch (beat.phase) {
      case WAITING:
      case MISSED:
        this.#ping(beat, PINGING, now);
        return;
      case PINGING:
        if (beat.misses + 1 < this.#misses) {
          beat.misses += 1;
          beat.phase = MISSED;
          this.#push(this.#gaps, beat, now);
          return;
        }
        this.#fail(beat, { misses: beat.misses + 1, probe: false });
        return;
      case PROBING:
        this.#fail(beat, { misses: beat.misses, probe: true });
        return;
    }
  }

  /** Sends the next ping and waits for its pong. Queued before it is sent: a pong may come back at once. */
  #ping(beat: Heartbeat<T>, phase: typeof PINGING | typeof PROBING, now: number): void {
    beat.seq += 1;
    beat.sentAt = now;
    beat.phase = phase;
    this.#push(this.#replies, beat, now);
    try {
      this.#callbacks.ping(beat, beat.seq);
    } catch (error) {
      this.#callbacks.error('heartbeat ping', error);
    }
  }

  #fail(beat: Heartbeat<T>, failure: HeartbeatFailure): void {
    beat.phase = STOPPED;
    this.#size -= 1;
    try {
      this.#callbacks.failed(beat, failure);
    } catch (error) {
      this.#callbacks.error('heartbeat failure', error);
    }
  }
}

// ------------------------------------------------------------ the engine's

/** What the engine lends its heartbeats. */
export interface EngineHeartbeatHost {
  readonly clock: Clock;
  readonly timing: HeartbeatTiming;
  readonly localPeerId: string;
  readonly metrics: Metrics;
  /** Counts and logs an internal error. */
  failed(what: string, error: unknown): void;
}

/**
 * The engine's side: one scheduler for all its entries, each entry's
 * heartbeat kept on the entry (`entry.heartbeat`) from the machine's
 * `startHeartbeat` (entry of `ready`) to its `stopHeartbeat` (exit of
 * `ready`) or the entry's removal, whichever comes first. Pings and pongs
 * take no machine step; a failure sends the machine one `HEARTBEAT.FAILED`.
 */
export class EngineHeartbeats {
  readonly scheduler: HeartbeatScheduler<Entry>;

  constructor(host: EngineHeartbeatHost) {
    const { metrics, localPeerId } = host;
    this.scheduler = new HeartbeatScheduler<Entry>(host.clock, host.timing, {
      ping: (beat, seq) => beat.owner.connection(beat.connectionId)?.sendControl({ type: 'ping', seq }),
      answered: (beat, rttMs, at) => {
        metrics.rtt(rttMs);
        if (diagnostics.heartbeat.hasSubscribers) diagnostics.heartbeat.publish({ localPeerId, peerId: beat.owner.peerId, rttMs, at });
      },
      failed: (beat, { misses, probe }) => {
        const entry = beat.owner;
        if (entry.heartbeat === beat) entry.heartbeat = undefined;
        if (!entry.removed) entry.actor.send({ type: 'HEARTBEAT.FAILED', connectionId: beat.connectionId, misses, probe });
      },
      error: (what, error) => host.failed(what, error),
    });
  }

  /** The machine entered `ready` on `connectionId`. */
  start(entry: Entry, connectionId: string): void {
    this.stop(entry);
    entry.heartbeat = this.scheduler.start(entry, connectionId);
  }

  /** The machine left `ready`, or the entry is being removed. */
  stop(entry: Entry): void {
    const beat = entry.heartbeat;
    if (beat === undefined) return;
    entry.heartbeat = undefined;
    this.scheduler.stop(beat);
  }

  /**
   * The remote's ping: answered at once, on the connection the machine uses
   * (in any state), without a machine step. A ping on another connection (one
   * being replaced) is not answered.
   */
  ping(entry: Entry, connection: Connection, seq: number): void {
    if (entry.actor.getSnapshot().context.connectionId === connection.id) connection.sendControl({ type: 'pong', seq });
  }

  /** The remote's pong: it answers the heartbeat's last ping if it came on that connection with that seq. */
  pong(entry: Entry, connection: Connection, seq: number): void {
    const beat = entry.heartbeat;
    if (beat !== undefined && beat.connectionId === connection.id) this.scheduler.pong(beat, seq);
  }

  /** `networkChanged()`: probes the entry's connection if it has a heartbeat (it is `ready`). */
  probe(entry: Entry): boolean {
    const beat = entry.heartbeat;
    if (beat === undefined) return false;
    this.scheduler.probe(beat);
    return true;
  }

  view(entry: Entry): (HeartbeatView & { readonly armedAt: number }) | undefined {
    const beat = entry.heartbeat;
    return beat === undefined ? undefined : { ...this.scheduler.view(beat), armedAt: this.scheduler.armedAt };
  }
}
