import { strict as assert } from 'node:assert';
import { TransportError, type Connection } from '../../protocol/adapter.js';
import { VirtualClock } from '../../adapters/memory/index.js';
import { addressFamily, rankAddresses, staggeredDial } from '../../runtime/staggered-dial.js';

/** A dial the test settles by hand, recording when it started and whether it was aborted. */
interface Attempt {
  readonly address: string;
  readonly at: number;
  aborted: boolean;
  resolve(connection: Connection): void;
  reject(error: unknown): void;
}

function fakeConnection(id: string): Connection & { closed: boolean } {
  const c = {
    id,
    localPeerId: 'a',
    remotePeerId: 'b',
    direction: 'outbound' as const,
    closed: false,
    setHandlers: () => {},
    sendControl: () => {},
    openStream: () => Promise.reject(new Error('unused')),
    close: () => void (c.closed = true),
  };
  return c;
}

function setup(addresses: string[], delayMs = 250): {
  clock: VirtualClock;
  attempts: Attempt[];
  abandoned: Connection[];
  controller: AbortController;
  result: Promise<Connection>;
} {
  const clock = new VirtualClock();
  const attempts: Attempt[] = [];
  const abandoned: Connection[] = [];
  const controller = new AbortController();
  const result = staggeredDial({
    addresses,
    delayMs,
    clock,
    signal: controller.signal,
    dial: (address, signal) =>
      new Promise<Connection>((resolve, reject) => {
        const attempt: Attempt = { address, at: clock.now(), aborted: false, resolve, reject };
        signal.addEventListener('abort', () => {
          attempt.aborted = true;
          reject(new TransportError('aborted', 'dial aborted'));
        });
        attempts.push(attempt);
      }),
    abandon: (connection) => void abandoned.push(connection),
  });
  result.catch(() => {});
  return { clock, attempts, abandoned, controller, result };
}

describe('staggered dials (RFC 8305 style)', () => {
  it('addressFamily reads the host of scheme://host:port', () => {
    assert.equal(addressFamily('quic://127.0.0.1:4433'), 4);
    assert.equal(addressFamily('quic://[::1]:4433'), 6);
    assert.equal(addressFamily('quic://[fe80::1%eth0]:1'), 6);
    assert.equal(addressFamily('memory://alice'), undefined);
    assert.equal(addressFamily('not an address'), undefined);
  });

  it('rankAddresses interleaves families, IPv6 first, keeping each family and the rest in order', () => {
    const given = ['quic://10.0.0.1:1', 'quic://10.0.0.2:1', 'quic://10.0.0.3:1', 'quic://[::1]:1', 'memory://x'];
    assert.deepEqual(rankAddresses(given, 'interleave'), [
      'quic://[::1]:1',
      'quic://10.0.0.1:1',
      'quic://10.0.0.2:1',
      'quic://10.0.0.3:1',
      'memory://x',
    ]);
    assert.deepEqual(rankAddresses(given, 'given'), given);
  });

  it('starts the next attempt after the delay, the first connection wins, the others are aborted', async () => {
    const { clock, attempts, result } = setup(['x1', 'x2', 'x3']);
    await clock.advance(0);
    assert.deepEqual(attempts.map((a) => [a.address, a.at]), [['x1', 0]]);
    await clock.advance(250);
    assert.deepEqual(attempts.map((a) => [a.address, a.at]), [['x1', 0], ['x2', 250]]);
    attempts[1]!.resolve(fakeConnection('c2'));
    assert.equal((await result).id, 'c2');
    assert.equal(attempts[0]!.aborted, true);
    await clock.advance(1_000);
    assert.equal(attempts.length, 2, 'no attempt after a winner');
    assert.equal(clock.pending(), 0, 'no timer left');
  });

  it('a failed attempt starts the next at once; when all fail the identity mismatch (else the first error) is the answer', async () => {
    const { clock, attempts, result } = setup(['x1', 'x2', 'x3']);
    await clock.advance(10);
    attempts[0]!.reject(new TransportError('refused', 'refused 1'));
    await clock.advance(0);
    assert.deepEqual(attempts.map((a) => [a.address, a.at]), [['x1', 0], ['x2', 10]]);
    attempts[1]!.reject(new TransportError('identity-mismatch', 'someone else'));
    await clock.advance(0);
    attempts[2]!.reject(new TransportError('refused', 'refused 3'));
    await assert.rejects(result, (e: TransportError) => e.kind === 'identity-mismatch');
    assert.equal(clock.pending(), 0);
  });

  it('a connection that arrives after the winner is abandoned (closed by the caller)', async () => {
    const { clock, attempts, abandoned, result } = setup(['x1', 'x2']);
    await clock.advance(250);
    attempts[0]!.resolve(fakeConnection('c1'));
    attempts[1]!.resolve(fakeConnection('c2'));
    assert.equal((await result).id, 'c1');
    await clock.advance(0);
    assert.deepEqual(abandoned.map((c) => c.id), ['c2']);
  });

  it('the caller\'s abort stops every attempt and the ones not started yet', async () => {
    const { clock, attempts, controller, result } = setup(['x1', 'x2', 'x3']);
    await clock.advance(100);
    controller.abort();
    await assert.rejects(result, (e: TransportError) => e.kind === 'aborted');
    await clock.advance(1_000);
    assert.equal(attempts.length, 1);
    assert.equal(attempts[0]!.aborted, true);
    assert.equal(clock.pending(), 0);
  });

  it('delay 0 starts every attempt at once', async () => {
    const { clock, attempts, result } = setup(['x1', 'x2', 'x3'], 0);
    await clock.advance(0);
    assert.deepEqual(attempts.map((a) => a.at), [0, 0, 0]);
    attempts[2]!.resolve(fakeConnection('c3'));
    assert.equal((await result).id, 'c3');
    assert.deepEqual(attempts.map((a) => a.aborted), [true, true, false]);
  });
});
