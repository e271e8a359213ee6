/**
 * Unit tests of the pure peer connection machine: every transition it defines,
 * run on a simulated clock with recording effects. No network, no real time.
 */
import assert from 'node:assert/strict';
import { ConnectionErrorCode as C, type ErrorInfo } from '../../machines/codes.js';
import { PROTOCOL_VERSION, type ConnectionEvent } from '../../machines/types.js';
import {
  DELAYS,
  closedEvent,
  disposeAll,
  expectStates,
  harness,
  hello,
  helloAck,
  inbound,
  leaseRequest,
  streamRequest,
  waitingRequest,
  type Harness,
  type HarnessOptions,
} from '../fixtures/machine-harness.js';

/** Remote peer ids either side of the local one ('peer-m'). */
const LOCAL = 'peer-m';
const LOWER = 'peer-b';
const HIGHER = 'peer-z';

const HELLO_MSG = { type: 'hello', version: PROTOCOL_VERSION, peerId: LOCAL } as const;
const HELLO_ACK_MSG = { type: 'hello-ack', version: PROTOCOL_VERSION, peerId: LOCAL } as const;

const ABORTED: ErrorInfo = { code: 'ABORTED', message: 'caller gave up' };

/** The invariant: the machine rests in a state with a timer of its own. */
function rest(h: Harness): void {
  h.assertHasPendingTimer();
}

function timerNames(h: Harness): string[] {
  return h.activeStateTimers().map((t) => t.name).sort();
}

/** An outbound machine brought to `ready` on `c1` at the current time. */
async function readyOutbound(options: HarnessOptions = {}): Promise<Harness> {
  const h = harness(options);
  await h.toReady('c1');
  return h;
}

/** An inbound machine brought to `ready` on `in-1`. */
function readyInbound(options: HarnessOptions = {}): Harness {
  const h = harness({ direction: 'inbound', connectionId: 'in-1', ...options });
  h.send(hello('in-1', h.input.peerId));
  assert.equal(h.state, 'ready');
  return h;
}

function opened(h: Harness, id: string): void {
  h.send({ type: 'STREAM.OPENED', id });
}

function streamClosed(h: Harness, connectionId = 'c1', isInbound = false): void {
  h.send({ type: 'STREAM.CLOSED', connectionId, inbound: isInbound });
}

/** The remote's pong, as the runtime matches it to the heartbeat (no machine event). */
function pong(h: Harness, seq: number, connectionId = 'c1'): void {
  h.pong(seq, connectionId);
}

/** Runs the clock to `deadline`: still `ready` a millisecond before, `errored` then `closed` at it. */
function expectHeartbeatFailureAt(h: Harness, deadline: number): void {
  h.advance(deadline - 1 - h.now);
  assert.equal(h.state, 'ready', 'not a millisecond early');
  h.advance(1);
  assert.equal(h.now, deadline);
  expectStates(h, [...READY_OUT, 'errored', 'closed']);
}

/** The heartbeat's phase and miss count (the runtime's, not the machine's). */
function beat(h: Harness): [string, number] | undefined {
  const b = h.heartbeat;
  return b === undefined ? undefined : [b.phase, b.misses];
}

const READY_OUT = ['connecting', 'handshaking', 'ready'];

const ENDINGS: Array<{ name: string; event: ConnectionEvent; code: string; close: C }> = [
  { name: 'DRAIN', event: { type: 'DRAIN' }, code: 'CONNECTION_DRAINING', close: C.Drain },
  { name: 'FORCE_CLOSE', event: { type: 'FORCE_CLOSE', reason: 'operator said so' }, code: 'CONNECTION_FORCE_CLOSED', close: C.ForceClose },
  { name: 'SHUTDOWN (graceful)', event: { type: 'SHUTDOWN', force: false }, code: 'ENGINE_STOPPED', close: C.Shutdown },
  { name: 'SHUTDOWN (force)', event: { type: 'SHUTDOWN', force: true }, code: 'ENGINE_STOPPED', close: C.Shutdown },
];

