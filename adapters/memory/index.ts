/**
 * The in-memory transport: a deterministic network of adapters on a virtual
 * clock, for testing agents and for peerline's own simulator.
 */
export { MemoryNetwork, MemoryAdapter } from './network.js';
export type { MemoryNetworkOptions, MemoryNetworkStats, MemoryAckFault } from './network.js';
export { VirtualClock, flushMicrotasks } from './virtual-clock.js';
export { TransportError } from '../../protocol/adapter.js';
export type { Adapter, CloseInfo, Connection, ConnectionHandlers, DialOptions, IncomingStream, Stream, TransportErrorKind } from '../../protocol/adapter.js';
export type { Clock } from '../../protocol/time.js';
export type { ControlMessage } from '../../protocol/control.js';
