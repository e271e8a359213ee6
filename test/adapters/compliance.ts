/**
 * Adapter compliance suite: the behavior every transport adapter (memory,
 * QUIC) must show. Time moves only through the `advance` the transport
 * supplies: a virtual clock for the memory network, real waiting for QUIC.
 */
import assert from 'node:assert/strict';
import { TransportError, type Adapter, type CloseInfo, type Connection, type IncomingStream, type Stream } from '../../protocol/adapter.js';
import { type ControlMessage } from '../../protocol/control.js';

export interface CompliancePair {
  readonly a: Adapter;
  readonly b: Adapter;
  /** Where `a` can be dialed (used by the simultaneous-dial test). */
  readonly addressOfA: string;
  readonly addressOfB: string;
  /** An address nobody answers at: dials there never complete. */
  readonly deadAddress: string;
  /** Lets `ms` of transport time pass. */
  advance(ms: number): Promise<void>;
  cleanup(): Promise<void>;
}

/** How far `until` lets time move per step, and how many steps it takes at most. */
const STEP_MS = 5;
const MAX_STEPS = 400;

interface Tracked<T> {
  settled: boolean;
  value: T | undefined;
  error: unknown;
}

/** Follows a promise without letting its rejection escape. */
export function track<T>(promise: Promise<T>): Tracked<T> {
  const state: Tracked<T> = { settled: false, value: undefined, error: undefined };
  promise.then(
    (value) => {
      state.settled = true;
      state.value = value;
    },
    (error: unknown) => {
      state.settled = true;
      state.error = error;
    },
  );
  return state;
}

/** Advances time until `done()` holds, failing after a bounded number of steps. */
export async function until(advance: (ms: number) => Promise<void>, done: () => boolean, what: string): Promise<void> {
  for (let step = 0; step < MAX_STEPS; step++) {
    if (done()) return;
    await advance(STEP_MS);
  }
  if (!done()) assert.fail(`timed out waiting for ${what}`);
}

/** Settles a tracked promise by advancing time, then returns its value (or throws its error). */
async function settle<T>(advance: (ms: number) => Promise<void>, tracked: Tracked<T>, what: string): Promise<T> {
  await until(advance, () => tracked.settled, what);
  if (tracked.error !== undefined) throw tracked.error;
  return tracked.value as T;
}

async function rejection(advance: (ms: number) => Promise<void>, tracked: Tracked<unknown>, what: string): Promise<TransportError> {
  await until(advance, () => tracked.settled, what);
  assert.ok(tracked.error instanceof TransportError, `${what}: expected a TransportError, got ${String(tracked.error)}`);
  return tracked.error;
}

interface Recorder {
  readonly controls: ControlMessage[];
  readonly streams: IncomingStream[];
  readonly closes: CloseInfo[];
}

/** Installs handlers that record every event; `onStream` defaults to recording only. */
function record(connection: Connection, overrides: Partial<{ onControl(m: ControlMessage): void; onStream(s: IncomingStream): void }> = {}): Recorder {
  const recorder: Recorder = { controls: [], streams: [], closes: [] };
  connection.setHandlers({
    onControl: (message) => {
      recorder.controls.push(message);
      overrides.onControl?.(message);
    },
    onStream: (stream) => {
      recorder.streams.push(stream);
      overrides.onStream?.(stream);
    },
    onClose: (info) => {
      recorder.closes.push(info);
    },
  });
  return recorder;
}

