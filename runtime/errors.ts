import { TransportError } from '../protocol/adapter.js';
import { ConnectionErrorCode, errorInfo, type ErrorCode, type ErrorInfo } from '../protocol/codes.js';
import { STREAM_LIMIT_REASON } from './protocol-limits.js';
import { checkObject, invalidValue } from '../protocol/arguments.js';

/**
 * The brand of every PeerlineError, registered process-wide (`Symbol.for`):
 * an application whose dependencies bring two copies of peerline (two
 * versions, or one loaded twice) gets errors from either, and a class check
 * by prototype would fail across them. undici brands its errors the same way
 * (`kUndiciError`).
 */
const kPeerlineError = Symbol.for('peerline.error');

function isBranded(value: unknown): value is { readonly code: unknown } {
  return typeof value === 'object' && value !== null && (value as { [kPeerlineError]?: unknown })[kPeerlineError] === true;
}

/**
 * Every error peerline hands to its users is a `PeerlineError` with a stable
 * string `code` (undici's `errors.js` is the model). Switch on `code`, not on
 * messages or classes: codes never change, messages may.
 *
 * `instanceof` works across copies of the package: any branded error is a
 * `PeerlineError`, and one whose code is `CONNECT_TIMEOUT` a
 * `ConnectTimeoutError` (each subclass stands for one code).
 */
export class PeerlineError extends Error {
  static override [Symbol.hasInstance](instance: unknown): boolean {
    if (Function.prototype[Symbol.hasInstance].call(this, instance)) return true;
    if (!isBranded(instance)) return false;
    if (this === PeerlineError) return true;
    const code = codeOf.get(this);
    return code !== undefined && instance.code === code;
  }

  get [kPeerlineError](): true {
    return true;
  }

