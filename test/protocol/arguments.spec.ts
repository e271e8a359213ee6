/**
 * Bad input to every public function: a wrong type or value is a
 * TypeError or RangeError that names the argument and carries a Node-style
 * code. Synchronous functions throw; promise-returning ones reject (and
 * never throw). One row per case; the last test checks that every function
 * the entry points export has a row, or a reason to have none.
 */
import { strict as assert } from 'node:assert';
import * as memory from '../../adapters/memory/index.js';
import * as quic from '../../adapters/quic/index.js';
import * as runtime from '../../runtime/index.js';
import * as visualizer from '../../visualizer/index.js';
import { connectionMachine } from '../../machines/index.js';
import { identity } from '../fixtures/identity.js';

const { MemoryNetwork, VirtualClock } = memory;
const { createEngine, DialQueue, RESUME_PROTOCOL } = runtime;

type Kind = 'type' | 'value' | 'range';
const EXPECT: Record<Kind, { readonly error: typeof TypeError | typeof RangeError; readonly code: string }> = {
  type: { error: TypeError, code: 'ERR_INVALID_ARG_TYPE' },
  value: { error: TypeError, code: 'ERR_INVALID_ARG_VALUE' },
  range: { error: RangeError, code: 'ERR_OUT_OF_RANGE' },
};

interface Row {
  /** The public function, as the completeness check knows it (`createEngine`, `Engine#openStream`). */
  readonly fn: string;
  readonly call: () => unknown;
  readonly kind: Kind;
  /** The argument the message must start with. */
  readonly names: string;
  /** Returns a promise that must reject (and must not throw). */
  readonly async: boolean;
}

const rows: Row[] = [];
const add =
  (async: boolean, kind: Kind) =>
  (fn: string, names: string, call: () => unknown): void =>
    void rows.push({ fn, call, kind, names, async });
const T = add(false, 'type');
const V = add(false, 'value');
const R = add(false, 'range');
const aT = add(true, 'type');
const aV = add(true, 'value');
const aR = add(true, 'range');

const fn = (): void => {};
const clock = new VirtualClock();
const network = new MemoryNetwork({ clock });
const adapter = network.node('me');
const quietly = { clock, trace: false, logger: {} } as const;
const engine = createEngine({ adapter, ...quietly });
const engineWith = (init: object) => (): unknown => createEngine({ adapter: network.node('cfg'), ...quietly, ...init } as never);
const signal = new AbortController().signal;
const streamLike = { readable: new ReadableStream(), writable: new WritableStream() };

