import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, chmod, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSocket } from 'node:dgram';
import { QUICClient, QUICSocket, errors as quicErrors, events as quicEvents, type QUICStream } from '@matrixai/quic';
import {
  CERT_FILE,
  DEFAULT_TRANSPORT_POLICY,
  IdentityError,
  KEY_FILE,
  TransportError,
  createQuicAdapter,
  generateIdentity,
  loadIdentity,
  parseQuicAddress,
  peerIdFromCertificate,
  peerIdFromPublicKey,
  publicKeyFromPeerId,
  quicAddress,
  quicTimings,
  saveIdentity,
  type QuicAdapter,
  type QuicAdapterOptions,
  type QuicIdentity,
} from '../../adapters/quic/index.js';
import type { CloseInfo, Connection, IncomingStream, Stream, TransportPolicy } from '../../protocol/adapter.js';
import type { ControlMessage } from '../../protocol/control.js';
import { ACK, END_FRAME, FrameParser, encodeControl, encodeDataFrame, encodeHeader } from '../../adapters/quic/wire.js';
import { ConnectionErrorCode, reasonFor } from '../../protocol/codes.js';
import { adapterCompliance } from './compliance.js';
import { escapedErrors } from '../fixtures/hooks.js';
import { blackhole, identity, recordingLogger, sleep } from '../fixtures/identity.js';
import { eventually } from '../fixtures/hostile-peer.js';
import { UdpProxy } from '../../bin/udp-proxy.js';

adapterCompliance('quic', async () => {
  const logger = recordingLogger();
  const a: QuicAdapter = createQuicAdapter({ identity: await identity('alice'), logger });
  const b: QuicAdapter = createQuicAdapter({ identity: await identity('bob'), logger });
  await a.start();
  await b.start();
  const dead = await blackhole();
  return {
    a,
    b,
    addressOfA: a.address,
    addressOfB: b.address,
    deadAddress: quicAddress(dead.port),
    advance: (ms) => sleep(ms),
    cleanup: async () => {
      await a.close();
      await b.close();
      await dead.close();
      assert.equal(a.stats().connections, 0);
      assert.equal(b.stats().connections, 0);
      assert.equal(a.stats().libraryErrors + b.stats().libraryErrors, 0, logger.lines.join('\n'));
    },
  };
});

// The same contract with the library exactly as it comes (no per-instance tuning).
adapterCompliance('quic (library untuned)', async () => {
  const logger = recordingLogger();
  const a: QuicAdapter = createQuicAdapter({ identity: await identity('alice'), logger, tuning: false });
  const b: QuicAdapter = createQuicAdapter({ identity: await identity('bob'), logger, tuning: false });
  await a.start();
  await b.start();
  const dead = await blackhole();
  return {
    a,
    b,
    addressOfA: a.address,
    addressOfB: b.address,
    deadAddress: quicAddress(dead.port),
    advance: (ms) => sleep(ms),
    cleanup: async () => {
      await a.close();
      await b.close();
      await dead.close();
      assert.equal(a.stats().connections + b.stats().connections, 0);
      assert.equal(a.stats().libraryErrors + b.stats().libraryErrors, 0, logger.lines.join('\n'));
    },
  };
});

// ---------------------------------------------------------------------------
// Helpers

/** Polls `done` every 5 ms for at most `ms` of real time (a deadline, generous for a busy machine). */
async function waitFor(done: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!done()) {
    if (Date.now() > end) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(5);
  }
}

interface Recorder {
  readonly controls: ControlMessage[];
  readonly streams: IncomingStream[];
  readonly closes: CloseInfo[];
}

function record(connection: Connection, onStream?: (stream: IncomingStream) => void): Recorder {
  const r: Recorder = { controls: [], streams: [], closes: [] };
  connection.setHandlers({
    onControl: (message) => void r.controls.push(message),
    onStream: (stream) => {
      r.streams.push(stream);
      onStream?.(stream);
    },
    onClose: (info) => void r.closes.push(info),
  });
  return r;
}

/** Accepts every stream and echoes it. */
function echoAll(stream: IncomingStream): void {
  const s = stream.accept();
  s.readable.pipeTo(s.writable).catch(() => {});
}