describe('connectionMachine', () => {
  afterEach(() => disposeAll());

  // ==================================================================== start

  describe('start', () => {
    it('an outbound machine starts in connecting.queued and asks for one dial slot', () => {
      const h = harness({ slot: 'hold' });
      expectStates(h, ['connecting']);
      assert.deepEqual(h.snapshot.value, { connecting: 'queued' });
      assert.equal(h.slots.length, 1);
      assert.equal(h.slot.peerId, 'peer-b');
      assert.equal(h.slot.released, false);
      assert.equal(h.dials.length, 0);
      assert.deepEqual(h.effects, []);
      assert.deepEqual(timerNames(h), ['dialQueueTimeout']);
      rest(h);
    });

    it('an inbound machine starts in handshaking on its connection and sends nothing until hello', () => {
      const h = harness({ direction: 'inbound', connectionId: 'in-1' });
      expectStates(h, ['handshaking']);
      assert.equal(h.context.connectionId, 'in-1');
      assert.equal(h.context.direction, 'inbound');
      assert.equal(h.slots.length, 0);
      assert.deepEqual(h.effects, []);
      assert.deepEqual(timerNames(h), ['handshakeTimeout']);
      rest(h);
    });
  });

  // ======================================================= connecting.queued

  describe('connecting.queued', () => {
    it('DIAL.SLOT -> dialing: the dial starts and the connect timer replaces the queue timer', () => {
      const h = harness({ slot: 'hold' });
      h.advance(250);
      h.grantSlot();
      assert.deepEqual(h.snapshot.value, { connecting: 'dialing' });
      assert.equal(h.dials.length, 1);
      assert.deepEqual(h.dial.input, { peerId: 'peer-b' });
      assert.equal(h.dial.at, 250);
      assert.equal(h.slot.released, false, 'the slot is held while dialing');
      assert.deepEqual(timerNames(h), ['connectTimeout']);
      // The queue timer (due at 300) is gone: nothing happens at 300.
      h.advance(60);
      assert.deepEqual(h.snapshot.value, { connecting: 'dialing' });
      expectStates(h, ['connecting']);
      rest(h);
    });

    it('dial queue timeout -> errored CONNECT_TIMEOUT at exactly dialQueue; queued requests answered once; closed (maxAttempts 1)', () => {
      const h = harness({ slot: 'hold' });
      h.send(streamRequest('r1'));
      h.send(streamRequest('r2'));
      h.send(leaseRequest('l1'));
      h.advance(DELAYS.dialQueue - 1);
      assert.deepEqual(h.snapshot.value, { connecting: 'queued' });
      assert.deepEqual(h.answers(), []);
      h.advance(1);
      expectStates(h, ['connecting', 'errored', 'closed']);
      assert.deepEqual(h.answers(), [
        ['r1', 'CONNECT_TIMEOUT'],
        ['r2', 'CONNECT_TIMEOUT'],
        ['l1', 'CONNECT_TIMEOUT'],
      ]);
      assert.deepEqual(h.closes(), []);
      assert.equal(h.slot.released, true);
      assert.equal(h.dials.length, 0);
      assert.equal(h.status, 'done');
    });

    it('DIAL.QUEUE_FULL -> errored QUEUE_FULL; queued requests answered with it; closed', () => {
      const h = harness({ slot: 'hold' });
      h.send(streamRequest('r1'));
      h.slot.full();
      expectStates(h, ['connecting', 'errored', 'closed']);
      assert.deepEqual(h.answers(), [['r1', 'QUEUE_FULL']]);
      assert.equal(h.context.lastError?.code, 'QUEUE_FULL');
      assert.equal(h.slot.released, true);
    });

    it('a dial queue that refuses at once ends the machine before any dial', () => {
      const h = harness({ slot: 'full' });
      expectStates(h, ['connecting', 'errored', 'closed']);
      assert.equal(h.dials.length, 0);
      assert.equal(h.context.lastError?.code, 'QUEUE_FULL');
    });

    for (const peerId of [LOWER, HIGHER]) {
      it(`CONNECTION.INBOUND -> handshaking on the inbound connection, no tie-break (remote ${peerId})`, () => {
        const h = harness({ slot: 'hold', peerId });
        h.send(streamRequest('r1'));
        h.send(inbound('in-1'));
        expectStates(h, ['connecting', 'handshaking']);
        assert.equal(h.context.connectionId, 'in-1');
        assert.equal(h.context.direction, 'inbound');
        assert.deepEqual(h.rejectedConnections(), []);
        assert.deepEqual(h.controls(), [], 'an inbound handshake waits for hello');
        assert.equal(h.slot.released, true);
        assert.equal(h.dials.length, 0);
        assert.deepEqual(h.answers(), []);
        rest(h);
        h.send(hello('in-1', peerId));
        expectStates(h, ['connecting', 'handshaking', 'ready']);
        assert.deepEqual(h.controls(), [['in-1', HELLO_ACK_MSG]]);
        assert.deepEqual(h.calls('openStream'), [{ id: 'r1', protocol: 'echo/1', connectionId: 'in-1' }]);
      });
    }

    it('REQUEST queues up to maxQueued; the next is answered QUEUE_FULL at once, exactly once', () => {
      const h = harness({ slot: 'hold' });
      for (const id of ['r1', 'r2', 'r3', 'r4']) h.send(streamRequest(id));
      h.send(streamRequest('r5'));
      h.send(leaseRequest('l6'));
      assert.deepEqual(h.answers(), [
        ['r5', 'QUEUE_FULL'],
        ['l6', 'QUEUE_FULL'],
      ]);
      assert.deepEqual(
        h.context.queue.map((r) => r.id),
        ['r1', 'r2', 'r3', 'r4'],
      );
      assert.deepEqual(h.snapshot.value, { connecting: 'queued' });
    });

    it('REQUEST.CANCEL of a queued request answers it with the cancel error; the rest keep their order', async () => {
      const h = harness({ slot: 'hold' });
      h.send(streamRequest('r1'));
      h.send(streamRequest('r2'));
      h.send(streamRequest('r3'));
      h.send({ type: 'REQUEST.CANCEL', id: 'r2', error: ABORTED });
      h.send({ type: 'REQUEST.CANCEL', id: 'r2', error: ABORTED });
      assert.deepEqual(h.answers(), [['r2', 'ABORTED']]);
      h.grantSlot();
      await h.toReady('c1');
      assert.deepEqual(h.opened(), ['r1', 'r3']);
    });
  });

  // ====================================================== connecting.dialing

  describe('connecting.dialing', () => {
    it('the dial resolving -> handshaking: sends hello on the new connection and frees the slot', async () => {
      const h = harness();
      assert.deepEqual(h.snapshot.value, { connecting: 'dialing' });
      await h.resolveDial('c1');
      expectStates(h, ['connecting', 'handshaking']);
      assert.deepEqual(h.controls(), [['c1', HELLO_MSG]]);
      assert.equal(h.context.connectionId, 'c1');
      assert.equal(h.context.direction, 'outbound');
      assert.equal(h.slot.released, true);
      assert.deepEqual(timerNames(h), ['handshakeTimeout']);
      rest(h);
    });

    it('the dial rejecting with an ErrorInfo -> errored with that code; queued requests answered; closed', async () => {
      const h = harness();
      h.send(streamRequest('r1'));
      await h.rejectDial({ code: 'CONNECT_REFUSED', message: 'refused' });
      expectStates(h, ['connecting', 'errored', 'closed']);
      assert.deepEqual(h.answers(), [['r1', 'CONNECT_REFUSED']]);
      assert.deepEqual(h.closes(), []);
    });

    it('the dial rejecting with an Error -> errored CONNECTION_LOST with its message', async () => {
      const h = harness();
      h.send(streamRequest('r1'));
      await h.rejectDial(new Error('boom'));
      expectStates(h, ['connecting', 'errored', 'closed']);
      assert.deepEqual(h.calls('answer'), [{ id: 'r1', error: { code: 'CONNECTION_LOST', message: 'boom' } }]);
    });

    it('connect timeout -> errored CONNECT_TIMEOUT at exactly connect after the slot; the dial is aborted; closed', () => {
      const h = harness({ slot: 'hold' });
      h.advance(40);
      h.grantSlot();
      h.send(streamRequest('r1'));
      h.advance(DELAYS.connect - 1);
      assert.deepEqual(h.snapshot.value, { connecting: 'dialing' });
      assert.equal(h.dial.aborted, false);
      h.advance(1);
      expectStates(h, ['connecting', 'errored', 'closed']);
      assert.equal(h.now, 140);
      assert.deepEqual(h.answers(), [['r1', 'CONNECT_TIMEOUT']]);
      assert.equal(h.dial.aborted, true);
      assert.equal(h.slot.released, true);
      assert.deepEqual(h.closes(), []);
    });

    it('connect timeout with maxAttempts 3: back to connecting after retryBackoff(attempts), twice, then closed', () => {
      const h = harness({ limits: { maxAttempts: 3 } });
      h.send(streamRequest('r1'));
      h.advance(DELAYS.connect);
      expectStates(h, ['connecting', 'errored']);
      assert.deepEqual(h.answers(), [['r1', 'CONNECT_TIMEOUT']]);
      assert.equal(h.context.attempts, 1);
      assert.deepEqual(
        h.activeStateTimers().map((t) => [t.name, t.delay]),
        [['retryBackoff', DELAYS.retryBackoff(1)]],
      );
      rest(h);
      h.advance(DELAYS.retryBackoff(1) - 1);
      assert.equal(h.state, 'errored');
      h.advance(1);
      expectStates(h, ['connecting', 'errored', 'connecting']);
      h.advance(DELAYS.connect);
      assert.equal(h.context.attempts, 2);
      assert.deepEqual(
        h.activeStateTimers().map((t) => [t.name, t.delay]),
        [['retryBackoff', DELAYS.retryBackoff(2)]],
      );
      h.advance(DELAYS.retryBackoff(2));
      h.advance(DELAYS.connect - 1);
      assert.equal(h.state, 'connecting');
      h.advance(1);
      expectStates(h, ['connecting', 'errored', 'connecting', 'errored', 'connecting', 'errored', 'closed']);
      const backoff1 = DELAYS.retryBackoff(1);
      const backoff2 = DELAYS.retryBackoff(2);
      assert.deepEqual(
        h.dials.map((d) => d.at),
        [0, DELAYS.connect + backoff1, 2 * DELAYS.connect + backoff1 + backoff2],
      );
      assert.equal(h.now, 3 * DELAYS.connect + backoff1 + backoff2);
      assert.equal(h.context.attempts, 3);
      assert.equal(h.slots.length, 3);
      assert.ok(h.slots.every((s) => s.released));
      assert.ok(h.dials.every((d) => d.aborted));
      assert.deepEqual(h.answers(), [['r1', 'CONNECT_TIMEOUT']], 'answered once, at the first failure');
    });

    it('a pinned peer retries past maxAttempts for as long as it takes; ready resets attempts', async () => {
      const h = harness({ pinned: true, limits: { maxAttempts: 1 } });
      for (let attempt = 1; attempt <= 5; attempt += 1) {
        h.advance(DELAYS.connect);
        assert.equal(h.state, 'errored');
        assert.equal(h.context.attempts, attempt);
        rest(h);
        h.advance(DELAYS.retryBackoff(attempt));
        assert.equal(h.state, 'connecting');
      }
      assert.equal(h.dials.length, 6);
      await h.resolveDial('c6');
      h.send(helloAck('c6', 'peer-b'));
      expectStates(h, [
        ...Array.from({ length: 5 }, () => ['connecting', 'errored']).flat(),
        'connecting',
        'handshaking',
        'ready',
      ]);
      assert.equal(h.context.attempts, 0);
    });

    it('CONNECTION.INBOUND from a lower peer id wins the simultaneous open: handshaking on it, our dial aborted', () => {
      const h = harness({ peerId: LOWER });
      h.send(streamRequest('r1'));
      h.send(inbound('in-1'));
      expectStates(h, ['connecting', 'handshaking']);
      assert.equal(h.dial.aborted, true);
      assert.deepEqual(h.rejectedConnections(), []);
      assert.equal(h.context.connectionId, 'in-1');
      assert.equal(h.context.direction, 'inbound');
      assert.deepEqual(h.controls(), []);
      assert.deepEqual(
        h.context.queue.map((r) => r.id),
        ['r1'],
      );
      rest(h);
    });

    it('CONNECTION.INBOUND from a higher peer id loses: rejected DuplicateConnection, our dial goes on', async () => {
      const h = harness({ peerId: HIGHER });
      h.send(inbound('in-1'));
      assert.deepEqual(h.rejectedConnections(), [['in-1', C.DuplicateConnection]]);
      assert.deepEqual(h.snapshot.value, { connecting: 'dialing' });
      assert.equal(h.dial.aborted, false);
      await h.resolveDial('c1');
      // Our id is the lower one: ready as soon as the hello is out.
      expectStates(h, READY_OUT);
      assert.deepEqual(h.controls(), [['c1', HELLO_MSG]]);
    });

    it('DIAL.QUEUE_FULL while dialing (a connecting-level transition) -> errored QUEUE_FULL, the dial aborted', () => {
      const h = harness();
      h.send({ type: 'DIAL.QUEUE_FULL' });
      expectStates(h, ['connecting', 'errored', 'closed']);
      assert.equal(h.context.lastError?.code, 'QUEUE_FULL');
      assert.equal(h.dial.aborted, true);
    });
  });

  describe('connecting: DRAIN / FORCE_CLOSE / SHUTDOWN', () => {
    for (const sub of ['queued', 'dialing'] as const) {
      for (const ending of ENDINGS) {
        it(`${ending.name} in connecting.${sub} -> closed; queued requests answered ${ending.code}; nothing to close`, () => {
          const h = harness({ slot: sub === 'queued' ? 'hold' : 'grant' });
          assert.deepEqual(h.snapshot.value, { connecting: sub });
          h.send(streamRequest('r1'));
          h.send(ending.event);
          expectStates(h, ['connecting', 'closed']);
          assert.deepEqual(h.answers(), [['r1', ending.code]]);
          assert.deepEqual(h.closes(), []);
          assert.equal(h.slot.released, true);
          if (sub === 'dialing') assert.equal(h.dial.aborted, true);
          if (ending.event.type === 'FORCE_CLOSE') assert.equal(h.calls('answer')[0]?.error.message, 'operator said so');
          assert.equal(h.status, 'done');
        });
      }
    }
  });

  // ============================================================ handshaking

  describe('handshaking', () => {
    it('HELLO_ACK (right version and peer) -> ready: queued requests opened in order up to maxStreams, leases granted', async () => {
      const h = harness({ limits: { maxQueued: 8, maxStreams: 2 } });
      h.send(streamRequest('s1'));
      h.send(leaseRequest('l1'));
      h.send(streamRequest('s2', 'other/2'));
      h.send(streamRequest('s3'));
      h.send(leaseRequest('l2'));
      await h.resolveDial('c1');
      const mark = h.mark();
      h.send(helloAck('c1', 'peer-b'));
      expectStates(h, READY_OUT);
      assert.deepEqual(h.since(mark), [
        ['openStream', { id: 's1', protocol: 'echo/1', connectionId: 'c1' }],
        ['grantLease', { id: 'l1', connectionId: 'c1' }],
        ['openStream', { id: 's2', protocol: 'other/2', connectionId: 'c1' }],
      ]);
      assert.deepEqual(
        h.context.queue.map((r) => r.id),
        ['s3', 'l2'],
        'a lease waits behind a stream request that has no credit',
      );
      assert.deepEqual(
        h.context.opening.map((r) => r.id),
        ['s1', 's2'],
      );
      assert.equal(h.context.leases, 1);
      assert.equal(h.context.attempts, 0);
      assert.deepEqual(
        h.pendingTimers().filter((t) => t.stateId === null).map((t) => [t.name, t.delay]),
        [
          ['STREAM.OPEN_TIMEOUT', DELAYS.streamOpen],
          ['STREAM.OPEN_TIMEOUT', DELAYS.streamOpen],
        ],
      );
      assert.deepEqual(h.answers(), []);
      rest(h);
    });

    it('HELLO_ACK with another protocol version -> errored PROTOCOL_VIOLATION, closed with ProtocolViolation', async () => {
      const h = harness();
      h.send(streamRequest('r1'));
      await h.resolveDial('c1');
      h.send(helloAck('c1', 'peer-b', PROTOCOL_VERSION + 1));
      expectStates(h, ['connecting', 'handshaking', 'errored', 'closed']);
      assert.deepEqual(h.closes(), [['c1', C.ProtocolViolation]]);
      assert.deepEqual(h.answers(), [['r1', 'PROTOCOL_VIOLATION']]);
    });

    it('HELLO_ACK naming another peer -> errored PEER_IDENTITY_MISMATCH, closed with IdentityMismatch', async () => {
      const h = harness();
      h.send(streamRequest('r1'));
      await h.resolveDial('c1');
      h.send(helloAck('c1', 'peer-x'));
      expectStates(h, ['connecting', 'handshaking', 'errored', 'closed']);
      assert.deepEqual(h.closes(), [['c1', C.IdentityMismatch]]);
      assert.deepEqual(h.answers(), [['r1', 'PEER_IDENTITY_MISMATCH']]);
    });

    it('HELLO_ACK or HELLO on another connection is ignored', async () => {
      const h = harness();
      await h.resolveDial('c1');
      const mark = h.mark();
      h.send(helloAck('c-other', 'peer-b'));
      h.send(helloAck('c-other', 'peer-x', 9));
      h.send(hello('c-other', 'peer-b'));
      assert.equal(h.state, 'handshaking');
      assert.deepEqual(h.since(mark), []);
      rest(h);
    });

    it('inbound: HELLO (right version and peer) -> ready, hello-ack sent on the connection', () => {
      const h = harness({ direction: 'inbound', connectionId: 'in-1' });
      h.send(streamRequest('r1'));
      h.send(hello('in-1', 'peer-b'));
      expectStates(h, ['handshaking', 'ready']);
      assert.deepEqual(h.controls(), [['in-1', HELLO_ACK_MSG]]);
      assert.deepEqual(h.calls('openStream'), [{ id: 'r1', protocol: 'echo/1', connectionId: 'in-1' }]);
      rest(h);
    });

    it('inbound: HELLO with another version -> errored PROTOCOL_VIOLATION, closed with ProtocolViolation', () => {
      const h = harness({ direction: 'inbound', connectionId: 'in-1' });
      h.send(streamRequest('r1'));
      h.send(hello('in-1', 'peer-b', 7));
      expectStates(h, ['handshaking', 'errored', 'closed']);
      assert.deepEqual(h.closes(), [['in-1', C.ProtocolViolation]]);
      assert.deepEqual(h.answers(), [['r1', 'PROTOCOL_VIOLATION']]);
      assert.deepEqual(h.controls(), []);
    });

    it('inbound: HELLO naming another peer -> errored PEER_IDENTITY_MISMATCH, closed with IdentityMismatch', () => {
      const h = harness({ direction: 'inbound', connectionId: 'in-1' });
      h.send(hello('in-1', 'peer-x'));
      expectStates(h, ['handshaking', 'errored', 'closed']);
      assert.deepEqual(h.closes(), [['in-1', C.IdentityMismatch]]);
      assert.equal(h.context.lastError?.code, 'PEER_IDENTITY_MISMATCH');
    });

    it('outbound: a HELLO (the inbound side\'s message) on our connection is a PROTOCOL_VIOLATION', async () => {
      const h = harness();
      await h.resolveDial('c1');
      h.send(hello('c1', 'peer-b'));
      expectStates(h, ['connecting', 'handshaking', 'errored', 'closed']);
      assert.equal(h.context.lastError?.code, 'PROTOCOL_VIOLATION');
      assert.deepEqual(h.closes(), [['c1', C.ProtocolViolation]]);
    });

    it('inbound: a HELLO_ACK (the outbound side\'s message) on our connection is a PROTOCOL_VIOLATION', () => {
      const h = harness({ direction: 'inbound', connectionId: 'in-1' });
      h.send(helloAck('in-1', 'peer-b'));
      expectStates(h, ['handshaking', 'errored', 'closed']);
      assert.equal(h.context.lastError?.code, 'PROTOCOL_VIOLATION');
      assert.deepEqual(h.closes(), [['in-1', C.ProtocolViolation]]);
    });

    it('handshake timeout -> errored HANDSHAKE_TIMEOUT at exactly handshake after the dial; closed with HandshakeTimeout', async () => {
      const h = harness();
      h.advance(30);
      h.send(streamRequest('r1'));
      await h.resolveDial('c1');
      h.advance(DELAYS.handshake - 1);
      assert.equal(h.state, 'handshaking');
      h.advance(1);
      assert.equal(h.now, 30 + DELAYS.handshake);
      expectStates(h, ['connecting', 'handshaking', 'errored', 'closed']);
      assert.deepEqual(h.closes(), [['c1', C.HandshakeTimeout]]);
      assert.deepEqual(h.answers(), [['r1', 'HANDSHAKE_TIMEOUT']]);
    });

    it('handshake timeout of an inbound machine with attempts left -> errored, then connecting (dials out)', () => {
      const h = harness({ direction: 'inbound', connectionId: 'in-1', limits: { maxAttempts: 2 } });
      h.advance(DELAYS.handshake);
      expectStates(h, ['handshaking', 'errored']);
      assert.deepEqual(h.closes(), [['in-1', C.HandshakeTimeout]]);
      h.advance(DELAYS.retryBackoff(1));
      expectStates(h, ['handshaking', 'errored', 'connecting']);
      assert.equal(h.context.direction, 'outbound');
      assert.equal(h.context.connectionId, null);
      assert.equal(h.slots.length, 1);
    });

    const closings: Array<[string, number | undefined, boolean, string, C]> = [
      ['an error with no code', undefined, true, 'CONNECTION_LOST', C.ForceClose],
      ['IdentityMismatch', C.IdentityMismatch, false, 'PEER_IDENTITY_MISMATCH', C.IdentityMismatch],
      ['ProtocolViolation', C.ProtocolViolation, false, 'PROTOCOL_VIOLATION', C.ProtocolViolation],
      ['HeartbeatTimeout', C.HeartbeatTimeout, false, 'HEARTBEAT_TIMEOUT', C.HeartbeatTimeout],
      ['ForceClose', C.ForceClose, false, 'CONNECTION_FORCE_CLOSED', C.ForceClose],
      ['Drain (graceful, still a failure of the handshake)', C.Drain, false, 'CONNECTION_LOST', C.ForceClose],
    ];
    for (const [name, code, error, expected, closeCode] of closings) {
      it(`CONNECTION.CLOSED of the handshaking connection (${name}) -> errored ${expected}`, async () => {
        const h = harness();
        h.send(streamRequest('r1'));
        await h.resolveDial('c1');
        h.send(closedEvent('c1', code, error, 'gone'));
        expectStates(h, ['connecting', 'handshaking', 'errored', 'closed']);
        assert.equal(h.context.lastError?.code, expected);
        assert.deepEqual(h.answers(), [['r1', expected]]);
        assert.deepEqual(h.closes(), [['c1', closeCode]]);
      });
    }

    it('CONNECTION.CLOSED of another connection is ignored', async () => {
      const h = harness();
      await h.resolveDial('c1');
      const mark = h.mark();
      h.send(closedEvent('c-other', undefined, true));
      h.send(closedEvent('c-other', C.DuplicateConnection));
      assert.equal(h.state, 'handshaking');
      assert.equal(h.context.connectionId, 'c1');
      assert.deepEqual(h.since(mark), []);
    });

    it('simultaneous open: the remote (lower id) closes ours with DuplicateConnection; we wait under the same timer; its connection wins', async () => {
      const h = harness({ peerId: LOWER });
      await h.resolveDial('c1');
      h.advance(50);
      h.send(closedEvent('c1', C.DuplicateConnection));
      assert.equal(h.state, 'handshaking');
      assert.equal(h.context.connectionId, null);
      assert.deepEqual(h.clock.pendingTimes(), [DELAYS.handshake], 'the handshake deadline is unchanged');
      rest(h);
      h.advance(50);
      h.send(inbound('in-2'));
      expectStates(h, ['connecting', 'handshaking', 'handshaking']);
      assert.deepEqual(h.closes(), [], 'nothing left to close');
      assert.deepEqual(h.rejectedConnections(), []);
      assert.equal(h.context.connectionId, 'in-2');
      assert.equal(h.context.direction, 'inbound');
      assert.deepEqual(h.clock.pendingTimes(), [100 + DELAYS.handshake], 're-entry restarts the handshake timer');
      assert.deepEqual(h.controls(), [['c1', HELLO_MSG]]);
      h.send(hello('in-2', LOWER));
      expectStates(h, ['connecting', 'handshaking', 'handshaking', 'ready']);
      assert.deepEqual(h.controls(), [
        ['c1', HELLO_MSG],
        ['in-2', HELLO_ACK_MSG],
      ]);
    });

    it('simultaneous open: the remote closed ours and no winner arrives -> HANDSHAKE_TIMEOUT at the first deadline, nothing to close', async () => {
      const h = harness();
      h.send(streamRequest('r1'));
      await h.resolveDial('c1');
      h.advance(50);
      h.send(closedEvent('c1', C.DuplicateConnection));
      h.advance(DELAYS.handshake - 51);
      assert.equal(h.state, 'handshaking');
      h.advance(1);
      expectStates(h, ['connecting', 'handshaking', 'errored', 'closed']);
      assert.deepEqual(h.closes(), []);
      assert.deepEqual(h.answers(), [['r1', 'HANDSHAKE_TIMEOUT']]);
    });

    it('CONNECTION.INBOUND while handshaking ours, remote id lower: ours closed DuplicateConnection, re-enter on the inbound one with a fresh timer', async () => {
      const h = harness({ peerId: LOWER });
      await h.resolveDial('c1');
      h.advance(150);
      h.send(inbound('in-2'));
      expectStates(h, ['connecting', 'handshaking', 'handshaking']);
      assert.deepEqual(h.closes(), [['c1', C.DuplicateConnection]]);
      assert.deepEqual(h.rejectedConnections(), []);
      assert.equal(h.context.connectionId, 'in-2');
      assert.equal(h.context.direction, 'inbound');
      assert.deepEqual(h.controls(), [['c1', HELLO_MSG]], 'no hello on an inbound connection');
      h.advance(DELAYS.handshake - 1);
      assert.equal(h.state, 'handshaking', 'the old deadline (200) passed without effect');
      h.advance(1);
      expectStates(h, ['connecting', 'handshaking', 'handshaking', 'errored', 'closed']);
      assert.deepEqual(h.closes(), [
        ['c1', C.DuplicateConnection],
        ['in-2', C.HandshakeTimeout],
      ]);
    });

    it('our id lower: ready at once; the remote\'s connection of a simultaneous open is rejected with DuplicateConnection, ours goes on', async () => {
      const h = harness({ peerId: HIGHER });
      await h.resolveDial('c1');
      h.send(inbound('in-2'));
      expectStates(h, READY_OUT);
      assert.deepEqual(h.rejectedConnections(), [['in-2', C.DuplicateConnection]]);
      assert.deepEqual(h.closes(), []);
      assert.equal(h.context.connectionId, 'c1');
    });

    it('our id lower: ready as soon as the hello is out (no round trip); queued requests opened; hello-ack later changes nothing', async () => {
      const h = harness({ peerId: HIGHER, limits: { maxQueued: 8, maxStreams: 2 } });
      h.send(streamRequest('s1'));
      h.send(leaseRequest('l1'));
      h.send(streamRequest('s2'));
      const mark = h.mark();
      await h.resolveDial('c1');
      expectStates(h, READY_OUT);
      assert.deepEqual(h.since(mark), [
        ['sendControl', { connectionId: 'c1', message: HELLO_MSG }],
        ['openStream', { id: 's1', protocol: 'echo/1', connectionId: 'c1' }],
        ['grantLease', { id: 'l1', connectionId: 'c1' }],
        ['openStream', { id: 's2', protocol: 'echo/1', connectionId: 'c1' }],
      ]);
      assert.ok(!timerNames(h).includes('handshakeTimeout'));
      h.send(helloAck('c1', HIGHER));
      h.send(helloAck('c1', 'peer-x', PROTOCOL_VERSION + 1));
      expectStates(h, READY_OUT);
      assert.deepEqual(h.answers(), []);
      rest(h);
    });

    const refusals: Array<[string, C, string]> = [
      ['another protocol version', C.ProtocolViolation, 'PROTOCOL_VIOLATION'],
      ['another peer id in our hello', C.IdentityMismatch, 'PEER_IDENTITY_MISMATCH'],
    ];
    for (const [why, code, expected] of refusals) {
      it(`our id lower: the listener refusing our hello (${why}) closes with ${C[code]}; we end ${expected}`, async () => {
        const h = harness({ peerId: HIGHER });
        await h.resolveDial('c1');
        h.send(streamRequest('r1'));
        h.send(closedEvent('c1', code, false, 'refused'));
        expectStates(h, [...READY_OUT, 'errored', 'closed']);
        assert.equal(h.context.lastError?.code, expected);
        assert.deepEqual(h.answers(), [['r1', expected]]);
      });
    }

    it('inbound: streams that arrive before the hello wait for it (bounded), and are decided once ready', () => {
      const h = harness({ direction: 'inbound', connectionId: 'in-1', handlers: ['echo/1'], limits: { maxInboundStreams: 2 } });
      h.send({ type: 'STREAM.INBOUND', connectionId: 'in-1', streamId: 's1', protocol: 'echo/1' });
      h.send({ type: 'STREAM.INBOUND', connectionId: 'in-1', streamId: 's2', protocol: 'nobody/1' });
      h.send({ type: 'STREAM.INBOUND', connectionId: 'in-1', streamId: 's3', protocol: 'echo/1' });
      h.send({ type: 'STREAM.INBOUND', connectionId: 'in-other', streamId: 's4', protocol: 'echo/1' });
      // Past the bound, or on another connection: refused at once.
      assert.deepEqual(h.calls('rejectInbound'), [
        { streamId: 's3', reason: 'connection is not ready' },
        { streamId: 's4', reason: 'connection is not ready' },
      ]);
      assert.deepEqual(h.calls('acceptInbound'), []);
      assert.equal(h.context.heldInbound.length, 2);
      h.send(hello('in-1', 'peer-b'));
      expectStates(h, ['handshaking', 'ready']);
      assert.deepEqual(h.calls('acceptInbound'), [{ streamId: 's1', connectionId: 'in-1' }]);
      assert.deepEqual(h.calls('rejectInbound').at(-1), { streamId: 's2', reason: 'unknown protocol nobody/1' });
      assert.deepEqual(h.context.heldInbound, []);
      assert.equal(h.context.inboundStreams, 1);
    });

    it('inbound: streams held when the handshake fails are refused', () => {
      const h = harness({ direction: 'inbound', connectionId: 'in-1', handlers: ['echo/1'] });
      h.send({ type: 'STREAM.INBOUND', connectionId: 'in-1', streamId: 's1', protocol: 'echo/1' });
      h.advance(DELAYS.handshake);
      expectStates(h, ['handshaking', 'errored', 'closed']);
      assert.deepEqual(h.calls('rejectInbound'), [{ streamId: 's1', reason: 'connection is not ready' }]);
      assert.deepEqual(h.calls('acceptInbound'), []);
    });

    it('CONNECTION.INBOUND while handshaking an inbound connection: the newer wins whatever the ids', () => {
      const h = harness({ direction: 'inbound', connectionId: 'in-1', peerId: HIGHER });
      h.send(inbound('in-2'));
      expectStates(h, ['handshaking', 'handshaking']);
      assert.deepEqual(h.closes(), [['in-1', C.DuplicateConnection]]);
      assert.equal(h.context.connectionId, 'in-2');
      h.send(hello('in-1', HIGHER));
      assert.equal(h.state, 'handshaking', 'hello on the replaced connection is ignored');
      h.send(hello('in-2', HIGHER));
      expectStates(h, ['handshaking', 'handshaking', 'ready']);
      assert.deepEqual(h.controls(), [['in-2', HELLO_ACK_MSG]]);
    });

    it('REQUEST waits in handshaking up to maxQueued; the next is QUEUE_FULL', async () => {
      const h = harness({ limits: { maxQueued: 2 } });
      await h.resolveDial('c1');
      h.send(streamRequest('r1'));
      h.send(leaseRequest('l2'));
      h.send(streamRequest('r3'));
      assert.deepEqual(h.answers(), [['r3', 'QUEUE_FULL']]);
      assert.deepEqual(
        h.context.queue.map((r) => r.id),
        ['r1', 'l2'],
      );
    });

    it('no heartbeat while handshaking: it starts when ready, on the ready connection', async () => {
      // A lower remote: this side waits for the hello-ack.
      const h = harness({ peerId: LOWER });
      await h.resolveDial('c1');
      h.advance(DELAYS.handshake - 1);
      assert.deepEqual(h.beats, []);
      assert.deepEqual(h.controlTimes('ping'), []);
      h.send(helloAck('c1', LOWER));
      assert.deepEqual(h.beats, [{ op: 'start', connectionId: 'c1', at: h.now }]);
      assert.deepEqual(beat(h), ['waiting', 0]);
    });

    for (const ending of ENDINGS) {
      it(`${ending.name} in handshaking -> closed; queued answered ${ending.code}; the connection closed with ${C[ending.close]}`, async () => {
        const h = harness();
        h.send(streamRequest('r1'));
        await h.resolveDial('c1');
        h.send(ending.event);
        expectStates(h, ['connecting', 'handshaking', 'closed']);
        assert.deepEqual(h.answers(), [['r1', ending.code]]);
        assert.deepEqual(h.closes(), [['c1', ending.close]]);
        assert.equal(h.status, 'done');
      });
    }
  });

  // ================================================== ready: streams, leases

  describe('ready: outbound streams and leases', () => {
    it('a stream request with credit is opened at once; STREAM.OPENED delivers it and cancels its open timer', async () => {
      const h = await readyOutbound();
      h.send(streamRequest('s1', 'echo/1'));
      assert.deepEqual(h.calls('openStream'), [{ id: 's1', protocol: 'echo/1', connectionId: 'c1' }]);
      assert.deepEqual(
        h.pendingTimers().filter((t) => t.stateId === null).map((t) => t.name),
        ['STREAM.OPEN_TIMEOUT'],
      );
      h.advance(10);
      opened(h, 's1');
      assert.deepEqual(h.calls('deliverStream'), [{ id: 's1' }]);
      assert.equal(h.context.streams, 1);
      assert.deepEqual(h.context.opening, []);
      assert.deepEqual(
        h.pendingTimers().filter((t) => t.stateId === null),
        [],
      );
      h.advance(DELAYS.streamOpen * 2);
      assert.deepEqual(h.calls('abortOpen'), []);
      assert.deepEqual(h.answers(), []);
      assert.deepEqual(h.snapshot.value, { ready: 'busy' });
      rest(h);
    });

    it('stream credit: maxStreams opening or open at once, the rest queue in order; STREAM.CLOSED releases the next', async () => {
      const h = await readyOutbound({ limits: { maxStreams: 2 } });
      for (const id of ['s1', 's2', 's3', 's4']) h.send(streamRequest(id));
      assert.deepEqual(h.opened(), ['s1', 's2'], 'opening requests use credit');
      opened(h, 's1');
      opened(h, 's2');
      assert.deepEqual(h.opened(), ['s1', 's2'], 'open streams use credit');
      assert.deepEqual(
        h.context.queue.map((r) => r.id),
        ['s3', 's4'],
      );
      streamClosed(h);
      assert.deepEqual(h.opened(), ['s1', 's2', 's3']);
      streamClosed(h);
      assert.deepEqual(h.opened(), ['s1', 's2', 's3', 's4']);
      assert.equal(h.context.queue.length, 0);
      assert.equal(h.context.streams, 0);
      h.send(streamRequest('s5'));
      assert.deepEqual(h.context.queue.map((r) => r.id), ['s5'], 'still no credit: s3 and s4 are opening');
      assert.deepEqual(h.answers(), []);
    });

    it('one STREAM.CLOSED with a count releases that many credits and opens that many queued requests', async () => {
      const h = await readyOutbound({ handlers: ['echo/1'], limits: { maxStreams: 3, maxInboundStreams: 4 } });
      for (const id of ['s1', 's2', 's3', 's4', 's5', 's6']) h.send(streamRequest(id));
      for (const id of ['s1', 's2', 's3']) opened(h, id);
      for (const id of ['i1', 'i2']) h.send({ type: 'STREAM.INBOUND', connectionId: 'c1', streamId: id, protocol: 'echo/1' });
      assert.equal(h.context.streams, 5);
      h.send({ type: 'STREAM.CLOSED', connectionId: 'c1', inbound: false, count: 2 });
      assert.deepEqual(h.opened(), ['s1', 's2', 's3', 's4', 's5'], 'two credits back: the next two open, in order');
      assert.deepEqual(h.context.queue.map((r) => r.id), ['s6']);
      assert.equal(h.context.streams, 3);
      assert.equal(h.context.inboundStreams, 2, 'outbound closes leave inbound streams counted');
      h.send({ type: 'STREAM.CLOSED', connectionId: 'c-other', inbound: false, count: 2 });
      assert.equal(h.context.streams, 3, 'closes on another connection release nothing');
      h.send({ type: 'STREAM.CLOSED', connectionId: 'c1', inbound: true, count: 5 });
      assert.equal(h.context.inboundStreams, 0, 'never below zero');
      assert.equal(h.context.streams, 0);
    });

    it('past maxQueued in ready a request is answered QUEUE_FULL at once, exactly once', async () => {
      const h = await readyOutbound({ limits: { maxStreams: 1, maxQueued: 2 } });
      h.send(streamRequest('s1'));
      h.send(streamRequest('s2'));
      h.send(streamRequest('s3'));
      h.send(streamRequest('s4'));
      assert.deepEqual(h.opened(), ['s1']);
      assert.deepEqual(h.answers(), [['s4', 'QUEUE_FULL']]);
      assert.equal(h.state, 'ready');
    });

    it('a lease is granted at once, even with stream requests queued; LEASE.RELEASE returns it', async () => {
      const h = await readyOutbound({ limits: { maxStreams: 1 } });
      h.send(streamRequest('s1'));
      h.send(streamRequest('s2'));
      h.send(leaseRequest('l1'));
      assert.deepEqual(h.calls('grantLease'), [{ id: 'l1', connectionId: 'c1' }]);
      assert.equal(h.context.leases, 1);
      h.send({ type: 'LEASE.RELEASE', connectionId: 'c1' });
      assert.equal(h.context.leases, 0);
      h.send({ type: 'LEASE.RELEASE', connectionId: 'c1' });
      assert.equal(h.context.leases, 0, 'never below zero');
    });

    it('STREAM.OPEN_FAILED answers the request with its error, cancels its timer, and opens the next queued', async () => {
      const h = await readyOutbound({ limits: { maxStreams: 1 } });
      h.send(streamRequest('s1'));
      h.send(streamRequest('s2'));
      h.advance(20);
      h.send({ type: 'STREAM.OPEN_FAILED', id: 's1', error: { code: 'STREAM_REJECTED', message: 'no handler' } });
      assert.deepEqual(h.answers(), [['s1', 'STREAM_REJECTED']]);
      assert.deepEqual(h.opened(), ['s1', 's2']);
      h.advance(DELAYS.streamOpen - 15);
      assert.deepEqual(h.answers(), [['s1', 'STREAM_REJECTED']], 's1 timer was cancelled; s2 has 15 left');
      assert.deepEqual(h.calls('abortOpen'), []);
      h.advance(15);
      assert.deepEqual(h.answers(), [
        ['s1', 'STREAM_REJECTED'],
        ['s2', 'STREAM_TIMEOUT'],
      ]);
    });

    it('stream open timeout -> STREAM_TIMEOUT at exactly streamOpen, abortOpen, the next queued opened; a late STREAM.OPENED is discarded', async () => {
      const h = await readyOutbound({ limits: { maxStreams: 1 } });
      h.send(streamRequest('s1'));
      h.send(streamRequest('s2'));
      h.advance(DELAYS.streamOpen - 1);
      assert.deepEqual(h.answers(), []);
      h.advance(1);
      assert.deepEqual(h.calls('abortOpen'), [{ id: 's1' }]);
      assert.deepEqual(h.answers(), [['s1', 'STREAM_TIMEOUT']]);
      assert.deepEqual(h.opened(), ['s1', 's2']);
      assert.equal(h.state, 'ready');
      opened(h, 's1');
      assert.deepEqual(h.calls('discardStream'), [{ id: 's1' }]);
      assert.deepEqual(h.calls('deliverStream'), []);
      assert.equal(h.context.streams, 0);
    });

    it('STREAM.OPENED for an unknown id -> discardStream only', async () => {
      const h = await readyOutbound();
      const mark = h.mark();
      opened(h, 'nobody');
      assert.deepEqual(h.since(mark), [['discardStream', { id: 'nobody' }]]);
      assert.equal(h.context.streams, 0);
    });

    it('STREAM.OPEN_FAILED / STREAM.OPEN_TIMEOUT for an id that is not opening are ignored', async () => {
      const h = await readyOutbound();
      const mark = h.mark();
      h.send({ type: 'STREAM.OPEN_FAILED', id: 'nobody', error: { code: 'STREAM_REJECTED', message: 'x' } });
      h.send({ type: 'STREAM.OPEN_TIMEOUT', id: 'nobody' });
      assert.deepEqual(h.since(mark), []);
      assert.equal(h.state, 'ready');
    });

    it('STREAM.CLOSED of another connection releases no credit', async () => {
      const h = await readyOutbound({ limits: { maxStreams: 1 } });
      h.send(streamRequest('s1'));
      opened(h, 's1');
      h.send(streamRequest('s2'));
      streamClosed(h, 'c-other');
      assert.deepEqual(h.opened(), ['s1']);
      assert.equal(h.context.streams, 1);
      streamClosed(h, 'c1');
      assert.deepEqual(h.opened(), ['s1', 's2']);
    });

    it('REQUEST.CANCEL of a queued request answers it with the cancel error and removes it', async () => {
      const h = await readyOutbound({ limits: { maxStreams: 1 } });
      h.send(streamRequest('s1'));
      h.send(streamRequest('s2'));
      h.send(streamRequest('s3'));
      h.send({ type: 'REQUEST.CANCEL', id: 's2', error: ABORTED });
      assert.deepEqual(h.answers(), [['s2', 'ABORTED']]);
      assert.deepEqual(h.calls('abortOpen'), []);
      opened(h, 's1');
      streamClosed(h);
      assert.deepEqual(h.opened(), ['s1', 's3']);
    });

    it('REQUEST.CANCEL of an opening request aborts the open, answers it once, and cancels its open timer', async () => {
      const h = await readyOutbound();
      h.send(streamRequest('s1'));
      h.advance(10);
      h.send({ type: 'REQUEST.CANCEL', id: 's1', error: ABORTED });
      assert.deepEqual(h.calls('abortOpen'), [{ id: 's1' }]);
      assert.deepEqual(h.answers(), [['s1', 'ABORTED']]);
      h.advance(DELAYS.streamOpen);
      assert.deepEqual(h.answers(), [['s1', 'ABORTED']], 'no STREAM_TIMEOUT after the cancel');
      assert.deepEqual(h.context.opening, []);
    });

    it('REQUEST.CANCEL of an opening request frees its credit for the next queued request', async () => {
      const h = await readyOutbound({ limits: { maxStreams: 1 } });
      h.send(streamRequest('s1'));
      h.send(streamRequest('s2'));
      h.send({ type: 'REQUEST.CANCEL', id: 's1', error: ABORTED });
      assert.deepEqual(h.answers(), [['s1', 'ABORTED']]);
      assert.deepEqual(h.opened(), ['s1', 's2'], 's2 should open once s1 no longer holds the only credit');
    });

    it('REQUEST.CANCEL of an unknown id does nothing', async () => {
      const h = await readyOutbound();
      const mark = h.mark();
      h.send({ type: 'REQUEST.CANCEL', id: 'nobody', error: ABORTED });
      assert.deepEqual(h.since(mark), []);
    });
  });

  // =================================================== ready: inbound streams

  describe('ready: inbound streams', () => {
    it('an inbound stream with a handler is accepted; without one it is rejected as unknown protocol', async () => {
      const h = await readyOutbound({ handlers: ['echo/1'] });
      h.send({ type: 'STREAM.INBOUND', connectionId: 'c1', streamId: 'i1', protocol: 'echo/1' });
      h.send({ type: 'STREAM.INBOUND', connectionId: 'c1', streamId: 'i2', protocol: 'nope/1' });
      assert.deepEqual(h.calls('acceptInbound'), [{ streamId: 'i1', connectionId: 'c1' }]);
      assert.deepEqual(h.calls('rejectInbound'), [{ streamId: 'i2', reason: 'unknown protocol nope/1' }]);
      assert.equal(h.context.streams, 1);
      assert.equal(h.context.inboundStreams, 1);
    });

    it('past maxInboundStreams an inbound stream is rejected; STREAM.CLOSED (inbound) frees a slot', async () => {
      const h = await readyOutbound({ handlers: ['echo/1'], limits: { maxInboundStreams: 2 } });
      for (const id of ['i1', 'i2', 'i3']) h.send({ type: 'STREAM.INBOUND', connectionId: 'c1', streamId: id, protocol: 'echo/1' });
      assert.deepEqual(
        h.calls('acceptInbound').map((a) => a.streamId),
        ['i1', 'i2'],
      );
      assert.deepEqual(h.calls('rejectInbound'), [{ streamId: 'i3', reason: 'too many streams' }]);
      streamClosed(h, 'c1', true);
      assert.equal(h.context.inboundStreams, 1);
      h.send({ type: 'STREAM.INBOUND', connectionId: 'c1', streamId: 'i4', protocol: 'echo/1' });
      assert.deepEqual(
        h.calls('acceptInbound').map((a) => a.streamId),
        ['i1', 'i2', 'i4'],
      );
    });

    it('inbound streams do not use outbound stream credit', async () => {
      const h = await readyOutbound({ handlers: ['echo/1'], limits: { maxStreams: 2, maxInboundStreams: 2 } });
      h.send({ type: 'STREAM.INBOUND', connectionId: 'c1', streamId: 'i1', protocol: 'echo/1' });
      h.send({ type: 'STREAM.INBOUND', connectionId: 'c1', streamId: 'i2', protocol: 'echo/1' });
      h.send(streamRequest('s1'));
      h.send(streamRequest('s2'));
      h.send(streamRequest('s3'));
      assert.deepEqual(h.opened(), ['s1', 's2']);
      streamClosed(h, 'c1', true);
      assert.deepEqual(h.opened(), ['s1', 's2'], 'an inbound stream closing frees no outbound credit');
    });

    it('an inbound stream on another connection is rejected', async () => {
      const h = await readyOutbound({ handlers: ['echo/1'] });
      h.send({ type: 'STREAM.INBOUND', connectionId: 'c-old', streamId: 'i1', protocol: 'echo/1' });
      assert.deepEqual(h.calls('acceptInbound'), []);
      assert.equal(h.calls('rejectInbound').length, 1);
      assert.equal(h.calls('rejectInbound')[0]?.streamId, 'i1');
    });
  });

  // ========================================================= ready: heartbeat

  describe('ready: heartbeat (the runtime scheduler, started and stopped by the machine)', () => {
    it('pings every heartbeatInterval while pongs come back; seq counts up; no machine step per ping', async () => {
      const h = await readyOutbound();
      const t0 = h.now;
      const steps = h.states.length;
      h.advance(DELAYS.heartbeatInterval - 1);
      assert.deepEqual(h.controlTimes('ping'), []);
      h.advance(1);
      assert.deepEqual(h.controls().slice(1), [['c1', { type: 'ping', seq: 1 }]]);
      assert.deepEqual(h.snapshot.value, { ready: 'idle' });
      assert.deepEqual(beat(h), ['pinging', 0]);
      rest(h);
      h.advance(100);
      pong(h, 1);
      assert.deepEqual(beat(h), ['waiting', 0]);
      rest(h);
      h.advance(DELAYS.heartbeatInterval);
      assert.deepEqual(h.controlTimes('ping'), [t0 + 1000, t0 + 2100]);
      assert.deepEqual(h.controls()[2], ['c1', { type: 'ping', seq: 2 }]);
      assert.equal(h.states.length, steps, 'the machine took no step');
      assert.equal(h.state, 'ready');
    });

    it('without pongs pings keep a fixed cadence; HEARTBEAT_TIMEOUT at exactly interval x misses + timeout; closed with HeartbeatTimeout', async () => {
      const h = await readyOutbound({ limits: { maxStreams: 0 } });
      const t0 = h.now;
      h.send(streamRequest('q1'));
      const total = DELAYS.heartbeatInterval * 3 + DELAYS.heartbeatTimeout;
      h.advance(DELAYS.heartbeatInterval + DELAYS.heartbeatTimeout);
      assert.deepEqual(beat(h), ['missed', 1]);
      rest(h);
      h.advance(total - 1 - (DELAYS.heartbeatInterval + DELAYS.heartbeatTimeout));
      assert.equal(h.state, 'ready');
      assert.deepEqual(beat(h), ['pinging', 2]);
      h.advance(1);
      expectStates(h, [...READY_OUT, 'errored', 'closed']);
      assert.deepEqual(h.controlTimes('ping'), [t0 + 1000, t0 + 2000, t0 + 3000]);
      assert.deepEqual(
        h.calls('sendControl').filter((c) => c.message.type === 'ping').map((c) => (c.message as { seq: number }).seq),
        [1, 2, 3],
      );
      assert.equal(h.context.lastError?.code, 'HEARTBEAT_TIMEOUT');
      assert.equal(h.context.lastError?.message, 'no heartbeat answer after 3 tries');
      assert.deepEqual(h.closes(), [['c1', C.HeartbeatTimeout]]);
      assert.deepEqual(h.answers(), [['q1', 'HEARTBEAT_TIMEOUT']]);
      assert.deepEqual(h.beats.map((b) => b.op), ['start', 'stop']);
      assert.equal(h.heartbeats.size, 0);
    });

    for (const misses of [1, 2, 3]) {
      it(`misses ${misses}: HEARTBEAT_TIMEOUT exactly interval x ${misses} + timeout after the last pong, not a millisecond sooner`, async () => {
        const h = await readyOutbound({ heartbeatMisses: misses, delays: { streamOpen: 60_000 } });
        h.advance(DELAYS.heartbeatInterval + 150);
        pong(h, 1);
        const lastPong = h.now;
        h.send(streamRequest('s1'));
        expectHeartbeatFailureAt(h, lastPong + DELAYS.heartbeatInterval * misses + DELAYS.heartbeatTimeout);
        assert.equal(h.pingTimes().length, 1 + misses);
        assert.deepEqual(h.calls('abortOpen'), [{ id: 's1' }]);
        assert.deepEqual(h.answers(), [['s1', 'HEARTBEAT_TIMEOUT']]);
        assert.deepEqual(h.closes(), [['c1', C.HeartbeatTimeout]]);
      });

      it(`misses ${misses}, after an answered probe: HEARTBEAT_TIMEOUT exactly interval x ${misses} + timeout after the probe's pong`, async () => {
        const h = await readyOutbound({ heartbeatMisses: misses });
        h.advance(DELAYS.heartbeatInterval + 150);
        pong(h, 1);
        h.advance(333);
        assert.ok(h.probe());
        h.advance(7);
        pong(h, 2);
        expectHeartbeatFailureAt(h, h.now + DELAYS.heartbeatInterval * misses + DELAYS.heartbeatTimeout);
        assert.equal(h.context.lastError?.message, `no heartbeat answer after ${misses} tries`);
      });

      it(`misses ${misses}, an unanswered probe: HEARTBEAT_TIMEOUT exactly one timeout after it, whatever misses allow`, async () => {
        const h = await readyOutbound({ heartbeatMisses: misses });
        h.advance(DELAYS.heartbeatInterval + 150);
        pong(h, 1);
        h.advance(250);
        h.probe();
        expectHeartbeatFailureAt(h, h.now + DELAYS.heartbeatTimeout);
        assert.equal(h.context.lastError?.code, 'HEARTBEAT_TIMEOUT');
        assert.equal(h.context.lastError?.message, 'no answer to the probe after a network change');
        assert.deepEqual(h.closes(), [['c1', C.HeartbeatTimeout]]);
      });
    }

    it('a pong with the wrong seq or on another connection is no answer', async () => {
      const h = await readyOutbound();
      h.advance(DELAYS.heartbeatInterval);
      pong(h, 99);
      pong(h, 1, 'c-other');
      assert.deepEqual(beat(h), ['pinging', 0]);
      h.advance(DELAYS.heartbeatTimeout);
      assert.deepEqual(beat(h), ['missed', 1]);
    });

    it('a late pong (after its ping was counted missed) still resets the miss count', async () => {
      const h = await readyOutbound();
      const t0 = h.now;
      h.advance(1500);
      assert.deepEqual(beat(h), ['missed', 1]);
      pong(h, 1);
      assert.deepEqual(beat(h), ['missed', 0]);
      // Misses again at 2400, 3400, the third (fatal) at 4400 instead of 3400.
      h.advance(t0 + 4399 - h.now);
      assert.equal(h.state, 'ready');
      assert.deepEqual(beat(h), ['pinging', 2]);
      h.advance(1);
      expectStates(h, [...READY_OUT, 'errored', 'closed']);
    });

    it('HEARTBEAT.FAILED for another connection, or outside ready, is ignored', async () => {
      const h = await readyOutbound();
      h.send({ type: 'HEARTBEAT.FAILED', connectionId: 'c-other', misses: 3, probe: false });
      assert.equal(h.state, 'ready');
      const g = harness({ slot: 'hold' });
      const mark = g.mark();
      g.send({ type: 'HEARTBEAT.FAILED', connectionId: 'c1', misses: 3, probe: false });
      assert.equal(g.state, 'connecting');
      assert.deepEqual(g.since(mark), []);
    });

    it('the heartbeat dies with ready: none while draining (grpc-js issue 3068), none after a close, none after a reconnect to handshaking', async () => {
      const h = await readyOutbound({ delays: { drain: 60_000 } });
      h.send(leaseRequest('l1'));
      h.send({ type: 'DRAIN' });
      assert.equal(h.state, 'draining');
      assert.deepEqual(h.beats.map((b) => [b.op, b.connectionId]), [['start', 'c1'], ['stop', 'c1']]);
      assert.equal(h.heartbeat, undefined);
      assert.equal(h.heartbeats.size, 0);
      assert.equal(h.heartbeats.armedAt, Infinity, 'no heartbeat timer left on the clock');
      h.advance(DELAYS.heartbeatInterval * 10);
      assert.deepEqual(h.controlTimes('ping'), []);
      const g = readyInbound({ peerId: LOWER });
      g.send(inbound('in-2'));
      assert.equal(g.state, 'handshaking');
      assert.deepEqual(g.beats.map((b) => [b.op, b.connectionId]), [['start', 'in-1'], ['stop', 'in-1']]);
      assert.equal(g.heartbeats.size, 0);
      g.send(hello('in-2', LOWER));
      assert.deepEqual(g.beats.map((b) => [b.op, b.connectionId]).slice(2), [['start', 'in-2']]);
      assert.equal(g.heartbeats.size, 1);
    });
  });

  // ============================================================== ready: idle

  describe('ready: idle', () => {
    it('idle timeout -> draining -> closed at exactly idle after ready: goaway sent, closed with IdleTimeout', async () => {
      const h = await readyOutbound();
      const t0 = h.now;
      h.advanceAnswering(DELAYS.idle - 1);
      assert.equal(h.state, 'ready');
      h.advanceAnswering(1);
      assert.equal(h.now, t0 + DELAYS.idle);
      expectStates(h, [...READY_OUT, 'draining', 'closed']);
      assert.deepEqual(h.controls().filter(([, m]) => m.type === 'goaway'), [['c1', { type: 'goaway' }]]);
      assert.deepEqual(h.closes(), [['c1', C.IdleTimeout]]);
      assert.equal(h.context.ending?.code, C.IdleTimeout);
    });

    it('not while a lease is held; the idle timer restarts from the release', async () => {
      const h = await readyOutbound();
      h.advanceAnswering(100);
      h.send(leaseRequest('l1'));
      assert.deepEqual(h.snapshot.value, { ready: 'busy' });
      h.advanceAnswering(8000);
      assert.equal(h.state, 'ready');
      h.send({ type: 'LEASE.RELEASE', connectionId: 'c1' });
      const released = h.now;
      h.advanceAnswering(DELAYS.idle - 1);
      assert.equal(h.state, 'ready');
      h.advanceAnswering(1);
      assert.equal(h.now, released + DELAYS.idle);
      assert.equal(h.status, 'done');
      assert.deepEqual(h.closes(), [['c1', C.IdleTimeout]]);
    });

    it('not while a stream is open', async () => {
      const h = await readyOutbound();
      h.send(streamRequest('s1'));
      opened(h, 's1');
      h.advanceAnswering(DELAYS.idle * 2);
      assert.equal(h.state, 'ready');
      streamClosed(h);
      const closedAt = h.now;
      h.advanceAnswering(DELAYS.idle);
      assert.equal(h.now, closedAt + DELAYS.idle);
      expectStates(h, [...READY_OUT, 'draining', 'closed']);
    });

    it('not while a stream is opening', async () => {
      const h = await readyOutbound({ delays: { streamOpen: 60_000 } });
      h.send(streamRequest('s1'));
      h.advanceAnswering(DELAYS.idle * 2);
      assert.equal(h.state, 'ready');
      assert.deepEqual(h.snapshot.value, { ready: 'busy' });
    });

    it('not while a request is queued', async () => {
      const h = await readyOutbound({ limits: { maxStreams: 0 } });
      h.send(streamRequest('q1'));
      assert.deepEqual(
        h.context.queue.map((r) => r.id),
        ['q1'],
      );
      h.advanceAnswering(DELAYS.idle * 2);
      assert.equal(h.state, 'ready');
      assert.deepEqual(h.snapshot.value, { ready: 'busy' });
      h.send({ type: 'REQUEST.CANCEL', id: 'q1', error: ABORTED });
      assert.deepEqual(h.snapshot.value, { ready: 'idle' });
    });

    it('PRUNE when idle -> draining -> closed with IdleTimeout; PRUNE while busy is ignored', async () => {
      const h = await readyOutbound();
      h.send(leaseRequest('l1'));
      h.send({ type: 'PRUNE' });
      assert.equal(h.state, 'ready');
      h.send({ type: 'LEASE.RELEASE', connectionId: 'c1' });
      h.send({ type: 'PRUNE' });
      expectStates(h, [...READY_OUT, 'draining', 'closed']);
      assert.deepEqual(h.controls().at(-1), ['c1', { type: 'goaway' }]);
      assert.deepEqual(h.closes(), [['c1', C.IdleTimeout]]);
      assert.match(h.context.ending?.error.message ?? '', /pruned/);
    });
  });

  // =================================================== ready: goaway, endings

  describe('ready: GOAWAY', () => {
    it('GOAWAY on the current connection, nothing in flight -> draining -> closed; no goaway back; closed with Drain', async () => {
      const h = await readyOutbound();
      h.send({ type: 'CONTROL.GOAWAY', connectionId: 'c1' });
      expectStates(h, [...READY_OUT, 'draining', 'closed']);
      assert.deepEqual(h.controlTypes(), ['hello']);
      assert.deepEqual(h.closes(), [['c1', C.Drain]]);
    });

    it('GOAWAY with a stream open: draining refuses requests CONNECTION_DRAINING until the stream closes, then closed', async () => {
      const h = await readyOutbound({ limits: { maxStreams: 1 } });
      h.send(streamRequest('s1'));
      opened(h, 's1');
      h.send(streamRequest('q1'));
      h.send({ type: 'CONTROL.GOAWAY', connectionId: 'c1' });
      expectStates(h, [...READY_OUT, 'draining']);
      assert.deepEqual(h.answers(), [['q1', 'CONNECTION_DRAINING']]);
      rest(h);
      h.send(streamRequest('r2'));
      assert.deepEqual(h.answers(), [
        ['q1', 'CONNECTION_DRAINING'],
        ['r2', 'CONNECTION_DRAINING'],
      ]);
      streamClosed(h);
      expectStates(h, [...READY_OUT, 'draining', 'closed']);
      assert.deepEqual(h.closes(), [['c1', C.Drain]]);
    });

    it('GOAWAY on another connection is ignored', async () => {
      const h = await readyOutbound();
      h.send({ type: 'CONTROL.GOAWAY', connectionId: 'c-other' });
      expectStates(h, READY_OUT);
    });

    it('pinned: GOAWAY with nothing in flight -> draining -> errored CONNECTION_LOST -> connecting after retryBackoff', async () => {
      const h = await readyOutbound({ pinned: true });
      h.send({ type: 'CONTROL.GOAWAY', connectionId: 'c1' });
      expectStates(h, [...READY_OUT, 'draining', 'errored']);
      assert.equal(h.context.lastError?.code, 'CONNECTION_LOST');
      assert.deepEqual(h.controlTypes(), ['hello'], 'no goaway back to a remote that is draining');
      assert.equal(h.closes().length, 1);
      assert.equal(h.closes()[0]?.[0], 'c1');
      rest(h);
      h.advance(DELAYS.retryBackoff(1) - 1);
      assert.equal(h.state, 'errored');
      h.advance(1);
      expectStates(h, [...READY_OUT, 'draining', 'errored', 'connecting']);
      assert.equal(h.slots.length, 2);
    });

    it('pinned: GOAWAY with a stream open waits in draining; the stream closing -> errored -> connecting', async () => {
      const h = await readyOutbound({ pinned: true });
      h.send(streamRequest('s1'));
      opened(h, 's1');
      h.send({ type: 'CONTROL.GOAWAY', connectionId: 'c1' });
      expectStates(h, [...READY_OUT, 'draining']);
      streamClosed(h);
      expectStates(h, [...READY_OUT, 'draining', 'errored']);
      h.advance(DELAYS.retryBackoff(1));
      expectStates(h, [...READY_OUT, 'draining', 'errored', 'connecting']);
    });

    it('pinned: GOAWAY with a stream open, then the remote closes the connection -> errored -> connecting (a pinned peer reconnects)', async () => {
      const h = await readyOutbound({ pinned: true });
      h.send(streamRequest('s1'));
      opened(h, 's1');
      h.send({ type: 'CONTROL.GOAWAY', connectionId: 'c1' });
      // The remote's drain deadline passed: it force closes with our stream still open.
      h.send(closedEvent('c1', C.ForceClose, false, 'drain deadline'));
      expectStates(h, [...READY_OUT, 'draining', 'errored']);
      h.advance(DELAYS.retryBackoff(1));
      expectStates(h, [...READY_OUT, 'draining', 'errored', 'connecting']);
    });
    it('pinned: GOAWAY with a stream open past our drain deadline -> forceClosed, and the pinned peer still reconnects', async () => {
      const h = await readyOutbound({ pinned: true });
      h.send(streamRequest('s1'));
      opened(h, 's1');
      h.send({ type: 'CONTROL.GOAWAY', connectionId: 'c1' });
      h.advanceAnswering(DELAYS.drain);
      expectStates(h, [...READY_OUT, 'draining', 'forceClosed']);
      assert.deepEqual(h.closes(), [['c1', C.ForceClose]]);
      h.advance(DELAYS.forceCloseGrace);
      assert.equal(h.status, 'active', 'a pinned peer is never given up');
      h.advance(DELAYS.retryBackoff(1) * 4);
      assert.ok(h.slots.length >= 2, 'a new dial slot was asked for');
    });
  });

  describe('ready: DRAIN / SHUTDOWN / FORCE_CLOSE', () => {
    it('DRAIN -> draining: goaway sent, queued answered CONNECTION_DRAINING, opening streams finish; settled -> closed with Drain', async () => {
      const h = await readyOutbound({ limits: { maxStreams: 1 } });
      h.send(streamRequest('s1'));
      h.send(streamRequest('q1'));
      h.send({ type: 'DRAIN' });
      expectStates(h, [...READY_OUT, 'draining']);
      assert.deepEqual(h.controls().at(-1), ['c1', { type: 'goaway' }]);
      assert.deepEqual(h.answers(), [['q1', 'CONNECTION_DRAINING']]);
      assert.deepEqual(h.calls('abortOpen'), []);
      opened(h, 's1');
      assert.deepEqual(h.calls('deliverStream'), [{ id: 's1' }]);
      assert.equal(h.state, 'draining');
      streamClosed(h);
      expectStates(h, [...READY_OUT, 'draining', 'closed']);
      assert.deepEqual(h.closes(), [['c1', C.Drain]]);
      assert.deepEqual(h.answers(), [['q1', 'CONNECTION_DRAINING']]);
    });

    it('SHUTDOWN (graceful) -> draining with ENGINE_STOPPED; settled -> closed with Shutdown', async () => {
      const h = await readyOutbound();
      h.send(leaseRequest('l1'));
      h.send({ type: 'SHUTDOWN', force: false });
      expectStates(h, [...READY_OUT, 'draining']);
      h.send(streamRequest('r1'));
      assert.deepEqual(h.answers(), [['r1', 'ENGINE_STOPPED']]);
      h.send({ type: 'LEASE.RELEASE', connectionId: 'c1' });
      expectStates(h, [...READY_OUT, 'draining', 'closed']);
      assert.deepEqual(h.closes(), [['c1', C.Shutdown]]);
      assert.deepEqual(h.controlTypes(), ['hello', 'goaway']);
    });

    it('SHUTDOWN (force) -> forceClosed: opening aborted, opening and queued answered ENGINE_STOPPED, closed with Shutdown; CONNECTION.CLOSED -> closed', async () => {
      const h = await readyOutbound({ limits: { maxStreams: 1 } });
      h.send(streamRequest('s1'));
      h.send(streamRequest('q1'));
      h.send({ type: 'SHUTDOWN', force: true });
      expectStates(h, [...READY_OUT, 'forceClosed']);
      assert.deepEqual(h.calls('abortOpen'), [{ id: 's1' }]);
      assert.deepEqual(h.answers(), [
        ['s1', 'ENGINE_STOPPED'],
        ['q1', 'ENGINE_STOPPED'],
      ]);
      assert.deepEqual(h.closes(), [['c1', C.Shutdown]]);
      rest(h);
      h.send(closedEvent('c1', C.Shutdown));
      expectStates(h, [...READY_OUT, 'forceClosed', 'closed']);
      assert.deepEqual(h.closes(), [['c1', C.Shutdown]], 'not closed again');
      h.advance(DELAYS.streamOpen * 2);
      assert.deepEqual(h.answers().length, 2, 'no STREAM_TIMEOUT after the end');
    });

    it('FORCE_CLOSE -> forceClosed: answered CONNECTION_FORCE_CLOSED with the reason, closed with ForceClose; closed after forceCloseGrace', async () => {
      const h = await readyOutbound();
      h.send(streamRequest('s1'));
      h.send({ type: 'FORCE_CLOSE', reason: 'operator said so' });
      expectStates(h, [...READY_OUT, 'forceClosed']);
      assert.deepEqual(h.calls('answer'), [
        { id: 's1', error: { code: 'CONNECTION_FORCE_CLOSED', message: 'operator said so', closeCode: C.ForceClose } },
      ]);
      assert.deepEqual(h.closes(), [['c1', C.ForceClose]]);
      const entered = h.now;
      h.advance(DELAYS.forceCloseGrace - 1);
      assert.equal(h.state, 'forceClosed');
      h.advance(1);
      assert.equal(h.now, entered + DELAYS.forceCloseGrace);
      expectStates(h, [...READY_OUT, 'forceClosed', 'closed']);
      assert.ok(h.closes().every(([id, code]) => id === 'c1' && code === C.ForceClose));
      assert.equal(h.answers().length, 1);
    });
  });

  describe('ready: CONNECTION.CLOSED', () => {
    for (const code of [C.Drain, C.Shutdown, C.IdleTimeout]) {
      it(`graceful close (${C[code]}, no error) of an unpinned peer -> closed; opening aborted and answered CONNECTION_LOST`, async () => {
        const h = await readyOutbound();
        h.send(streamRequest('s1'));
        h.send(closedEvent('c1', code, false, 'bye'));
        expectStates(h, [...READY_OUT, 'closed']);
        assert.deepEqual(h.calls('abortOpen'), [{ id: 's1' }]);
        assert.deepEqual(h.answers(), [['s1', 'CONNECTION_LOST']]);
        assert.equal(h.context.lastError?.code, 'CONNECTION_LOST');
      });
    }

    it('a close with error (even with a graceful code) -> errored CONNECTION_LOST; with attempts left -> connecting after retryBackoff', async () => {
      const h = await readyOutbound({ limits: { maxAttempts: 2 } });
      h.send(streamRequest('s1'));
      h.send(closedEvent('c1', C.Drain, true, 'reset'));
      expectStates(h, [...READY_OUT, 'errored']);
      assert.deepEqual(h.answers(), [['s1', 'CONNECTION_LOST']]);
      assert.deepEqual(h.calls('abortOpen'), [{ id: 's1' }]);
      assert.equal(h.context.attempts, 1);
      h.advance(DELAYS.retryBackoff(1));
      expectStates(h, [...READY_OUT, 'errored', 'connecting']);
    });

    it('a close with HeartbeatTimeout from the remote -> errored HEARTBEAT_TIMEOUT', async () => {
      const h = await readyOutbound();
      h.send(closedEvent('c1', C.HeartbeatTimeout, false, 'dead'));
      expectStates(h, [...READY_OUT, 'errored', 'closed']);
      assert.equal(h.context.lastError?.code, 'HEARTBEAT_TIMEOUT');
    });

    it('a graceful close of a pinned peer -> errored -> connecting', async () => {
      const h = await readyOutbound({ pinned: true });
      h.send(closedEvent('c1', C.Drain, false, 'bye'));
      expectStates(h, [...READY_OUT, 'errored']);
      h.advance(DELAYS.retryBackoff(1));
      expectStates(h, [...READY_OUT, 'errored', 'connecting']);
    });

    it('CONNECTION.CLOSED of another connection is ignored', async () => {
      const h = await readyOutbound();
      h.send(closedEvent('c-other', undefined, true));
      h.send(closedEvent('c-other', C.Drain, false));
      expectStates(h, READY_OUT);
      assert.deepEqual(h.closes(), []);
    });
  });

  describe('ready: simultaneous open', () => {
    it('inbound from a lower peer id replaces ours: opens fail CONNECTION_LOST, ours closed DuplicateConnection, the queue survives to the new ready', async () => {
      const h = await readyOutbound({ peerId: LOWER, limits: { maxStreams: 1 } });
      h.send(streamRequest('s1'));
      h.send(streamRequest('s2'));
      h.advance(10);
      h.send(inbound('in-2'));
      expectStates(h, [...READY_OUT, 'handshaking']);
      assert.deepEqual(h.calls('abortOpen'), [{ id: 's1' }]);
      assert.deepEqual(h.answers(), [['s1', 'CONNECTION_LOST']]);
      assert.deepEqual(h.closes(), [['c1', C.DuplicateConnection]]);
      assert.deepEqual(h.rejectedConnections(), []);
      assert.equal(h.context.connectionId, 'in-2');
      assert.equal(h.context.direction, 'inbound');
      assert.deepEqual(
        h.context.queue.map((r) => r.id),
        ['s2'],
      );
      assert.deepEqual(h.controlTypes(), ['hello']);
      rest(h);
      h.advance(DELAYS.streamOpen);
      assert.deepEqual(h.answers(), [['s1', 'CONNECTION_LOST']], 's1 open timer cancelled');
      h.send(hello('in-2', LOWER));
      expectStates(h, [...READY_OUT, 'handshaking', 'ready']);
      assert.deepEqual(h.controls().at(-1), ['in-2', HELLO_ACK_MSG]);
      assert.deepEqual(h.calls('openStream').at(-1), { id: 's2', protocol: 'echo/1', connectionId: 'in-2' });
    });

    it('inbound from a higher peer id loses: rejected DuplicateConnection, ready unchanged', async () => {
      const h = await readyOutbound({ peerId: HIGHER });
      h.send(inbound('in-2'));
      expectStates(h, READY_OUT);
      assert.deepEqual(h.rejectedConnections(), [['in-2', C.DuplicateConnection]]);
      assert.deepEqual(h.closes(), []);
      assert.equal(h.context.connectionId, 'c1');
    });

    it('ready on an inbound connection: a newer inbound one replaces it whatever the ids', () => {
      const h = readyInbound({ peerId: HIGHER });
      h.send(inbound('in-2'));
      expectStates(h, ['handshaking', 'ready', 'handshaking']);
      assert.deepEqual(h.closes(), [['in-1', C.DuplicateConnection]]);
      assert.equal(h.context.connectionId, 'in-2');
    });
  });

  // ================================================================ draining

  describe('draining', () => {
    /** Ready, s1 opening, s2 open, a lease held, then DRAIN. */
    async function draining(options: HarnessOptions = {}, event: ConnectionEvent = { type: 'DRAIN' }): Promise<Harness> {
      const h = await readyOutbound({ delays: { streamOpen: 60_000 }, ...options });
      h.send(streamRequest('s2'));
      opened(h, 's2');
      h.send(streamRequest('s1'));
      h.send(leaseRequest('l1'));
      h.send(event);
      assert.equal(h.state, 'draining');
      return h;
    }

    it('REQUEST is answered with the ending error: CONNECTION_DRAINING for DRAIN, ENGINE_STOPPED for SHUTDOWN', async () => {
      const h1 = await draining();
      h1.send(streamRequest('r1'));
      h1.send(leaseRequest('r2'));
      assert.deepEqual(h1.answers(), [
        ['r1', 'CONNECTION_DRAINING'],
        ['r2', 'CONNECTION_DRAINING'],
      ]);
      const h2 = await draining({}, { type: 'SHUTDOWN', force: false });
      h2.send(streamRequest('r1'));
      assert.deepEqual(h2.answers(), [['r1', 'ENGINE_STOPPED']]);
      rest(h1);
      rest(h2);
    });

    it('STREAM.OPENED of an opening request delivers it; of another id discards it', async () => {
      const h = await draining();
      opened(h, 's1');
      opened(h, 'nobody');
      assert.deepEqual(h.calls('deliverStream'), [{ id: 's2' }, { id: 's1' }]);
      assert.deepEqual(h.calls('discardStream'), [{ id: 'nobody' }]);
      assert.equal(h.context.streams, 2);
    });

    it('STREAM.OPEN_FAILED answers the opening request; the rest settling -> closed with Drain', async () => {
      const h = await draining();
      h.send({ type: 'STREAM.OPEN_FAILED', id: 's1', error: { code: 'STREAM_REJECTED', message: 'x' } });
      assert.deepEqual(h.answers(), [['s1', 'STREAM_REJECTED']]);
      h.send({ type: 'LEASE.RELEASE', connectionId: 'c1' });
      assert.equal(h.state, 'draining');
      streamClosed(h);
      expectStates(h, [...READY_OUT, 'draining', 'closed']);
      assert.deepEqual(h.closes(), [['c1', C.Drain]]);
    });

    it('the stream open timeout in draining aborts and answers STREAM_TIMEOUT', async () => {
      const h = await readyOutbound({ delays: { drain: 5000 } });
      h.send(streamRequest('s1'));
      h.send({ type: 'DRAIN' });
      h.advance(DELAYS.streamOpen);
      assert.deepEqual(h.calls('abortOpen'), [{ id: 's1' }]);
      assert.deepEqual(h.answers(), [['s1', 'STREAM_TIMEOUT']]);
      expectStates(h, [...READY_OUT, 'draining', 'closed']);
    });

    it('STREAM.INBOUND is rejected "connection is draining", even with a handler', async () => {
      const h = await draining({ handlers: ['echo/1'] });
      h.send({ type: 'STREAM.INBOUND', connectionId: 'c1', streamId: 'i1', protocol: 'echo/1' });
      assert.deepEqual(h.calls('rejectInbound'), [{ streamId: 'i1', reason: 'connection is draining' }]);
      assert.deepEqual(h.calls('acceptInbound'), []);
    });

    it('LEASE.RELEASE of the last lease settles -> closed', async () => {
      const h = await readyOutbound();
      h.send(leaseRequest('l1'));
      h.send({ type: 'DRAIN' });
      assert.equal(h.state, 'draining');
      h.send({ type: 'LEASE.RELEASE', connectionId: 'c1' });
      expectStates(h, [...READY_OUT, 'draining', 'closed']);
      assert.deepEqual(h.closes(), [['c1', C.Drain]]);
    });

    it('CONNECTION.CLOSED of the current connection -> closed, without closing it again; opening answered', async () => {
      const h = await draining();
      h.send(closedEvent('c-other', C.Drain));
      assert.equal(h.state, 'draining');
      h.send(closedEvent('c1', C.Drain, false, 'bye'));
      expectStates(h, [...READY_OUT, 'draining', 'closed']);
      assert.deepEqual(h.closes(), []);
      assert.deepEqual(h.calls('abortOpen'), [{ id: 's1' }]);
      assert.deepEqual(h.answers(), [['s1', 'CONNECTION_DRAINING']]);
    });

    it('drain deadline -> forceClosed at exactly drain: opening aborted and answered CONNECTION_FORCE_CLOSED, closed with ForceClose; CONNECTION.CLOSED -> closed', async () => {
      const h = await draining();
      const entered = h.now;
      h.advanceAnswering(DELAYS.drain - 1);
      assert.equal(h.state, 'draining');
      h.advanceAnswering(1);
      assert.equal(h.now, entered + DELAYS.drain);
      expectStates(h, [...READY_OUT, 'draining', 'forceClosed']);
      assert.deepEqual(h.calls('abortOpen'), [{ id: 's1' }]);
      assert.deepEqual(h.calls('answer'), [
        { id: 's1', error: { code: 'CONNECTION_FORCE_CLOSED', message: 'drain deadline passed', closeCode: C.ForceClose } },
      ]);
      assert.deepEqual(h.closes(), [['c1', C.ForceClose]]);
      rest(h);
      h.send(closedEvent('c1', C.ForceClose));
      expectStates(h, [...READY_OUT, 'draining', 'forceClosed', 'closed']);
      assert.deepEqual(h.closes(), [['c1', C.ForceClose]]);
    });

    it('drain deadline after a graceful SHUTDOWN keeps ENGINE_STOPPED; closed with ForceClose; closed after forceCloseGrace', async () => {
      const h = await draining({}, { type: 'SHUTDOWN', force: false });
      h.advance(DELAYS.drain);
      expectStates(h, [...READY_OUT, 'draining', 'forceClosed']);
      assert.deepEqual(h.answers(), [['s1', 'ENGINE_STOPPED']]);
      assert.deepEqual(h.closes(), [['c1', C.ForceClose]]);
      h.send(streamRequest('r9'));
      assert.deepEqual(h.answers().at(-1), ['r9', 'ENGINE_STOPPED']);
      h.advance(DELAYS.forceCloseGrace - 1);
      assert.equal(h.state, 'forceClosed');
      h.advance(1);
      expectStates(h, [...READY_OUT, 'draining', 'forceClosed', 'closed']);
    });

    it('FORCE_CLOSE -> forceClosed (ForceClose); SHUTDOWN force -> forceClosed (Shutdown)', async () => {
      const h1 = await draining();
      h1.send({ type: 'FORCE_CLOSE' });
      expectStates(h1, [...READY_OUT, 'draining', 'forceClosed']);
      assert.deepEqual(h1.closes(), [['c1', C.ForceClose]]);
      assert.deepEqual(h1.answers(), [['s1', 'CONNECTION_FORCE_CLOSED']]);
      const h2 = await draining();
      h2.send({ type: 'SHUTDOWN', force: true });
      expectStates(h2, [...READY_OUT, 'draining', 'forceClosed']);
      assert.deepEqual(h2.closes(), [['c1', C.Shutdown]]);
      assert.deepEqual(h2.answers(), [['s1', 'ENGINE_STOPPED']]);
    });

    it('DRAIN, PRUNE and GOAWAY are ignored while draining', async () => {
      const h = await draining();
      const mark = h.mark();
      h.send({ type: 'DRAIN' });
      h.send({ type: 'PRUNE' });
      h.send({ type: 'CONTROL.GOAWAY', connectionId: 'c1' });
      assert.equal(h.state, 'draining');
      assert.deepEqual(h.since(mark), []);
      assert.equal(h.context.ending?.code, C.Drain);
    });

    it('SHUTDOWN (graceful) keeps draining but as a shutdown: no effect now, the ending becomes ENGINE_STOPPED', async () => {
      const h = await draining();
      const mark = h.mark();
      h.send({ type: 'SHUTDOWN', force: false });
      assert.equal(h.state, 'draining');
      assert.deepEqual(h.since(mark), []);
      assert.equal(h.context.ending?.code, C.Shutdown);
      assert.equal(h.context.ending?.error.code, 'ENGINE_STOPPED');
      assert.equal(h.context.ending?.remote, false);
    });

    it('CONNECTION.INBOUND is rejected DuplicateConnection', async () => {
      const h = await draining();
      const mark = h.mark();
      h.send(inbound('in-9'));
      assert.deepEqual(h.since(mark), [['rejectConnection', { connectionId: 'in-9', code: C.DuplicateConnection }]]);
      assert.equal(h.state, 'draining');
    });

    it('REQUEST.CANCEL of the last opening request settles -> closed', async () => {
      const h = await readyOutbound({ delays: { streamOpen: 60_000 } });
      h.send(streamRequest('s1'));
      h.send({ type: 'DRAIN' });
      h.send({ type: 'REQUEST.CANCEL', id: 's1', error: ABORTED });
      assert.deepEqual(h.answers(), [['s1', 'ABORTED']]);
      assert.deepEqual(h.calls('abortOpen'), [{ id: 's1' }]);
      expectStates(h, [...READY_OUT, 'draining', 'closed']);
    });
  });

  // ============================================================= forceClosed

  describe('forceClosed', () => {
    it('REQUEST is refused with the ending error', async () => {
      const h = await readyOutbound();
      h.send({ type: 'FORCE_CLOSE' });
      h.send(streamRequest('r1'));
      assert.deepEqual(h.calls('answer'), [
        { id: 'r1', error: { code: 'CONNECTION_FORCE_CLOSED', message: 'connection is forcing destruction', closeCode: C.ForceClose } },
      ]);
    });

    it('CONNECTION.CLOSED of another connection is ignored; of the current one -> closed', async () => {
      const h = await readyOutbound();
      h.send({ type: 'FORCE_CLOSE' });
      h.send(closedEvent('c-other', C.ForceClose));
      assert.equal(h.state, 'forceClosed');
      h.send(closedEvent('c1', C.ForceClose));
      expectStates(h, [...READY_OUT, 'forceClosed', 'closed']);
      assert.deepEqual(h.closes(), [['c1', C.ForceClose]]);
    });

    it('STREAM.OPENED is discarded, STREAM.INBOUND and CONNECTION.INBOUND rejected, the rest ignored', async () => {
      const h = await readyOutbound({ handlers: ['echo/1'] });
      h.send({ type: 'FORCE_CLOSE' });
      const mark = h.mark();
      opened(h, 'x1');
      h.send({ type: 'STREAM.INBOUND', connectionId: 'c1', streamId: 'i1', protocol: 'echo/1' });
      h.send(inbound('in-9'));
      h.send({ type: 'DRAIN' });
      h.send({ type: 'SHUTDOWN', force: true });
      h.send({ type: 'FORCE_CLOSE' });
      h.send({ type: 'LEASE.RELEASE', connectionId: 'c1' });
      streamClosed(h);
      assert.deepEqual(h.since(mark), [
        ['discardStream', { id: 'x1' }],
        ['rejectInbound', { streamId: 'i1', reason: 'connection is not ready' }],
        ['rejectConnection', { connectionId: 'in-9', code: C.DuplicateConnection }],
      ]);
      assert.equal(h.state, 'forceClosed');
      rest(h);
    });
  });

  // ================================================================= errored

  describe('errored', () => {
    async function erroredWithRetry(): Promise<Harness> {
      const h = harness({ limits: { maxAttempts: 2 } });
      h.advance(DELAYS.connect);
      assert.equal(h.state, 'errored');
      return h;
    }

    it('while backing off, REQUEST is answered at once with the error that put it there', async () => {
      const h = await erroredWithRetry();
      h.send(streamRequest('r1'));
      h.send(leaseRequest('l1'));
      assert.deepEqual(h.answers(), [
        ['r1', 'CONNECT_TIMEOUT'],
        ['l1', 'CONNECT_TIMEOUT'],
      ]);
      assert.equal(h.state, 'errored');
      rest(h);
    });

    it('CONNECTION.INBOUND while backing off -> handshaking on it; HELLO -> ready resets attempts', async () => {
      const h = await erroredWithRetry();
      h.send(inbound('in-1'));
      expectStates(h, ['connecting', 'errored', 'handshaking']);
      assert.equal(h.context.connectionId, 'in-1');
      assert.equal(h.context.direction, 'inbound');
      assert.deepEqual(h.rejectedConnections(), []);
      h.send(hello('in-1', 'peer-b'));
      expectStates(h, ['connecting', 'errored', 'handshaking', 'ready']);
      assert.equal(h.context.attempts, 0);
      assert.equal(h.context.lastError, null);
    });

    for (const ending of ENDINGS) {
      it(`${ending.name} while backing off -> closed at once, nothing to answer or close`, async () => {
        const h = await erroredWithRetry();
        const mark = h.mark();
        h.send(ending.event);
        expectStates(h, ['connecting', 'errored', 'closed']);
        assert.deepEqual(h.since(mark), []);
        assert.equal(h.status, 'done');
        h.advance(DELAYS.retryBackoff(1) * 4);
        assert.equal(h.slots.length, 1, 'no reconnect after the end');
      });
    }

    it('STREAM.OPENED is discarded and STREAM.INBOUND rejected while backing off', async () => {
      const h = await erroredWithRetry();
      const mark = h.mark();
      opened(h, 'x');
      h.send({ type: 'STREAM.INBOUND', connectionId: 'c1', streamId: 'i1', protocol: 'echo/1' });
      assert.deepEqual(h.since(mark), [
        ['discardStream', { id: 'x' }],
        ['rejectInbound', { streamId: 'i1', reason: 'connection is not ready' }],
      ]);
    });
  });

  // ======================================================= errored: dial backoff

  describe('errored: dial backoff and waitForReady', () => {
    /** An unpinned peer with no retry left whose dial timed out. */
    function failedDial(options: HarnessOptions = {}): Harness {
      const h = harness({ limits: { dialBackoff: true }, ...options });
      h.advance(DELAYS.connect);
      assert.equal(h.state, 'errored');
      return h;
    }

    it('no attempt left after a failed dial: stays errored for the dial backoff, then closes without dialling', async () => {
      const h = failedDial();
      expectStates(h, ['connecting', 'errored']);
      rest(h);
      assert.deepEqual(timerNames(h), ['retryBackoff']);
      h.send(streamRequest('r1'));
      assert.deepEqual(h.answers(), [['r1', 'CONNECT_TIMEOUT']], 'a fresh request fails fast with the failure');
      h.advance(DELAYS.retryBackoff(1) - 1);
      assert.equal(h.state, 'errored');
      h.advance(1);
      expectStates(h, ['connecting', 'errored', 'closed']);
      assert.equal(h.slots.length, 1, 'no second dial');
    });

    it('a waitForReady request stays queued; at the end of the backoff the peer is dialled again for it', async () => {
      const h = failedDial();
      h.send(waitingRequest('w1'));
      assert.deepEqual(h.answers(), []);
      assert.equal(h.context.queue.length, 1);
      h.advance(DELAYS.retryBackoff(1));
      expectStates(h, ['connecting', 'errored', 'connecting']);
      assert.equal(h.slots.length, 2);
      // It fails again: the request stays for the next try, with a longer backoff.
      await h.rejectDial({ code: 'CONNECT_REFUSED', message: 'refused' });
      expectStates(h, ['connecting', 'errored', 'connecting', 'errored']);
      assert.deepEqual(h.answers(), []);
      assert.equal(h.context.attempts, 2);
      assert.deepEqual(h.pendingTimers().map((t) => [t.name, t.delay]), [['retryBackoff', DELAYS.retryBackoff(2)]]);
      h.advance(DELAYS.retryBackoff(2));
      await h.toReady('c2');
      assert.deepEqual(h.opened(), ['w1']);
    });

    it('waitForReady requests queued while connecting survive a failed dial; plain ones are answered', async () => {
      const h = harness({ limits: { dialBackoff: true } });
      h.send(waitingRequest('w1'));
      h.send(streamRequest('r1'));
      h.advance(DELAYS.connect);
      assert.deepEqual(h.answers(), [['r1', 'CONNECT_TIMEOUT']]);
      assert.deepEqual(h.context.queue.map((r) => r.id), ['w1']);
    });

    it('past maxQueued a waitForReady request is refused QUEUE_FULL', async () => {
      const h = failedDial({ limits: { dialBackoff: true, maxQueued: 1 } });
      h.send(waitingRequest('w1'));
      h.send(waitingRequest('w2'));
      assert.deepEqual(h.answers(), [['w2', 'QUEUE_FULL']]);
    });

    it('a cancelled waitForReady request leaves the queue; the backoff then closes the machine', async () => {
      const h = failedDial();
      h.send(waitingRequest('w1'));
      h.send({ type: 'REQUEST.CANCEL', id: 'w1', error: ABORTED });
      assert.deepEqual(h.answers(), [['w1', 'ABORTED']]);
      h.advance(DELAYS.retryBackoff(1));
      assert.equal(h.state, 'closed');
    });

    it('a connection that had been ready and is lost is not backed off: closed at once', async () => {
      const h = await readyOutbound({ limits: { dialBackoff: true } });
      h.send(closedEvent('c1', undefined, true, 'connection lost'));
      expectStates(h, [...READY_OUT, 'errored', 'closed']);
    });

    it('an inbound connection that fails its handshake is not backed off (we dialled nothing)', async () => {
      const h = harness({ direction: 'inbound', connectionId: 'in-1', limits: { dialBackoff: true } });
      h.advance(DELAYS.handshake);
      expectStates(h, ['handshaking', 'errored', 'closed']);
    });

    it('a peer with no address is not backed off (nothing was dialled)', async () => {
      const h = harness({ limits: { dialBackoff: true } });
      await h.rejectDial({ code: 'NO_ADDRESS', message: 'no address' });
      expectStates(h, ['connecting', 'errored', 'closed']);
    });

    it('PRUNE closes a peer backing off with nobody waiting; one with a waiting request stays', async () => {
      const h = failedDial();
      h.send(waitingRequest('w1'));
      h.send({ type: 'PRUNE' });
      assert.equal(h.state, 'errored');
      h.send({ type: 'REQUEST.CANCEL', id: 'w1', error: ABORTED });
      h.send({ type: 'PRUNE' });
      expectStates(h, ['connecting', 'errored', 'closed']);
    });

    it('a pinned peer is never pruned while backing off', async () => {
      const h = harness({ pinned: true });
      h.advance(DELAYS.connect);
      h.send({ type: 'PRUNE' });
      assert.equal(h.state, 'errored');
    });
  });

  // ================================================= pinned: give-up and unpin

  describe('pinned peers: give-up limit, restart intensity, PIN', () => {
    it('pinnedMaxAttempts consecutive failed attempts -> gaveUp (final), answering what waits', async () => {
      const h = harness({ pinned: true, limits: { pinnedMaxAttempts: 3 } });
      h.send(waitingRequest('w1'));
      h.advance(DELAYS.connect);
      h.advance(DELAYS.retryBackoff(1));
      h.advance(DELAYS.connect);
      h.advance(DELAYS.retryBackoff(2));
      assert.equal(h.context.attempts, 2);
      assert.deepEqual(h.answers(), [], 'a waiting request waits through the retries');
      h.advance(DELAYS.connect);
      expectStates(h, ['connecting', 'errored', 'connecting', 'errored', 'connecting', 'errored', 'gaveUp']);
      assert.equal(h.status, 'done');
      assert.deepEqual(h.answers(), [['w1', 'CONNECT_TIMEOUT']]);
      assert.deepEqual(h.clock.pendingTimes(), []);
    });

    it('a pinned peer that reaches ready starts counting its attempts again', async () => {
      const h = harness({ pinned: true, limits: { pinnedMaxAttempts: 2 } });
      h.advance(DELAYS.connect);
      h.advance(DELAYS.retryBackoff(1));
      await h.toReady('c1');
      h.send(closedEvent('c1', undefined, true, 'lost'));
      assert.equal(h.state, 'errored');
      assert.equal(h.context.attempts, 1);
    });

    it('restart intensity: more than maxRestarts failures within the period -> gaveUp, however often it was ready', async () => {
      const h = harness({ pinned: true, limits: { maxRestarts: 2 } });
      await h.toReady('c1');
      for (const [i, c] of ['c1', 'c2'].entries()) {
        h.send(closedEvent(c, undefined, true, 'lost'));
        assert.equal(h.context.restarts, i + 1);
        h.advance(DELAYS.retryBackoff(1));
        await h.toReady(i === 0 ? 'c2' : 'c3');
      }
      h.send(closedEvent('c3', undefined, true, 'lost'));
      assert.equal(h.state, 'gaveUp');
      assert.equal(h.context.lastError?.code, 'CONNECTION_LOST');
    });

    it('restart intensity: each failure leaves the window after restartPeriod (RESTART.DECAY)', async () => {
      const h = harness({ pinned: true, limits: { maxRestarts: 1 } });
      await h.toReady('c1');
      h.send(closedEvent('c1', undefined, true, 'lost'));
      assert.equal(h.context.restarts, 1);
      assert.ok(h.pendingTimers().some((t) => t.name === 'RESTART.DECAY' && t.delay === DELAYS.restartPeriod));
      h.advance(DELAYS.retryBackoff(1));
      await h.toReady('c2');
      h.advanceAnswering(DELAYS.restartPeriod);
      assert.equal(h.context.restarts, 0);
      h.send(closedEvent('c2', undefined, true, 'lost'));
      assert.equal(h.state, 'errored', 'one failure per period is within the intensity');
    });

    it('without a restart limit no decay timer is kept', async () => {
      const h = harness({ pinned: true });
      h.advance(DELAYS.connect);
      assert.equal(h.context.restarts, 0);
      assert.ok(!h.pendingTimers().some((t) => t.name === 'RESTART.DECAY'));
    });

    it('PIN false while a pinned peer backs off: it stops retrying and closes at once', async () => {
      const h = harness({ pinned: true });
      h.advance(DELAYS.connect);
      h.advance(DELAYS.retryBackoff(1));
      h.advance(DELAYS.connect);
      assert.equal(h.state, 'errored');
      h.send({ type: 'PIN', pinned: false });
      expectStates(h, ['connecting', 'errored', 'connecting', 'errored', 'closed']);
    });

    it('PIN false on a ready pinned peer lets it idle out; PIN true keeps it', async () => {
      const h = await readyOutbound({ pinned: true });
      assert.deepEqual(h.snapshot.value, { ready: 'busy' });
      h.send({ type: 'PIN', pinned: false });
      assert.deepEqual(h.snapshot.value, { ready: 'idle' });
      h.send({ type: 'PIN', pinned: true });
      assert.deepEqual(h.snapshot.value, { ready: 'busy' });
      h.send({ type: 'PIN', pinned: false });
      h.advanceAnswering(DELAYS.idle);
      expectStates(h, [...READY_OUT, 'draining', 'closed']);
    });

    it('PIN true gives a fresh retry budget: failures while unpinned do not count', async () => {
      const h = harness({ limits: { maxAttempts: 5, pinnedMaxAttempts: 2 } });
      h.advance(DELAYS.connect);
      h.advance(DELAYS.retryBackoff(1));
      h.advance(DELAYS.connect);
      assert.equal(h.context.attempts, 2);
      h.send({ type: 'PIN', pinned: true });
      assert.equal(h.state, 'errored');
      assert.equal(h.context.attempts, 0);
    });
  });

  // ============================================================ ready: probe

  describe('ready: probe (engine.networkChanged(), through the heartbeat)', () => {
    it('pings at once; a pong in time keeps it ready with the heartbeat cadence restarted from the pong', async () => {
      const h = await readyOutbound();
      h.advance(100);
      assert.ok(h.probe());
      assert.deepEqual(beat(h), ['probing', 0]);
      assert.deepEqual(h.controls().at(-1), ['c1', { type: 'ping', seq: 1 }]);
      h.advance(10);
      pong(h, 1);
      assert.deepEqual(beat(h), ['waiting', 0]);
      assert.equal(h.heartbeat?.dueAt, h.now + DELAYS.heartbeatInterval);
      rest(h);
    });

    it('a probe while a ping is out replaces it: the old pong no longer counts', async () => {
      const h = await readyOutbound();
      h.advance(DELAYS.heartbeatInterval);
      h.probe();
      pong(h, 1);
      assert.deepEqual(beat(h), ['probing', 0]);
      pong(h, 2);
      assert.deepEqual(beat(h), ['waiting', 0]);
    });

    it('a probe while probing pings again and restarts the timeout', async () => {
      const h = await readyOutbound();
      h.probe();
      h.advance(100);
      h.probe();
      assert.deepEqual(h.controls().slice(1), [['c1', { type: 'ping', seq: 1 }], ['c1', { type: 'ping', seq: 2 }]]);
      h.advance(DELAYS.heartbeatTimeout - 1);
      assert.equal(h.state, 'ready');
      h.advance(1);
      expectStates(h, [...READY_OUT, 'errored', 'closed']);
    });

    it('no heartbeat, nothing to probe outside ready', async () => {
      const h = harness({ slot: 'hold' });
      const mark = h.mark();
      assert.equal(h.probe(), false);
      assert.deepEqual(h.since(mark), []);
      assert.equal(h.state, 'connecting');
    });
  });

  // ================================================== ready: per-protocol limits

  describe('ready: per-protocol limits', () => {
    it('an inbound stream a protocol limit refuses is NACKed by limitInbound and not counted', async () => {
      const h = await readyOutbound({ handlers: ['echo/1', 'capped/1'], limited: ['capped/1'] });
      h.send({ type: 'STREAM.INBOUND', connectionId: 'c1', streamId: 'i1', protocol: 'capped/1' });
      h.send({ type: 'STREAM.INBOUND', connectionId: 'c1', streamId: 'i2', protocol: 'echo/1' });
      assert.deepEqual(h.calls('limitInbound'), [{ streamId: 'i1', protocol: 'capped/1', connectionId: 'c1' }]);
      assert.deepEqual(h.calls('acceptInbound'), [{ streamId: 'i2', connectionId: 'c1' }]);
      assert.equal(h.context.inboundStreams, 1);
    });

    it('on another connection the usual rejection applies', async () => {
      const h = await readyOutbound({ handlers: ['capped/1'], limited: ['capped/1'] });
      h.send({ type: 'STREAM.INBOUND', connectionId: 'c-old', streamId: 'i1', protocol: 'capped/1' });
      assert.deepEqual(h.calls('limitInbound'), []);
      assert.deepEqual(h.calls('rejectInbound'), [{ streamId: 'i1', reason: 'connection is being replaced' }]);
    });
  });

  // ================================================================== closed

  describe('closed', () => {
    it('is final: status done, no timer left, later events change and call nothing', async () => {
      const h = await readyOutbound({ handlers: ['echo/1'] });
      h.send(streamRequest('s1'));
      h.send({ type: 'FORCE_CLOSE' });
      h.send(closedEvent('c1', C.ForceClose));
      assert.equal(h.state, 'closed');
      assert.equal(h.status, 'done');
      assert.deepEqual(h.clock.pendingTimes(), []);
      const mark = h.mark();
      const events: ConnectionEvent[] = [
        streamRequest('r1'),
        { type: 'DRAIN' },
        { type: 'SHUTDOWN', force: true },
        inbound('in-2'),
        { type: 'STREAM.OPENED', id: 's1' },
        { type: 'STREAM.INBOUND', connectionId: 'c1', streamId: 'i1', protocol: 'echo/1' },
        { type: 'HEARTBEAT.FAILED', connectionId: 'c1', misses: 3, probe: false },
      ];
      for (const event of events) assert.doesNotThrow(() => h.send(event));
      h.advance(100_000);
      assert.deepEqual(h.since(mark), []);
      assert.equal(h.state, 'closed');
    });
  });

  // ======================================================= events that do not apply

  describe('events that do not apply are ignored (no throw, state unchanged)', () => {
    /** Events that apply in none of the states below. */
    const stray: ConnectionEvent[] = [
      { type: 'HEARTBEAT.FAILED', connectionId: 'c-other', misses: 3, probe: false },
      { type: 'CONTROL.GOAWAY', connectionId: 'c-other' },
      { type: 'CONTROL.HELLO', connectionId: 'c-other', version: 1, peerId: 'peer-b' },
      { type: 'CONTROL.HELLO_ACK', connectionId: 'c-other', version: 1, peerId: 'peer-b' },
      { type: 'STREAM.OPEN_FAILED', id: 'nobody', error: { code: 'STREAM_REJECTED', message: 'x' } },
      { type: 'STREAM.OPEN_TIMEOUT', id: 'nobody' },
      { type: 'STREAM.CLOSED', connectionId: 'c-other', inbound: false },
      { type: 'CONNECTION.CLOSED', connectionId: 'c-other', code: undefined, error: true, reason: 'x' },
      { type: 'REQUEST.CANCEL', id: 'nobody', error: ABORTED },
    ];
    const DIAL_SLOT: ConnectionEvent = { type: 'DIAL.SLOT' };
    const QUEUE_FULL: ConnectionEvent = { type: 'DIAL.QUEUE_FULL' };
    const PRUNE: ConnectionEvent = { type: 'PRUNE' };
    const RELEASE: ConnectionEvent = { type: 'LEASE.RELEASE', connectionId: 'c1' };
    const GOAWAY_C1: ConnectionEvent = { type: 'CONTROL.GOAWAY', connectionId: 'c1' };
    const STREAM_CLOSED_C1: ConnectionEvent = { type: 'STREAM.CLOSED', connectionId: 'c1', inbound: false };

    /** Each state, with the events defined elsewhere that it must ignore. */
    const places: Array<{ name: string; make: () => Promise<Harness>; extra: ConnectionEvent[] }> = [
      {
        name: 'connecting.queued',
        make: async () => harness({ slot: 'hold' }),
        extra: [PRUNE, RELEASE, GOAWAY_C1, STREAM_CLOSED_C1, helloAck('c1', 'peer-b')],
      },
      {
        name: 'connecting.dialing',
        make: async () => harness(),
        extra: [DIAL_SLOT, PRUNE, RELEASE, GOAWAY_C1, helloAck('c1', 'peer-b')],
      },
      {
        name: 'handshaking',
        make: async () => {
          const h = harness();
          await h.resolveDial('c1');
          return h;
        },
        extra: [DIAL_SLOT, QUEUE_FULL, PRUNE, RELEASE, GOAWAY_C1, STREAM_CLOSED_C1],
      },
      {
        name: 'ready',
        make: () => readyOutbound(),
        extra: [DIAL_SLOT, QUEUE_FULL, hello('c1', 'peer-b'), helloAck('c1', 'peer-b')],
      },
      {
        name: 'draining',
        make: async () => {
          const h = await readyOutbound();
          h.send(leaseRequest('l1'));
          h.send({ type: 'DRAIN' });
          return h;
        },
        extra: [DIAL_SLOT, QUEUE_FULL, PRUNE, GOAWAY_C1, hello('c1', 'peer-b'), helloAck('c1', 'peer-b')],
      },
      {
        name: 'forceClosed',
        make: async () => {
          const h = await readyOutbound();
          h.send({ type: 'FORCE_CLOSE' });
          return h;
        },
        extra: [DIAL_SLOT, QUEUE_FULL, PRUNE, RELEASE, GOAWAY_C1, STREAM_CLOSED_C1, hello('c1', 'peer-b')],
      },
      {
        name: 'errored',
        make: async () => {
          const h = harness({ limits: { maxAttempts: 2 } });
          h.advance(DELAYS.connect);
          return h;
        },
        extra: [DIAL_SLOT, QUEUE_FULL, RELEASE, { type: 'CONNECTION.CLOSED', connectionId: 'c1', code: 1, error: true, reason: 'x' }],
      },
    ];

    for (const place of places) {
      it(`in ${place.name}`, async () => {
        const h = await place.make();
        const value = JSON.stringify(h.snapshot.value);
        const states = [...h.states];
        const mark = h.mark();
        for (const event of [...stray, ...place.extra]) {
          assert.doesNotThrow(() => h.send(event), event.type);
          assert.equal(JSON.stringify(h.snapshot.value), value, `after ${event.type}`);
        }
        assert.deepEqual(h.states, states);
        assert.deepEqual(h.since(mark), []);
        assert.equal(h.status, 'active');
        rest(h);
      });
    }
  });

  // ========================================================== the timer invariant

  describe('invariant: every non-final state at rest has a pending timer of its own', () => {
    it('holds along a long walk through every state', async () => {
      const h = harness({ slot: 'hold', pinned: true, handlers: ['echo/1'], limits: { maxAttempts: 3 } });
      const seen = new Set<string>();
      const check = (): void => {
        rest(h);
        seen.add(JSON.stringify(h.snapshot.value));
      };
      check(); // connecting.queued
      h.advance(DELAYS.dialQueue);
      check(); // errored
      h.advance(DELAYS.retryBackoff(1));
      check(); // connecting.queued again
      h.grantSlot();
      check(); // connecting.dialing
      await h.resolveDial('c1');
      check(); // handshaking
      h.send(closedEvent('c1', C.DuplicateConnection));
      check(); // handshaking with no connection
      h.send(inbound('in-1'));
      check(); // handshaking inbound
      h.send(hello('in-1', 'peer-b'));
      check(); // ready busy (a pinned peer is never idle)
      h.send(leaseRequest('l1'));
      check(); // ready busy: no timer of XState's, the heartbeat's only
      assert.deepEqual(timerNames(h), []);
      const phases = [h.heartbeat?.phase];
      h.advance(DELAYS.heartbeatInterval);
      check(); // heartbeat pinging
      phases.push(h.heartbeat?.phase);
      h.advance(DELAYS.heartbeatTimeout);
      check(); // heartbeat missed
      phases.push(h.heartbeat?.phase);
      h.probe();
      check(); // heartbeat probing
      phases.push(h.heartbeat?.phase);
      assert.deepEqual(phases, ['waiting', 'pinging', 'missed', 'probing']);
      h.send({ type: 'CONTROL.GOAWAY', connectionId: 'in-1' });
      check(); // draining (pinned, lease held)
      h.advance(DELAYS.drain);
      check(); // forceClosed
      assert.deepEqual(
        [...seen].sort(),
        [
          '"errored"',
          '"draining"',
          '"forceClosed"',
          '"handshaking"',
          '{"connecting":"dialing"}',
          '{"connecting":"queued"}',
          // A pinned peer is never idle.
          '{"ready":"busy"}',
        ].sort(),
      );
      h.advance(DELAYS.forceCloseGrace);
      // A pinned peer the remote drained is not given up: it backs off to reconnect.
      assert.equal(h.state, 'errored');
      check(); // errored, backing off
      h.send({ type: 'FORCE_CLOSE' });
      assert.equal(h.status, 'done');
      assert.throws(() => h.assertHasPendingTimer(), /done/);
    });

    it('counts only timers of states the machine is in: a stray stream-open timer does not satisfy it', async () => {
      const h = await readyOutbound();
      h.send(streamRequest('s1'));
      h.send({ type: 'FORCE_CLOSE' });
      const names = h.pendingTimers().map((t) => t.name).sort();
      assert.ok(names.includes('forceCloseGrace'));
      assert.deepEqual(timerNames(h), ['forceCloseGrace']);
      assert.ok(
        h.activeStateTimers().every((t) => t.stateId === 'peerConnection.forceClosed'),
        'timers of states left behind (ready) are not counted',
      );
    });
  });
});