// ---- createEngine: collaborators
T('createEngine', 'config', () => createEngine(undefined as never));
T('createEngine', 'config.adapter', () => createEngine({} as never));
T('createEngine', 'config.adapter.dial', () => createEngine({ adapter: { localPeerId: 'x', listen: fn, close: fn } } as never));
V('createEngine', 'config.adapter.localPeerId', () => createEngine({ adapter: { localPeerId: '', listen: fn, dial: fn, close: fn } } as never));
T('createEngine', 'config.clock.setTimeout', engineWith({ clock: { now: () => 0 } }));
T('createEngine', 'config.random', engineWith({ random: 0.5 }));
T('createEngine', 'config.logger', engineWith({ logger: 'stderr' }));
T('createEngine', 'config.logger.trace', engineWith({ logger: { trace: true } }));
V('createEngine', 'config.logLevel', engineWith({ logLevel: 'verbose' }));
T('createEngine', 'config.inspect', engineWith({ inspect: 'yes' }));
T('createEngine', 'config.inspect.next', engineWith({ inspect: {} }));
T('createEngine', 'config.trace', engineWith({ trace: 1 }));
// ---- createEngine: policies, nested ones included
T('createEngine', 'config.connectTimeoutMs', engineWith({ connectTimeoutMs: '5' }));
R('createEngine', 'config.connectTimeoutMs', engineWith({ connectTimeoutMs: 0 }));
R('createEngine', 'config.connectTimeoutMs', engineWith({ connectTimeoutMs: Number.NaN }));
R('createEngine', 'config.dialQueueTimeoutMs', engineWith({ dialQueueTimeoutMs: Infinity }));
R('createEngine', 'config.handshakeTimeoutMs', engineWith({ handshakeTimeoutMs: -1 }));
R('createEngine', 'config.streamOpenTimeoutMs', engineWith({ streamOpenTimeoutMs: 0 }));
T('createEngine', 'config.heartbeat', engineWith({ heartbeat: 5 }));
R('createEngine', 'config.heartbeat.intervalMs', engineWith({ heartbeat: { intervalMs: 0 } }));
R('createEngine', 'config.heartbeat.timeoutMs', engineWith({ heartbeat: { intervalMs: 1000, timeoutMs: 1000 } }));
R('createEngine', 'config.heartbeat.misses', engineWith({ heartbeat: { misses: 1.5 } }));
R('createEngine', 'config.idleTimeoutMs', engineWith({ idleTimeoutMs: -5 }));
R('createEngine', 'config.drainDeadlineMs', engineWith({ drainDeadlineMs: 0 }));
R('createEngine', 'config.forceCloseGraceMs', engineWith({ forceCloseGraceMs: 0 }));
T('createEngine', 'config.retry', engineWith({ retry: 'exponential' }));
V('createEngine', 'config.retry.strategy', engineWith({ retry: { strategy: 'linear' } }));
T('createEngine', 'config.retry.strategy', engineWith({ retry: {} }));
R('createEngine', 'config.retry.multiplier', engineWith({ retry: { strategy: 'exponential', multiplier: 0.5 } }));
R('createEngine', 'config.retry.jitter', engineWith({ retry: { strategy: 'exponential', jitter: 2 } }));
R('createEngine', 'config.retry.maxAttempts', engineWith({ retry: { strategy: 'fibonacci', maxAttempts: 0 } }));
T('createEngine', 'config.retry.delayMs', engineWith({ retry: { strategy: 'fixed', delayMs: '1s' } }));
V('createEngine', 'config.pinnedRetry.strategy', engineWith({ pinnedRetry: { strategy: 'none' } }));
R('createEngine', 'config.pinnedRetry.maxDelayMs', engineWith({ pinnedRetry: { strategy: 'exponential', maxDelayMs: -1 } }));
R('createEngine', 'config.maxQueuedPerPeer', engineWith({ maxQueuedPerPeer: 0 }));
R('createEngine', 'config.maxStreamsPerConnection', engineWith({ maxStreamsPerConnection: 1.5 }));
R('createEngine', 'config.maxInboundStreamsPerConnection', engineWith({ maxInboundStreamsPerConnection: -1 }));
R('createEngine', 'config.dialConcurrency', engineWith({ dialConcurrency: 0 }));
R('createEngine', 'config.dialQueueLimit', engineWith({ dialQueueLimit: -1 }));
R('createEngine', 'config.maxConnections', engineWith({ maxConnections: 0 }));
R('createEngine', 'config.maxProtocolLength', engineWith({ maxProtocolLength: 0 }));
T('createEngine', 'config.resume', engineWith({ resume: true }));
R('createEngine', 'config.resume.bufferBytes', engineWith({ resume: { bufferBytes: 0 } }));
R('createEngine', 'config.resume.ttlMs', engineWith({ resume: { ttlMs: 0 } }));
R('createEngine', 'config.resume.maxSessionsPerPeer', engineWith({ resume: { maxSessionsPerPeer: 0 } }));
R('createEngine', 'config.resume.timeoutMs', engineWith({ resume: { timeoutMs: 0 } }));
R('createEngine', 'config.resume.ackDelayMs', engineWith({ resume: { ackDelayMs: 0 } }));
V('createEngine', 'config.resume.retry.strategy', engineWith({ resume: { retry: { strategy: 'none' } } }));
R('createEngine', 'config.maxInboundConnections', engineWith({ maxInboundConnections: 0 }));
R('createEngine', 'config.maxHandshakingConnections', engineWith({ maxHandshakingConnections: 0 }));
T('createEngine', 'config.inboundRateLimit', engineWith({ inboundRateLimit: 'fast' }));
R('createEngine', 'config.inboundRateLimit.connections', engineWith({ inboundRateLimit: { connections: 0 } }));
R('createEngine', 'config.inboundRateLimit.windowMs', engineWith({ inboundRateLimit: { windowMs: 0 } }));
T('createEngine', 'config.allowInbound', engineWith({ allowInbound: 'yes' }));
T('resolveOptions', 'options', () => runtime.resolveOptions(5 as never));
R('resolveOptions', 'options.connectTimeoutMs', () => runtime.resolveOptions({ connectTimeoutMs: 0 }));

