import { strict as assert } from 'node:assert';
import { assign, createActor, createMachine, fromCallback, type AnyActorRef, type InspectionEvent } from 'xstate';
import { VirtualClock } from '../../adapters/memory/index.js';
import { ActorHost, SharedActorSystem, createRootActor, stopRootActor } from '../../runtime/actor-system.js';
import { Engine } from '../../runtime/index.js';
import { hub } from '../fixtures/pair.js';
import { swarm, type Swarm } from '../fixtures/swarm.js';
import { actorOf } from '../../runtime/test-hooks.js';

/** A machine with what the peer machine uses: delays, an eventless step, an invoked child, a final state. */
const machine = createMachine({
  id: 'probe',
  initial: 'start',
  context: { ticks: 0 },
  states: {
    start: { always: 'waiting' },
    waiting: {
      invoke: { src: fromCallback(({ sendBack }) => sendBack({ type: 'CHILD' })) },
      after: { 1000: { target: 'waiting', reenter: true, actions: assign({ ticks: ({ context }) => context.ticks + 1 }) }, 5000: 'late' },
      on: {
        CHILD: { actions: assign({ ticks: ({ context }) => context.ticks + 100 }) },
        FINISH: 'ending',
        BREAK: {
          actions: () => {
            throw new Error('broken action');
          },
        },
      },
    },
    late: {},
    ending: { always: 'done' },
    done: { type: 'final' },
  },
});

class Host extends ActorHost {
  actor: AnyActorRef | undefined;
}

function setup(inspect?: (event: InspectionEvent) => void) {
  const clock = new VirtualClock();
  const hosts = new Set<Host>();
  const steps: Array<{ host: Host; to: unknown; event: string }> = [];
  const hostEvents: Array<{ host: Host; type: string; error?: unknown }> = [];
  const system = new SharedActorSystem<Host>({
    clock,
    hosts: () => hosts,
    microstep: (host, actorRef, snapshot, event) => {
      if (actorRef === host.actor) steps.push({ host, to: (snapshot as { value: unknown }).value, event });
    },
    hostEvent: (host, event) => hostEvents.push({ host, ...event }),
    inspect,
  });
  const spawn = (): { host: Host; actor: AnyActorRef } => {
    const host = new Host(system as unknown as SharedActorSystem);
    const actor = createRootActor(machine, host, {});
    host.actor = actor;
    hosts.add(host);
    actor.start();
    return { host, actor };
  };
  return { clock, system, spawn, steps, hostEvents };
}