  readonly code: ErrorCode;
  readonly peerId: string | undefined;
  readonly closeCode: ConnectionErrorCode | undefined;
  constructor(code: ErrorCode, message: string, options: { peerId?: string; closeCode?: ConnectionErrorCode; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PeerlineError';
    this.code = code;
    this.peerId = options.peerId;
    this.closeCode = options.closeCode;
  }
}

export class ConnectTimeoutError extends PeerlineError { override name = 'ConnectTimeoutError'; }
export class ConnectRefusedError extends PeerlineError { override name = 'ConnectRefusedError'; }
export class HandshakeTimeoutError extends PeerlineError { override name = 'HandshakeTimeoutError'; }
export class PeerIdentityMismatchError extends PeerlineError { override name = 'PeerIdentityMismatchError'; }
export class ProtocolViolationError extends PeerlineError { override name = 'ProtocolViolationError'; }
export class StreamRejectedError extends PeerlineError { override name = 'StreamRejectedError'; }
/** The remote refused the stream because a per-protocol limit of its handler was reached: retry later. */
export class StreamLimitError extends PeerlineError { override name = 'StreamLimitError'; }
export class StreamTimeoutError extends PeerlineError { override name = 'StreamTimeoutError'; }
export class QueueFullError extends PeerlineError { override name = 'QueueFullError'; }
export class ConnectionDrainingError extends PeerlineError { override name = 'ConnectionDrainingError'; }
export class ConnectionForceClosedError extends PeerlineError { override name = 'ConnectionForceClosedError'; }
export class ConnectionLostError extends PeerlineError { override name = 'ConnectionLostError'; }
export class HeartbeatTimeoutError extends PeerlineError { override name = 'HeartbeatTimeoutError'; }
export class AbortedError extends PeerlineError { override name = 'AbortedError'; }
export class EngineStoppedError extends PeerlineError { override name = 'EngineStoppedError'; }
export class NoAddressError extends PeerlineError { override name = 'NoAddressError'; }
export class ConnectionLimitError extends PeerlineError { override name = 'ConnectionLimitError'; }
export class InvalidRequestError extends PeerlineError { override name = 'InvalidRequestError'; }
/** A resumable stream could not resume: what the other side is missing is no longer buffered. */
export class ResumeGapError extends PeerlineError { override name = 'ResumeGapError'; }
/** A suspended resumable stream was not resumed before its TTL (or the remote no longer knows it). */
export class ResumeExpiredError extends PeerlineError { override name = 'ResumeExpiredError'; }
/** The remote refused the proof of a resumable session. */
export class ResumeRejectedError extends PeerlineError { override name = 'ResumeRejectedError'; }

const classes: Record<ErrorCode, typeof PeerlineError> = {
  CONNECT_TIMEOUT: ConnectTimeoutError,
  CONNECT_REFUSED: ConnectRefusedError,
  HANDSHAKE_TIMEOUT: HandshakeTimeoutError,
  PEER_IDENTITY_MISMATCH: PeerIdentityMismatchError,
  PROTOCOL_VIOLATION: ProtocolViolationError,
  STREAM_REJECTED: StreamRejectedError,
  STREAM_LIMIT: StreamLimitError,
  STREAM_TIMEOUT: StreamTimeoutError,
  QUEUE_FULL: QueueFullError,
  CONNECTION_DRAINING: ConnectionDrainingError,
  CONNECTION_FORCE_CLOSED: ConnectionForceClosedError,
  CONNECTION_LOST: ConnectionLostError,
  HEARTBEAT_TIMEOUT: HeartbeatTimeoutError,
  ABORTED: AbortedError,
  ENGINE_STOPPED: EngineStoppedError,
  NO_ADDRESS: NoAddressError,
  CONNECTION_LIMIT: ConnectionLimitError,
  INVALID_REQUEST: InvalidRequestError,
  RESUME_GAP: ResumeGapError,
  RESUME_EXPIRED: ResumeExpiredError,
  RESUME_REJECTED: ResumeRejectedError,
};

/** The code each class stands for (for `instanceof` across copies of the package). */
const codeOf = new Map<unknown, ErrorCode>(Object.entries(classes).map(([code, Class]) => [Class, code as ErrorCode]));

/** Builds the typed error for a machine's `ErrorInfo`. */
export function toPeerlineError(info: ErrorInfo, peerId?: string, cause?: unknown): PeerlineError {
  checkObject('info', info);
  if (!Object.hasOwn(classes, info.code)) throw invalidValue('info.code', 'an ErrorCode (see ErrorCodes)', info.code);
  const Class = classes[info.code];
  const options: { peerId?: string; closeCode?: ConnectionErrorCode; cause?: unknown } = { cause };
  if (peerId !== undefined) options.peerId = peerId;
  if (info.closeCode !== undefined) options.closeCode = info.closeCode;
  return new Class(info.code, info.message, options);
}

/** True for an error of any copy of peerline (see `PeerlineError`). */
export function isPeerlineError(error: unknown): error is PeerlineError {
  return isBranded(error);
}

/** Maps a transport failure to the error a request or a machine ends with. */
export function transportErrorInfo(error: unknown, during: 'dial' | 'stream'): ErrorInfo {
  if (error instanceof TransportError) {
    switch (error.kind) {
      case 'refused':
      case 'unreachable':
        // A refusal by admission control names its code (RateLimited, ...).
        return errorInfo('CONNECT_REFUSED', error.message, error.closeCode);
      case 'identity-mismatch':
        return errorInfo('PEER_IDENTITY_MISMATCH', error.message, ConnectionErrorCode.IdentityMismatch);
      case 'rejected':
        // A per-protocol limit of the remote's handler: retry later, not a protocol it refuses.
        return errorInfo(error.message.startsWith(STREAM_LIMIT_REASON) ? 'STREAM_LIMIT' : 'STREAM_REJECTED', error.message);
      case 'protocol':
        return errorInfo('PROTOCOL_VIOLATION', error.message, ConnectionErrorCode.ProtocolViolation);
      case 'aborted':
        return errorInfo(during === 'dial' ? 'CONNECT_TIMEOUT' : 'ABORTED', error.message);
      case 'stream-limit':
      case 'closed':
        return errorInfo('CONNECTION_LOST', error.message);
    }
  }
  return errorInfo('CONNECTION_LOST', error instanceof Error ? error.message : String(error));
}
