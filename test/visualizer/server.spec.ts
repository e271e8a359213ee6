import { strict as assert } from 'node:assert';
import { request } from 'node:http';
import { connect as tcpConnect } from 'node:net';
import { createWebSocketInspector } from '@statelyai/inspect';
import WebSocket from 'ws';
import type { InspectionEvent } from 'xstate';
import type { Engine } from '../../runtime/index.js';
import { createInspector } from '../../visualizer/inspector.js';
import { startVisualizer, type Visualizer } from '../../visualizer/server.js';
import { echo, swarm, type Swarm } from '../fixtures/swarm.js';
import { connectPage, tcpHandles, type PageClient } from './page-client.js';

function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function poll(predicate: () => boolean, what: string, timeoutMs = 4000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Opens (and keeps) an echo stream from -> to, moving the virtual clock until it is open. */
async function open(s: Swarm, from: string, to: string): Promise<void> {
  await s.until(s.engine(from).openStream(to, '/echo'));
}

describe('visualizer: server', () => {
  let s: Swarm | undefined;
  let viz: Visualizer | undefined;
  const pages: PageClient[] = [];

  afterEach(async () => {
    for (const page of pages.splice(0)) await page.close();
    await viz?.close();
    viz = undefined;
    await s?.stopAll();
    s = undefined;
  });

  async function engines(names: string[]): Promise<{ inspector: ReturnType<typeof createInspector>; list: Engine[] }> {
    const inspector = createInspector();
    s = await swarm();
    const list: Engine[] = [];
    for (const name of names) {
      const engine = await s.add(name, { inspect: inspector.inspect });
      engine.handle('/echo', echo);
      list.push(engine);
    }
    for (const a of names) for (const b of names) if (a !== b) s.engine(a).addPeer(b, [s.network.address(b)]);
    return { inspector, list };
  }

  it('serves the self-contained page on 127.0.0.1 only, and refuses foreign hosts and origins', async () => {
    viz = await startVisualizer({ port: 0 });
    assert.match(viz.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const page = await get(viz.url);
    assert.equal(page.status, 200);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.match(String(page.headers['content-security-policy']), /default-src 'none'; script-src 'self'/);
    assert.match(page.body, /<script src="\/app.js" defer><\/script>/);
    for (const asset of ['app.js', 'style.css']) {
      const res = await get(`${viz.url}${asset}`);
      assert.equal(res.status, 200, asset);
      assert.doesNotMatch(res.body, /https?:\/\/(?!www\.w3\.org)/, `${asset} loads something from the network`);
    }
    assert.doesNotMatch(page.body, /https?:\/\//, 'the page loads something from the network');
    const graph = await get(`${viz.url}graph.svg`);
    assert.equal(graph.status, 200);
    assert.match(String(graph.headers['content-type']), /^image\/svg\+xml/);
    assert.ok(graph.body.includes('data-state="peerConnection.ready.idle"'));
    const labelled = await get(`${viz.url}graph.svg?labels=1`);
    assert.ok(labelled.body.includes('>after idleTimeout</text>'));
    assert.equal((await get(`${viz.url}nope`)).status, 404);
    assert.equal((await get(viz.url, { Host: `evil.example:${viz.port}` })).status, 403, 'DNS rebinding: foreign Host header');
    const foreign = new WebSocket(`ws://127.0.0.1:${viz.port}/ws`, { origin: 'http://evil.example' });
    const refused = await new Promise<string>((resolve) => {
      foreign.on('unexpected-response', (_req, res) => resolve(String(res.statusCode)));
      foreign.on('open', () => resolve('open'));
      foreign.on('error', () => {});
    });
    foreign.terminate();
    assert.equal(refused, '403');
    await assert.rejects(startVisualizer({ host: '0.0.0.0' }), (e: unknown) => e instanceof TypeError && (e as { code?: string }).code === 'ERR_INVALID_ARG_VALUE' && /options.host/.test(e.message));
    await assert.rejects(startVisualizer({ port: viz.port }), /EADDRINUSE/);
  });

  it('sends display names by peer id: given at start, and with an engine added later', async () => {
    const { inspector, list } = await engines(['a', 'b']);
    viz = await startVisualizer({ inspector, engines: [list[0]!], names: { a: 'alice' } });
    const page = await connectPage(viz.url);
    pages.push(page);
    await page.until(() => page.messages.some((m) => m.type === 'snapshot'), 'a snapshot');
    const hello = page.messages[0]!;
    assert.ok(hello.type === 'hello');
    assert.deepEqual(hello.names, { a: 'alice' });
    viz.addEngine(list[1]!, 'bob');
    await page.until(() => page.messages.some((m) => m.type === 'names'), 'the names');
    assert.deepEqual(page.messages.find((m) => m.type === 'names'), { type: 'names', names: { a: 'alice', b: 'bob' } });
    // The same name again sends nothing.
    const sent = viz.stats().messagesSent;
    viz.addEngine(list[1]!, 'bob');
    assert.equal(viz.stats().messagesSent, sent);
    assert.throws(() => viz!.addEngine(list[1]!, ''), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE', message: /^name must be a non-empty string/ });
    await assert.rejects(startVisualizer({ names: { a: 7 as unknown as string } }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: /^options\.names\["a"\] must be a non-empty string/ });
  });

  it('sends a snapshot of the peers and their states, then live updates, the selected timeline and metrics', async () => {
    const { inspector, list } = await engines(['a', 'b']);
    await open(s!, 'a', 'b');
    viz = await startVisualizer({ inspector, engines: list, flushIntervalMs: 40, metricsIntervalMs: 40 });
    const page = await connectPage(viz.url);
    pages.push(page);
    await page.until(() => page.messages.some((m) => m.type === 'snapshot'), 'a snapshot');
    assert.equal(page.messages[0]!.type, 'hello');
    const hello = page.messages[0]!;
    assert.ok(hello.type === 'hello' && hello.states.includes('forceClosed') && hello.colors.ready !== undefined);
    assert.deepEqual(
      [...page.peers.values()].map((p) => [p.key, p.state]).sort(),
      [
        ['a/b', 'ready'],
        ['b/a', 'ready'],
      ],
    );
    assert.equal(page.peers.get('a/b')!.details.streams, 1);
    const snapshot = page.messages.find((m) => m.type === 'snapshot')!;
    assert.ok(snapshot.type === 'snapshot' && snapshot.engines.map((e) => e.id).join() === 'a,b');

    // b's view of a: the listener's side, which waits in handshaking for the hello.
    page.select('b/a');
    await page.until(() => page.messages.some((m) => m.type === 'timeline'), 'the timeline');
    assert.ok(page.timeline.some((t) => t.state === 'handshaking') && page.timeline.some((t) => t.state === 'ready'));
    page.select('a/b');

    // Live: a third engine appears, and a's connection to b is force closed.
    const c = await s!.add('c', { inspect: inspector.inspect });
    c.handle('/echo', echo);
    c.addPeer('a', [s!.network.address('a')]);
    viz.addEngine(c);
    await open(s!, 'c', 'a');
    await page.until(() => page.peers.get('c/a')?.state === 'ready' && page.peers.get('a/c')?.state === 'ready', 'c and a ready');
    await s!.until(list[0]!.forceClose('b', 'from the test'));
    await page.until(() => page.peers.get('a/b')?.state === 'closed', 'a/b closed');
    assert.equal(page.peers.get('a/b')!.status, 'done');
    await page.until(() => page.timeline.some((t) => t.state === 'forceClosed' && t.event === 'FORCE_CLOSE'), 'forceClosed in the timeline');
    await page.until(() => page.timeline.some((t) => t.state === 'closed'), 'closed in the timeline');

    // Metrics: pushed when they change, per engine.
    await page.until(
      () => page.engines.find((e) => e.id === 'c')?.metrics !== null && page.engines.some((e) => e.id === 'c'),
      'metrics of the added engine',
    );
    const a = page.engines.find((e) => e.id === 'a')!;
    const metrics = a.metrics as { requests: { opened: number }; peers: Record<string, number> };
    assert.equal(metrics.requests.opened, 1);
    assert.equal(metrics.peers.ready, 1, 'a is ready with c only');
    assert.equal(a.status, 'running');

    // The JSON API says the same.
    const state = JSON.parse((await get(`${viz.url}api/state`)).body) as { peers: { key: string; state: string }[] };
    assert.equal(state.peers.find((p) => p.key === 'a/b')?.state, 'closed');
    const history = JSON.parse((await get(`${viz.url}api/history?key=a%2Fb`)).body) as { type: string }[];
    assert.ok(history.length > 10 && history.every((e) => e.type.startsWith('@xstate.')));
  });

  it('shows the peers of an engine created without the inspector, from its snapshot()', async () => {
    s = await swarm();
    const a = await s.add('a');
    const b = await s.add('b');
    b.handle('/echo', echo);
    a.addPeer('b', [s.network.address('b')]);
    await open(s, 'a', 'b');
    viz = await startVisualizer({ engines: [a, b], metricsIntervalMs: 30 });
    const page = await connectPage(viz.url);
    pages.push(page);
    await page.until(() => page.engines.length === 2, 'both engines');
    assert.deepEqual(page.engines.find((e) => e.id === 'a')?.peers, [{ peerId: 'b', state: 'ready' }]);
    assert.equal(page.peers.size, 0, 'nothing inspected');
    await s.until(a.forceClose('b'));
    await page.until(() => page.engines.find((e) => e.id === 'a')?.peers?.length === 0, 'a has no peer left');
  });

  it('lists the resumable streams of each engine with their session state, and suspension when the link drops', async () => {
    s = await swarm();
    const a = await s.add('a');
    const b = await s.add('b');
    b.handle('/hold', () => {});
    a.addPeer('b', [s.network.address('b')]);
    const stream = await s.until(a.openStream('b', '/hold', { resumable: true }));
    await s.advance(5);
    viz = await startVisualizer({ engines: [a, b], metricsIntervalMs: 30 });
    const page = await connectPage(viz.url);
    pages.push(page);
    const sessionsOf = (id: string) => page.engines.find((e) => e.id === id)?.sessions ?? [];
    await page.until(() => sessionsOf('a').length === 1 && sessionsOf('b').length === 1, 'a session on each side');
    assert.deepEqual(
      [sessionsOf('a')[0], sessionsOf('b')[0]].map((x) => [x!.sessionId, x!.role, x!.state]),
      [
        [stream.sessionId, 'opener', 'open'],
        [stream.sessionId, 'acceptor', 'open'],
      ],
    );
    s.network.partition(['a'], ['b']);
    s.network.drop('a', 'b');
    await s.advance(10);
    await page.until(() => sessionsOf('a')[0]?.state.startsWith('suspended') === true, 'the suspension on the page');
    const metrics = page.engines.find((e) => e.id === 'a')!.metrics as { resume: { suspended: number; live: number } };
    assert.equal(metrics.resume.live, 1);
    assert.equal(metrics.resume.suspended, 1);
    s.network.heal();
    stream.abort('done');
    await page.until(() => sessionsOf('a').length === 0, 'the session gone from the page');
  });

  it('close() closes every socket and the server and leaves no handle behind', async () => {
    const before = tcpHandles();
    viz = await startVisualizer();
    const one = await connectPage(viz.url);
    const two = await connectPage(viz.url);
    const remote = new WebSocket(`ws://127.0.0.1:${viz.port}/inspect`);
    await new Promise((resolve) => remote.once('open', resolve));
    await get(viz.url, { Connection: 'keep-alive' });
    await poll(() => viz!.stats().pages === 2 && viz!.stats().inspectors === 1, 'three sockets');
    const codes = [one, two].map((p) => new Promise<number>((resolve) => p.ws.once('close', (code) => resolve(code))));
    const remoteClosed = new Promise<number>((resolve) => remote.once('close', (code) => resolve(code)));
    const port = viz.port;
    await viz.close();
    viz = undefined;
    assert.deepEqual(await Promise.all(codes), [1001, 1001]);
    assert.equal(await remoteClosed, 1001);
    // Let the clients' side of the sockets finish closing too.
    await poll(() => tcpHandles() <= before, `TCP handles back to ${before} (now ${tcpHandles()})`, 2000);
    const error = await new Promise<string>((resolve) => {
      const socket = tcpConnect(port, '127.0.0.1');
      socket.on('connect', () => {
        socket.destroy();
        resolve('connected');
      });
      socket.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    assert.equal(error, 'ECONNREFUSED');
  });

  it('with 200+ peer machines, a burst of thousands of events reaches the page as a few batched messages', async function () {
    this.timeout(30_000);
    const names = Array.from({ length: 15 }, (_, i) => `n${i + 1}`);
    const { inspector, list } = await engines(names);
    const flushIntervalMs = 100;
    viz = await startVisualizer({ inspector, engines: list, flushIntervalMs, metricsIntervalMs: 60_000 });
    const page = await connectPage(viz.url);
    pages.push(page);
    await page.until(() => page.messages.some((m) => m.type === 'snapshot'), 'the first snapshot');
    const messagesBefore = page.messages.length;
    const eventsBefore = inspector.stats().received;
    const started = Date.now();
    const opens: Promise<unknown>[] = [];
    for (let i = 0; i < names.length; i++) {
      for (let j = i + 1; j < names.length; j++) opens.push(s!.engine(names[i]!).openStream(names[j]!, '/echo'));
    }
    await s!.until(Promise.all(opens));
    const burstMs = Date.now() - started;
    const machines = names.length * (names.length - 1);
    await page.until(
      () => page.peers.size === machines && [...page.peers.values()].every((p) => p.state === 'ready'),
      `all ${machines} machines ready on the page`,
      5000,
    );
    const events = inspector.stats().received - eventsBefore;
    const updates = page.messages.slice(messagesBefore).filter((m) => m.type === 'update');
    const elapsed = Date.now() - started;
    assert.ok(machines >= 200);
    assert.ok(events >= 2000, `only ${events} inspection events`);
    // One message per flush interval at most (plus the one in flight when the burst ended).
    assert.ok(updates.length <= Math.ceil(elapsed / flushIntervalMs) + 2, `${updates.length} updates in ${elapsed} ms (burst ${burstMs} ms)`);
    assert.ok(updates.length <= events / 100, `${updates.length} messages for ${events} events`);
    // Each update carries each peer once, at its latest state.
    for (const update of updates) {
      if (update.type !== 'update') continue;
      assert.equal(new Set(update.peers.map((p) => p.key)).size, update.peers.length);
    }
    for (const engine of list) {
      for (const peer of engine.snapshot().peers) assert.equal(page.peers.get(`${engine.peerId}/${peer.peerId}`)?.state, peer.state);
    }
  });

  it('accepts @statelyai/inspect’s WebSocket inspector from another process on /inspect', async () => {
    viz = await startVisualizer();
    const stately = createWebSocketInspector({ url: `ws://127.0.0.1:${viz.port}/inspect` });
    try {
      s = await swarm();
      const forward = (event: InspectionEvent): void => stately.inspect.next?.(event);
      const a = await s.add('a', { inspect: forward });
      const b = await s.add('b', { inspect: forward });
      b.handle('/echo', echo);
      a.addPeer('b', [s.network.address('b')]);
      await open(s, 'a', 'b');
      await poll(
        () => ['a/b', 'b/a'].every((key) => viz!.inspector.peer(key)?.state === 'ready'),
        'remote peers ready in the inspector',
      );
      assert.ok(viz.inspector.peer('a/b')!.sessionId.startsWith('remote-1/'));
      assert.equal(viz.stats().inspectors, 1);
    } finally {
      stately.stop();
    }
  });
});
