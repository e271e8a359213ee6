import { strict as assert } from 'node:assert';
import { createInspector as createStatelyInspector, type StatelyInspectionEvent as StatelyLibEvent } from '@statelyai/inspect';
import { createActor, fromCallback, setup } from 'xstate';
import { createInspector, INSPECT_PROTOCOL_VERSION, type InspectorEntry, type StatelyInspectionEvent } from '../../visualizer/inspector.js';
import { RingBuffer } from '../../visualizer/ring.js';
import { toJson } from '../../visualizer/serialize.js';
import { echo, swarm, type Swarm } from '../fixtures/swarm.js';

/** Opens one echo stream a -> b and waits for it to finish. */
async function roundTrip(s: Swarm, from: string, to: string): Promise<void> {
  const stream = await s.until(s.engine(from).openStream(to, '/echo'));
  const writer = stream.writable.getWriter();
  await writer.write(new Uint8Array([1, 2, 3]));
  await writer.close();
  const reader = stream.readable.getReader();
  await s.until(
    (async () => {
      while (!(await reader.read()).done) {
        // the echo
      }
    })(),
  );
}

/** Every value in `x` is plain JSON: it survives a JSON round trip unchanged. */
function assertJsonSafe(x: unknown, where: string): void {
  const walk = (v: unknown, path: string): void => {
    assert.ok(typeof v !== 'function' && typeof v !== 'symbol' && typeof v !== 'bigint', `${where}: ${path} is a ${typeof v}`);
    if (typeof v === 'number') assert.ok(Number.isFinite(v), `${where}: ${path} is ${v}`);
    if (v !== null && typeof v === 'object') {
      const proto = Object.getPrototypeOf(v);
      assert.ok(proto === Object.prototype || proto === Array.prototype || proto === null, `${where}: ${path} is a ${v.constructor?.name}`);
      for (const [k, item] of Object.entries(v)) walk(item, `${path}.${k}`);
    }
  };
  walk(x, '$');
  assert.deepEqual(JSON.parse(JSON.stringify(x)), JSON.parse(JSON.stringify(x)));
}