// ---- the engine's methods
aT('Engine#start', 'options', () => engine.start(5 as never));
aT('Engine#start', 'options.signal', () => engine.start({ signal: 'soon' as never }));
aT('Engine#stop', 'options', () => engine.stop('force' as never));
aT('Engine#stop', 'options.force', () => engine.stop({ force: 'yes' as never }));
aT('Engine#stop', 'options.signal', () => engine.stop({ signal: {} as never }));
T('Engine#handle', 'protocol', () => engine.handle(5 as never, fn));
V('Engine#handle', 'protocol', () => engine.handle('', fn));
R('Engine#handle', 'protocol length', () => engine.handle('x'.repeat(300), fn));
T('Engine#handle', 'handler', () => engine.handle('/p', 'fn' as never));
V('Engine#handle', 'protocol', () => engine.handle(RESUME_PROTOCOL, fn));
T('Engine#addPeer', 'peerId', () => engine.addPeer(5 as never, []));
V('Engine#addPeer', 'peerId', () => engine.addPeer('me', []));
T('Engine#addPeer', 'addresses', () => engine.addPeer('p', 'memory://p' as never));
V('Engine#addPeer', 'addresses[0]', () => engine.addPeer('p', ['']));
T('Engine#addPeer', 'addresses[1]', () => engine.addPeer('p', ['memory://p', 5 as never]));
T('Engine#addPeer', 'options', () => engine.addPeer('p', [], 'pinned' as never));
T('Engine#addPeer', 'options.pinned', () => engine.addPeer('p', [], { pinned: 1 as never }));
T('Engine#addPeer', 'options.protected', () => engine.addPeer('p', [], { protected: 'yes' as never }));
T('Engine#addPeer', 'options.tags', () => engine.addPeer('p', [], { tags: 5 as never }));
R('Engine#addPeer', 'options.tags["relay"]', () => engine.addPeer('p', [], { tags: { relay: Number.NaN } }));
T('Engine#handle', 'options', () => engine.handle('/h', fn, 5 as never));
R('Engine#handle', 'options.maxStreamsPerConnection', () => engine.handle('/h', fn, { maxStreamsPerConnection: 0 }));
R('Engine#handle', 'options.maxConcurrentHandlers', () => engine.handle('/h', fn, { maxConcurrentHandlers: 1.5 }));
T('Engine#handle', 'options.inboundRate', () => engine.handle('/h', fn, { inboundRate: 5 as never }));
T('Engine#handle', 'options.inboundRate.opens', () => engine.handle('/h', fn, { inboundRate: { windowMs: 1 } as never }));
R('Engine#handle', 'options.inboundRate.windowMs', () => engine.handle('/h', fn, { inboundRate: { opens: 1, windowMs: 0 } }));
T('Engine#removePeer', 'peerId', () => engine.removePeer(undefined as never));
T('Engine#tagPeer', 'peerId', () => engine.tagPeer(5 as never, 't', 1));
V('Engine#tagPeer', 'tag', () => engine.tagPeer('p', '', 1));
T('Engine#tagPeer', 'value', () => engine.tagPeer('p', 't', '1' as never));
R('Engine#tagPeer', 'value', () => engine.tagPeer('p', 't', Infinity));
T('Engine#untagPeer', 'peerId', () => engine.untagPeer(null as never, 't'));
T('Engine#untagPeer', 'tag', () => engine.untagPeer('p', 5 as never));
T('Engine#protectPeer', 'peerId', () => engine.protectPeer(5 as never));
T('Engine#protectPeer', 'on', () => engine.protectPeer('p', 'yes' as never));
T('Engine#state$', 'peerId', () => engine.state$(5 as never));
aT('Engine#openStream', 'options.waitForReady', () => engine.openStream('p', '/p', { waitForReady: 1 as never }));
aT('Engine#openStream', 'peerId', () => engine.openStream(5 as never, '/p'));
aV('Engine#openStream', 'peerId', () => engine.openStream('', '/p'));
aV('Engine#openStream', 'peerId', () => engine.openStream('me', '/p'));
aT('Engine#openStream', 'protocol', () => engine.openStream('p', 7 as never));
aR('Engine#openStream', 'protocol length', () => engine.openStream('p', 'x'.repeat(300)));
aT('Engine#openStream', 'options', () => engine.openStream('p', '/p', 'fast' as never));
aT('Engine#openStream', 'options.signal', () => engine.openStream('p', '/p', { signal: {} as never }));
aT('Engine#openStream', 'options.timeoutMs', () => engine.openStream('p', '/p', { timeoutMs: '5' as never }));
aR('Engine#openStream', 'options.timeoutMs', () => engine.openStream('p', '/p', { timeoutMs: 0 }));
aR('Engine#openStream', 'options.timeoutMs', () => engine.openStream('p', '/p', { timeoutMs: Infinity }));
aR('Engine#openStream', 'options.timeoutMs', () => engine.openStream('p', '/p', { timeoutMs: Number.NaN }));
aT('Engine#openStream', 'options.resumable', () => engine.openStream('p', '/p', { resumable: 'yes' as never }));
aV('Engine#openStream', 'protocol', () => engine.openStream('p', RESUME_PROTOCOL, { resumable: true }));
aT('Engine#withConnection', 'peerId', () => engine.withConnection(5 as never, fn));
aT('Engine#withConnection', 'fn', () => engine.withConnection('p', 'fn' as never));
aR('Engine#withConnection', 'options.timeoutMs', () => engine.withConnection('p', fn, { timeoutMs: -1 }));
aT('Engine#withConnection', 'options.signal', () => engine.withConnection('p', fn, { signal: 'x' as never }));
aT('Engine#drain', 'peerId', () => engine.drain(5 as never));
aV('Engine#drain', 'peerId', () => engine.drain(''));
aT('Engine#forceClose', 'peerId', () => engine.forceClose(null as never));
aT('Engine#forceClose', 'reason', () => engine.forceClose('p', 5 as never));
T('Engine#inspect', 'observer', () => engine.inspect(5 as never));
T('Engine#inspect', 'observer.next', () => engine.inspect({} as never));