async function readAll(readable: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const reader = readable.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    total += value.length;
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

export function adapterCompliance(name: string, makePair: () => Promise<CompliancePair>): void {
  describe(`adapter compliance: ${name}`, function () {
    let pair: CompliancePair;
    let controllers: AbortController[];

    const signal = (): AbortSignal => {
      const controller = new AbortController();
      controllers.push(controller);
      return controller.signal;
    };

    /** `a` dials `b`; resolves with both sides of the connection. */
    async function connect(): Promise<{ out: Connection; inb: Connection }> {
      const inbound: Connection[] = [];
      await pair.b.listen((connection) => inbound.push(connection));
      const dialing = track(pair.a.dial(pair.b.localPeerId, pair.addressOfB, { signal: signal() }));
      await until(pair.advance, () => dialing.settled && inbound.length > 0, 'the connection on both sides');
      if (dialing.error !== undefined) throw dialing.error;
      assert.equal(inbound.length, 1);
      return { out: dialing.value!, inb: inbound[0]! };
    }

    beforeEach(async function () {
      controllers = [];
      pair = await makePair();
    });

    afterEach(async function () {
      for (const controller of controllers) controller.abort();
      await pair.cleanup();
    });

    describe('connect', function () {
      it('both sides see the connection with the right peer ids and directions', async function () {
        const { out, inb } = await connect();
        assert.equal(out.direction, 'outbound');
        assert.equal(out.localPeerId, pair.a.localPeerId);
        assert.equal(out.remotePeerId, pair.b.localPeerId);
        assert.equal(inb.direction, 'inbound');
        assert.equal(inb.localPeerId, pair.b.localPeerId);
        assert.equal(inb.remotePeerId, pair.a.localPeerId);
        assert.equal(typeof out.id, 'string');
        assert.equal(typeof inb.id, 'string');
      });
    });

    describe('control channel', function () {
      it('round-trips control messages in order', async function () {
        const { out, inb } = await connect();
        record(inb, {
          onControl: (message) => {
            if (message.type === 'ping') inb.sendControl({ type: 'pong', seq: message.seq });
          },
        });
        const outside = record(out);
        for (let seq = 1; seq <= 5; seq++) out.sendControl({ type: 'ping', seq });
        await until(pair.advance, () => outside.controls.length === 5, 'five pongs');
        assert.deepEqual(
          outside.controls,
          [1, 2, 3, 4, 5].map((seq) => ({ type: 'pong', seq })),
        );
        assert.deepEqual(outside.closes, []);
      });
    });

    describe('streams', function () {
      it('echoes bytes intact', async function () {
        const { out, inb } = await connect();
        const served: Stream[] = [];
        const remote = record(inb, {
          onStream: (incoming) => {
            const stream = incoming.accept();
            served.push(stream);
            stream.readable.pipeTo(stream.writable).catch(() => {});
          },
        });
        record(out);
        const stream = await settle(pair.advance, track(out.openStream('echo/1', { signal: signal() })), 'the stream to open');
        assert.equal(stream.protocol, 'echo/1');
        assert.equal(remote.streams.length, 1);
        assert.equal(remote.streams[0]!.protocol, 'echo/1');

        const sent = new Uint8Array(3000);
        for (let i = 0; i < sent.length; i++) sent[i] = (i * 7) % 251;
        const reading = track(readAll(stream.readable));
        const writer = stream.writable.getWriter();
        const writing = track(
          (async () => {
            await writer.write(sent.subarray(0, 1000));
            await writer.write(sent.subarray(1000, 1001));
            await writer.write(sent.subarray(1001));
            await writer.close();
          })(),
        );
        const echoed = await settle(pair.advance, reading, 'the echo');
        await settle(pair.advance, writing, 'the writes');
        assert.deepEqual(echoed, sent);

        const closedHere = track(stream.closed);
        const closedThere = track(served[0]!.closed);
        await until(pair.advance, () => closedHere.settled && closedThere.settled, 'both ends to finish');
        assert.equal(closedHere.error, undefined);
        assert.equal(closedThere.error, undefined);
      });

      it('close() while a writer holds the writable ends the stream after the writes queued before it', async function () {
        const { out, inb } = await connect();
        const received: Array<Promise<Uint8Array>> = [];
        record(inb, {
          onStream: (incoming) => {
            const stream = incoming.accept();
            received.push(
              readAll(stream.readable).then((bytes) => {
                stream.close();
                return bytes;
              }),
            );
          },
        });
        record(out);
        const stream = await settle(pair.advance, track(out.openStream('sink/1', { signal: signal() })), 'the stream to open');
        const writer = stream.writable.getWriter();
        const first = track(writer.write(Uint8Array.of(1, 2, 3)));
        const second = track(writer.write(Uint8Array.of(4, 5)));
        // The writable is locked: close() cannot close it, it marks the end after the two writes queued.
        stream.close();
        const late = track(writer.write(Uint8Array.of(6)));
        await settle(pair.advance, first, 'the first write');
        await settle(pair.advance, second, 'the second write');
        await until(pair.advance, () => late.settled, 'the write after close() to fail');
        assert.ok(late.error !== undefined, 'a write queued after close() fails');
        await until(pair.advance, () => received.length === 1, 'the remote to accept');
        const bytes = track(received[0]!);
        await until(pair.advance, () => bytes.settled, 'the remote to read the end');
        assert.deepEqual([...(await received[0]!)], [1, 2, 3, 4, 5]);
        const closed = track(stream.closed);
        await until(pair.advance, () => closed.settled, 'the stream to finish');
      });

      it('a rejected stream (NACK) fails the opener with kind rejected and the reason', async function () {
        const { out, inb } = await connect();
        record(inb, { onStream: (incoming) => incoming.reject('no such protocol') });
        record(out);
        const opening = track(out.openStream('missing/1', { signal: signal() }));
        const error = await rejection(pair.advance, opening, 'the NACK');
        assert.equal(error.kind, 'rejected');
        assert.ok(error.message.includes('no such protocol'), `reason missing from "${error.message}"`);
      });
    });

    describe('close', function () {
      it('the remote sees the close code, not as local', async function () {
        const { out, inb } = await connect();
        const remote = record(inb);
        const local = record(out);
        out.close(7, 'shutting down');
        await until(pair.advance, () => remote.closes.length > 0 && local.closes.length > 0, 'both onClose');
        await pair.advance(20);
        assert.equal(remote.closes.length, 1);
        assert.equal(remote.closes[0]!.code, 7);
        assert.equal(remote.closes[0]!.local, false);
        assert.equal(remote.closes[0]!.error, false);
        assert.equal(local.closes.length, 1);
        assert.equal(local.closes[0]!.local, true);
        assert.equal(local.closes[0]!.code, 7);
      });
    });

    describe('dial failures', function () {
      it('a dial to a dead address does not resolve, and rejects with aborted when its signal aborts', async function () {
        const controller = new AbortController();
        controllers.push(controller);
        const dialing = track(pair.a.dial('nobody-there', pair.deadAddress, { signal: controller.signal }));
        for (let i = 0; i < 20; i++) await pair.advance(STEP_MS);
        assert.equal(dialing.settled, false);
        controller.abort();
        const error = await rejection(pair.advance, dialing, 'the aborted dial');
        assert.equal(error.kind, 'aborted');
      });

      it('a dial expecting another peer id rejects with identity-mismatch', async function () {
        await pair.b.listen(() => {});
        const dialing = track(pair.a.dial(`not-${pair.b.localPeerId}`, pair.addressOfB, { signal: signal() }));
        const error = await rejection(pair.advance, dialing, 'the identity check');
        assert.equal(error.kind, 'identity-mismatch');
      });
    });

    describe('simultaneous dial', function () {
      it('both dials resolve; each side has one inbound and one outbound connection', async function () {
        const atA: Connection[] = [];
        const atB: Connection[] = [];
        await pair.a.listen((connection) => atA.push(connection));
        await pair.b.listen((connection) => atB.push(connection));
        const fromA = track(pair.a.dial(pair.b.localPeerId, pair.addressOfB, { signal: signal() }));
        const fromB = track(pair.b.dial(pair.a.localPeerId, pair.addressOfA, { signal: signal() }));
        await until(
          pair.advance,
          () => fromA.settled && fromB.settled && atA.length > 0 && atB.length > 0,
          'both dials and both inbound connections',
        );
        assert.equal(fromA.error, undefined);
        assert.equal(fromB.error, undefined);
        const sidesOfA = [fromA.value!, ...atA];
        const sidesOfB = [fromB.value!, ...atB];
        assert.deepEqual(sidesOfA.map((c) => c.direction).sort(), ['inbound', 'outbound']);
        assert.deepEqual(sidesOfB.map((c) => c.direction).sort(), ['inbound', 'outbound']);
        for (const c of sidesOfA) assert.equal(c.remotePeerId, pair.b.localPeerId);
        for (const c of sidesOfB) assert.equal(c.remotePeerId, pair.a.localPeerId);
      });
    });
  });
}
