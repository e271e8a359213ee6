/**
 * Heartbeats on the virtual clock. The scheduler alone (runtime/heartbeat.ts):
 * exact times, one clock timer for all heartbeats, and the same events at the
 * same instants, in the same order, as one timer per heartbeat would give.
 * Then engines on the memory network: failure detection to the millisecond,
 * and no machine step for a ping or a pong.
 */
import { strict as assert } from 'node:assert';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import sinon from 'sinon';
import type { InspectionEvent } from 'xstate';
import { VirtualClock } from '../../adapters/memory/index.js';
import { seededRandom } from '../../runtime/clock.js';
import { HeartbeatScheduler, type Heartbeat, type HeartbeatCallbacks, type HeartbeatTiming } from '../../runtime/heartbeat.js';
import { ProtocolLimits } from '../../runtime/protocol-limits.js';
import { CHANNELS, Engine, type HeartbeatMessage } from '../../runtime/index.js';
import { escapedErrors } from '../fixtures/hooks.js';
import { codes, swarm, track, type Swarm } from '../fixtures/swarm.js';
import { EngineClock } from '../../sim/world.js';

const TIMING: HeartbeatTiming = { intervalMs: 1000, timeoutMs: 400, misses: 3 };

type Log = Array<[number, string, string]>;

/** A scheduler on `clock` whose callbacks write one line per event. */
function scheduler(clock: VirtualClock, timing: HeartbeatTiming = TIMING, extra: Partial<HeartbeatCallbacks<string>> = {}) {
  const log: Log = [];
  const rtts: Array<[string, number]> = [];
  const errors: string[] = [];
  const s = new HeartbeatScheduler<string>(clock, timing, {
    ping: (beat, seq) => {
      log.push([clock.now(), beat.owner, `ping ${seq}`]);
      extra.ping?.(beat, seq);
    },
    answered: (beat, rttMs, at) => {
      rtts.push([beat.owner, rttMs]);
      assert.equal(at, clock.now());
      extra.answered?.(beat, rttMs, at);
    },
    failed: (beat, failure) => {
      log.push([clock.now(), beat.owner, failure.probe ? 'probe failed' : `failed after ${failure.misses}`]);
      extra.failed?.(beat, failure);
    },
    error: (what, error) => void errors.push(`${what}: ${String(error)}`),
  });
  return { s, log, rtts, errors };
}

/** The reference: one clock timer per heartbeat, the machine's old heartbeat region written out plainly. */
class Reference {
  readonly log: Log = [];
  readonly #clock: VirtualClock;
  readonly #timing: HeartbeatTiming;
  readonly #beats = new Map<string, { state: string; seq: number; misses: number; timer: unknown }>();

  constructor(clock: VirtualClock, timing: HeartbeatTiming) {
    this.#clock = clock;
    this.#timing = timing;
  }

  start(id: string): void {
    const b = { state: 'waiting', seq: 0, misses: 0, timer: undefined as unknown };
    this.#beats.set(id, b);
    this.#wait(id, 'waiting', this.#timing.intervalMs);
  }

  stop(id: string): void {
    const b = this.#beats.get(id);
    if (b === undefined) return;
    this.#clock.clearTimeout(b.timer);
    this.#beats.delete(id);
  }

  pong(id: string, seq: number): void {
    const b = this.#beats.get(id);
    if (b === undefined || seq !== b.seq || seq === 0) return;
    b.misses = 0;
    if (b.state === 'pinging' || b.state === 'probing') {
      this.#clock.clearTimeout(b.timer);
      this.#wait(id, 'waiting', this.#timing.intervalMs);
    }
  }

  probe(id: string): void {
    const b = this.#beats.get(id);
    if (b === undefined) return;
    this.#clock.clearTimeout(b.timer);
    this.#ping(id, 'probing');
  }