// ---- the rest of peerline's entry point
T('prometheus', 'engine', () => runtime.prometheus(5 as never));
V('prometheus', 'options.prefix', () => runtime.prometheus(engine, { prefix: '9' }));
T('backoffDelay', 'policy', () => runtime.backoffDelay(null as never, 1, Math.random));
R('backoffDelay', 'failures', () => runtime.backoffDelay({ strategy: 'none' }, -1, Math.random));
T('backoffDelay', 'random', () => runtime.backoffDelay({ strategy: 'none' }, 1, 5 as never));
T('maxAttempts', 'policy', () => runtime.maxAttempts('none' as never));
T('seededRandom', 'seed', () => runtime.seededRandom('42' as never));
T('systemClock.setTimeout', 'fn', () => runtime.systemClock.setTimeout('fn' as never, 1));
T('systemClock.setTimeout', 'ms', () => runtime.systemClock.setTimeout(fn, '1' as never));
R('DialQueue', 'concurrency', () => new DialQueue(0, 1));
R('DialQueue', 'limit', () => new DialQueue(1, -1));
T('DialQueue#acquire', 'granted', () => new DialQueue(1, 1).acquire(5 as never, fn));
aT('echo', 'stream', () => runtime.echo(5 as never));
aT('sendAndReceive', 'stream', () => runtime.sendAndReceive({} as never, 'x'));
aT('sendAndReceive', 'text', () => runtime.sendAndReceive(streamLike as never, 5 as never));
T('toPeerlineError', 'info', () => runtime.toPeerlineError(null as never));
V('toPeerlineError', 'info.code', () => runtime.toPeerlineError({ code: 'toString', message: 'x' } as never));

