import assert from 'node:assert/strict';
import {
  MemoryNetwork,
  TransportError,
  VirtualClock,
  type CloseInfo,
  type Connection,
  type ControlMessage,
  type IncomingStream,
  type MemoryAdapter,
  type MemoryNetworkOptions,
  type Stream,
} from '../../adapters/memory/index.js';
import { adapterCompliance, track } from './compliance.js';

adapterCompliance('memory network', async () => {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock, latencyMs: 2 });
  const a = net.node('alice');
  const b = net.node('bob');
  net.kill('ghost');
  return {
    a,
    b,
    addressOfA: net.address('alice'),
    addressOfB: net.address('bob'),
    deadAddress: net.address('ghost'),
    advance: (ms) => clock.advance(ms),
    cleanup: async () => {
      await a.close();
      await b.close();
      await clock.advance(10);
      assert.equal(net.connectionCount(), 0);
      assert.equal(net.streamCount(), 0);
      assert.equal(clock.pending(), 0);
    },
  };
});

// ---------------------------------------------------------------------------
// Helpers

interface Recorder {
  readonly controls: ControlMessage[];
  readonly streams: IncomingStream[];
  readonly closes: CloseInfo[];
  /** Every event, as text, in arrival order. */
  readonly log: string[];
}

function record(connection: Connection, onStream?: (stream: IncomingStream) => void): Recorder {
  const r: Recorder = { controls: [], streams: [], closes: [], log: [] };
  connection.setHandlers({
    onControl: (message) => {
      r.controls.push(message);
      r.log.push(`control:${JSON.stringify(message)}`);
    },
    onStream: (stream) => {
      r.streams.push(stream);
      r.log.push(`stream:${stream.protocol}`);
      onStream?.(stream);
    },
    onClose: (info) => {
      r.closes.push(info);
      r.log.push(`close:${JSON.stringify(info)}`);
    },
  });
  return r;
}

async function readAll(readable: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const reader = readable.getReader();
  const parts: number[] = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(...value);
  }
  return Uint8Array.from(parts);
}

function bytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed) % 256;
  return out;
}

function kindOf(error: unknown): string {
  assert.ok(error instanceof TransportError, `expected a TransportError, got ${String(error)}`);
  return error.kind;
}

class World {
  readonly clock = new VirtualClock();
  readonly errors: unknown[] = [];
  readonly net: MemoryNetwork;
  readonly alice: MemoryAdapter;
  readonly bob: MemoryAdapter;
  /** Connections bob accepted. */
  readonly atBob: Connection[] = [];
  readonly #controllers: AbortController[] = [];

  constructor(options: Partial<MemoryNetworkOptions> = {}) {
    this.net = new MemoryNetwork({ clock: this.clock, latencyMs: 5, onError: (e) => this.errors.push(e), ...options });
    this.alice = this.net.node('alice');
    this.bob = this.net.node('bob');
  }

  signal(): AbortSignal {
    return this.controller().signal;
  }

  controller(): AbortController {
    const controller = new AbortController();
    this.#controllers.push(controller);
    return controller;
  }

  async listenBob(): Promise<void> {
    await this.bob.listen((c) => this.atBob.push(c));
  }

  /** alice dials bob (bob listening) and both sides are returned, after one round trip. */
  async connect(): Promise<{ out: Connection; inb: Connection }> {
    if (!this.bob.isListening) await this.listenBob();
    const before = this.atBob.length;
    const dialing = track(this.alice.dial('bob', this.net.address('bob'), { signal: this.signal() }));
    await this.clock.advance(10);
    assert.equal(dialing.error, undefined);
    assert.ok(dialing.settled, 'dial should resolve after one round trip');
    assert.equal(this.atBob.length, before + 1);
    return { out: dialing.value!, inb: this.atBob[before]! };
  }

  /** Opens a stream from `out`; bob's side accepts through `accepted`. */
  async openAccepted(out: Connection, inb: Connection): Promise<{ mine: Stream; theirs: Stream; remote: Recorder }> {
    const served: Stream[] = [];
    const remote = record(inb, (incoming) => served.push(incoming.accept()));
    const opening = track(out.openStream('proto/1', { signal: this.signal() }));
    await this.clock.advance(10);
    assert.equal(opening.error, undefined);
    assert.ok(opening.settled);
    assert.equal(served.length, 1);
    return { mine: opening.value!, theirs: served[0]!, remote };
  }

