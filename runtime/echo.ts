import type { PeerStream } from './streams.js';

/**
 * A stream handler that writes back every chunk it reads, then closes its
 * side. Handy for demos, health checks and tests: `engine.handle('/echo/1', echo)`.
 */
export async function echo(stream: PeerStream): Promise<void> {
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