async function readAll(readable: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of readable as unknown as AsyncIterable<Uint8Array>) chunks.push(chunk);
  return new Uint8Array(Buffer.concat(chunks));
}

/** One request on a stream: write `bytes`, half-close, read everything back. */
async function roundTrip(stream: Stream, bytes: Uint8Array): Promise<Uint8Array> {
  const writer = stream.writable.getWriter();
  const reading = readAll(stream.readable);
  await writer.write(bytes);
  await writer.close();
  return reading;
}

interface Pair {
  readonly a: QuicAdapter;
  readonly b: QuicAdapter;
  readonly logger: ReturnType<typeof recordingLogger>;
  readonly inbound: Connection[];
  connect(): Promise<{ out: Connection; inb: Connection }>;
  close(): Promise<void>;
}

async function pair(options: { a?: Partial<QuicAdapterOptions>; b?: Partial<QuicAdapterOptions>; bPolicy?: TransportPolicy } = {}): Promise<Pair> {
  const logger = recordingLogger();
  const a = createQuicAdapter({ identity: await identity('alice'), logger, ...options.a });
  const b = createQuicAdapter({ identity: await identity('bob'), logger, ...options.b });
  if (options.bPolicy !== undefined) b.configure(options.bPolicy);
  const inbound: Connection[] = [];
  await b.listen((connection) => void inbound.push(connection));
  await a.start();
  return {
    a,
    b,
    logger,
    inbound,
    async connect() {
      const before = inbound.length;
      const out = await a.dial(b.localPeerId, b.address, { signal: new AbortController().signal });
      await waitFor(() => inbound.length > before, 'the inbound connection');
      return { out, inb: inbound[inbound.length - 1]! };
    },
    async close() {
      await a.close();
      await b.close();
    },
  };
}

/** A bare @matrixai/quic client speaking to a peerline adapter, to send what peerline never would. */
async function rawClient(target: QuicAdapter, who: QuicIdentity) {
  const codes: number[] = [];
  const socket = new QUICSocket({ logger: silent });
  await socket.start({ host: '127.0.0.1', port: 0 });
  const client = await QUICClient.createQUICClient(
    {
      host: '127.0.0.1',
      port: target.port,
      socket,
      logger: silent,
      crypto: { ops: { randomBytes: async (data: ArrayBuffer) => void crypto.getRandomValues(new Uint8Array(data)) } },
      config: { key: who.privateKeyPem, cert: who.certificatePem, verifyPeer: false, applicationProtos: ['peerline/1'] },
      codeToReason: (_type, code) => {
        codes.push(code);
        return { resetCode: code };
      },
    },
    { timer: 2_000 },
  );
  const peerClose: { errorCode?: number; isApp?: boolean } = {};
  client.connection.addEventListener(quicEvents.EventQUICConnectionError.name, (event: Event) => {
    const detail = (event as unknown as { detail: unknown }).detail;
    if (detail instanceof quicErrors.ErrorQUICConnectionPeer) Object.assign(peerClose, (detail as unknown as { data: object }).data);
  });
  return {
    client,
    codes,
    peerClose,
    open(): QUICStream {
      return client.connection.newStream('bidi');
    },
    async close() {
      await client.destroy({ force: true }).catch(() => {});
      await socket.stop({ force: true }).catch(() => {});
    },
  };
}

const silent = (() => {
  const logger = { debug() {}, info() {}, warn() {}, error() {}, getChild: () => logger };
  return logger as unknown as NonNullable<ConstructorParameters<typeof QUICSocket>[0]['logger']>;
})();

async function write(stream: QUICStream, bytes: Uint8Array): Promise<void> {
  const writer = stream.writable.getWriter();
  await writer.write(bytes);
  writer.releaseLock();
}

// ---------------------------------------------------------------------------

