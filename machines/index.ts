/** peerline/machines: the pure peer connection machine, its types and codes. */
export { connectionMachine, type ConnectionMachine } from './connection-machine.js';
export * from './codes.js';
export * from './types.js';
