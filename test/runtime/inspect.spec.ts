import { strict as assert } from 'node:assert';
import { createInspector as createStatelyInspector, type StatelyInspectionEvent } from '@statelyai/inspect';
import type { InspectionEvent } from 'xstate';
import { INSPECT_ATTACHED_EVENT } from '../../runtime/index.js';
import { createInspector } from '../../visualizer/index.js';
import { echoPair } from '../fixtures/pair.js';
import { echo, swarm, type Swarm } from '../fixtures/swarm.js';

/**
 * A real `@statelyai/inspect` inspector whose adapter keeps what it is sent.
 * Its `inspect.next` defers each event to a host timer, so tests wait for
 * the events they expect (bounded by a deadline), never for a time.
 */
function statelyRecorder(): {
  readonly inspector: ReturnType<typeof createStatelyInspector>;
  readonly events: StatelyInspectionEvent[];
  waitFor(what: string, predicate: (event: StatelyInspectionEvent) => boolean): Promise<StatelyInspectionEvent>;
} {
  const events: StatelyInspectionEvent[] = [];
  const waiters = new Set<{ predicate: (e: StatelyInspectionEvent) => boolean; resolve: (e: StatelyInspectionEvent) => void }>();
  const inspector = createStatelyInspector({
    send(event) {
      events.push(event);
      for (const waiter of waiters) {
        if (!waiter.predicate(event)) continue;
        waiters.delete(waiter);
        waiter.resolve(event);
      }
    },
  });
  return {
    inspector,
    events,
    waitFor(what, predicate) {
      const seen = events.find(predicate);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const deadline = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no ${what} within 10 s (got ${events.length} events)`));
        }, 10_000);
        const waiter = {
          predicate,
          resolve: (event: StatelyInspectionEvent) => {
            clearTimeout(deadline);
            resolve(event);
          },
        };
        waiters.add(waiter);
      });
    },
  };
}

const topState = (value: unknown): string | undefined =>
  typeof value === 'string' ? value : value !== null && typeof value === 'object' ? Object.keys(value)[0] : undefined;

describe('inspection: observers, and inspectors attached to a running engine', () => {
  let s: Swarm;

  afterEach(async () => {
    await s.stopAll();
    assert.equal(s.clock.pending(), 0, 'timers left after every engine stopped');
  });

  it("takes @statelyai/inspect's inspector.inspect (an XState Observer) as the inspect option, and its events arrive", async () => {
    s = await swarm();
    const stately = statelyRecorder();
    // Before, this was TS2322 (an Observer is not a function) and, in JavaScript, every event was dropped.
    const { a } = await echoPair(s, { inspect: stately.inspector.inspect });
    const actor = await stately.waitFor('@xstate.actor of the peer machine', (e) => e.type === '@xstate.actor' && e.parentId === undefined);
    assert.equal(actor.type === '@xstate.actor' && actor.name, 'peerConnection');
    const ready = await stately.waitFor(
      'a snapshot in ready',
      (e) => e.type === '@xstate.snapshot' && e.sessionId === actor.sessionId && topState((e.snapshot as { value?: unknown }).value) === 'ready',
    );
    assert.equal(ready.rootId, actor.sessionId);
    assert.equal(a.metrics().internalErrors, 0);
  });

  it('attaches @statelyai/inspect to a running engine: machines already running are announced with their current state, later steps follow', async () => {
    s = await swarm();
    const { a } = await echoPair(s);
    await s.advance(5);
    assert.equal(a.snapshot().peers[0]?.state, 'ready');

    const stately = statelyRecorder();
    const subscription = a.inspect(stately.inspector.inspect);
    const actor = await stately.waitFor('@xstate.actor of the running machine', (e) => e.type === '@xstate.actor' && e.parentId === undefined);
    assert.ok(actor.type === '@xstate.actor');
    assert.equal(topState(actor.snapshot.value), 'ready');
    const attached = await stately.waitFor('the attach snapshot', (e) => e.type === '@xstate.snapshot' && e.sessionId === actor.sessionId);
    assert.ok(attached.type === '@xstate.snapshot');
    assert.equal(attached.event.type, INSPECT_ATTACHED_EVENT.type);
    assert.equal(topState((attached.snapshot as { value?: unknown }).value), 'ready');

    const draining = a.drain('b');
    await stately.waitFor('the DRAIN event', (e) => e.type === '@xstate.event' && e.sessionId === actor.sessionId && e.event.type === 'DRAIN');
    await s.until(draining);
    await stately.waitFor('the final snapshot', (e) => e.type === '@xstate.snapshot' && e.sessionId === actor.sessionId && e.snapshot.status === 'done');
    subscription.unsubscribe();
  });

  it('detaches: after unsubscribe (or the end of a using block) an observer gets nothing more', async () => {
    s = await swarm();
    const a = await s.add('a');
    const b = await s.add('b');
    b.handle('/echo', echo);
    a.addPeer('b', [s.network.address('b')]);
    const seen: InspectionEvent[] = [];
    const subscription = a.inspect({ next: (event) => void seen.push(event) });
    const scoped: InspectionEvent[] = [];
    {
      using _scope = a.inspect((event) => void scoped.push(event));
      const opening = a.openStream('b', '/echo');
      await s.until(opening);
      (await opening).close();
    }
    assert.ok(seen.length > 0 && scoped.length > 0, 'both observers saw the connection being made');
    assert.ok(seen.some((e) => e.type === '@xstate.snapshot'));
    const scopedCount = scoped.length;
    subscription.unsubscribe();
    subscription.unsubscribe();
    const count = seen.length;
    await s.until(a.drain('b'));
    assert.equal(seen.length, count, 'no event after unsubscribe');
    assert.equal(scoped.length, scopedCount, 'no event after the using block');
  });

  it("feeds the visualizer's inspector when attached late: it lists the running peer in its current state at once", async () => {
    s = await swarm();
    const { a } = await echoPair(s);
    const inspector = createInspector();
    const subscription = a.inspect(inspector.inspect);
    const peers = inspector.peers();
    assert.deepEqual(
      peers.map((p) => [p.key, p.state]),
      [['a/b', 'ready']],
    );
    await s.until(a.drain('b'));
    assert.equal(inspector.peer('a/b')?.state, 'closed');
    subscription.unsubscribe();
  });

  it('refuses what is neither a function nor an observer with next, naming the argument', async () => {
    s = await swarm();
    const a = await s.add('a');
    for (const bad of [42, 'next', null, {}, { next: 'no' }]) {
      assert.throws(
        () => a.inspect(bad as never),
        (e: unknown) => e instanceof TypeError && (e as { code?: string }).code === 'ERR_INVALID_ARG_TYPE' && /^observer/.test(e.message),
        String(bad),
      );
    }
    await assert.rejects(s.add('c', { inspect: { complete: () => {} } as never }), /config\.inspect\.next must be a function/);
  });
});