describe('runtime: shared actor system', () => {
  it('gives every root actor the host system, and runs their delays on its clock', async () => {
    const t = setup();
    const a = t.spawn();
    const b = t.spawn();
    assert.equal(a.actor.system, t.system);
    assert.equal(b.actor.system, t.system);
    assert.notEqual(a.actor.sessionId, b.actor.sessionId);
    // Each waits with two delays; the invoked child's event arrived at once.
    assert.equal(t.clock.pending(), 4);
    assert.equal(a.actor.getSnapshot().context.ticks, 100);
    await t.clock.advance(1000);
    assert.equal(a.actor.getSnapshot().context.ticks, 201, 'the 1000 ms delay re-entered the state (and the child ran again)');
    assert.equal(b.actor.getSnapshot().context.ticks, 201);
    assert.equal(t.clock.pending(), 4, 're-entering cancelled the old delays and set new ones');
  });

  it('stopping one actor cancels its own timers and no one else’s', async () => {
    const t = setup();
    const a = t.spawn();
    const b = t.spawn();
    const keysOf = (actor: AnyActorRef): string[] =>
      Object.keys(t.system.getSnapshot()._scheduledEvents).filter((k) => k.startsWith(`${actor.sessionId}.`));
    assert.equal(keysOf(a.actor).length, 2);
    assert.equal(keysOf(b.actor).length, 2);
    stopRootActor(a.actor);
    assert.equal(a.actor.getSnapshot().status, 'stopped');
    assert.equal(keysOf(a.actor).length, 0);
    assert.equal(keysOf(b.actor).length, 2);
    assert.equal(t.clock.pending(), 2);
    await t.clock.advance(1000);
    assert.equal(b.actor.getSnapshot().context.ticks, 201, 'the other actor’s delay still fired');
    assert.equal(a.actor.getSnapshot().context.ticks, 100);
    assert.equal(t.hostEvents.length, 0, 'a stop is not a done or error event');
  });

  it('reports every microstep of a root actor, including the steps inside one macrostep', () => {
    const t = setup();
    const a = t.spawn();
    t.steps.length = 0;
    a.actor.send({ type: 'FINISH' });
    assert.deepEqual(
      t.steps.map((s) => [s.to, s.event]),
      [
        ['ending', 'FINISH'],
        ['done', 'FINISH'],
      ],
    );
    assert.ok(t.steps.every((s) => s.host === (a.host as Host)));
  });

  it('hands a root actor’s done and error events to hostEvent, once each, and leaves no timer', () => {
    const t = setup();
    const a = t.spawn();
    const b = t.spawn();
    a.actor.send({ type: 'FINISH' });
    b.actor.send({ type: 'BREAK' });
    assert.deepEqual(
      t.hostEvents.map((e) => [e.host === a.host ? 'a' : 'b', e.type]),
      [
        ['a', `xstate.done.actor.${a.actor.id}`],
        ['b', `xstate.error.actor.${b.actor.id}`],
      ],
    );
    assert.equal((t.hostEvents[1]?.error as Error).message, 'broken action');
    assert.equal(t.clock.pending(), 0);
  });

  it('inspection events have XState’s shape, as if each actor were created without a parent', async () => {
    const shared: InspectionEvent[] = [];
    const t = setup((e) => shared.push(e));
    const a = t.spawn();
    await t.clock.advance(1000);
    a.actor.send({ type: 'FINISH' });

    const alone: InspectionEvent[] = [];
    const clock = new VirtualClock();
    const plain = createActor(machine, { clock, inspect: (e) => alone.push(e) }).start();
    await clock.advance(1000);
    plain.send({ type: 'FINISH' });

    const shape = (events: InspectionEvent[], root: AnyActorRef) =>
      events.map((e) => {
        const event = 'event' in e ? (e.event as { type: string }).type.replace(/x:\S*/, 'ID') : undefined;
        return [e.type, event, e.actorRef === root ? 'root' : 'child', e.rootId === root.sessionId, (e as { sourceRef?: unknown }).sourceRef === undefined];
      });
    assert.ok(shared.length > 10);
    assert.deepEqual(shape(shared, a.actor), shape(alone, plain));
    assert.ok(shared.every((e) => !(e.actorRef instanceof ActorHost)), 'the stand-in parent showed up in an inspection event');
  });
});

describe('runtime: the engine’s peer machines', () => {
  let s: Swarm;

  afterEach(async () => {
    await s.stopAll();
    assert.equal(s.clock.pending(), 0, 'timers left after every engine stopped');
  });

  it('share one actor system per engine', async () => {
    s = await swarm();
    const a = await hub(s);
    await s.until(Promise.all([a.withConnection('b', () => {}), a.withConnection('c', () => {})]));
    const toB = actorOf(a, 'b');
    const toC = actorOf(a, 'c');
    assert.ok(toB !== undefined && toC !== undefined);
    assert.equal(toB.system, toC.system);
    assert.notEqual(toB.system, actorOf(s.engine('b'), 'a')?.system, 'two engines share a system');
  });

  it('a machine that fails is counted, its entry removed and its requests answered', async () => {
    s = await swarm();
    let thrown = 0;
    const a = await s.add('a', {
      trace: true,
      logger: {
        // Runs inside the machine's step: throwing there fails the machine.
        trace: (line) => {
          if (line.includes('-> handshaking')) {
            thrown += 1;
            throw new Error('trace sink failed');
          }
        },
        warn: (line) => void s.warnings.push(line),
      },
    });
    await s.add('b');
    a.addPeer('b', [s.network.address('b')]);
    const answer = a.openStream('b', '/x').then(
      () => 'ok',
      (e: { code: string }) => e.code,
    );
    assert.equal(await s.until(answer), 'CONNECTION_LOST');
    assert.equal(thrown, 1);
    assert.equal(a.metrics().internalErrors, 1);
    assert.ok(s.warnings.some((w) => w.includes('machine for peer b failed')));
    assert.deepEqual(a.snapshot().peers, []);
    assert.equal(actorOf(a, 'b'), undefined);
  });
});