// ---- peerline/adapters/memory
T('MemoryNetwork', 'options', () => new MemoryNetwork(5 as never));
T('MemoryNetwork', 'options.clock', () => new MemoryNetwork({} as never));
T('MemoryNetwork', 'options.clock.setTimeout', () => new MemoryNetwork({ clock: { now: () => 0 } } as never));
T('MemoryNetwork', 'options.latencyMs', () => new MemoryNetwork({ clock, latencyMs: '1' as never }));
R('MemoryNetwork', 'options.latencyMs', () => new MemoryNetwork({ clock, latencyMs: -1 }));
R('MemoryNetwork', 'options.seed', () => new MemoryNetwork({ clock, seed: 1.5 }));
T('MemoryNetwork', 'options.onError', () => new MemoryNetwork({ clock, onError: 'log' as never }));
R('MemoryNetwork', 'options.streamWindowBytes', () => new MemoryNetwork({ clock, streamWindowBytes: 0 }));
R('MemoryNetwork', 'options.maxStreamsPerConnection', () => new MemoryNetwork({ clock, maxStreamsPerConnection: 0 }));
R('MemoryNetwork', 'options.maxBufferedEvents', () => new MemoryNetwork({ clock, maxBufferedEvents: 0 }));
T('MemoryNetwork#node', 'peerId', () => network.node(5 as never));
V('MemoryNetwork#node', 'peerId', () => network.node(''));
T('MemoryNetwork#address', 'peerId', () => network.address(5 as never));
R('MemoryNetwork#setLatency', 'ms', () => network.setLatency(-1));
T('MemoryNetwork#setLinkLatency', 'a', () => network.setLinkLatency(1 as never, 'b', 1));
R('MemoryNetwork#setLinkLatency', 'ms', () => network.setLinkLatency('a', 'b', -1));
T('MemoryNetwork#refuseDials', 'peerId', () => network.refuseDials(5 as never));
T('MemoryNetwork#refuseDials', 'on', () => network.refuseDials('a', 'yes' as never));
T('MemoryNetwork#stallDials', 'peerId', () => network.stallDials(null as never));
T('MemoryNetwork#stallHandshake', 'on', () => network.stallHandshake('a', 1 as never));
T('MemoryNetwork#drop', 'a', () => network.drop(5 as never));
T('MemoryNetwork#drop', 'b', () => network.drop('a', 5 as never));
T('MemoryNetwork#partition', 'sideA', () => network.partition('a' as never, ['b']));
T('MemoryNetwork#isPartitioned', 'a', () => network.isPartitioned(5 as never, 'b'));
V('MemoryNetwork#isPartitioned', 'b', () => network.isPartitioned('a', ''));
T('MemoryNetwork#partition', 'sideB[0]', () => network.partition(['a'], [5 as never]));
T('MemoryNetwork#ackFault', 'peerId', () => network.ackFault(5 as never, null));
T('MemoryNetwork#ackFault', 'fault', () => network.ackFault('a', 5 as never));
R('MemoryNetwork#ackFault', 'fault.delayMs', () => network.ackFault('a', { delayMs: -1 }));
T('MemoryNetwork#ackFault', 'fault.lose', () => network.ackFault('a', { lose: 'y' as never }));
T('MemoryNetwork#kill', 'peerId', () => network.kill(5 as never));
T('MemoryNetwork#kill', 'options.silent', () => network.kill('a', { silent: 1 as never }));
T('MemoryNetwork#revive', 'peerId', () => network.revive(5 as never));
T('MemoryNetwork#isDead', 'peerId', () => network.isDead(5 as never));
aT('MemoryAdapter#listen', 'onConnection', () => adapter.listen(5 as never));
aT('MemoryAdapter#dial', 'peerId', () => adapter.dial(5 as never, 'memory://a', { signal }));
aV('MemoryAdapter#dial', 'address', () => adapter.dial('a', '', { signal }));
aT('MemoryAdapter#dial', 'options', () => adapter.dial('a', 'memory://a', 5 as never));
aT('MemoryAdapter#dial', 'options.signal', () => adapter.dial('a', 'memory://a', { signal: 5 as never }));
T('VirtualClock', 'startAt', () => new VirtualClock('0' as never));
T('VirtualClock#setTimeout', 'fn', () => clock.setTimeout(5 as never, 1));
T('VirtualClock#setTimeout', 'ms', () => clock.setTimeout(fn, '1' as never));
aR('VirtualClock#advance', 'ms', () => clock.advance(-1));
aT('VirtualClock#advance', 'ms', () => clock.advance('1' as never));
aR('VirtualClock#runAll', 'limitMs', () => clock.runAll(-1));