  dispose(): void {
    for (const controller of this.#controllers) controller.abort();
  }
}

// ---------------------------------------------------------------------------

describe('MemoryNetwork', function () {
  let w: World;

  beforeEach(function () {
    w = new World();
  });

  afterEach(function () {
    w.dispose();
    assert.deepEqual(w.errors, []);
  });

  describe('nodes and dialing', function () {
    it('node() returns the same adapter; addresses are memory://<peerId>', function () {
      assert.equal(w.net.node('alice'), w.alice);
      assert.equal(w.alice.localPeerId, 'alice');
      assert.equal(w.net.address('bob'), 'memory://bob');
    });

    it('a dial takes exactly one round trip; the listener sees it after one latency', async function () {
      await w.listenBob();
      const dialing = track(w.alice.dial('bob', 'memory://bob', { signal: w.signal() }));
      await w.clock.advance(4);
      assert.equal(w.atBob.length, 0);
      await w.clock.advance(1);
      assert.equal(w.atBob.length, 1);
      await w.clock.advance(4);
      assert.equal(dialing.settled, false);
      await w.clock.advance(1);
      assert.equal(dialing.settled, true);
      const out = dialing.value!;
      const inb = w.atBob[0]!;
      assert.equal(out.id, inb.id);
      assert.equal(out.direction, 'outbound');
      assert.equal(inb.direction, 'inbound');
      assert.equal(w.net.connectionCount(), 1);
      assert.deepEqual(w.net.stats(), {
        dials: 1,
        dialsRefused: 0,
        connectionsOpened: 1,
        connectionsClosed: 0,
        streamsOpened: 0,
        streamsRejected: 0,
        controlDelivered: 0,
        dropped: 0,
        retransmitted: 0,
      });
    });

    it('connection ids are unique per adapter', async function () {
      const one = await w.connect();
      const two = await w.connect();
      assert.notEqual(one.out.id, two.out.id);
      assert.notEqual(one.inb.id, two.inb.id);
    });

    it('refuses after the round trip when nothing listens (unknown node, or not listening)', async function () {
      const toUnknown = track(w.alice.dial('carol', 'memory://carol', { signal: w.signal() }));
      const toIdle = track(w.alice.dial('bob', 'memory://bob', { signal: w.signal() }));
      await w.clock.advance(9);
      assert.equal(toUnknown.settled, false);
      await w.clock.advance(1);
      assert.equal(kindOf(toUnknown.error), 'refused');
      assert.equal(kindOf(toIdle.error), 'refused');
      assert.equal(w.net.stats().dialsRefused, 2);
      assert.equal(w.clock.pending(), 0);
    });

    it('refuses a dial to self', async function () {
      await w.alice.listen(() => assert.fail('no connection to self'));
      const dialing = track(w.alice.dial('alice', 'memory://alice', { signal: w.signal() }));
      await w.clock.advance(10);
      assert.equal(kindOf(dialing.error), 'refused');
      assert.equal(w.net.connectionCount(), 0);
    });

    it('identity mismatch: rejects after the round trip and the remote never sees a connection', async function () {
      await w.listenBob();
      const dialing = track(w.alice.dial('mallory', 'memory://bob', { signal: w.signal() }));
      await w.clock.advance(10);
      assert.equal(kindOf(dialing.error), 'identity-mismatch');
      assert.equal(w.atBob.length, 0);
      assert.equal(w.net.connectionCount(), 0);
      assert.equal(w.net.stats().connectionsOpened, 0);
    });

    it('rejects a non-memory address with unreachable, and an aborted signal with aborted', async function () {
      const bad = track(w.alice.dial('bob', 'quic://bob', { signal: w.signal() }));
      const controller = w.controller();
      controller.abort();
      const aborted = track(w.alice.dial('bob', 'memory://bob', { signal: controller.signal }));
      await w.clock.advance(0);
      assert.equal(kindOf(bad.error), 'unreachable');
      assert.equal(kindOf(aborted.error), 'aborted');
    });

    it('a dial aborted after the listener saw the connection closes it on both sides', async function () {
      await w.listenBob();
      const controller = w.controller();
      const dialing = track(w.alice.dial('bob', 'memory://bob', { signal: controller.signal }));
      await w.clock.advance(6);
      assert.equal(w.atBob.length, 1);
      const remote = record(w.atBob[0]!);
      controller.abort();
      await w.clock.advance(0);
      assert.equal(kindOf(dialing.error), 'aborted');
      await w.clock.advance(20);
      assert.equal(remote.closes.length, 1);
      assert.equal(remote.closes[0]!.local, false);
      assert.equal(remote.closes[0]!.error, true);
      assert.equal(w.net.connectionCount(), 0);
      assert.equal(w.alice.connectionCount, 0);
      assert.equal(w.bob.connectionCount, 0);
      assert.equal(w.clock.pending(), 0);
    });

    it('a dial aborted before the listener saw it never creates a connection', async function () {
      await w.listenBob();
      const controller = w.controller();
      const dialing = track(w.alice.dial('bob', 'memory://bob', { signal: controller.signal }));
      await w.clock.advance(2);
      controller.abort();
      await w.clock.advance(0);
      assert.equal(kindOf(dialing.error), 'aborted');
      assert.equal(w.clock.pending(), 0);
      await w.clock.advance(20);
      assert.equal(w.atBob.length, 0);
      assert.equal(w.net.stats().connectionsOpened, 0);
    });

    it('adapter.close() fails pending dials, closes connections and tells remotes; node() then gives a fresh adapter', async function () {
      const { out, inb } = await w.connect();
      const local = record(out);
      const remote = record(inb);
      await w.net.node('carol').listen(() => {});
      w.net.stallDials('carol');
      const pending = track(w.alice.dial('carol', 'memory://carol', { signal: w.signal() }));
      await w.alice.close();
      await w.clock.advance(0);
      assert.equal(kindOf(pending.error), 'closed');
      assert.deepEqual(local.closes, [{ local: true, code: undefined, reason: 'adapter closed', error: false }]);
      await w.clock.advance(5);
      assert.deepEqual(remote.closes, [{ local: false, code: undefined, reason: 'adapter closed', error: false }]);
      const again = track(w.alice.dial('bob', 'memory://bob', { signal: w.signal() }));
      await w.clock.advance(0);
      assert.equal(kindOf(again.error), 'closed');
      const fresh = w.net.node('alice');
      assert.notEqual(fresh, w.alice);
      const redial = track(fresh.dial('bob', 'memory://bob', { signal: w.signal() }));
      await w.clock.advance(10);
      assert.equal(redial.error, undefined);
      assert.equal(w.net.connectionCount(), 1);
    });
  });

  describe('connections', function () {
    it('setHandlers delivers events buffered before it, in order', async function () {
      const { out, inb } = await w.connect();
      out.sendControl({ type: 'hello', version: 1, peerId: 'alice' });
      out.sendControl({ type: 'ping', seq: 1 });
      void out.openStream('late/1', { signal: w.signal() }).catch(() => {});
      out.sendControl({ type: 'ping', seq: 2 });
      out.close(2, 'drain');
      await w.clock.advance(20);
      const remote = record(inb);
      assert.deepEqual(remote.log, [
        'control:{"type":"hello","version":1,"peerId":"alice"}',
        'control:{"type":"ping","seq":1}',
        'stream:late/1',
        'control:{"type":"ping","seq":2}',
        'close:{"local":false,"code":2,"reason":"drain","error":false}',
      ]);
    });

    it('control messages arrive after latency, in order, even when latency drops mid-flight', async function () {
      const { out, inb } = await w.connect();
      const remote = record(inb);
      out.sendControl({ type: 'ping', seq: 1 });
      w.net.setLatency(1);
      out.sendControl({ type: 'ping', seq: 2 });
      await w.clock.advance(4);
      assert.equal(remote.controls.length, 0);
      await w.clock.advance(1);
      assert.deepEqual(remote.controls, [
        { type: 'ping', seq: 1 },
        { type: 'ping', seq: 2 },
      ]);
      assert.equal(w.net.stats().controlDelivered, 2);
    });

    it('control messages are copied', async function () {
      const { out, inb } = await w.connect();
      const remote = record(inb);
      const message = { type: 'ping' as const, seq: 1 };
      out.sendControl(message);
      message.seq = 99;
      await w.clock.advance(5);
      assert.deepEqual(remote.controls, [{ type: 'ping', seq: 1 }]);
    });

    it('setLinkLatency changes one link only', async function () {
      const carol = w.net.node('carol');
      const atCarol: Connection[] = [];
      await carol.listen((c) => atCarol.push(c));
      await w.listenBob();
      w.net.setLinkLatency('alice', 'carol', 50);
      const toBob = track(w.alice.dial('bob', 'memory://bob', { signal: w.signal() }));
      const toCarol = track(w.alice.dial('carol', 'memory://carol', { signal: w.signal() }));
      await w.clock.advance(10);
      assert.ok(toBob.settled);
      assert.equal(toCarol.settled, false);
      await w.clock.advance(89);
      assert.equal(toCarol.settled, false);
      await w.clock.advance(1);
      assert.ok(toCarol.settled);
      w.net.setLinkLatency('carol', 'alice', null);
      const { out, inb } = { out: toCarol.value!, inb: atCarol[0]! };
      const remote = record(inb);
      out.sendControl({ type: 'goaway' });
      await w.clock.advance(5);
      assert.equal(remote.controls.length, 1);
    });

    it('close(): local onClose at once, remote after latency, each exactly once; then inert', async function () {
      const { out, inb } = await w.connect();
      const local = record(out);
      const remote = record(inb);
      out.close(7, 'bye');
      out.close(8, 'again');
      await Promise.resolve();
      assert.deepEqual(local.closes, [{ local: true, code: 7, reason: 'bye', error: false }]);
      assert.equal(remote.closes.length, 0);
      await w.clock.advance(5);
      assert.deepEqual(remote.closes, [{ local: false, code: 7, reason: 'bye', error: false }]);

      out.sendControl({ type: 'ping', seq: 1 });
      inb.sendControl({ type: 'ping', seq: 2 });
      const opening = track(out.openStream('x/1', { signal: w.signal() }));
      await w.clock.advance(20);
      assert.equal(kindOf(opening.error), 'closed');
      assert.equal(remote.controls.length, 0);
      assert.equal(local.controls.length, 0);
      assert.equal(local.closes.length, 1);
      assert.equal(remote.closes.length, 1);
      assert.equal(w.net.connectionCount(), 0);
      assert.equal(w.net.stats().connectionsClosed, 1);
      assert.equal(w.clock.pending(), 0);
    });

    it('simultaneous close on both sides: each side gets exactly one local onClose', async function () {
      const { out, inb } = await w.connect();
      const local = record(out);
      const remote = record(inb);
      out.close(1, 'a');
      inb.close(2, 'b');
      assert.equal(w.clock.pending(), 0, 'notices to a closed side are not even sent');
      await w.clock.advance(20);
      assert.deepEqual(local.closes, [{ local: true, code: 1, reason: 'a', error: false }]);
      assert.deepEqual(remote.closes, [{ local: true, code: 2, reason: 'b', error: false }]);
      assert.equal(w.net.connectionCount(), 0);
      assert.equal(w.clock.pending(), 0);
    });

    it('closing ends every stream on both sides', async function () {
      const { out, inb } = await w.connect();
      record(out);
      const { mine, theirs } = await w.openAccepted(out, inb);
      const pendingRemote = track(out.openStream('never-answered/1', { signal: w.signal() }));
      const reads = [track(mine.readable.getReader().read()), track(theirs.readable.getReader().read())];
      const writerMine = mine.writable.getWriter();
      const closedMine = track(mine.closed);
      const closedTheirs = track(theirs.closed);
      out.close(3, 'done');
      await w.clock.advance(0);
      assert.equal(kindOf(reads[0]!.error), 'closed');
      assert.equal(kindOf(pendingRemote.error), 'closed');
      assert.ok(closedMine.settled);
      assert.equal(closedTheirs.settled, false);
      const late = track(writerMine.write(bytes(3)));
      await w.clock.advance(5);
      assert.ok(late.error instanceof TransportError);
      assert.equal(kindOf(reads[1]!.error), 'closed');
      assert.equal((reads[1]!.error as TransportError).closeCode, 3);
      assert.ok(closedTheirs.settled);
      assert.equal(w.net.streamCount(), 0);
      await w.clock.advance(10);
      assert.equal(w.clock.pending(), 0);
    });

    it('a throwing handler is reported through onError and does not stop delivery', async function () {
      const { out, inb } = await w.connect();
      let seen = 0;
      inb.setHandlers({
        onControl: () => {
          seen++;
          throw new Error('handler bug');
        },
        onStream: () => {},
        onClose: () => {
          throw new Error('close bug');
        },
      });
      out.sendControl({ type: 'ping', seq: 1 });
      out.sendControl({ type: 'ping', seq: 2 });
      out.close(1, 'x');
      await w.clock.advance(10);
      assert.equal(seen, 2);
      assert.deepEqual(
        w.errors.map((e) => (e as Error).message),
        ['handler bug', 'handler bug', 'close bug'],
      );
      w.errors.length = 0;
    });

    it('a throwing onConnection is reported and the connection still works', async function () {
      await w.bob.listen((c) => {
        w.atBob.push(c);
        throw new Error('listener bug');
      });
      const { out, inb } = await w.connect();
      const remote = record(inb);
      out.sendControl({ type: 'goaway' });
      await w.clock.advance(5);
      assert.equal(remote.controls.length, 1);
      assert.equal(w.errors.length, 1);
      w.errors.length = 0;
    });

    it('a side that never installs handlers fails instead of buffering without bound', async function () {
      const small = new World({ maxBufferedEvents: 3 });
      const { out } = await small.connect();
      const local = record(out);
      for (let seq = 0; seq < 5; seq++) out.sendControl({ type: 'ping', seq });
      await small.clock.advance(10);
      assert.equal(local.closes.length, 1);
      assert.equal(local.closes[0]!.error, true);
      assert.equal(small.net.connectionCount(), 0);
      small.dispose();
    });
  });

  describe('streams', function () {
    it('bytes arrive after latency, in order, copied', async function () {
      const { out, inb } = await w.connect();
      const { mine, theirs, remote } = await w.openAccepted(out, inb);
      assert.equal(remote.streams[0]!.protocol, 'proto/1');
      assert.equal(w.net.stats().streamsOpened, 1);
      const writer = mine.writable.getWriter();
      const reader = theirs.readable.getReader();
      const chunk = bytes(10);
      await writer.write(chunk);
      chunk.fill(0);
      await writer.write(bytes(5, 9));
      const first = track(reader.read());
      await w.clock.advance(4);
      assert.equal(first.settled, false);
      await w.clock.advance(1);
      assert.deepEqual(first.value, { done: false, value: bytes(10) });
      const second = await reader.read();
      assert.deepEqual(second.value, bytes(5, 9));
    });

    it('close() is graceful: the remote reads pending data, then the end', async function () {
      const { out, inb } = await w.connect();
      const { mine, theirs } = await w.openAccepted(out, inb);
      const writer = mine.writable.getWriter();
      void writer.write(bytes(100)).catch(() => {});
      void writer.write(bytes(50, 3)).catch(() => {});
      mine.close();
      const received = track(readAll(theirs.readable));
      await w.clock.advance(10);
      assert.deepEqual(received.value, Uint8Array.from([...bytes(100), ...bytes(50, 3)]));
      // close() ended alice's read direction too: bob's writes now fail, and both ends are done.
      const reply = track(theirs.writable.getWriter().write(bytes(1)));
      const closed = track(Promise.all([mine.closed, theirs.closed]));
      await w.clock.advance(0);
      assert.equal(kindOf(reply.error), 'closed');
      assert.ok(closed.settled);
      assert.equal(w.net.streamCount(), 0);
      assert.equal(w.clock.pending(), 0);
    });

    it('writable.close() half-closes: the other direction keeps working (request/response)', async function () {
      const { out, inb } = await w.connect();
      const { mine, theirs } = await w.openAccepted(out, inb);
      const writer = mine.writable.getWriter();
      await writer.write(bytes(4));
      await writer.close();
      const request = track(readAll(theirs.readable));
      await w.clock.advance(5);
      assert.deepEqual(request.value, bytes(4));
      const reply = theirs.writable.getWriter();
      await reply.write(bytes(6, 2));
      await reply.close();
      const response = track(readAll(mine.readable));
      await w.clock.advance(5);
      assert.deepEqual(response.value, bytes(6, 2));
      const both = track(Promise.all([mine.closed, theirs.closed]));
      await w.clock.advance(0);
      assert.ok(both.settled);
      assert.equal(w.net.streamCount(), 0);
      assert.equal(w.clock.pending(), 0);
    });

    it('abort(reason) errors both sides; closed resolves on both', async function () {
      const { out, inb } = await w.connect();
      const { mine, theirs } = await w.openAccepted(out, inb);
      const theirRead = track(theirs.readable.getReader().read());
      const myRead = track(mine.readable.getReader().read());
      mine.abort('changed my mind');
      await w.clock.advance(0);
      assert.equal(kindOf(myRead.error), 'aborted');
      assert.equal(theirRead.settled, false);
      await w.clock.advance(5);
      assert.equal(kindOf(theirRead.error), 'aborted');
      assert.equal((theirRead.error as Error).message, 'changed my mind');
      const write = track(theirs.writable.getWriter().write(bytes(1)));
      await w.clock.advance(0);
      assert.equal(kindOf(write.error), 'aborted');
      const closed = track(Promise.all([mine.closed, theirs.closed]));
      await w.clock.advance(0);
      assert.ok(closed.settled);
      assert.equal(w.net.streamCount(), 0);
    });

    it('a reader that cancels makes the remote writer fail', async function () {
      const { out, inb } = await w.connect();
      const { mine, theirs } = await w.openAccepted(out, inb);
      await theirs.readable.cancel('not interested');
      await w.clock.advance(5);
      const write = track(mine.writable.getWriter().write(bytes(1)));
      await w.clock.advance(0);
      assert.equal(kindOf(write.error), 'closed');
    });

    it('backpressure is bounded: 64 KiB undelivered+unread, then write() waits for the reader', async function () {
      const { out, inb } = await w.connect();
      const { mine, theirs } = await w.openAccepted(out, inb);
      const writer = mine.writable.getWriter();
      const window = 64 * 1024;
      const first = track(writer.write(bytes(window)));
      await w.clock.advance(0);
      assert.ok(first.settled, 'the first 64 KiB fit the window');
      const second = track(writer.write(bytes(1000, 5)));
      await w.clock.advance(10_000);
      assert.equal(second.settled, false, 'no room until the reader reads');
      assert.equal(writer.desiredSize, 0);
      assert.equal(w.clock.pending(), 0, 'nothing is in flight while blocked');

      const reader = theirs.readable.getReader();
      const got = await reader.read();
      assert.equal(got.value!.length, window);
      await w.clock.advance(0);
      assert.ok(second.settled);
      await w.clock.advance(5);
      const rest = await reader.read();
      assert.deepEqual(rest.value, bytes(1000, 5));
    });

    it('a chunk larger than the window is split and delivered intact', async function () {
      const small = new World({ streamWindowBytes: 1000 });
      const { out, inb } = await small.connect();
      const { mine, theirs } = await small.openAccepted(out, inb);
      const data = bytes(4500, 7);
      const writer = mine.writable.getWriter();
      const writing = track(writer.write(data).then(() => writer.close()));
      const reading = track(readAll(theirs.readable));
      await small.clock.advance(100);
      assert.ok(writing.settled);
      assert.deepEqual(reading.value, data);
      small.dispose();
    });

    it('stream-limit: a side may have maxStreamsPerConnection open streams', async function () {
      const small = new World({ maxStreamsPerConnection: 2 });
      const { out, inb } = await small.connect();
      record(inb);
      const opens = [0, 1, 2].map(() => track(out.openStream('p/1', { signal: small.signal() })));
      await small.clock.advance(0);
      assert.equal(kindOf(opens[2]!.error), 'stream-limit');
      assert.equal(opens[0]!.settled, false);
      small.dispose();
    });

    it('abort before the ACK rejects at once; a later accept leaks nothing', async function () {
      w.net.ackFault('bob', { delayMs: 50 });
      const { out, inb } = await w.connect();
      const served: Stream[] = [];
      record(inb, (incoming) => served.push(incoming.accept()));
      const controller = w.controller();
      const opening = track(out.openStream('slow/1', { signal: controller.signal }));
      await w.clock.advance(5);
      assert.equal(served.length, 1, 'bob accepted');
      controller.abort();
      await Promise.resolve();
      await Promise.resolve();
      assert.equal(kindOf(opening.error), 'aborted');
      const closedThere = track(served[0]!.closed);
      await w.clock.advance(5);
      assert.ok(closedThere.settled, 'bob\'s stream was aborted');
      await w.clock.advance(100);
      assert.equal(w.net.streamCount(), 0);
      assert.equal(w.clock.pending(), 0);
    });

    it('abort before the remote answers: accepting afterwards yields a dead stream, no ACK', async function () {
      const { out, inb } = await w.connect();
      const offered: IncomingStream[] = [];
      record(inb, (incoming) => offered.push(incoming));
      const controller = w.controller();
      const opening = track(out.openStream('p/1', { signal: controller.signal }));
      await w.clock.advance(5);
      controller.abort();
      await w.clock.advance(5);
      assert.equal(kindOf(opening.error), 'aborted');
      const late = offered[0]!.accept();
      const closed = track(late.closed);
      const read = track(late.readable.getReader().read());
      await w.clock.advance(0);
      assert.ok(closed.settled);
      assert.equal(kindOf(read.error), 'aborted');
      assert.equal(w.net.streamCount(), 0);
      assert.equal(w.net.stats().streamsOpened, 0);
      assert.equal(w.clock.pending(), 0);
    });
  });

  describe('faults', function () {
    it('refuseDials: dials are refused until switched off', async function () {
      await w.listenBob();
      w.net.refuseDials('bob');
      const refused = track(w.alice.dial('bob', 'memory://bob', { signal: w.signal() }));
      await w.clock.advance(10);
      assert.equal(kindOf(refused.error), 'refused');
      assert.equal(w.atBob.length, 0);
      w.net.refuseDials('bob', false);
      await w.connect();
      assert.equal(w.net.stats().dialsRefused, 1);
    });

    it('stallDials: a dial never completes until its signal aborts', async function () {
      await w.listenBob();
      w.net.stallDials('bob');
      const controller = w.controller();
      const dialing = track(w.alice.dial('bob', 'memory://bob', { signal: controller.signal }));
      await w.clock.advance(60_000);
      assert.equal(dialing.settled, false);
      assert.equal(w.clock.pending(), 0);
      controller.abort();
      await w.clock.advance(0);
      assert.equal(kindOf(dialing.error), 'aborted');
      assert.equal(w.atBob.length, 0);
      w.net.stallDials('bob', false);
      await w.connect();
    });

    it('stallHandshake: the connection comes up but control messages both ways are dropped', async function () {
      w.net.stallHandshake('bob');
      const { out, inb } = await w.connect();
      const local = record(out);
      const remote = record(inb);
      out.sendControl({ type: 'hello', version: 1, peerId: 'alice' });
      inb.sendControl({ type: 'hello', version: 1, peerId: 'bob' });
      await w.clock.advance(50);
      assert.equal(local.controls.length, 0);
      assert.equal(remote.controls.length, 0);
      assert.equal(w.net.stats().dropped, 2);
      assert.equal(w.net.connectionCount(), 1);
      w.net.stallHandshake('bob', false);
      out.sendControl({ type: 'ping', seq: 1 });
      await w.clock.advance(5);
      assert.deepEqual(remote.controls, [{ type: 'ping', seq: 1 }]);
      out.close(9, 'handshake timed out');
      await w.clock.advance(5);
      assert.equal(remote.closes[0]!.code, 9, 'close notices are not control messages');
    });

    it('drop(a, b): both sides fail now with error, streams end with an error', async function () {
      const { out, inb } = await w.connect();
      const { mine, theirs, remote } = await w.openAccepted(out, inb);
      const local = record(out);
      out.sendControl({ type: 'ping', seq: 1 });
      const reads = [track(mine.readable.getReader().read()), track(theirs.readable.getReader().read())];
      w.net.drop('alice', 'bob');
      await w.clock.advance(0);
      const lost: CloseInfo = { local: false, code: undefined, reason: 'connection lost', error: true };
      assert.deepEqual(local.closes, [lost]);
      assert.deepEqual(remote.closes, [lost]);
      assert.equal(kindOf(reads[0]!.error), 'closed');
      assert.equal(kindOf(reads[1]!.error), 'closed');
      await w.clock.advance(20);
      assert.equal(remote.controls.length, 0, 'nothing in flight arrives');
      assert.equal(local.closes.length, 1);
      assert.equal(remote.closes.length, 1);
      assert.equal(w.net.connectionCount(), 0);
      assert.equal(w.net.streamCount(), 0);
      assert.equal(w.clock.pending(), 0);
    });

    it('drop() while the dial answer is in flight fails the dial with closed', async function () {
      await w.listenBob();
      const dialing = track(w.alice.dial('bob', 'memory://bob', { signal: w.signal() }));
      await w.clock.advance(6);
      assert.equal(w.atBob.length, 1);
      const remote = record(w.atBob[0]!);
      w.net.drop('alice');
      await w.clock.advance(0);
      assert.equal(kindOf(dialing.error), 'closed');
      assert.equal(remote.closes.length, 1);
      assert.equal(remote.closes[0]!.error, true);
      assert.equal(w.net.connectionCount(), 0);
      assert.equal(w.clock.pending(), 0);
    });

    it('drop(a) drops every connection of a and no other', async function () {
      const carol = w.net.node('carol');
      const atCarol: Connection[] = [];
      await carol.listen((c) => atCarol.push(c));
      await w.listenBob();
      const one = track(w.alice.dial('bob', 'memory://bob', { signal: w.signal() }));
      const two = track(w.alice.dial('carol', 'memory://carol', { signal: w.signal() }));
      const three = track(w.bob.dial('carol', 'memory://carol', { signal: w.signal() }));
      await w.clock.advance(10);
      const closes = [one, two, three].map((t) => record(t.value!));
      w.net.drop('alice');
      await w.clock.advance(10);
      assert.deepEqual(
        closes.map((r) => r.closes.length),
        [1, 1, 0],
      );
      assert.equal(w.net.connectionCount(), 1);
    });

    it('partition/heal: deliveries across are held and arrive in order after the heal; connections stay up; a dial across completes then', async function () {
      const carol = w.net.node('carol');
      await carol.listen(() => {});
      const { out, inb } = await w.connect();
      const local = record(out);
      const remote = record(inb);
      out.sendControl({ type: 'ping', seq: 1 }); // in flight when the partition starts
      w.net.partition(['alice'], ['bob']);
      out.sendControl({ type: 'ping', seq: 2 });
      inb.sendControl({ type: 'ping', seq: 3 });
      const across = track(w.alice.dial('bob', 'memory://bob', { signal: w.signal() }));
      const sameSide = track(w.alice.dial('carol', 'memory://carol', { signal: w.signal() }));
      await w.clock.advance(100);
      assert.equal(remote.controls.length, 0);
      assert.equal(local.controls.length, 0);
      assert.equal(local.closes.length + remote.closes.length, 0, 'connections stay up');
      assert.equal(w.net.connectionCount(), 2);
      assert.equal(across.settled, false);
      assert.equal(sameSide.error, undefined);
      assert.ok(sameSide.settled);
      assert.equal(w.net.stats().dropped, 0, 'nothing is lost for good');

      w.net.heal();
      // Sent after the heal but due before the held ones: it still arrives after them.
      out.sendControl({ type: 'ping', seq: 4 });
      await w.clock.advance(4);
      assert.equal(remote.controls.length, 0, 'held messages arrive one latency after the heal');
      await w.clock.advance(1);
      assert.deepEqual(remote.controls, [
        { type: 'ping', seq: 1 },
        { type: 'ping', seq: 2 },
        { type: 'ping', seq: 4 },
      ]);
      assert.deepEqual(local.controls, [{ type: 'ping', seq: 3 }]);
      await w.clock.advance(10);
      assert.ok(across.settled, 'the held dial packet went through after the heal');
      assert.equal(across.error, undefined);
      assert.equal(w.net.stats().retransmitted, 4);
    });

    it('partition: stream data and close notices wait for the heal; a dial abandoned meanwhile takes its packet with it', async function () {
      const { out, inb } = await w.connect();
      const { mine, theirs, remote } = await w.openAccepted(out, inb);
      w.net.partition(['bob'], ['alice']);
      const writer = mine.writable.getWriter();
      await writer.write(bytes(10));
      const read = track(theirs.readable.getReader().read());
      out.close(4, 'gone');
      const controller = new AbortController();
      const abandoned = track(w.alice.dial('bob', 'memory://bob', { signal: controller.signal }));
      await w.clock.advance(50);
      assert.equal(read.settled, false);
      assert.equal(remote.closes.length, 0);
      assert.equal(w.net.connectionCount(), 1, 'the dial packet waits: no connection yet');
      controller.abort();
      await w.clock.advance(1);
      assert.equal((abandoned.error as TransportError | undefined)?.kind, 'aborted');
      w.net.heal();
      await w.clock.advance(10);
      assert.deepEqual(read.value?.value, bytes(10), 'the data arrives after the heal');
      assert.equal(remote.closes.length, 1, 'so does the close notice');
      assert.equal(remote.closes[0]!.code, 4);
      assert.equal(w.net.connectionCount(), 0);
      assert.equal(w.net.streamCount(), 0);
      assert.equal(w.clock.pending(), 0);
    });

    it('partition then drop: the held messages die with the connection', async function () {
      const { out, inb } = await w.connect();
      const remote = record(inb);
      w.net.partition(['alice'], ['bob']);
      out.sendControl({ type: 'ping', seq: 1 });
      await w.clock.advance(10);
      w.net.drop('alice', 'bob');
      w.net.heal();
      await w.clock.advance(10);
      assert.deepEqual(remote.controls, []);
      assert.equal(remote.closes.length, 1);
      assert.equal(w.net.stats().retransmitted, 0);
      assert.equal(w.clock.pending(), 0);
    });

    it('ackFault delay: the ACK (and data behind it) arrive late', async function () {
      w.net.ackFault('bob', { delayMs: 30 });
      const { out, inb } = await w.connect();
      record(inb, (incoming) => {
        const stream = incoming.accept();
        const writer = stream.writable.getWriter();
        void writer.write(bytes(3)).catch(() => {});
      });
      const opening = track(out.openStream('p/1', { signal: w.signal() }));
      await w.clock.advance(39);
      assert.equal(opening.settled, false);
      await w.clock.advance(1);
      assert.ok(opening.settled);
      const first = await opening.value!.readable.getReader().read();
      assert.deepEqual(first.value, bytes(3));
    });

    it('ackFault delay applies to NACKs too', async function () {
      w.net.ackFault('bob', { delayMs: 30 });
      const { out, inb } = await w.connect();
      record(inb, (incoming) => incoming.reject('nope'));
      const opening = track(out.openStream('p/1', { signal: w.signal() }));
      await w.clock.advance(39);
      assert.equal(opening.settled, false);
      await w.clock.advance(1);
      assert.equal(kindOf(opening.error), 'rejected');
      assert.equal((opening.error as Error).message, 'nope');
      assert.equal(w.net.stats().streamsRejected, 1);
    });

    it('ackFault lose: the opener waits until its signal aborts; the accepted stream is then aborted', async function () {
      w.net.ackFault('bob', { lose: true });
      const { out, inb } = await w.connect();
      const served: Stream[] = [];
      record(inb, (incoming) => served.push(incoming.accept()));
      const controller = w.controller();
      const opening = track(out.openStream('p/1', { signal: controller.signal }));
      await w.clock.advance(1000);
      assert.equal(opening.settled, false);
      assert.equal(served.length, 1);
      assert.equal(w.net.stats().dropped, 1);
      controller.abort();
      await w.clock.advance(0);
      assert.equal(kindOf(opening.error), 'aborted');
      const closed = track(served[0]!.closed);
      await w.clock.advance(5);
      assert.ok(closed.settled);
      assert.equal(w.net.streamCount(), 0);
      w.net.ackFault('bob', null);
      const second = track(out.openStream('p/1', { signal: w.signal() }));
      await w.clock.advance(10);
      assert.ok(second.settled);
    });

    it('ackFault lose applies to NACKs', async function () {
      w.net.ackFault('bob', { lose: true });
      const { out, inb } = await w.connect();
      record(inb, (incoming) => incoming.reject('nope'));
      const controller = w.controller();
      const opening = track(out.openStream('p/1', { signal: controller.signal }));
      await w.clock.advance(1000);
      assert.equal(opening.settled, false);
      controller.abort();
      await w.clock.advance(10);
      assert.equal(kindOf(opening.error), 'aborted');
      assert.equal(w.net.streamCount(), 0);
    });

    it('kill (loud): own side closes with error now, the remote after latency; dials stall; revive', async function () {
      const { out, inb } = await w.connect();
      const local = record(out);
      const remote = record(inb);
      w.net.kill('bob');
      assert.ok(w.net.isDead('bob'));
      await w.clock.advance(0);
      assert.deepEqual(remote.closes, [{ local: false, code: undefined, reason: 'node killed', error: true }]);
      assert.equal(local.closes.length, 0);
      await w.clock.advance(5);
      assert.deepEqual(local.closes, [{ local: false, code: undefined, reason: 'connection lost', error: true }]);
      assert.equal(w.bob.isListening, false);
      assert.equal(w.net.node('bob'), w.bob, 'the dead adapter until revive');

      const relisten = track(w.bob.listen(() => {}));
      const controller = w.controller();
      const dialing = track(w.alice.dial('bob', 'memory://bob', { signal: controller.signal }));
      await w.clock.advance(1000);
      assert.equal(kindOf(relisten.error), 'closed');
      assert.equal(dialing.settled, false, 'dials to a dead node stall');
      controller.abort();

      const reborn = w.net.revive('bob');
      assert.notEqual(reborn, w.bob);
      assert.equal(w.net.node('bob'), reborn);
      const atReborn: Connection[] = [];
      await reborn.listen((c) => atReborn.push(c));
      const again = track(w.alice.dial('bob', 'memory://bob', { signal: w.signal() }));
      await w.clock.advance(10);
      assert.equal(again.error, undefined);
      assert.equal(atReborn.length, 1);
      assert.equal(local.closes.length, 1);
      assert.equal(remote.closes.length, 1);
    });

    it('kill (silent): the remote hears nothing, deliveries to the dead node vanish', async function () {
      const { out, inb } = await w.connect();
      const { mine } = await w.openAccepted(out, inb);
      const local = record(out);
      w.net.kill('bob', { silent: true });
      await w.clock.advance(100);
      assert.equal(local.closes.length, 0);
      assert.equal(w.net.connectionCount(), 1, 'the surviving side is still up');
      const dropped = w.net.stats().dropped;
      out.sendControl({ type: 'ping', seq: 1 });
      const writer = mine.writable.getWriter();
      await writer.write(bytes(100));
      await w.clock.advance(5);
      assert.equal(w.net.stats().dropped, dropped + 2);
      // The runtime's heartbeat would notice; it closes the connection.
      out.close(3, 'heartbeat timed out');
      await w.clock.advance(10);
      assert.deepEqual(local.closes, [{ local: true, code: 3, reason: 'heartbeat timed out', error: false }]);
      assert.equal(w.net.connectionCount(), 0);
      assert.equal(w.net.streamCount(), 0);
      assert.equal(w.clock.pending(), 0);
    });

    it('kill fails the dead node\'s own pending dials with closed', async function () {
      await w.net.node('carol').listen(() => {});
      w.net.stallDials('carol');
      const dialing = track(w.alice.dial('carol', 'memory://carol', { signal: w.signal() }));
      w.net.kill('alice');
      await w.clock.advance(0);
      assert.equal(kindOf(dialing.error), 'closed');
    });
  });

  describe('exactly-once onClose and leaks', function () {
    type Path = (out: Connection, inb: Connection, net: MemoryNetwork) => void;
    const paths: Record<string, Path> = {
      'local close': (out) => out.close(1, 'x'),
      'remote close': (_out, inb) => inb.close(1, 'x'),
      'both close': (out, inb) => {
        out.close(1, 'x');
        inb.close(2, 'y');
      },
      'close then drop': (out, _inb, net) => {
        out.close(1, 'x');
        net.drop('alice', 'bob');
      },
      'drop twice': (_out, _inb, net) => {
        net.drop('alice', 'bob');
        net.drop('bob');
      },
      'kill loud': (_out, _inb, net) => net.kill('bob'),
      'kill silent, survivor closes': (out, _inb, net) => {
        net.kill('bob', { silent: true });
        out.close(3, 'timeout');
      },
      'kill both': (_out, _inb, net) => {
        net.kill('alice');
        net.kill('bob');
      },
      'adapter close': (_out, _inb, net) => void net.node('alice').close(),
      'close during partition, then drop': (out, _inb, net) => {
        net.partition(['alice'], ['bob']);
        out.close(1, 'x');
        net.drop('bob');
      },
    };

    for (const [name, act] of Object.entries(paths)) {
      it(`${name}: each side gets onClose exactly once; nothing stays open or pending`, async function () {
        const { out, inb } = await w.connect();
        const { mine, theirs } = await w.openAccepted(out, inb);
        const local = record(out);
        const remote = record(inb);
        const closed = track(Promise.all([mine.closed, theirs.closed]));
        act(out, inb, w.net);
        await w.clock.advance(50);
        assert.equal(local.closes.length, 1, 'dialer side');
        assert.equal(remote.closes.length, 1, 'listener side');
        assert.ok(closed.settled, 'streams ended');
        assert.equal(w.net.connectionCount(), 0);
        assert.equal(w.net.streamCount(), 0);
        const stats = w.net.stats();
        assert.equal(stats.connectionsOpened, stats.connectionsClosed);
        assert.equal(w.clock.pending(), 0);
      });
    }
  });

  describe('determinism', function () {
    async function scenario(): Promise<string[]> {
      const world = new World({ latencyMs: 3 });
      const log: string[] = [];
      const carol = world.net.node('carol');
      await carol.listen((c) => {
        log.push(`carol<-${c.remotePeerId}@${world.clock.now()}`);
        c.setHandlers({
          onControl: (m) => {
            log.push(`carol:${m.type}@${world.clock.now()}`);
            c.sendControl({ type: 'pong', seq: 0 });
          },
          onStream: (s) => s.reject('no'),
          onClose: (i) => log.push(`carol:close:${i.reason}@${world.clock.now()}`),
        });
      });
      const dials = ['alice', 'bob'].map((id) => world.net.node(id).dial('carol', 'memory://carol', { signal: world.signal() }));
      for (const [i, dialing] of dials.entries()) {
        void dialing.then((c) => {
          log.push(`dialed:${i}@${world.clock.now()}`);
          c.setHandlers({
            onControl: (m) => log.push(`${c.localPeerId}:${m.type}@${world.clock.now()}`),
            onStream: () => {},
            onClose: (info) => log.push(`${c.localPeerId}:close:${info.reason}@${world.clock.now()}`),
          });
          c.sendControl({ type: 'ping', seq: i });
          c.openStream('x/1', { signal: world.signal() }).catch((e: TransportError) => log.push(`${c.localPeerId}:${e.kind}`));
        });
      }
      await world.clock.advance(20);
      world.net.drop('carol', 'bob');
      world.net.node('alice').close().catch(() => {});
      await world.clock.advance(20);
      world.dispose();
      return log;
    }

    it('the same calls on the same clock give the same events', async function () {
      const first = await scenario();
      const second = await scenario();
      assert.ok(first.length > 10);
      assert.deepEqual(second, first);
    });
  });
});
