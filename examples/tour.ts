/**
 * The README's API tour, runnable: `npx tsx examples/tour.ts`.
 * Two agents on the in-memory network, on a virtual clock.
 */
import { createEngine, type PeerlineError } from 'peerline';
import { MemoryNetwork, VirtualClock } from 'peerline/adapters/memory';

export async function tour(log: (line: string) => void = console.log): Promise<string[]> {
  const clock = new VirtualClock();
  const network = new MemoryNetwork({ clock, latencyMs: 1 });
  const alice = createEngine({ adapter: network.node('alice'), clock });
  const bob = createEngine({ adapter: network.node('bob'), clock });

  // Bob serves an echo protocol.
  bob.handle('/echo/1', async (stream) => {
    const reader = stream.readable.getReader();
    const writer = stream.writable.getWriter();
    for (let r = await reader.read(); !r.done; r = await reader.read()) await writer.write(r.value);
    await writer.close();
  });
  await alice.start();
  await bob.start();
  alice.addPeer('bob', [network.address('bob')]);
  alice.transitions$.subscribe((t) => log(`alice: ${t.peerId} ${t.from ?? 'new'} -> ${t.to}`));

  // Open a stream: the first request dials, handshakes, then opens.
  const opening = alice.openStream('bob', '/echo/1', { timeoutMs: 5000 });
  await clock.advance(10);
  const stream = await opening;
  const writer = stream.writable.getWriter();
  await writer.write(new TextEncoder().encode('hello bob'));
  await writer.close();
  const reader = stream.readable.getReader();
  const replies: string[] = [];
  const reading = (async () => {
    for (let r = await reader.read(); !r.done; r = await reader.read()) replies.push(new TextDecoder().decode(r.value));
  })();
  await clock.advance(10);
  await reading;
  log(`echo: ${replies.join('')}`);

  // Every failure is a typed error with a stable code.
  const refused = alice.openStream('bob', '/nope/1').catch((error: PeerlineError) => error.code);
  await clock.advance(10);
  log(`unknown protocol: ${await refused}`);
  log(`snapshot: ${JSON.stringify(alice.snapshot().peers.map((p) => [p.peerId, p.state]))}`);

  // Stop returns within the drain deadline, even with work in flight.
  const stopped = Promise.all([alice.stop(), bob.stop()]);
  await clock.advance(10_000);
  await stopped;
  return replies;
}

if (import.meta.url === `file://${process.argv[1]}`) await tour();