// ---- peerline/adapters/quic (the identity comes from `before`)
let id: quic.QuicIdentity;
T('createQuicAdapter', 'options', () => quic.createQuicAdapter(5 as never));
T('createQuicAdapter', 'options.identity', () => quic.createQuicAdapter({} as never));
T('createQuicAdapter', 'options.host', () => quic.createQuicAdapter({ identity: id, host: 5 as never }));
V('createQuicAdapter', 'options.host', () => quic.createQuicAdapter({ identity: id, host: 'localhost' }));
R('createQuicAdapter', 'options.port', () => quic.createQuicAdapter({ identity: id, port: 70_000 }));
R('createQuicAdapter', 'options.port', () => quic.createQuicAdapter({ identity: id, port: 1.5 }));
T('createQuicAdapter', 'options.logger', () => quic.createQuicAdapter({ identity: id, logger: 'x' as never }));
T('createQuicAdapter', 'options.logger.warn', () => quic.createQuicAdapter({ identity: id, logger: {} as never }));
T('createQuicAdapter', 'options.allowInbound', () => quic.createQuicAdapter({ identity: id, allowInbound: true as never }));
T('createQuicAdapter', 'options.retryTokenMs', () => quic.createQuicAdapter({ identity: id, retryTokenMs: '1' as never }));
R('createQuicAdapter', 'options.retryTokenMs', () => quic.createQuicAdapter({ identity: id, retryTokenMs: 0 }));
T('createQuicAdapter', 'options.quicConfig', () => quic.createQuicAdapter({ identity: id, quicConfig: 5 as never }));
T('createQuicAdapter', 'options.tuning', () => quic.createQuicAdapter({ identity: id, tuning: 'yes' as never }));
aT('loadIdentity', 'dir', () => quic.loadIdentity(5 as never));
aV('loadIdentity', 'dir', () => quic.loadIdentity(''));
aT('saveIdentity', 'dir', () => quic.saveIdentity(5 as never, id));
aT('validateIdentity', 'identity', () => quic.validateIdentity(5 as never));
T('checkIdentity', 'identity', () => quic.checkIdentity(5 as never));
T('peerIdFromPublicKey', 'publicKey', () => quic.peerIdFromPublicKey('key' as never));
R('peerIdFromPublicKey', 'publicKey.length', () => quic.peerIdFromPublicKey(new Uint8Array(31)));
T('publicKeyFromPeerId', 'peerId', () => quic.publicKeyFromPeerId(5 as never));
T('peerIdFromCertificate', 'der', () => quic.peerIdFromCertificate('pem' as never));
R('quicAddress', 'port', () => quic.quicAddress(0));
T('quicAddress', 'host', () => quic.quicAddress(1, 5 as never));
V('quicAddress', 'host', () => quic.quicAddress(1, 'localhost'));
T('parseQuicAddress', 'address', () => quic.parseQuicAddress(5 as never));
T('quicTimings', 'policy', () => quic.quicTimings(5 as never));
R('quicTimings', 'policy.heartbeatMisses', () => quic.quicTimings({ ...quic.DEFAULT_TRANSPORT_POLICY, heartbeatMisses: 0 }));

