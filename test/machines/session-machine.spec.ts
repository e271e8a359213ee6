/**
 * Unit tests of the pure resumable-session machine: every transition, on a
 * simulated clock, with recording effects. No network, no real time.
 */
import assert from 'node:assert/strict';
import { createActor, type Actor } from 'xstate';
import type { ErrorInfo } from '../../protocol/codes.js';
import { sessionMachine, type SessionEvent, type SessionMachine } from '../../machines/session-machine.js';
import { SteppingClock } from '../fixtures/machine-harness.js';

const TTL = 60_000;
const TIMEOUT = 5_000;
/** The retry backoff for `attempts` failures so far: 0 at first, then 1 s, 2 s, ... */
const backoff = (attempts: number): number => attempts * 1_000;

interface Run {
  readonly actor: Actor<SessionMachine>;
  readonly clock: SteppingClock;
  readonly effects: Array<{ type: string; params?: unknown; at: number }>;
  readonly states: string[];
  send(event: SessionEvent): void;
  readonly state: string;
}

function stateName(value: unknown): string {
  if (typeof value === 'string') return value;
  const [top, sub] = Object.entries(value as Record<string, unknown>)[0]!;
  return `${top}.${stateName(sub)}`;
}

function run(role: 'opener' | 'acceptor', complete = false): Run {
  const clock = new SteppingClock();
  const effects: Run['effects'] = [];
  const record = (type: string) => (_: unknown, params?: unknown) => void effects.push({ type, params, at: clock.now() });
  const machine = sessionMachine.provide({
    delays: { resumeTtl: TTL, resumeTimeout: TIMEOUT, resumeRetry: ({ context }) => backoff(context.attempts) },
    actions: { attemptResume: record('attemptResume'), abandonAttempt: record('abandonAttempt'), release: record('release') },
    guards: { isComplete: () => complete },
  });
  const actor = createActor(machine, { input: { sessionId: 's1', peerId: 'p1', role }, clock });
  const states: string[] = [];
  actor.subscribe((snapshot) => {
    const name = stateName(snapshot.value);
    if (states.at(-1) !== name) states.push(name);
  });
  actor.start();
  return {
    actor,
    clock,
    effects,
    states,
    send: (event) => actor.send(event),
    get state() {
      return stateName(actor.getSnapshot().value);
    },
  };
}

const LOST: SessionEvent = { type: 'LINK.LOST', reason: 'link ended' };
const NO_CONNECTION: ErrorInfo = { code: 'CONNECT_TIMEOUT', message: 'no answer' };

function released(r: Run): unknown[] {
  return r.effects.filter((e) => e.type === 'release').map((e) => e.params);
}

