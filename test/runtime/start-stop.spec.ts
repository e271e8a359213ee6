import { strict as assert } from 'node:assert';
import { get } from 'node:http';
import { MemoryNetwork, VirtualClock, type Adapter, type Connection, type MemoryAdapter } from '../../adapters/memory/index.js';
import { createEngine, PeerlineError, type Engine, type PeerStream } from '../../runtime/index.js';
import { startVisualizer } from '../../visualizer/index.js';
import { holder, swarm, type Swarm } from '../fixtures/swarm.js';

const quiet = { trace: false, logger: { warn: () => {} } } as const;

/** A memory node whose listen() waits until the test lets it finish. */
function gatedAdapter(network: MemoryNetwork, peerId: string): { adapter: Adapter; inner: MemoryAdapter; release: () => void } {
  const inner = network.node(peerId);
  let release!: () => void;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const adapter: Adapter = {
    localPeerId: inner.localPeerId,
    listen: async (onConnection: (connection: Connection) => void) => {
      await inner.listen(onConnection);
      await gate;
    },
    dial: (...args) => inner.dial(...args),
    close: () => inner.close(),
  };
  return { adapter, inner, release };
}

/** Engine `a` holding a stream open to `b` (whose handler keeps it): a stop() of `a` must drain it. */
async function heldStream(s: Swarm): Promise<{ client: Engine; stream: PeerStream }> {
  const client = await s.add('a');
  const server = await s.add('b');
  server.handle('/hold', holder().handler);
  client.addPeer('b', [s.network.address('b')]);
  const opening = client.openStream('b', '/hold');
  await s.until(opening);
  return { client, stream: await opening };
}

function isAborted(error: unknown): boolean {
  return error instanceof PeerlineError && error.code === 'ABORTED';
}

describe('engine start and stop: AbortSignal, forced stops, await using', () => {
  let s: Swarm | undefined;

  afterEach(async () => {
    await s?.stopAll();
    s = undefined;
  });

  it('start() with an aborted signal rejects ABORTED, listens to nothing, and leaves the engine stopped', async () => {
    const clock = new VirtualClock();
    const network = new MemoryNetwork({ clock });
    const engine = createEngine({ adapter: network.node('a'), clock, ...quiet });
    const controller = new AbortController();
    controller.abort(new Error('changed my mind'));
    await assert.rejects(engine.start({ signal: controller.signal }), isAborted);
    assert.equal(network.node('a').isListening, false);
    assert.equal(engine.status, 'stopped');
    await engine.stop();
    await assert.rejects(engine.start(), (e: unknown) => e instanceof PeerlineError && e.code === 'ENGINE_STOPPED');
  });

  it('start() aborted while the adapter is binding finishes the listen, closes it, then rejects ABORTED', async () => {
    const clock = new VirtualClock();
    const network = new MemoryNetwork({ clock });
    const { adapter, inner, release } = gatedAdapter(network, 'a');
    const engine = createEngine({ adapter, clock, ...quiet });
    const controller = new AbortController();
    const starting = engine.start({ signal: controller.signal });
    let settled = false;
    const outcome = starting.then(
      () => 'resolved',
      (e: unknown) => (isAborted(e) ? 'ABORTED' : String(e)),
    );
    void outcome.then(() => (settled = true));
    await clock.advance(1);
    assert.equal(inner.isListening, true, 'the listen is in progress');
    controller.abort();
    await clock.advance(1);
    assert.equal(settled, false, 'start() waits for the listen before answering');
    release();
    await clock.advance(1);
    assert.equal(await outcome, 'ABORTED');
    assert.equal(inner.isListening, false, 'nothing is left listening');
    assert.equal(inner.isClosed, true);
    assert.equal(engine.status, 'stopped');
    await engine.stop();
    assert.equal(clock.pending(), 0);
  });

  it("stop()'s signal turns a graceful stop into a forced one: a drain that would take a minute ends within the grace", async () => {
    s = await swarm({ defaults: { drainDeadlineMs: 60_000, forceCloseGraceMs: 500, idleTimeoutMs: Infinity } });
    const { client, stream } = await heldStream(s);
    const controller = new AbortController();
    const started = s.clock.now();
    const stopping = client.stop({ signal: controller.signal });
    let stopped = false;
    void stopping.then(() => (stopped = true));
    await s.advance(1_000);
    assert.equal(stopped, false, 'draining: the open stream may finish');
    assert.equal(client.snapshot().peers[0]?.state, 'draining');
    controller.abort();
    await s.until(stopping, 2_000);
    assert.ok(s.clock.now() - started < 1_000 + 500 + 10, `stopped ${s.clock.now() - started} ms after the stop began`);
    assert.deepEqual(s.states('a', 'b').slice(-3), ['draining', 'forceClosed', 'closed']);
    assert.equal(client.status, 'stopped');
    stream.abort('done');
  });

  it('stop({ force: true }) after a graceful stop() began forces it too; an already aborted signal forces at once', async () => {
    s = await swarm({ defaults: { drainDeadlineMs: 60_000, forceCloseGraceMs: 500, idleTimeoutMs: Infinity } });
    const { client, stream } = await heldStream(s);
    const graceful = client.stop();
    await s.advance(100);
    const forced = client.stop({ force: true });
    assert.equal(forced, graceful, 'one stop, whoever asks');
    await s.until(forced, 1_000);
    assert.ok(s.states('a', 'b').includes('forceClosed'));
    stream.abort('done');

    const other = await s.add('c');
    other.addPeer('b', [s.network.address('b')]);
    const second = other.openStream('b', '/hold');
    await s.until(second);
    const secondStream = await second;
    const at = s.clock.now();
    await s.until(other.stop({ signal: AbortSignal.abort() }), 1_000);
    assert.ok(s.clock.now() - at <= 501, 'no drain at all');
    secondStream.abort('done');
  });

  it('await using: the engine stops, and the visualizer closes, at the end of the scope', async () => {
    const clock = new VirtualClock();
    const network = new MemoryNetwork({ clock });
    let engine: Engine;
    let port: number;
    {
      await using scoped = createEngine({ adapter: network.node('a'), clock, ...quiet });
      engine = scoped;
      await scoped.start();
      assert.equal(network.node('a').isListening, true);
      await using visualizer = await startVisualizer({ engines: [scoped], metricsIntervalMs: 60_000 });
      port = visualizer.port;
    }
    assert.equal(engine.status, 'stopped');
    assert.equal(network.node('a').isListening, false);
    const refused = await new Promise<string>((resolve) => {
      get({ host: '127.0.0.1', port, path: '/' }, () => resolve('answered')).on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    assert.equal(refused, 'ECONNREFUSED');
  });

  it('rejects bad options of start() and stop() with a coded TypeError instead of throwing', async () => {
    const clock = new VirtualClock();
    const network = new MemoryNetwork({ clock });
    const engine = createEngine({ adapter: network.node('a'), clock, ...quiet });
    await assert.rejects(engine.start({ signal: 'soon' } as never), (e: unknown) => e instanceof TypeError && /options\.signal must be an AbortSignal/.test(e.message));
    await assert.rejects(engine.stop({ force: 1 } as never), (e: unknown) => e instanceof TypeError && (e as { code?: string }).code === 'ERR_INVALID_ARG_TYPE');
    assert.equal(engine.status, 'idle', 'a bad argument changes nothing');
    await engine.start();
    await engine.stop();
  });
});
