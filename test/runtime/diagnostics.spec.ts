import { strict as assert } from 'node:assert';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import sinon from 'sinon';
import {
  CHANNELS,
  PeerlineError,
  type AdmissionRefusedMessage,
  type DialMessage,
  type HeartbeatMessage,
  type RequestErrorMessage,
  type StreamOpenMessage,
  type TransitionMessage,
} from '../../runtime/index.js';
import { diagnostics } from '../../runtime/diagnostics.js';
import { echoPair } from '../fixtures/pair.js';
import { echo, swarm, type Swarm } from '../fixtures/swarm.js';

/** Subscribes to every peerline channel; `stop()` unsubscribes. */
function listen(): {
  readonly messages: { [K in keyof typeof CHANNELS]: unknown[] };
  stop(): void;
} {
  const messages = { transition: [], streamOpen: [], requestError: [], dial: [], admissionRefused: [], heartbeat: [] } as {
    [K in keyof typeof CHANNELS]: unknown[];
  };
  const handlers = (Object.keys(CHANNELS) as (keyof typeof CHANNELS)[]).map((key) => {
    const handler = (message: unknown): void => void messages[key].push(message);
    subscribe(CHANNELS[key], handler);
    return [CHANNELS[key], handler] as const;
  });
  return {
    messages,
    stop: () => {
      for (const [name, handler] of handlers) unsubscribe(name, handler);
    },
  };
}

describe('diagnostics channels', () => {
  let s: Swarm;
  let listener: ReturnType<typeof listen> | undefined;

  afterEach(async () => {
    listener?.stop();
    listener = undefined;
    sinon.restore();
    await s.stopAll();
  });

  it('publishes transitions, stream opens (ok and failed, with code and duration), request errors and dials', async () => {
    s = await swarm({ latencyMs: 2 });
    listener = listen();
    const { a } = await echoPair(s);
    const refused = a.openStream('b', '/missing').catch((e: PeerlineError) => e.code);
    await s.until(refused);
    assert.equal(await refused, 'STREAM_REJECTED');
    s.network.refuseDials('c');
    await s.add('c');
    a.addPeer('c', [s.network.address('c')]);
    const failing = a.withConnection('c', () => 'never').catch((e: PeerlineError) => e.code);
    await s.until(failing);
    assert.equal(await failing, 'CONNECT_REFUSED');

    const { messages } = listener;
    const transitions = messages.transition as TransitionMessage[];
    const ab = transitions.filter((t) => t.localPeerId === 'a' && t.peerId === 'b').map((t) => `${t.from ?? 'new'}->${t.to}`);
    assert.deepEqual(ab, ['new->connecting', 'connecting->handshaking', 'handshaking->ready']);
    assert.ok(transitions.every((t) => typeof t.event === 'string' && typeof t.at === 'number'));
    assert.ok(transitions.some((t) => t.localPeerId === 'b' && t.peerId === 'a' && t.to === 'handshaking'), "the inbound side's machine too");

    const opens = messages.streamOpen as StreamOpenMessage[];
    assert.deepEqual(
      opens.map((o) => [o.localPeerId, o.peerId, o.protocol, o.ok ? 'ok' : o.code]),
      [
        ['a', 'b', '/echo', 'ok'],
        ['a', 'b', '/missing', 'STREAM_REJECTED'],
      ],
    );
    // Dial, hello and hello-ack, header and ACK: four one-way trips of 2 ms at least.
    assert.ok(opens[0]!.durationMs >= 8, `first open took ${opens[0]!.durationMs} ms`);
    assert.ok(opens[1]!.durationMs >= 4, 'a header and its NACK: one round trip');
    const failedOpen = opens[1]!;
    assert.ok(!failedOpen.ok && failedOpen.error instanceof PeerlineError && failedOpen.error.code === 'STREAM_REJECTED');

    const errors = messages.requestError as RequestErrorMessage[];
    assert.deepEqual(
      errors.map((e) => [e.kind, e.peerId, e.protocol, e.code]),
      [
        ['stream', 'b', '/missing', 'STREAM_REJECTED'],
        ['lease', 'c', '', 'CONNECT_REFUSED'],
      ],
    );
    const dials = messages.dial as DialMessage[];
    assert.deepEqual(
      dials.map((d) => [d.peerId, d.ok ? 'ok' : d.code, d.addresses]),
      [
        ['b', 'ok', ['memory://b']],
        ['c', 'CONNECT_REFUSED', ['memory://c']],
      ],
    );
    assert.ok(dials.every((d) => d.durationMs >= 4), 'a dial is a round trip');
    const ok = dials[0]!;
    assert.ok(ok.ok && typeof ok.connectionId === 'string');
  });

  it('publishes admission refusals with the code, the peer and its address', async () => {
    s = await swarm();
    listener = listen();
    const gated = await s.add('gated', { allowInbound: (peerId) => peerId !== 'intruder' });
    gated.handle('/echo', echo);
    const intruder = await s.add('intruder');
    intruder.addPeer('gated', [s.network.address('gated')]);
    const attempt = intruder.openStream('gated', '/echo').catch((e: PeerlineError) => e.code);
    await s.until(attempt);
    assert.equal(await attempt, 'CONNECT_REFUSED');
    const refusals = listener.messages.admissionRefused as AdmissionRefusedMessage[];
    assert.equal(refusals.length, 1);
    assert.deepEqual({ ...refusals[0], at: undefined }, {
      localPeerId: 'gated',
      code: 'AdmissionDenied',
      peerId: 'intruder',
      remoteAddress: refusals[0]!.remoteAddress,
      at: undefined,
    });
    assert.equal(gated.metrics().admission.refusedByCode.AdmissionDenied, 1);
  });

  it('publishes each heartbeat round trip, as the RTT histogram records it', async () => {
    s = await swarm({ latencyMs: 3, defaults: { heartbeat: { intervalMs: 1_000, timeoutMs: 500, misses: 3 }, idleTimeoutMs: Infinity } });
    listener = listen();
    const { a } = await echoPair(s);
    await s.advance(3_500);
    const beats = (listener.messages.heartbeat as HeartbeatMessage[]).filter((m) => m.localPeerId === 'a');
    assert.equal(beats.length, a.metrics().heartbeat.samples);
    assert.ok(beats.length >= 3);
    assert.ok(beats.every((m) => m.peerId === 'b' && m.rttMs === 6), 'a round trip is two hops of 3 ms');
  });

  it('builds and publishes nothing while nobody subscribes', async () => {
    const publishes = (Object.keys(diagnostics) as (keyof typeof diagnostics)[]).map((key) => sinon.spy(diagnostics[key], 'publish'));
    s = await swarm();
    const { a } = await echoPair(s);
    await s.until(a.openStream('b', '/missing').catch(() => {}));
    assert.ok(a.metrics().transitions >= 3);
    assert.deepEqual(
      publishes.map((p) => p.callCount),
      publishes.map(() => 0),
    );
  });
});