describe('resumable session machine', () => {
  it('opener: opening -> open on OPENED; the open wait is bounded by the timeout', () => {
    const ok = run('opener');
    assert.equal(ok.state, 'opening');
    ok.send({ type: 'OPENED' });
    assert.equal(ok.state, 'open');

    const late = run('opener');
    late.clock.advance(TIMEOUT);
    assert.equal(late.state, 'failed');
    assert.deepEqual(released(late), [{ error: { code: 'STREAM_TIMEOUT', message: 'the remote did not accept the session in time' } }]);
  });

  it('acceptor: starts open; it never attempts a resume, it waits for one until the TTL', () => {
    const r = run('acceptor');
    assert.deepEqual(r.states, ['open']);
    r.send(LOST);
    assert.equal(r.state, 'suspended.waiting');
    r.send({ type: 'LINK.READY' });
    r.clock.advance(TTL - 1);
    assert.equal(r.state, 'suspended.waiting');
    assert.equal(r.effects.filter((e) => e.type === 'attemptResume').length, 0);
    r.send({ type: 'RESUMED' });
    assert.equal(r.state, 'open');
    assert.equal(r.actor.getSnapshot().context.resumes, 1);
  });

  it('acceptor: a resume while still open (the old link not yet seen dead) stays open and counts', () => {
    const r = run('acceptor');
    r.send({ type: 'RESUMED' });
    assert.equal(r.state, 'open');
    assert.equal(r.actor.getSnapshot().context.resumes, 1);
  });

  it('opener: link lost -> suspended.waiting -> (at once) resuming -> open on RESUMED', () => {
    const r = run('opener');
    r.send({ type: 'OPENED' });
    r.send(LOST);
    assert.equal(r.state, 'suspended.waiting');
    r.clock.advance(0);
    assert.equal(r.state, 'suspended.resuming');
    assert.deepEqual(r.effects.map((e) => e.type), ['attemptResume']);
    r.send({ type: 'RESUMED' });
    assert.deepEqual(r.states, ['opening', 'open', 'suspended.waiting', 'suspended.resuming', 'open']);
  });

  it('opener: failed attempts back off by the retry policy; LINK.READY skips the wait', () => {
    const r = run('opener');
    r.send({ type: 'OPENED' });
    r.send(LOST);
    r.clock.advance(0);
    r.send({ type: 'RESUME.RETRY', error: NO_CONNECTION });
    assert.equal(r.state, 'suspended.waiting');
    assert.equal(r.actor.getSnapshot().context.attempts, 1);
    assert.deepEqual(r.actor.getSnapshot().context.lastError, NO_CONNECTION);
    r.clock.advance(999);
    assert.equal(r.state, 'suspended.waiting');
    r.clock.advance(1);
    assert.equal(r.state, 'suspended.resuming');
    r.send({ type: 'RESUME.RETRY', error: NO_CONNECTION });
    r.send({ type: 'LINK.READY' });
    assert.equal(r.state, 'suspended.resuming', 'the peer is back: try now, not after 2 s');
    assert.deepEqual(
      r.effects.filter((e) => e.type === 'attemptResume').map((e) => [e.at, e.params]),
      [
        [0, { attempt: 1 }],
        [1_000, { attempt: 2 }],
        [1_000, { attempt: 3 }],
      ],
    );
  });

  it('opener: an attempt with no answer is abandoned at the timeout and tried again', () => {
    const r = run('opener');
    r.send({ type: 'OPENED' });
    r.send(LOST);
    r.clock.advance(0);
    r.clock.advance(TIMEOUT);
    assert.deepEqual(r.effects.map((e) => e.type), ['attemptResume', 'abandonAttempt']);
    assert.equal(r.state, 'suspended.waiting');
    r.clock.advance(1_000);
    assert.equal(r.state, 'suspended.resuming');
  });

  it('the TTL counts from the loss, across attempts: RESUME_EXPIRED, buffers released', () => {
    const r = run('opener');
    r.send({ type: 'OPENED' });
    r.clock.advance(10_000);
    r.send(LOST);
    for (let i = 0; i < 100 && r.state !== 'failed'; i++) {
      r.clock.advance(0);
      if (r.state === 'suspended.resuming') r.send({ type: 'RESUME.RETRY', error: NO_CONNECTION });
      const next = r.clock.pendingTimes()[0];
      if (next !== undefined) r.clock.advance(next - r.clock.now());
    }
    assert.equal(r.state, 'failed');
    assert.equal(r.clock.now(), 10_000 + TTL);
    assert.deepEqual(released(r), [{ error: { code: 'RESUME_EXPIRED', message: 'the session was not resumed before its TTL' } }]);
    assert.deepEqual(r.clock.pendingTimes(), [], 'no timer left');
  });

  it('a session complete on this side (only the remote\'s last ACK was lost) ends closed at the TTL, not RESUME_EXPIRED', () => {
    for (const role of ['opener', 'acceptor'] as const) {
      const r = run(role, true);
      if (role === 'opener') r.send({ type: 'OPENED' });
      r.send(LOST);
      r.clock.advance(TTL - 1);
      assert.ok(r.state.startsWith('suspended'), role);
      r.clock.advance(1);
      assert.equal(r.state, 'closed', role);
      assert.deepEqual(released(r), [{ error: null }]);
    }
  });

  it('a resume resets the attempt count and the TTL', () => {
    const r = run('opener');
    r.send({ type: 'OPENED' });
    r.send(LOST);
    r.clock.advance(0);
    r.send({ type: 'RESUME.RETRY', error: NO_CONNECTION });
    r.clock.advance(TTL - 1_000);
    r.send({ type: 'RESUMED' });
    r.send(LOST);
    assert.equal(r.actor.getSnapshot().context.attempts, 0);
    r.clock.advance(TTL - 1);
    assert.notEqual(r.state, 'failed');
  });

  it('FAIL from any live state ends in failed with that error; FINISHED ends in closed', () => {
    const gap: ErrorInfo = { code: 'RESUME_GAP', message: 'gone' };
    for (const setup of [
      (r: Run) => void r,
      (r: Run) => r.send({ type: 'OPENED' }),
      (r: Run) => (r.send({ type: 'OPENED' }), r.send(LOST)),
      (r: Run) => (r.send({ type: 'OPENED' }), r.send(LOST), r.clock.advance(0)),
    ]) {
      const r = run('opener');
      setup(r);
      r.send({ type: 'FAIL', error: gap });
      assert.equal(r.state, 'failed');
      assert.deepEqual(released(r), [{ error: gap }]);
      assert.equal(r.actor.getSnapshot().status, 'done');
    }
    for (const setup of [
      (r: Run) => r.send({ type: 'OPENED' }),
      (r: Run) => (r.send({ type: 'OPENED' }), r.send(LOST)),
    ]) {
      const r = run('opener');
      setup(r);
      r.send({ type: 'FINISHED' });
      assert.equal(r.state, 'closed');
      assert.deepEqual(released(r), [{ error: null }]);
    }
  });

  it('events that do not apply are ignored, never thrown', () => {
    const r = run('opener');
    r.send({ type: 'RESUMED' });
    r.send({ type: 'LINK.READY' });
    r.send({ type: 'RESUME.RETRY', error: NO_CONNECTION });
    assert.equal(r.state, 'opening');
    r.send({ type: 'OPENED' });
    r.send({ type: 'OPENED' });
    r.send({ type: 'LINK.READY' });
    assert.equal(r.state, 'open');
    r.send(LOST);
    r.send(LOST);
    assert.equal(r.state, 'suspended.waiting');
  });

  it('every live state has a timer of its own', () => {
    const r = run('opener');
    assert.ok(r.clock.pendingTimes().length > 0, 'opening');
    r.send({ type: 'OPENED' });
    r.send(LOST);
    assert.ok(r.clock.pendingTimes().length >= 2, 'suspended.waiting: TTL and retry');
    r.clock.advance(0);
    assert.ok(r.clock.pendingTimes().length >= 2, 'suspended.resuming: TTL and attempt timeout');
  });
});