  #wait(id: string, state: string, ms: number): void {
    const b = this.#beats.get(id)!;
    b.state = state;
    b.timer = this.#clock.setTimeout(() => this.#fire(id), ms);
  }

  #ping(id: string, state: 'pinging' | 'probing'): void {
    const b = this.#beats.get(id)!;
    b.seq += 1;
    this.#wait(id, state, this.#timing.timeoutMs);
    this.log.push([this.#clock.now(), id, `ping ${b.seq}`]);
  }

  #fire(id: string): void {
    const b = this.#beats.get(id)!;
    if (b.state === 'waiting' || b.state === 'missed') return this.#ping(id, 'pinging');
    if (b.state === 'pinging' && b.misses + 1 < this.#timing.misses) {
      b.misses += 1;
      return this.#wait(id, 'missed', this.#timing.intervalMs - this.#timing.timeoutMs);
    }
    this.#beats.delete(id);
    this.log.push([this.#clock.now(), id, b.state === 'probing' ? 'probe failed' : `failed after ${b.misses + 1}`]);
  }
}

describe('runtime: heartbeat scheduler', () => {
  it('refuses a timeout not below the interval, and misses below 1', () => {
    const clock = new VirtualClock();
    const noop = { ping: () => {}, answered: () => {}, failed: () => {}, error: () => {} };
    assert.throws(() => new HeartbeatScheduler(clock, { intervalMs: 100, timeoutMs: 100, misses: 1 }, noop), RangeError);
    assert.throws(() => new HeartbeatScheduler(clock, { intervalMs: 100, timeoutMs: 0, misses: 1 }, noop), RangeError);
    assert.throws(() => new HeartbeatScheduler(clock, { intervalMs: 100, timeoutMs: 50, misses: 0 }, noop), RangeError);
    assert.throws(() => new HeartbeatScheduler(clock, { intervalMs: 100, timeoutMs: 50, misses: 1.5 }, noop), RangeError);
  });

  for (const misses of [1, 2, 3]) {
    it(`misses ${misses}: fails exactly interval x ${misses} + timeout after the last pong; pings keep the cadence`, async () => {
      const clock = new VirtualClock();
      const { s, log } = scheduler(clock, { ...TIMING, misses });
      const a = s.start('a', 'c1');
      await clock.advance(1000);
      await clock.advance(37);
      assert.ok(s.pong(a, 1));
      const last = clock.now();
      await clock.advance(1000 * misses + 400 - 1);
      assert.equal(log.at(-1)![2].startsWith('ping'), true, 'not failed a millisecond early');
      await clock.advance(1);
      const pings = Array.from({ length: misses }, (_, i) => [last + 1000 * (i + 1), 'a', `ping ${i + 2}`]);
      assert.deepEqual(log, [[1000, 'a', 'ping 1'], ...pings, [last + 1000 * misses + 400, 'a', `failed after ${misses}`]]);
      assert.equal(s.size, 0);
      assert.equal(s.armedAt, Infinity);
      assert.equal(clock.pending(), 0, 'no timer left');
    });
  }

  it('an unanswered probe fails one timeout after it, whatever misses allow; an answered one restarts the cadence from its pong', async () => {
    const clock = new VirtualClock();
    const { s, log } = scheduler(clock, { ...TIMING, misses: 5 });
    const a = s.start('a', 'c1');
    const b = s.start('b', 'c2');
    await clock.advance(300);
    s.probe(a);
    s.probe(b);
    await clock.advance(5);
    assert.ok(s.pong(b, 1));
    assert.deepEqual(s.view(b), { phase: 'waiting', dueAt: 1305, seq: 1, misses: 0 });
    await clock.advance(395);
    assert.deepEqual(log, [
      [300, 'a', 'ping 1'],
      [300, 'b', 'ping 1'],
      [700, 'a', 'probe failed'],
    ]);
    assert.deepEqual(s.view(a).phase, 'stopped');
    await clock.advance(605);
    assert.deepEqual(log.at(-1), [1305, 'b', 'ping 2']);
  });

  it('matches a pong only to the last ping: a stale or unknown seq is ignored; the round trip is measured once', async () => {
    const clock = new VirtualClock();
    const { s, rtts } = scheduler(clock);
    const a = s.start('a', 'c1');
    assert.equal(s.pong(a, 0), false, 'nothing was sent yet');
    await clock.advance(1000);
    s.probe(a);
    await clock.advance(12);
    assert.equal(s.pong(a, 1), false, 'the probe replaced ping 1');
    assert.equal(s.pong(a, 3), false);
    assert.equal(s.pong(a, 2), true);
    assert.equal(s.pong(a, 2), true, 'a duplicate answers nothing new');
    assert.deepEqual(rtts, [['a', 12]]);
    assert.equal(s.view(a).phase, 'waiting');
  });

  it('a late pong, after its ping counted as missed, resets the misses and measures its round trip', async () => {
    const clock = new VirtualClock();
    const { s, rtts } = scheduler(clock);
    const a = s.start('a', 'c1');
    await clock.advance(1500);
    assert.deepEqual(s.view(a), { phase: 'missed', dueAt: 2000, seq: 1, misses: 1 });
    assert.ok(s.pong(a, 1));
    assert.deepEqual(s.view(a), { phase: 'missed', dueAt: 2000, seq: 1, misses: 0 });
    assert.deepEqual(rtts, [['a', 500]]);
  });

  it('one clock timer for every heartbeat, armed for the earliest one, whichever queue it is in', async () => {
    const clock = new VirtualClock();
    const { s } = scheduler(clock);
    const beats: Array<Heartbeat<string>> = [];
    for (let i = 0; i < 100; i++) {
      beats.push(s.start(`p${i}`, `c${i}`));
      await clock.advance(3);
    }
    assert.equal(clock.pending(), 1);
    assert.equal(s.armedAt, 1000, 'the first one started');
    s.probe(beats[50]!);
    assert.equal(s.armedAt, 300 + 400, 'the probe is due first');
    assert.equal(clock.pending(), 1);
    assert.equal(clock.nextAt(), 700);
    s.stop(beats[50]!);
    s.stop(beats[0]!);
    assert.equal(s.armedAt, 1003);
    assert.equal(clock.nextAt(), 1003);
    for (const b of beats) s.stop(b);
    assert.equal(s.size, 0);
    assert.equal(clock.pending(), 0);
    s.stop(beats[1]!);
    assert.equal(s.size, 0, 'stop is idempotent');
  });

  it('gives the same events at the same instants, in the same order, as one timer per heartbeat (1,000 heartbeats, seeded faults)', async () => {
    const clock = new VirtualClock();
    const reference = new Reference(clock, TIMING);
    const { s, log } = scheduler(clock);
    const random = seededRandom(7);
    const live = new Map<string, Heartbeat<string>>();
    let next = 0;
    for (let step = 0; step < 3000; step++) {
      const r = random();
      const ids = [...live.keys()];
      const id = ids[Math.floor(random() * ids.length)];
      if (r < 0.35 && next < 1000) {
        const fresh = `p${next++}`;
        reference.start(fresh);
        live.set(fresh, s.start(fresh, fresh));
      } else if (r < 0.7 && id !== undefined) {
        // A pong for the last ping (mostly), or for an older one.
        const beat = live.get(id)!;
        const seq = random() < 0.9 ? s.view(beat).seq : s.view(beat).seq - 1;
        reference.pong(id, seq);
        s.pong(beat, seq);
      } else if (r < 0.75 && id !== undefined) {
        reference.probe(id);
        s.probe(live.get(id)!);
      } else if (r < 0.78 && id !== undefined) {
        reference.stop(id);
        s.stop(live.get(id)!);
        live.delete(id);
      }
      await clock.advance(Math.floor(random() * 120));
      for (const [key, beat] of live) if (s.view(beat).phase === 'stopped') live.delete(key);
    }
    await clock.advance(20_000);
    assert.ok(log.length > 3000, `only ${log.length} events`);
    assert.ok(log.some(([, , what]) => what === 'probe failed') && log.some(([, , what]) => what.startsWith('failed after')));
    assert.deepEqual(log, reference.log);
    assert.equal(s.size, 0, 'every heartbeat failed or was stopped');
    assert.equal(clock.pending(), 0);
  });

  it('a failure callback may stop, start and probe others; a ping answered at once is matched; a throwing callback harms no other heartbeat', async () => {
    const clock = new VirtualClock();
    const beats = new Map<string, Heartbeat<string>>();
    const { s, log, errors } = scheduler(clock, { ...TIMING, misses: 1 }, {
      ping: (beat, seq) => {
        if (beat.owner === 'echo') s.pong(beat, seq);
        if (beat.owner === 'bad') throw new Error('send failed');
      },
      failed: (beat) => {
        if (beat.owner !== 'a') return;
        s.stop(beats.get('b')!);
        beats.set('c', s.start('c', 'c3'));
        s.probe(beats.get('echo')!);
      },
    });
    for (const id of ['a', 'b', 'echo', 'bad']) beats.set(id, s.start(id, id));
    await clock.advance(1400);
    assert.deepEqual(errors, ['heartbeat ping: Error: send failed']);
    assert.deepEqual(log, [
      [1000, 'a', 'ping 1'],
      [1000, 'b', 'ping 1'],
      [1000, 'echo', 'ping 1'],
      [1000, 'bad', 'ping 1'],
      [1400, 'a', 'failed after 1'],
      [1400, 'echo', 'ping 2'],
      [1400, 'bad', 'failed after 1'],
    ]);
    assert.deepEqual(s.view(beats.get('echo')!), { phase: 'waiting', dueAt: 2400, seq: 2, misses: 0 });
    assert.deepEqual(s.view(beats.get('c')!), { phase: 'waiting', dueAt: 2400, seq: 0, misses: 0 });
    assert.equal(s.view(beats.get('b')!).phase, 'stopped');
    assert.equal(s.size, 2);
  });
});

describe('engine: heartbeats on one scheduler per engine', () => {
  const HB = { intervalMs: 1000, timeoutMs: 300 };
  const LATENCY = 1;
  let s: Swarm;
  let answers: HeartbeatMessage[] = [];
  const onAnswer = (message: unknown): void => void answers.push(message as HeartbeatMessage);

  beforeEach(() => {
    answers = [];
    subscribe(CHANNELS.heartbeat, onAnswer);
  });

  afterEach(async () => {
    unsubscribe(CHANNELS.heartbeat, onAnswer);
    sinon.restore();
    await s.stopAll();
    assert.equal(s.clock.pending(), 0, 'timers left after every engine stopped');
    for (const e of s.engines.values()) assert.equal(e.metrics().internalErrors, 0, s.warnings.join('\n'));
    assert.deepEqual(escapedErrors(), []);
  });

  /** a and b ready with each other, heartbeats flowing; returns when a got `beats` answers from b. */
  async function pair(misses: number, beats: number): Promise<{ a: Engine; b: Engine }> {
    s = await swarm({ latencyMs: LATENCY, defaults: { heartbeat: { ...HB, misses }, idleTimeoutMs: 600_000, streamOpenTimeoutMs: 600_000 } });
    const a = await s.add('a');
    const b = await s.add('b');
    a.addPeer('b', [s.network.address('b')]);
    await s.until(a.withConnection('b', () => undefined));
    while (answers.filter((m) => m.localPeerId === 'a').length < beats) await s.clock.next();
    return { a, b };
  }

  /** When a last got b's answer (the heartbeat channel's `at`). */
  function lastAnswer(): number {
    return answers.filter((m) => m.localPeerId === 'a' && m.peerId === 'b').at(-1)!.at;
  }

  for (const misses of [1, 2, 3]) {
    it(`misses ${misses}: a silent peer is errored HEARTBEAT_TIMEOUT exactly interval x ${misses} + timeout after its last answer arrived`, async () => {
      const { a } = await pair(misses, 2);
      const last = lastAnswer();
      assert.equal(answers.at(-1)!.rttMs, 2 * LATENCY);
      s.network.partition(['a'], ['b']);
      const caught = track([a.openStream('b', '/x')]);
      const deadline = last + HB.intervalMs * misses + HB.timeoutMs;
      await s.advance(deadline - 1 - s.clock.now());
      assert.equal(a.snapshot().peers[0]?.state, 'ready', 'not a millisecond early');
      await s.advance(1);
      const errored = s.transitions.filter((t) => t.peerId === 'b' && t.to === 'errored');
      assert.equal(errored[0]?.at, deadline);
      assert.equal(errored[0]?.event, 'HEARTBEAT.FAILED');
      await caught.all;
      assert.deepEqual(codes(caught.outcomes), { HEARTBEAT_TIMEOUT: 1 });
      s.network.heal();
    });

    it(`misses ${misses}: after an answered probe, errored exactly interval x ${misses} + timeout after the probe's answer; an unanswered probe, one timeout after it`, async () => {
      const { a } = await pair(misses, 1);
      await s.advance(250);
      assert.equal(a.networkChanged(), 1);
      await s.advance(2 * LATENCY);
      const probed = lastAnswer();
      assert.equal(probed, s.clock.now(), "the probe's pong just arrived");
      s.network.partition(['a'], ['b']);
      const deadline = probed + HB.intervalMs * misses + HB.timeoutMs;
      await s.advance(deadline - 1 - s.clock.now());
      assert.equal(a.snapshot().peers[0]?.state, 'ready');
      await s.advance(1);
      assert.equal(s.transitions.find((t) => t.peerId === 'b' && t.to === 'errored')?.at, deadline);
      s.network.heal();
      await s.stopAll();

      // Unanswered: dead one timeout after the probe, whatever misses allow.
      const again = await pair(misses, 1);
      await s.advance(250);
      s.network.partition(['a'], ['b']);
      const probedAt = s.clock.now();
      assert.equal(again.a.networkChanged(), 1);
      await s.advance(HB.timeoutMs - 1);
      assert.equal(again.a.snapshot().peers[0]?.state, 'ready');
      await s.advance(1);
      const errored = s.transitions.find((t) => t.peerId === 'b' && t.to === 'errored');
      assert.equal(errored?.at, probedAt + HB.timeoutMs);
      assert.equal(again.a.metrics().probes, 1);
      s.network.heal();
    });
  }

  it('pings and pongs take no machine step on either side; round trips are measured on both', async () => {
    const steps = new Map<string, number>();
    const count = (name: string) => (event: InspectionEvent) => {
      if (event.type === '@xstate.microstep') steps.set(name, (steps.get(name) ?? 0) + 1);
    };
    s = await swarm({ latencyMs: LATENCY, defaults: { heartbeat: { ...HB, misses: 2 }, idleTimeoutMs: 600_000 } });
    const a = await s.add('a', { inspect: count('a') });
    const b = await s.add('b', { inspect: count('b') });
    a.addPeer('b', [s.network.address('b')]);
    await s.until(a.withConnection('b', () => undefined));
    await s.advance(10);
    const before = { a: steps.get('a'), b: steps.get('b'), rttA: a.metrics().heartbeat.samples, rttB: b.metrics().heartbeat.samples };
    await s.advance(10 * HB.intervalMs);
    assert.deepEqual({ a: steps.get('a'), b: steps.get('b') }, { a: before.a, b: before.b }, 'no machine step in 10 intervals');
    assert.ok(a.metrics().heartbeat.samples - before.rttA >= 9, `a measured ${a.metrics().heartbeat.samples - before.rttA} round trips`);
    assert.ok(b.metrics().heartbeat.samples - before.rttB >= 9, `b measured ${b.metrics().heartbeat.samples - before.rttB} round trips`);
    assert.equal(a.metrics().heartbeat.lastRttMs, 2 * LATENCY);
    assert.equal(a.snapshot().peers[0]?.state, 'ready');
    assert.equal(b.snapshot().peers[0]?.state, 'ready');
    assert.equal(Engine.heartbeatOf(a, 'b')?.phase, 'waiting');
  });

  it('the heartbeat dies with the machine: a machine that fails while ready leaves no heartbeat and no timer', async () => {
    s = await swarm({ latencyMs: LATENCY, defaults: { heartbeat: { ...HB, misses: 2 }, idleTimeoutMs: 600_000 } });
    const clock = new EngineClock(s.clock);
    const a = await s.add('a', { clock });
    const b = await s.add('b');
    a.handle('/in', () => {});
    a.addPeer('b', [s.network.address('b')]);
    await s.until(a.withConnection('b', () => undefined));
    assert.ok(Engine.heartbeatOf(a, 'b') !== undefined);
    const held = clock.pending();
    assert.ok(held >= 1, 'the heartbeat timer');
    // A guard that throws fails the machine (an actor error): the engine removes it from `ready`, running no exit action.
    sinon.stub(ProtocolLimits.prototype, 'limited').throws(new Error('broken guard'));
    b.addPeer('a', [s.network.address('a')]);
    const opening = track([b.openStream('a', '/in')]);
    await s.advance(10);
    sinon.restore();
    assert.equal(a.metrics().internalErrors, 1, 'the machine failed');
    assert.equal(a.snapshot().peers.length, 0, 'its entry is gone');
    assert.equal(Engine.heartbeatOf(a, 'b'), undefined);
    assert.equal(clock.pending(), 0, 'no heartbeat timer left on the clock');
    const sent = a.metrics().heartbeat.samples;
    await s.advance(5 * HB.intervalMs);
    assert.equal(a.metrics().heartbeat.samples, sent);
    await s.until(opening.all);
    // Its one internal error was the point: it leaves the shared after-check.
    s.engines.delete('a');
    await a.stop();
  });
});