describe('QUIC adapter', function () {
  this.timeout(15_000);

  describe('identities', function () {
    let dir: string;
    beforeEach(async function () {
      dir = await mkdtemp(join(tmpdir(), 'peerline-identity-'));
    });
    afterEach(async function () {
      await rm(dir, { recursive: true, force: true });
    });

    it('a peer id is the base32 (lower case, unpadded) text of the 32-byte Ed25519 key', async function () {
      const id = await generateIdentity();
      assert.match(id.peerId, /^[a-z2-7]{52}$/);
      assert.equal(id.publicKey.length, 32);
      assert.equal(peerIdFromPublicKey(id.publicKey), id.peerId);
      assert.deepEqual(publicKeyFromPeerId(id.peerId), id.publicKey);
      assert.equal(publicKeyFromPeerId('not-a-peer-id'), undefined);
      const der = new Uint8Array(Buffer.from(id.certificatePem.replace(/-----[^-]+-----|\s/g, ''), 'base64'));
      assert.equal(peerIdFromCertificate(der), id.peerId);
      const other = await generateIdentity();
      assert.notEqual(other.peerId, id.peerId);
    });

    it('save then load round-trips; the key file is mode 0600', async function () {
      const id = await generateIdentity();
      const { keyPath, certPath } = await saveIdentity(join(dir, 'me'), id);
      assert.equal((await stat(keyPath)).mode & 0o777, 0o600);
      assert.equal(certPath, join(dir, 'me', CERT_FILE));
      const loaded = await loadIdentity(join(dir, 'me'));
      assert.equal(loaded.peerId, id.peerId);
      assert.deepEqual(loaded.publicKey, id.publicKey);
      assert.equal(loaded.privateKeyPem, id.privateKeyPem);
      assert.equal(loaded.certificatePem, id.certificatePem);
    });

    it('load refuses a key readable by others, a certificate of another key, and garbage', async function () {
      const id = await generateIdentity();
      await saveIdentity(dir, id);
      await chmod(join(dir, KEY_FILE), 0o644);
      await assert.rejects(loadIdentity(dir), (e: unknown) => e instanceof IdentityError && /mode 0644/.test(e.message));
      await chmod(join(dir, KEY_FILE), 0o600);
      const other = await generateIdentity();
      await writeFile(join(dir, CERT_FILE), other.certificatePem);
      await assert.rejects(loadIdentity(dir), (e: unknown) => e instanceof IdentityError && /certificate is for peer/.test(e.message));
      await writeFile(join(dir, KEY_FILE), 'not a key', { mode: 0o600 });
      await assert.rejects(loadIdentity(dir), IdentityError);
      assert.throws(() => createQuicAdapter({ identity: { ...id, certificatePem: other.certificatePem } }), IdentityError);
    });
  });

  describe('addresses', function () {
    it('quic://127.0.0.1:PORT and quic://[::1]:PORT, nothing else', function () {
      assert.equal(quicAddress(4433), 'quic://127.0.0.1:4433');
      assert.equal(quicAddress(4433, '::1'), 'quic://[::1]:4433');
      assert.deepEqual(parseQuicAddress('quic://127.0.0.1:4433'), { host: '127.0.0.1', port: 4433 });
      assert.deepEqual(parseQuicAddress('quic://[::1]:9'), { host: '::1', port: 9 });
      for (const bad of ['quic://localhost:1', 'udp://127.0.0.1:1', 'quic://127.0.0.1', 'quic://127.0.0.1:0', 'quic://[::1:1', 'quic://::1:5']) {
        assert.equal(parseQuicAddress(bad), undefined, bad);
      }
    });

    it('an IPv6 loopback adapter dials and is dialled at quic://[::1]:PORT', async function () {
      const logger = recordingLogger();
      const a = createQuicAdapter({ identity: await identity('alice'), host: '::1', logger });
      const b = createQuicAdapter({ identity: await identity('bob'), host: '::1', logger });
      try {
        const inbound: Connection[] = [];
        await b.listen((c) => void inbound.push(c));
        assert.match(b.address, /^quic:\/\/\[::1\]:\d+$/);
        const out = await a.dial(b.localPeerId, b.address, { signal: new AbortController().signal });
        await waitFor(() => inbound.length === 1, 'the inbound connection');
        assert.equal(out.remotePeerId, b.localPeerId);
        assert.equal(inbound[0]!.remotePeerId, a.localPeerId);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('a malformed address or a closed adapter rejects the dial at once', async function () {
      const p = await pair();
      try {
        await assert.rejects(p.a.dial(p.b.localPeerId, 'quic://nowhere', { signal: new AbortController().signal }), (e: unknown) => e instanceof TransportError && e.kind === 'unreachable');
      } finally {
        await p.close();
      }
      await assert.rejects(p.a.dial(p.b.localPeerId, p.b.address, { signal: new AbortController().signal }), (e: unknown) => e instanceof TransportError && e.kind === 'closed');
    });

    it('a port already taken: start() rejects and the UDP socket it made is closed, not left open', async function () {
      const udpHandles = (): number => process.getActiveResourcesInfo().filter((kind) => kind === 'UDPWrap').length;
      const holder = createQuicAdapter({ identity: await identity('alice'), host: '127.0.0.1' });
      await holder.start();
      const before = udpHandles();
      try {
        for (let i = 0; i < 3; i++) {
          const late = createQuicAdapter({ identity: await identity('bob'), host: '127.0.0.1', port: holder.port });
          await assert.rejects(late.start());
          await late.close();
        }
        // A closed socket leaves the list on a later turn of the loop.
        assert.ok(await eventually(() => udpHandles() === before), `${udpHandles() - before} UDP sockets left open`);
      } finally {
        await holder.close();
      }
    });
  });

  describe('identity checks on the wire', function () {
    it('outbound: a dial pinned to another peer id fails identity-mismatch; the listener never sees a connection', async function () {
      const p = await pair();
      try {
        const stranger = await identity('mallory');
        await assert.rejects(
          p.a.dial(stranger.peerId, p.b.address, { signal: new AbortController().signal }),
          (e: unknown) => e instanceof TransportError && e.kind === 'identity-mismatch' && e.message.includes(p.b.localPeerId),
        );
        await sleep(50);
        assert.equal(p.inbound.length, 0);
        assert.equal(p.b.stats().connections, 0);
      } finally {
        await p.close();
      }
    });

    it('outbound: a dialler that refuses the listener still completes its side of TLS, then closes: the listener drops the attempt at once, not at its timeouts', async function () {
      this.timeout(30_000);
      // Timeouts far beyond the wait below (the start, handshake and idle
      // timeouts): only the dialler's close can end the listener's attempt in time.
      const slow = { ...DEFAULT_TRANSPORT_POLICY, connectTimeoutMs: 300_000, handshakeTimeoutMs: 300_000, heartbeatIntervalMs: 100_000 };
      const p = await pair({ bPolicy: slow });
      try {
        const stranger = await identity('mallory');
        await assert.rejects(
          p.a.dial(stranger.peerId, p.b.address, { signal: new AbortController().signal }),
          (e: unknown) => e instanceof TransportError && e.kind === 'identity-mismatch',
        );
        // The listener registered the attempt (it sent its first flight); the dialler's close (after its Finished) ends it.
        await waitFor(() => p.b.stats().handshaking === 0 && p.b.stats().libraryConnections === 0, 'the listener to drop the attempt', 10_000);
        assert.equal(p.inbound.length, 0);
        assert.equal(p.b.stats().connections, 0);
        // The right peer id still connects.
        await p.connect();
        assert.equal(p.inbound.length, 1);
      } finally {
        await p.close();
      }
    });

    it('inbound: a client the gate refuses never becomes a connection, reads nothing, and ends with AdmissionDenied', async function () {
      const refused: string[] = [];
      const p = await pair({
        b: {
          allowInbound: (peerId) => {
            refused.push(peerId);
            return false;
          },
        },
      });
      try {
        let outcome: { connection?: Connection; error?: unknown } = {};
        try {
          outcome = { connection: await p.a.dial(p.b.localPeerId, p.b.address, { signal: new AbortController().signal }) };
        } catch (error) {
          outcome = { error };
        }
        if (outcome.connection !== undefined) {
          // The library let our side finish first: the refusal arrives as the connection's close.
          const r = record(outcome.connection);
          outcome.connection.sendControl({ type: 'hello', version: 1, peerId: p.a.localPeerId });
          await waitFor(() => r.closes.length === 1, 'the refusal');
          assert.equal(r.closes[0]!.code, ConnectionErrorCode.AdmissionDenied);
          assert.equal(r.closes[0]!.error, false);
          await assert.rejects(outcome.connection.openStream('x/1', { signal: new AbortController().signal }), TransportError);
        } else {
          assert.ok(
            outcome.error instanceof TransportError && outcome.error.kind === 'refused' && outcome.error.closeCode === ConnectionErrorCode.AdmissionDenied,
            String(outcome.error),
          );
        }
        assert.deepEqual(refused, [p.a.localPeerId]);
        assert.equal(p.inbound.length, 0);
        assert.equal(p.b.stats().connections, 0);
      } finally {
        await p.close();
      }
    });
  });

  describe('stream headers', function () {
    it('a malformed or oversized header resets that stream only; the connection and other streams go on', async function () {
      const p = await pair();
      const raw = await rawClient(p.b, await identity('alice'));
      try {
        // The listener hands a connection over once the dialler's control stream arrives.
        const control = raw.open();
        await write(control, new Uint8Array([0x00, ...encodeControl({ type: 'hello', version: 1, peerId: p.a.localPeerId })]));
        await waitFor(() => p.inbound.length === 1, 'the inbound connection');
        const inb = p.inbound[0]!;
        const r = record(inb, echoAll);
        await waitFor(() => r.controls.length === 1, 'the hello');
        assert.deepEqual(r.controls[0], { type: 'hello', version: 1, peerId: p.a.localPeerId });

        const bad = [
          new Uint8Array([0x01, 0xff, 0xff]), // 65535-byte protocol name: over maxProtocolLength
          new Uint8Array([0x01, 0x01, 0x01]), // 257 bytes: one over the default 256
          new Uint8Array([0x01, 0x00, 0x00]), // empty name
          new Uint8Array([0x07, 0x00]), // unknown stream kind
          new Uint8Array([0x01, 0x00, 0x02, 0xff, 0xfe]), // not UTF-8
          new Uint8Array([0x00]), // a second control stream would close the connection; see below
        ].slice(0, 5);
        for (const bytes of bad) {
          const stream = raw.open();
          const reader = stream.readable.getReader();
          await write(stream, bytes);
          await assert.rejects(reader.read(), (e: unknown) => (e as { resetCode?: number }).resetCode === ConnectionErrorCode.ProtocolViolation);
        }
        // The connection is intact: a proper stream still works.
        const good = raw.open();
        const reader = good.readable.getReader();
        const writer = good.writable.getWriter();
        await writer.write(encodeHeader('echo/1'));
        const ack = await reader.read();
        assert.equal(ack.value?.[0], ACK);
        const parser = new FrameParser();
        const echoed: Uint8Array[] = [];
        parser.push(ack.value!.subarray(1), echoed);
        await writer.write(encodeDataFrame(new TextEncoder().encode('still here')));
        await writer.write(END_FRAME);
        await writer.close();
        while (!parser.ended) {
          const { done, value } = await reader.read();
          if (done) break;
          parser.push(value, echoed);
        }
        assert.equal(parser.ended, true);
        assert.equal(Buffer.concat(echoed).toString(), 'still here');
        assert.equal(r.streams.length, 1);
        assert.equal(r.streams[0]!.protocol, 'echo/1');
        assert.equal(r.closes.length, 0);

        // A malformed control frame is different: the whole connection goes, with ProtocolViolation.
        await write(control, new Uint8Array([0x00, 0x01, 0x63]));
        await waitFor(() => r.closes.length === 1 && raw.peerClose.errorCode !== undefined, 'the protocol violation close');
        assert.equal(r.closes[0]!.code, ConnectionErrorCode.ProtocolViolation);
        assert.equal(raw.peerClose.isApp, true);
        assert.equal(raw.peerClose.errorCode, ConnectionErrorCode.ProtocolViolation);
      } finally {
        await raw.close();
        await p.close();
      }
    });

    it('a stream whose header never comes is reset after the header timeout', async function () {
      const p = await pair();
      p.b.configure({ ...p.b.policy, handshakeTimeoutMs: 100 });
      const raw = await rawClient(p.b, await identity('alice'));
      try {
        await write(raw.open(), new Uint8Array([0x00]));
        await waitFor(() => p.inbound.length === 1, 'the inbound connection');
        const r = record(p.inbound[0]!);
        const stream = raw.open();
        const reader = stream.readable.getReader();
        await write(stream, new Uint8Array([0x01, 0x00])); // half a length
        const started = Date.now();
        await assert.rejects(reader.read(), (e: unknown) => (e as { resetCode?: number }).resetCode === ConnectionErrorCode.ProtocolViolation);
        assert.ok(Date.now() - started >= 80, `reset after ${Date.now() - started} ms`);
        assert.deepEqual(r.closes, []);
      } finally {
        await raw.close();
        await p.close();
      }
    });
  });

  describe('close', function () {
    it('close(code, reason) reaches the remote with the same code and reason; both sides once', async function () {
      const p = await pair();
      try {
        const { out, inb } = await p.connect();
        const here = record(out);
        const there = record(inb);
        out.close(ConnectionErrorCode.HeartbeatTimeout, reasonFor(ConnectionErrorCode.HeartbeatTimeout));
        out.close(ConnectionErrorCode.ForceClose, 'again');
        await waitFor(() => there.closes.length === 1 && here.closes.length === 1, 'both onClose');
        await sleep(30);
        assert.deepEqual(here.closes, [{ local: true, code: 3, reason: 'heartbeat timed out', error: false }]);
        assert.deepEqual(there.closes, [{ local: false, code: 3, reason: 'heartbeat timed out', error: false }]);
        await assert.rejects(out.openStream('x/1', { signal: new AbortController().signal }), (e: unknown) => e instanceof TransportError && e.kind === 'closed' && e.closeCode === 3);
        assert.equal(p.a.stats().connections + p.b.stats().connections, 0);
      } finally {
        await p.close();
      }
    });

    it('closing the adapter closes its connections with Shutdown; the remote hears it', async function () {
      const p = await pair();
      try {
        const { out, inb } = await p.connect();
        const there = record(inb);
        record(out);
        await p.a.close();
        await waitFor(() => there.closes.length === 1, 'the remote close');
        assert.equal(there.closes[0]!.code, ConnectionErrorCode.Shutdown);
      } finally {
        await p.close();
      }
    });
  });

  describe('stream credit', function () {
    it('150 concurrent opens on one connection all succeed: past the limit they wait their turn', async function () {
      const p = await pair();
      try {
        const { out, inb } = await p.connect();
        record(inb, echoAll);
        record(out);
        const quic = out as unknown as { waitingOpens: number; streamCount: number };
        const opens = Array.from({ length: 150 }, () => out.openStream('echo/1', { signal: new AbortController().signal }));
        // 101 streams of credit by default: the control stream and 100 more.
        assert.equal(quic.waitingOpens, 50);
        const results = await Promise.all(
          opens.map(async (opening, i) => {
            const stream = await opening;
            const back = await roundTrip(stream, Uint8Array.of(i % 256, 1, 2, 3));
            assert.deepEqual([...back], [i % 256, 1, 2, 3]);
            await stream.closed;
            return true;
          }),
        );
        assert.equal(results.length, 150);
        assert.equal(quic.waitingOpens, 0);
        await waitFor(() => quic.streamCount === 0, 'every stream to end');
      } finally {
        await p.close();
      }
    });

    it('refused streams return their credit: 250 NACKs in a row, all typed', async function () {
      const p = await pair();
      try {
        const { out, inb } = await p.connect();
        record(inb, (s) => s.reject('not here'));
        record(out);
        let rejected = 0;
        for (let round = 0; round < 5; round++) {
          const batch = Array.from({ length: 50 }, () =>
            out.openStream('missing/1', { signal: new AbortController().signal }).then(
              () => assert.fail('a refused stream opened'),
              (e: unknown) => {
                assert.ok(e instanceof TransportError && e.kind === 'rejected' && e.message === 'not here', String(e));
                rejected++;
              },
            ),
          );
          await Promise.all(batch);
        }
        assert.equal(rejected, 250);
      } finally {
        await p.close();
      }
    });

    it('aborted and closed streams return their credit too: 120 of each ending, on either side', async function () {
      const p = await pair();
      try {
        const { out, inb } = await p.connect();
        let mode = '';
        record(inb, (incoming) => {
          const s = incoming.accept();
          if (mode === 'acceptor aborts') s.abort('no');
          else if (mode === 'acceptor closes') s.close();
          else s.readable.pipeTo(s.writable).catch(() => {});
        });
        record(out);
        const ends: Record<string, number> = {};
        for (mode of ['opener aborts', 'opener closes', 'acceptor aborts', 'acceptor closes']) {
          const current = mode;
          let done = 0;
          await Promise.all(
            Array.from({ length: 120 }, async () => {
              const s = await out.openStream('x/1', { signal: new AbortController().signal });
              const writer = s.writable.getWriter();
              await writer.write(Uint8Array.of(1)).catch(() => {});
              if (current === 'opener aborts') {
                s.abort('bye');
              } else if (current === 'opener closes') {
                writer.releaseLock();
                s.close();
              } else {
                await writer.close().catch(() => {});
                await readAll(s.readable).catch(() => {});
              }
              await s.closed;
              done++;
            }),
          );
          ends[current] = done;
        }
        // More than the 100 streams of credit each time: credit came back.
        assert.deepEqual(ends, { 'opener aborts': 120, 'opener closes': 120, 'acceptor aborts': 120, 'acceptor closes': 120 });
        const quic = out as unknown as { waitingOpens: number; streamCount: number };
        assert.equal(quic.waitingOpens, 0);
        assert.equal(quic.streamCount, 0);
        assert.equal(p.a.stats().libraryErrors + p.b.stats().libraryErrors, 0, p.logger.lines.join('\n'));
      } finally {
        await p.close();
      }
    });

    it('an open waiting for credit rejects with aborted when its signal aborts', async function () {
      const p = await pair();
      try {
        const { out, inb } = await p.connect();
        const held = record(inb, (s) => void s.accept()); // accepted, never closed: credit stays taken
        record(out);
        const first = await Promise.all(Array.from({ length: 100 }, () => out.openStream('hold/1', { signal: new AbortController().signal })));
        const controller = new AbortController();
        const waiting = out.openStream('hold/1', { signal: controller.signal });
        await sleep(20);
        controller.abort();
        await assert.rejects(waiting, (e: unknown) => e instanceof TransportError && e.kind === 'aborted');
        assert.equal((out as unknown as { waitingOpens: number }).waitingOpens, 0);
        assert.equal(held.streams.length, 100);
        for (const s of first) s.abort('done');
      } finally {
        await p.close();
      }
    });
  });

  describe('liveness from configure(policy)', function () {
    const policy = {
      connectTimeoutMs: 2_000,
      handshakeTimeoutMs: 2_000,
      heartbeatIntervalMs: 100,
      heartbeatTimeoutMs: 50,
      heartbeatMisses: 2,
      maxProtocolLength: 256,
      maxInboundStreams: 100,
    };

    it('idle timeout a bit above heartbeat interval x misses + timeout; keep-alive below it', function () {
      assert.deepEqual(quicTimings(policy), { maxIdleTimeout: 1_250, keepAliveIntervalTime: 416 });
      const defaults = quicTimings({ ...policy, heartbeatIntervalMs: 5_000, heartbeatTimeoutMs: 2_000, heartbeatMisses: 3 });
      assert.deepEqual(defaults, { maxIdleTimeout: 21_250, keepAliveIntervalTime: 7_083 });
    });

    it('an idle connection outlives the idle timeout (keep-alive); a silent one closes at it', async function () {
      this.timeout(30_000);
      const p = await pair();
      p.a.configure(policy);
      p.b.configure(policy);
      const proxy = await UdpProxy.create({ targetPort: p.b.port });
      try {
        const direct = await p.connect();
        const directHere = record(direct.out);
        record(direct.inb, (s) => s.reject('not here'));
        const inboundBefore = p.inbound.length;
        const viaProxy = await p.a.dial(p.b.localPeerId, quicAddress(proxy.port), { signal: new AbortController().signal });
        await waitFor(() => p.inbound.length > inboundBefore, 'the proxied connection');
        const here = record(viaProxy);
        const there = record(p.inbound[p.inbound.length - 1]!);
        proxy.blackhole();
        const started = Date.now();
        // A deadline: the idle timeout is 1.25 s, a busy machine fires it later.
        await waitFor(() => here.closes.length === 1 && there.closes.length === 1, 'the idle timeout', 15_000);
        const took = Date.now() - started;
        // Not before the idle timeout; the reason below says it was the idle timeout.
        assert.ok(took >= 1_000, `closed after ${took} ms`);
        for (const info of [here.closes[0]!, there.closes[0]!]) {
          assert.equal(info.error, true);
          assert.match(info.reason, /idle/);
        }
        // Meanwhile the direct connection, idle all along, is still up.
        assert.deepEqual(directHere.closes, []);
        const stream = await direct.out.openStream('echo/1', { signal: new AbortController().signal }).catch((e: unknown) => e);
        assert.ok(stream instanceof TransportError && stream.kind === 'rejected', 'the direct connection still answers');
      } finally {
        await proxy.close();
        await p.close();
      }
    });
  });

  describe('failures never escape', function () {
    it('streams in flight, aborts, garbage datagrams, a vanishing remote: zero uncaught exceptions', async function () {
      const logger = recordingLogger();
      const p = await pair({ a: { logger }, b: { logger } });
      const c = createQuicAdapter({ identity: await identity('carol'), logger });
      const dead = await blackhole();
      const garbage = createSocket('udp4');
      garbage.on('error', () => {});
      try {
        const { out } = await p.connect();
        for (const inb of p.inbound) record(inb, echoAll);
        record(out);
        const fromC = await c.dial(p.b.localPeerId, p.b.address, { signal: new AbortController().signal });
        await waitFor(() => p.inbound.length === 2, 'the second inbound connection');
        record(p.inbound[1]!, echoAll);
        record(fromC);

        // Streams in flight on both connections, some aborted at every stage.
        const outcomes: Array<Promise<unknown>> = [];
        const settle = (promise: Promise<unknown>): void => void outcomes.push(promise.then(() => 'ok', (error: unknown) => error));
        for (let i = 0; i < 60; i++) {
          const connection = i % 2 === 0 ? out : fromC;
          const controller = new AbortController();
          settle(
            connection.openStream('echo/1', { signal: controller.signal }).then(async (stream) => {
              const writer = stream.writable.getWriter();
              for (let k = 0; k < 20; k++) await writer.write(new Uint8Array(1000).fill(k));
              if (i % 5 === 0) stream.abort('changed my mind');
              if (i % 7 === 0) stream.close();
              await writer.close();
              await readAll(stream.readable);
            }),
          );
          if (i % 3 === 0) setTimeout(() => controller.abort(), i % 4);
        }
        // Dials that fail: aborted, to a silent port, and to a malformed address.
        const aborted = new AbortController();
        settle(p.a.dial('someone', quicAddress(dead.port), { signal: aborted.signal }));
        setTimeout(() => aborted.abort(), 30);
        settle(p.a.dial('someone', 'quic://[::1]:1', { signal: new AbortController().signal }));
        // Datagrams that are not QUIC, or are QUIC headers for no connection.
        for (let i = 0; i < 50; i++) {
          const junk = Buffer.alloc(1 + ((i * 37) % 1300), i);
          if (i % 2 === 0) junk[0] = 0x40 | (i & 0x3f); // short header
          if (i % 5 === 0) junk[0] = 0xc0; // long header
          garbage.send(junk, p.b.port, '127.0.0.1');
          garbage.send(junk, p.a.port, '127.0.0.1');
        }
        await sleep(5);
        // The remote vanishes while all that is going on.
        await p.b.close();
        await Promise.allSettled(outcomes);
        await sleep(100);
        assert.deepEqual(escapedErrors(), []);
        assert.equal(p.a.stats().connections + p.b.stats().connections + c.stats().connections, 0);
        const stats = [p.a.stats(), p.b.stats(), c.stats()];
        assert.equal(stats.reduce((n, s) => n + s.libraryErrors, 0), 0, logger.lines.join('\n'));
      } finally {
        garbage.close();
        await dead.close();
        await c.close();
        await p.close();
      }
    });
  });
});