describe('visualizer: inspection sink', () => {
  let s: Swarm;

  afterEach(async () => {
    await s?.stopAll();
  });

  it('turns a real engine pair’s inspection into @statelyai/inspect-shaped, labelled, JSON-safe events', async () => {
    const inspector = createInspector();
    const entries: InspectorEntry[] = [];
    inspector.subscribe((e) => entries.push(e));
    s = await swarm();
    const a = await s.add('a', { inspect: inspector.inspect });
    const b = await s.add('b', { inspect: inspector.inspect });
    b.handle('/echo', echo);
    a.addPeer('b', [s.network.address('b')]);
    await roundTrip(s, 'a', 'b');

    const events = entries.map((e) => e.event);
    assert.ok(events.length > 20, `only ${events.length} events`);
    for (const event of events) {
      assert.ok(['@xstate.actor', '@xstate.event', '@xstate.snapshot'].includes(event.type), event.type);
      assert.equal(typeof event.sessionId, 'string');
      assert.equal(typeof event.rootId, 'string');
      assert.equal(event._version, INSPECT_PROTOCOL_VERSION);
      assert.equal(event.id, null);
      assert.match(event.createdAt, /^\d+$/);
      assertJsonSafe(event, `${event.type} of ${event.sessionId}`);
    }

    // One peer machine per side, labelled by engine and peer.
    const roots = entries.filter((e) => e.root && e.event.type === '@xstate.actor');
    assert.deepEqual(roots.map((e) => e.key).sort(), ['a/b', 'b/a']);
    for (const { event } of roots) {
      assert.equal(event.type, '@xstate.actor');
      if (event.type !== '@xstate.actor') continue;
      assert.equal(event.name, 'peerConnection');
      assert.equal(event.rootId, event.sessionId);
      assert.equal(event.parentId, undefined);
      assert.equal(JSON.parse(event.definition!).id, 'peerConnection');
      assert.equal(event.snapshot.status, 'active');
      assert.ok(event.snapshot.context !== undefined && event.snapshot.value !== undefined);
      // Every event of this machine comes after its actor event.
      const first = events.findIndex((e) => e.sessionId === event.sessionId);
      assert.equal(events[first], event, 'an event of the machine came before its @xstate.actor');
    }

    // Child actors (dial slot, dial) are filed under their peer machine.
    const aRoot = roots.find((e) => e.key === 'a/b')!.event.sessionId;
    const children = entries.filter((e) => !e.root && e.event.type === '@xstate.actor');
    assert.ok(children.length >= 2, 'the outbound side has a dial slot and a dial actor');
    for (const child of children.filter((c) => c.key === 'a/b')) {
      assert.equal(child.machine, aRoot);
      if (child.event.type === '@xstate.actor') assert.equal(child.event.parentId, aRoot);
    }

    // Events carry the real event objects, sources included.
    const request = events.find((e) => e.type === '@xstate.event' && e.event.type === 'REQUEST');
    assert.ok(request !== undefined && request.type === '@xstate.event');
    assert.equal(request.sessionId, aRoot);
    const fromChild = events.find((e) => e.type === '@xstate.event' && e.event.type === 'DIAL.SLOT');
    assert.ok(fromChild !== undefined && fromChild.type === '@xstate.event' && fromChild.sourceId !== undefined);

    // Snapshots: the path a -> b took.
    const aValues = entries
      .filter((e) => e.key === 'a/b' && e.root && e.event.type === '@xstate.snapshot')
      .map((e) => (e.event.type === '@xstate.snapshot' ? e.event.snapshot.value : null));
    assert.deepEqual(aValues[0], { connecting: 'queued' });
    assert.ok(aValues.some((v) => JSON.stringify(v) === JSON.stringify({ connecting: 'dialing' })));
    assert.ok(aValues.some((v) => v !== null && typeof v === 'object' && 'ready' in v));

    const peers = inspector.peers();
    assert.deepEqual(peers.map((p) => [p.key, p.state, p.status]).sort(), [
      ['a/b', 'ready', 'active'],
      ['b/a', 'ready', 'active'],
    ]);
    const ab = inspector.peer('a/b')!;
    assert.equal(ab.details.direction, 'outbound');
    assert.equal(inspector.peer('b/a')!.details.direction, 'inbound');
    assert.deepEqual(inspector.engines().sort(), ['a', 'b']);
    assert.equal(inspector.stats().unattributed, 0);

    const timeline = inspector.timeline('a/b');
    const tops = timeline.filter((t) => t.changed).map((t) => t.state);
    // 'a' dialled with the lower id: ready in the same step as its hello (handshaking is passed through).
    assert.deepEqual(
      tops.filter((state, i) => state !== tops[i - 1]),
      ['connecting', 'ready'],
    );
    assert.equal(timeline[0]!.event, 'xstate.init');
    // The listener's side waits in handshaking for the hello.
    const inbound = inspector.timeline('b/a').filter((t) => t.changed).map((t) => t.state);
    assert.deepEqual(
      inbound.filter((state, i) => state !== inbound[i - 1]),
      ['handshaking', 'ready'],
    );

    // After a forced close the machine is kept, finished, as `closed`.
    await s.until(a.forceClose('b', 'test'));
    const closed = inspector.peer('a/b')!;
    assert.equal(closed.state, 'closed');
    assert.equal(closed.status, 'done');
    assert.ok(inspector.timeline('a/b').some((t) => t.state === 'forceClosed'));
  });

  it('matches what @statelyai/inspect itself serializes for the same inspection events', async () => {
    const ours = createInspector();
    const theirs: StatelyLibEvent[] = [];
    const stately = createStatelyInspector({ send: (event) => void theirs.push(event) }, { autoStart: false } as never);
    s = await swarm();
    const both = (event: Parameters<typeof ours.inspect>[0]): void => {
      ours.inspect(event);
      stately.inspect.next?.(event);
    };
    const a = await s.add('a', { inspect: both });
    const b = await s.add('b', { inspect: both });
    b.handle('/echo', echo);
    a.addPeer('b', [s.network.address('b')]);
    const mine: StatelyInspectionEvent[] = [];
    ours.subscribe((e) => mine.push(e.event));
    await roundTrip(s, 'a', 'b');
    await s.until(a.forceClose('b'));
    // @statelyai/inspect converts on a zero timeout.
    await new Promise((resolve) => setTimeout(resolve, 50));

    const keysOf = (type: string, list: readonly { type: string }[]): string[] =>
      [...new Set(list.filter((e) => e.type === type).flatMap((e) => Object.keys(e)))].sort();
    for (const type of ['@xstate.actor', '@xstate.event', '@xstate.snapshot']) {
      assert.deepEqual(keysOf(type, mine), keysOf(type, theirs), `keys of ${type}`);
    }
    // Same events, same order, for everything but actor registrations (theirs are sent before the actor has a snapshot).
    const flow = (list: readonly StatelyLibEvent[] | readonly StatelyInspectionEvent[]): unknown[] =>
      (list as readonly { type: string; sessionId: string; rootId?: string; event?: { type: string }; sourceId?: string; snapshot?: unknown }[])
        .filter((e) => e.type !== '@xstate.actor')
        .map((e) => [e.type, e.sessionId, e.rootId, e.event?.type, e.type === '@xstate.event' ? e.sourceId : e.snapshot]);
    assert.deepEqual(flow(mine), flow(theirs));
    const actors = (list: readonly { type: string }[]): unknown[] =>
      (list as readonly { type: string; sessionId: string; parentId?: string; rootId?: string; name?: string; definition?: string }[])
        .filter((e) => e.type === '@xstate.actor')
        .map((e) => [e.sessionId, e.parentId, e.rootId, e.name, e.definition === undefined ? undefined : JSON.parse(e.definition)])
        .sort((x, y) => String(x[0]).localeCompare(String(y[0])));
    assert.deepEqual(actors(mine), actors(theirs));

    // And what it sends can be read back: ingesting it rebuilds the same peers.
    const replay = createInspector();
    for (const event of theirs) assert.ok(replay.ingest(JSON.parse(JSON.stringify(event)), 'other-process'));
    assert.deepEqual(
      replay.peers().map((p) => [p.key, p.state, p.status]),
      ours.peers().map((p) => [p.key, p.state, p.status]),
    );
    assert.ok(replay.peers().every((p) => p.sessionId.startsWith('other-process/')));
  });

  it('keeps a bounded history per machine and a bounded number of finished machines', async () => {
    const inspector = createInspector({ historyLimit: 10, maxFinished: 3 });
    const removed: string[] = [];
    inspector.onRemoved((key) => removed.push(key));
    s = await swarm();
    const a = await s.add('a', { inspect: inspector.inspect });
    const b = await s.add('b', { inspect: inspector.inspect });
    b.handle('/echo', echo);
    a.addPeer('b', [s.network.address('b')]);
    for (let i = 0; i < 5; i++) await roundTrip(s, 'a', 'b');
    const history = inspector.history('a/b');
    assert.equal(history.length, 10);
    assert.ok(inspector.stats().evictedEvents > 0);
    // The newest are the ones kept.
    const last = history[history.length - 1]!;
    assert.equal(last.type, '@xstate.snapshot');
    assert.ok(Number(last.createdAt) >= Number(history[0]!.createdAt));

    // Eight peers, each closed: only the last three finished machines stay.
    for (let i = 0; i < 8; i++) {
      const peer = `p${i}`;
      const engine = await s.add(peer, { inspect: inspector.inspect });
      engine.handle('/echo', echo);
      a.addPeer(peer, [s.network.address(peer)]);
      await roundTrip(s, 'a', peer);
      await s.until(a.forceClose(peer));
    }
    const stats = inspector.stats();
    assert.equal(stats.finished, 3);
    assert.ok(stats.evictedMachines >= 5);
    assert.ok(removed.includes('a/p0'), 'the oldest finished machine was forgotten');
    assert.equal(inspector.peer('a/p0'), undefined);
    assert.equal(inspector.peer('a/p7')?.state, 'closed');
    for (const peer of inspector.peers()) assert.ok(inspector.history(peer.key).length <= 10);
  });

  it('labels machines by inspectFor, and never throws into what it watches', () => {
    const inspector = createInspector();
    const machine = setup({ actors: { child: fromCallback(() => () => {}) } }).createMachine({
      id: 'toy',
      context: { peerId: 'x', fn: () => 1, big: 10n, nested: { deep: { map: new Map([['k', 1]]) } } } as never,
      invoke: { src: 'child' },
      initial: 'one',
      states: { one: { on: { GO: 'two' } }, two: {} },
    });
    const actor = createActor(machine, { inspect: inspector.inspectFor('engine-7') }).start();
    actor.send({ type: 'GO' });
    const view = inspector.peer('engine-7/x');
    assert.ok(view !== undefined);
    assert.equal(view.state, 'two');
    const snapshot = inspector.history('engine-7/x').find((e) => e.type === '@xstate.snapshot' && e.sessionId === view.sessionId);
    assert.ok(snapshot !== undefined && snapshot.type === '@xstate.snapshot');
    assert.deepEqual(snapshot.snapshot.context, { peerId: 'x', big: '10', nested: { deep: { map: { k: 1 } } } });
    const children = snapshot.snapshot.children as Record<string, unknown>;
    assert.deepEqual(Object.values(children), [{ xstate$$type: 1, id: Object.keys(children)[0] }]);
    actor.stop();
    assert.equal(inspector.peer('engine-7/x')?.status, 'stopped');

    // Garbage in: no throw, nothing recorded.
    for (const junk of [null, undefined, 42, {}, { type: '@xstate.snapshot' }, { type: '@xstate.event', actorRef: null }]) {
      assert.doesNotThrow(() => inspector.inspect(junk as never));
      assert.equal(inspector.ingest(junk), false);
    }
    inspector.subscribe(() => {
      throw new Error('listener bug');
    });
    assert.doesNotThrow(() => createActor(machine, { inspect: inspector.inspect }).start().stop());
  });
});

