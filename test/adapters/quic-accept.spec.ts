/**
 * Accepting an inbound QUIC stream whose QUIC writable already closed.
 *
 * The chaos soak (`npm run soak -- --minutes 2 --seed 4`) saw the engine's
 * acceptInbound effect fail with ERR_INTERNAL_ASSERTION from
 * `Incoming.accept()`: on Node 20, `WritableStreamDefaultWriter.write()` on a
 * closed WritableStream throws synchronously instead of rejecting
 * (nodejs/node#57272, fixed in later Node lines). accept() must still hand
 * out a stream, one that has ended, and never throw. On the native path the
 * same case is a stream whose write direction already finished.
 */
import assert from 'node:assert/strict';
import type { QUICStream } from '@matrixai/quic';
import type { TransportStream } from '../../adapters/quic/seam/index.js';
import { TransportError, createQuicAdapter, type QuicAdapter } from '../../adapters/quic/index.js';
import type { Connection, IncomingStream } from '../../protocol/adapter.js';
import { identity, recordingLogger, sleep } from '../fixtures/identity.js';

/** Polls `get` until it gives a value; `ms` is a deadline, generous for a busy machine. */
async function waitFor<T>(get: () => T | undefined, what: string, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (let value = get(); ; value = get()) {
    if (value !== undefined) return value;
    if (Date.now() > end) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(5);
  }
}

describe('QUIC adapter: accept() on a stream whose QUIC writable closed', function () {
  let a: QuicAdapter | undefined;
  let b: QuicAdapter | undefined;

  afterEach(async function () {
    await a?.close();
    await b?.close();
    a = b = undefined;
  });

  for (const path of ['native', 'library'] as const) {
    it(`does not throw; the stream it returns has ended with a transport error (${path} path)`, async function () {
      const logger = recordingLogger();
      a = createQuicAdapter({ identity: await identity('alice'), logger, tuning: path === 'native' });
      b = createQuicAdapter({ identity: await identity('bob'), logger, tuning: path === 'native' });
      const inbound: Connection[] = [];
      await b.listen((connection) => void inbound.push(connection));
      await a.start();
      const out = await a.dial(b.localPeerId, b.address, { signal: new AbortController().signal });
      const inb = await waitFor(() => inbound[0], 'the inbound connection');
      assert.equal(b.stats().seam.path, path);
      const incoming: IncomingStream[] = [];
      inb.setHandlers({ onControl: () => {}, onStream: (s) => void incoming.push(s), onClose: () => {} });
      out.setHandlers({ onControl: () => {}, onStream: (s) => s.reject('no'), onClose: () => {} });

      const opening = out.openStream('/soak/echo/1', { signal: new AbortController().signal });
      opening.catch(() => {});
      const pending = await waitFor(() => incoming[0], 'the incoming stream');
      // The stream's write direction is closed before the answer goes out.
      const transport = (pending as unknown as { transport: TransportStream & { quic?: QUICStream } }).transport;
      if (path === 'library') await transport.quic!.writable.close();
      else await transport.finish(Uint8Array.of(0));

      let stream: ReturnType<IncomingStream['accept']> | undefined;
      assert.doesNotThrow(() => {
        stream = pending.accept();
      });
      assert.ok(stream !== undefined);
      const ended = await Promise.race([stream.closed.then(() => true), sleep(10_000).then(() => false)]);
      assert.equal(ended, true, 'the stream ended');
      const read = await stream.readable
        .getReader()
        .read()
        .then(
          () => 'read',
          (error: unknown) => error,
        );
      assert.ok(read instanceof TransportError, `reading fails with a TransportError, got ${String(read)}`);
      // The opener gets an answer too (no ACK came): a typed failure, not a hang.
      const answer = await Promise.race([opening.then(() => 'stream', (error: unknown) => error), sleep(10_000).then(() => 'no answer')]);
      assert.ok(answer instanceof TransportError, `the opener's answer: ${String(answer)}`);
    });
  }
});
