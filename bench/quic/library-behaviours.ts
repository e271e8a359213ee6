/**
 * Two behaviours of @matrixai/quic 2.0.9's quiche 0.18 that shape peerline's
 * wire format (adapters/quic/wire.ts). Bare library on loopback, no peerline
 * in the path.
 *
 * 1. A FIN sent alone. C concurrent echo streams per round, the writer ends
 *    with `writer.close()` (the FIN goes alone once the data was sent) versus
 *    the last byte and the FIN in one quiche write. Counted: streams whose
 *    reader never sees the end within 3 s.
 * 2. Credit after the reader stops reading. 120 streams on one connection
 *    (credit: 100). The listener reads the header, answers with a byte and
 *    the FIN, then either cancels its reader (STOP_SENDING) or reads the
 *    opener's direction to its end; the opener reads the answer to its end,
 *    then resets its direction or ends it with a byte and the FIN. Counted:
 *    streams opened within 3 s (past 100 only if the listener gave credit
 *    back).
 *
 *   npx tsx bench/quic/library-behaviours.ts [--streams 150]
 */
import { int, numberArg, say } from '../common.js';
import { endWithByte, nativeOf, rawPair, readToEnd } from './common.js';

const STREAMS = numberArg('streams', 150);

/** Section 1: how many of `STREAMS` concurrent echo streams never see their end. */
async function loneFin(withByte: boolean): Promise<number> {
  const p = await rawPair((quic, stream) => {
    void (async () => {
      const reader = stream.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>;
      const writer = stream.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>;
      const chunks: Uint8Array[] = [];
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
      }
      if (withByte) {
        nativeOf(quic).streamSend(stream.streamId, Buffer.concat(chunks), true);
      } else {
        await writer.write(Buffer.concat(chunks));
      }
      await writer.close();
    })().catch(() => {});
  }, { maxStreams: 10_000 });
  let hung = 0;
  for (let round = 0; round < 3; round++) {
    let ended = 0;
    const all = Promise.all(
      Array.from({ length: STREAMS }, async (_, i) => {
        const stream = p.client.newStream('bidi');
        const writer = stream.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>;
        const reader = stream.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>;
        if (withByte) {
          nativeOf(p.client).streamSend(stream.streamId, Uint8Array.of(i & 0xff), true);
        } else {
          await writer.write(Uint8Array.of(i & 0xff));
        }
        await writer.close();
        await readToEnd(reader);
        ended++;
      }),
    );
    await Promise.race([all, new Promise((resolve) => setTimeout(resolve, 3_000))]);
    hung += STREAMS - ended;
  }
  await p.close();
  return hung;
}

/** Section 2: streams opened within 3 s out of 120. */
async function creditAfter(listener: 'cancel' | 'read', opener: 'reset' | 'fin'): Promise<number> {
  const p = await rawPair((quic, stream) => {
    void (async () => {
      const reader = stream.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>;
      const writer = stream.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>;
      await reader.read();
      nativeOf(quic).streamSend(stream.streamId, Uint8Array.of(0x15), true);
      await writer.close();
      if (listener === 'cancel') await reader.cancel(new Error('done')).catch(() => {});
      else await readToEnd(reader);
    })().catch(() => {});
  });
  let opened = 0;
  const end = Date.now() + 3_000;
  while (opened < 120 && Date.now() < end) {
    const left = (p.client as unknown as { conn: { peerStreamsLeftBidi(): number } }).conn.peerStreamsLeftBidi();
    if (left === 0) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      continue;
    }
    const stream = p.client.newStream('bidi');
    opened++;
    const writer = stream.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>;
    const reader = stream.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    void (async () => {
      await writer.write(Uint8Array.of(1, 2, 3));
      await readToEnd(reader);
      if (opener === 'reset') {
        await writer.abort(new Error('done')).catch(() => {});
      } else {
        await endWithByte(p.client, stream, writer);
      }
    })().catch(() => {});
  }
  await p.close();
  return opened;
}

say(`@matrixai/quic 2.0.9 (quiche 0.18) on loopback`);
say(`1. ${STREAMS} concurrent echo streams x 3 rounds: streams whose reader never saw the end (3 s)`);
say(`   FIN alone (writer.close() after the data):  ${int(await loneFin(false))} of ${STREAMS * 3}`);
say(`   last byte and FIN in one write:              ${int(await loneFin(true))} of ${STREAMS * 3}`);
say('');
say('2. 120 streams on one connection with 100 streams of credit: streams opened within 3 s');
for (const listener of ['cancel', 'read'] as const) {
  for (const opener of ['reset', 'fin'] as const) {
    const label = `listener ${listener === 'cancel' ? 'cancels its reader' : 'reads to the end'}, opener ${opener === 'reset' ? 'resets' : 'ends with byte+FIN'}:`;
    say(`   ${label.padEnd(58)} ${await creditAfter(listener, opener)} of 120`);
  }
}
