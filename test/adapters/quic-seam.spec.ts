/**
 * The seam over @matrixai/quic's internals (adapters/quic/seam/): its startup
 * probe, the path it chooses, and the control channel's bounds.
 */
import assert from 'node:assert/strict';
import { native } from '@matrixai/quic';
import { createQuicAdapter } from '../../adapters/quic/index.js';
import { CONTROL_BURST, ControlChannel, MAX_CONTROL_BACKLOG, type ControlHost } from '../../adapters/quic/control.js';
import { probeSeam, seamProbe, type TransportStream } from '../../adapters/quic/seam/index.js';
import { QUICConnection, QUICSocket } from '@matrixai/quic';
import { encodeControl } from '../../adapters/quic/wire.js';
import { identity, recordingLogger } from '../fixtures/identity.js';

const CHECKS = ['socket shape', 'connection shape', 'server connection', 'handshake', 'stream credit', 'write with FIN', 'reset', 'stop sending', 'collected stream', 'timer', 'close'];

/** quiche as installed, except that its connections have no `streamSend`. */
function withoutStreamSend(): typeof native.quiche {
  const strip = <T extends object>(conn: T): T =>
    new Proxy(conn, { get: (target, key) => (key === 'streamSend' ? undefined : Reflect.get(target, key, target)) });
  const Connection = {
    connect: (...args: Parameters<typeof native.quiche.Connection.connect>) => strip(native.quiche.Connection.connect(...args)),
    accept: (...args: Parameters<typeof native.quiche.Connection.accept>) => strip(native.quiche.Connection.accept(...args)),
  };
  return { ...native.quiche, Connection } as typeof native.quiche;
}

/** A transport stream whose writes are never taken (a remote whose window stays full). */
function stuckTransport(): TransportStream & { written: number } {
  const never = new Promise<never>(() => {});
  return {
    id: 0,
    written: 0,
    read: () => never,
    write(bytes) {
      this.written += bytes.length;
      return never;
    },
    finish: () => Promise.resolve(),
    reset: () => {},
    stop: () => {},
  };
}

function controlHost(): ControlHost & { floods: string[]; delivered: number } {
  return {
    floods: [],
    delivered: 0,
    deliver() {
      this.delivered++;
    },
    violation: () => assert.fail('no violation expected'),
    flood(why) {
      this.floods.push(why);
    },
    controlClosed() {
      return this.floods.length > 0;
    },
  };
}

describe('QUIC adapter: the seam over the library', function () {
  it('the probe passes every check against the library as installed', async function () {
    const probe = probeSeam(await identity('alice'));
    assert.deepEqual(probe.failed, []);
    assert.deepEqual(probe.passed, CHECKS);
    assert.equal(probe.ok, true);
    assert.equal(probe.largeDatagrams, true);
    // It reports its time (a few ms); no bound here: a busy machine may take longer.
    assert.ok(probe.ms >= 0 && Number.isFinite(probe.ms), `${probe.ms} ms`);
  });

  it('the probe reports what is missing, and never throws', async function () {
    const keys = await identity('alice');
    const noSend = probeSeam(keys, { quiche: withoutStreamSend(), QUICConnection, QUICSocket });
    assert.equal(noSend.ok, false);
    assert.ok(noSend.failed.some((f) => f.includes('native streamSend()')), JSON.stringify(noSend.failed));
    // A connection class of another shape.
    class Other {}
    const other = probeSeam(keys, { quiche: native.quiche, QUICConnection: Other as unknown as typeof QUICConnection, QUICSocket });
    assert.equal(other.ok, false);
    assert.ok(other.failed.some((f) => f.startsWith('connection shape')), JSON.stringify(other.failed));
  });

  it('an adapter reports its path and the probe in stats(); tuning: false takes the library path', async function () {
    const logger = recordingLogger();
    const a = createQuicAdapter({ identity: await identity('alice'), logger });
    const b = createQuicAdapter({ identity: await identity('bob'), logger, tuning: false });
    try {
      await b.listen(() => {});
      const out = await a.dial(b.localPeerId, (await b.start(), b.address), { signal: new AbortController().signal });
      assert.equal(a.stats().seam.path, 'native');
      assert.deepEqual(a.stats().seam.probe, seamProbe(await identity('alice')));
      assert.equal(a.stats().seam.nativeConnections, 1);
      assert.equal(b.stats().seam.path, 'library');
      assert.equal(b.stats().seam.probe, undefined);
      out.close(1, 'done');
    } finally {
      await a.close();
      await b.close();
    }
    assert.deepEqual(logger.lines, []);
  });

  it('the control channel closes a remote that leaves more than MAX_CONTROL_BACKLOG bytes unread', function () {
    const host = controlHost();
    const transport = stuckTransport();
    const channel = ControlChannel.accept(transport, host);
    const pong = encodeControl({ type: 'pong', seq: 1 });
    let sent = 0;
    while (host.floods.length === 0 && sent < 10_000) {
      channel.send(pong);
      sent++;
    }
    assert.equal(host.floods.length, 1);
    assert.equal(sent, Math.floor(MAX_CONTROL_BACKLOG / pong.length) + 1);
    assert.ok(transport.written <= MAX_CONTROL_BACKLOG);
  });

  it('the control channel closes a remote that sends more than its message budget', async function () {
    const host = controlHost();
    const ping = encodeControl({ type: 'ping', seq: 1 });
    const burst = new Uint8Array(ping.length * (CONTROL_BURST + 10));
    for (let i = 0; i < CONTROL_BURST + 10; i++) burst.set(ping, i * ping.length);
    let delivered = false;
    const transport: TransportStream = {
      ...stuckTransport(),
      read: () => (delivered ? new Promise<never>(() => {}) : ((delivered = true), Promise.resolve(burst))),
    };
    ControlChannel.accept(transport, host).listen([]);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(host.delivered, CONTROL_BURST);
    assert.equal(host.floods.length, 1);
    assert.match(host.floods[0]!, /control messages per second/);
  });
});
