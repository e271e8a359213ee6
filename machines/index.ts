/** peerline/machines: the pure peer connection machine, its types and codes. */
export { connectionMachine, type ConnectionMachine } from './connection-machine.js';
export { sessionMachine, SessionStates, type SessionMachine, type SessionState, type SessionContext, type SessionEvent, type SessionInput } from './session-machine.js';
export { ConnectionErrorCode, ConnectionErrorReason, ErrorCodes, codeForReason, reasonFor, type ErrorCode, type ErrorInfo } from '../protocol/codes.js';
export * from './types.js';
export { PROTOCOL_VERSION } from '../protocol/control.js';