describe('visualizer: ring buffer and serializer', () => {
  it('keeps the newest items up to its capacity', () => {
    const ring = new RingBuffer<number>(3);
    assert.deepEqual(ring.toArray(), []);
    for (let i = 1; i <= 7; i++) ring.push(i);
    assert.deepEqual(ring.toArray(), [5, 6, 7]);
    assert.equal(ring.size, 3);
    assert.equal(ring.dropped, 4);
    assert.equal(ring.last(), 7);
    ring.clear();
    assert.equal(ring.size, 0);
    assert.throws(() => new RingBuffer(0), RangeError);
  });

  it('writes anything as plain JSON: no functions, actors, cycles or unbounded depth', () => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    const actor = createActor(setup({}).createMachine({ id: 'm' }), { id: 'child-1' });
    const deep = { l1: { l2: { l3: { l4: 'x' } } } };
    const out = toJson({
      n: 1,
      inf: Infinity,
      f: () => 1,
      u: undefined,
      big: 2n ** 70n,
      d: new Date(0),
      err: Object.assign(new Error('boom'), { code: 'E1' }),
      set: new Set([1, 2]),
      bytes: new Uint8Array(16),
      cyclic,
      actor,
      shared: [deep, deep],
      arr: [undefined, () => 1],
    }, { depth: 4 });
    assert.deepEqual(out, {
      n: 1,
      inf: null,
      big: '1180591620717411303424',
      d: '1970-01-01T00:00:00.000Z',
      err: { name: 'Error', message: 'boom', code: 'E1' },
      set: [1, 2],
      bytes: '[Uint8Array 16 bytes]',
      cyclic: { a: 1, self: '[Circular]' },
      actor: { xstate$$type: 1, id: 'child-1' },
      shared: [{ l1: { l2: '[Object]' } }, { l1: { l2: '[Object]' } }],
      arr: [null, null],
    });
    assert.deepEqual(toJson({ f: function guard() {} }, { functions: 'name' }), { f: { type: 'guard' } });
  });
});