// ---- peerline/visualizer (the server, graph and layout come from `before`)
let viz: visualizer.Visualizer;
let layout: visualizer.MachineLayout;
const graph = visualizer.machineGraph(connectionMachine);
const inspector = visualizer.createInspector();
aT('startVisualizer', 'options', () => visualizer.startVisualizer(5 as never));
aV('startVisualizer', 'options.host', () => visualizer.startVisualizer({ host: '0.0.0.0' }));
aR('startVisualizer', 'options.port', () => visualizer.startVisualizer({ port: -1 }));
aT('startVisualizer', 'options.engines', () => visualizer.startVisualizer({ engines: engine as never }));
aT('startVisualizer', 'options.engines[0].peerId', () => visualizer.startVisualizer({ engines: [{} as never] }));
aT('startVisualizer', 'options.inspector', () => visualizer.startVisualizer({ inspector: {} as never }));
aT('startVisualizer', 'options.machine', () => visualizer.startVisualizer({ machine: {} as never }));
aT('startVisualizer', 'options.title', () => visualizer.startVisualizer({ title: 5 as never }));
aR('startVisualizer', 'options.flushIntervalMs', () => visualizer.startVisualizer({ flushIntervalMs: 0 }));
aR('startVisualizer', 'options.metricsIntervalMs', () => visualizer.startVisualizer({ metricsIntervalMs: -1 }));
aT('startVisualizer', 'options.acceptInspectors', () => visualizer.startVisualizer({ acceptInspectors: 'y' as never }));
T('Visualizer#addEngine', 'engine.peerId', () => viz.addEngine({} as never));
T('Visualizer#addEngine', 'name', () => viz.addEngine(engine, 5 as never));
V('Visualizer#addEngine', 'name', () => viz.addEngine(engine, ' '));
aT('startVisualizer', 'options.names', () => visualizer.startVisualizer({ names: 'alice' as never }));
aT('startVisualizer', 'options.names["a"]', () => visualizer.startVisualizer({ names: { a: 7 as never } }));
T('agentNames', 'count', () => visualizer.agentNames('3' as never));
R('agentNames', 'count', () => visualizer.agentNames(-1));
T('Visualizer#removeEngine', 'engine', () => viz.removeEngine(5 as never));
T('createInspector', 'options', () => visualizer.createInspector(5 as never));
R('createInspector', 'options.historyLimit', () => visualizer.createInspector({ historyLimit: 0 }));
R('createInspector', 'options.maxFinished', () => visualizer.createInspector({ maxFinished: -1 }));
T('createInspector', 'options.now', () => visualizer.createInspector({ now: 5 as never }));
R('createInspector', 'options.serializationDepth', () => visualizer.createInspector({ serializationDepth: -1 }));
T('createInspector', 'options.definitions', () => visualizer.createInspector({ definitions: 'y' as never }));
T('Inspector#inspectFor', 'engineId', () => inspector.inspectFor(5 as never));
T('Inspector#ingest', 'origin', () => inspector.ingest({}, 5 as never));
T('Inspector#subscribe', 'listener', () => inspector.subscribe(5 as never));
T('Inspector#onRemoved', 'listener', () => inspector.onRemoved(null as never));
T('Inspector#peer', 'key', () => inspector.peer(5 as never));
T('Inspector#history', 'keyOrSession', () => inspector.history(5 as never));
T('Inspector#timeline', 'keyOrSession', () => inspector.timeline(undefined as never));
aT('startLiveSwarm', 'options', () => visualizer.startLiveSwarm(5 as never));
aT('startLiveSwarm', 'options.network', () => visualizer.startLiveSwarm({} as never));
aR('startLiveSwarm', 'options.agents', () => visualizer.startLiveSwarm({ network, agents: 1 }));
aT('startLiveSwarm', 'options.inspector', () => visualizer.startLiveSwarm({ network, inspector: {} as never }));
aR('startLiveSwarm', 'options.requestIntervalMs', () => visualizer.startLiveSwarm({ network, requestIntervalMs: -1 }));
aT('startLiveSwarm', 'options.quiet[0]', () => visualizer.startLiveSwarm({ network, quiet: [5 as never] }));
aR('runInspectDemo', 'options.port', () => visualizer.runInspectDemo({ network, port: -1 }));
aT('runInspectDemo', 'options.network.node', () => visualizer.runInspectDemo({ network: { address: fn } as never }));
T('machineGraph', 'machine', () => visualizer.machineGraph({} as never));
T('activeStateIds', 'machineId', () => visualizer.activeStateIds(5 as never, 'ready'));
T('mermaidId', 'state.path', () => visualizer.mermaidId({} as never));
T('toMermaid', 'graph', () => visualizer.toMermaid({} as never));
T('toMermaid', 'options.title', () => visualizer.toMermaid(graph, { title: 5 as never }));
aT('layoutMachine', 'graph', () => visualizer.layoutMachine(5 as never));
aT('layoutMachine', 'options.labels', () => visualizer.layoutMachine(graph, { labels: 'y' as never }));
aT('layoutMachine', 'options.elk', () => visualizer.layoutMachine(graph, { elk: 'RIGHT' as never }));
T('renderSvg', 'layout', () => visualizer.renderSvg({} as never));
T('renderSvg', 'options.badges', () => visualizer.renderSvg(layout, { badges: 1 as never }));
aT('diagramSources', 'machine', () => visualizer.diagramSources({} as never));
aT('diagramSources', 'title', () => visualizer.diagramSources(connectionMachine, 5 as never));
R('RingBuffer', 'capacity', () => new visualizer.RingBuffer(0));
T('toJson', 'options', () => visualizer.toJson(1, 5 as never));
V('toJson', 'options.functions', () => visualizer.toJson(1, { functions: 'keep' as never }));
R('toJson', 'options.depth', () => visualizer.toJson(1, { depth: -1 }));
T('toTimelineEntry', 'event', () => visualizer.toTimelineEntry(5 as never, undefined));

/**
 * Exported functions and classes without a row, and why: they take any
 * value by design (predicates, describers), take no argument, or are made
 * only by peerline (errors, the classes behind a factory that has rows).
 */
