import { checkObject, invalidType } from '../protocol/arguments.js';
import type { PeerStream } from './streams.js';

function checkStream(name: string, stream: PeerStream): void {
  checkObject(name, stream);
  if (!(stream.readable instanceof ReadableStream) || !(stream.writable instanceof WritableStream)) {
    throw invalidType(name, 'a stream { readable, writable } (a PeerStream)', stream);
  }
}

/**
 * A stream handler that writes back every chunk it reads, then closes its
 * side. Handy for demos, health checks and tests: `engine.handle('/echo/1', echo)`.
 */
export async function echo(stream: PeerStream): Promise<void> {
  checkStream('stream', stream);
  const reader = stream.readable.getReader();
  const writer = stream.writable.getWriter();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      await writer.write(value);
    }
    await writer.close();
  } catch {
    stream.abort('echo failed');
  }
}

/**
 * The other side of `echo`: writes `text`, closes the writing side, and
 * returns everything the remote sends back until it closes.
 */
export async function sendAndReceive(stream: PeerStream, text: string): Promise<string> {
  checkStream('stream', stream);
  if (typeof text !== 'string') throw invalidType('text', 'a string', text);
  const writer = stream.writable.getWriter();
  const reader = stream.readable.getReader();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const decoder = new TextDecoder();
  let received = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    received += decoder.decode(value, { stream: true });
  }
  return received + decoder.decode();
}