const NO_ROW: Readonly<Record<string, string>> = {
  isPeerlineError: 'a predicate: any value',
  isArgumentError: 'a predicate: any value',
  isPeerId: 'a predicate: any value',
  transportErrorInfo: 'maps any thrown value',
  describeValue: 'describes any snapshot value',
  topLevelState: 'reads any snapshot value',
  guardName: 'names any guard value',
  generateIdentity: 'takes no argument',
  flushMicrotasks: 'takes no argument',
  Engine: 'the class behind createEngine (same constructor)',
  Inspector: 'the class behind createInspector (same constructor)',
  QuicAdapter: 'the class behind createQuicAdapter, which checks the options first',
  QuicConnection: 'made by the QUIC adapter only',
  MemoryAdapter: 'made by MemoryNetwork#node only (its methods have rows)',
  TransportError: 'an error class',
  IdentityError: 'an error class',
  'VirtualClock#clearTimeout': 'clears any handle and ignores the rest, as the host clearTimeout',
};

describe('bad input to every public function: TypeError or RangeError naming the argument, with a code', () => {
  before(async function () {
    id = await identity('arguments');
    layout = await visualizer.layoutMachine(graph);
    viz = await visualizer.startVisualizer({ metricsIntervalMs: 60_000 });
  });

  after(async () => {
    await viz.close();
    await engine.stop();
    await network.node('cfg').close();
  });

  for (const [i, row] of rows.entries()) {
    it(`${row.fn}: ${row.names} (${row.kind}${row.async ? ', rejects' : ''}) #${i}`, async () => {
      let result: unknown;
      let thrown: unknown;
      try {
        result = row.call();
      } catch (error) {
        thrown = error;
      }
      if (row.async) {
        assert.equal(thrown, undefined, `a promise-returning function must reject, not throw: ${String(thrown)}`);
        assert.ok(result instanceof Promise, 'returns a promise');
        thrown = await result.then(
          () => assert.fail('resolved'),
          (error: unknown) => error,
        );
      } else {
        assert.ok(!(result instanceof Promise), 'a synchronous function throws, it does not return a promise');
        assert.notEqual(thrown, undefined, 'did not throw');
      }
      const expected = EXPECT[row.kind];
      const error = thrown as Error & { code?: unknown };
      assert.ok(error instanceof expected.error, `${expected.error.name} expected, got ${String(error)}`);
      assert.equal(error.constructor, expected.error, 'a plain TypeError or RangeError');
      assert.equal(error.code, expected.code);
      assert.ok(error.message.startsWith(`${row.names} must `), `the message names ${row.names}: ${error.message}`);
      assert.match(error.message, /, got .+$/, 'and says what it got');
      assert.ok(runtime.isArgumentError(error));
    });
  }

  it('formats the value it got as the example in the README: options.timeoutMs must be a positive finite number, got "5"', async () => {
    await assert.rejects(engine.openStream('p', '/p', { timeoutMs: '5' as never }), {
      name: 'TypeError',
      code: 'ERR_INVALID_ARG_TYPE',
      message: 'options.timeoutMs must be a positive finite number, got "5"',
    });
  });

  it('has a row for every function and class the entry points export, or a reason to have none', () => {
    const covered = new Set(rows.map((row) => row.fn.split(/[#.]/)[0]!));
    const missing: string[] = [];
    for (const [entry, mod] of Object.entries({ runtime, memory, quic, visualizer })) {
      for (const [name, value] of Object.entries(mod)) {
        if (typeof value !== 'function') continue;
        // Error classes are made by peerline; their constructors take what it gives them.
        if (value.prototype instanceof Error) continue;
        if (!covered.has(name) && NO_ROW[name] === undefined) missing.push(`${entry}: ${name}`);
      }
    }
    // Methods of the objects the factories return.
    for (const [name, proto] of Object.entries({
      Engine: runtime.Engine.prototype,
      MemoryNetwork: MemoryNetwork.prototype,
      MemoryAdapter: memory.MemoryAdapter.prototype,
      VirtualClock: VirtualClock.prototype,
      Inspector: visualizer.Inspector.prototype,
    })) {
      for (const method of Object.getOwnPropertyNames(proto)) {
        const descriptor = Object.getOwnPropertyDescriptor(proto, method)!;
        if (method === 'constructor' || typeof descriptor.value !== 'function' || descriptor.value.length === 0) continue;
        const key = `${name}#${method}`;
        if (!rows.some((row) => row.fn === key) && NO_ROW[key] === undefined) missing.push(key);
      }
    }
    assert.deepEqual(missing, []);
  });
});
