/**
 * How the end of a QUIC connection, or a refused dial, looks to peerline:
 * the library's connection errors mapped to `CloseInfo` and to
 * `ConnectionErrorCode`s.
 */
import { errors as quicErrors, type QUICConnection } from '@matrixai/quic';
import type { CloseInfo } from '../../protocol/adapter.js';
import { ConnectionErrorCode, codeForReason, reasonFor } from '../../protocol/codes.js';
import { quicAddress } from './address.js';
import { QUIC_CONNECTION_REFUSED } from './seam/index.js';
import { decodeUtf8 } from './wire.js';

/** TLS alert codes as QUIC crypto errors (0x100 + alert). */
export const CryptoError = { BadCertificate: 0x100 + 42, AccessDenied: 0x100 + 49, UserCanceled: 0x100 + 90 } as const;

export { QUIC_CONNECTION_REFUSED };

/** The `data` a library connection error carries (the close frame's fields). */
interface CloseData {
  readonly isApp?: boolean;
  readonly errorCode?: number;
  readonly reason?: Uint8Array;
}

function dataOf(error: unknown): CloseData | undefined {
  return (error as { data?: CloseData } | undefined)?.data;
}

export function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A close frame's reason phrase as text ('' when absent or not UTF-8). */
export function reasonText(bytes: unknown): string {
  if (!(bytes instanceof Uint8Array) || bytes.length === 0) return '';
  try {
    return decodeUtf8(bytes);
  } catch {
    return '';
  }
}

/**
 * The peerline code of a refusal by the remote before or during TLS, if it
 * was one: TLS alert access_denied is a gate's (AdmissionDenied); a transport
 * CONNECTION_REFUSED carries the reason text of its code (see admission.ts).
 */
export function refusalCode(error: unknown): ConnectionErrorCode | undefined {
  const data = dataOf(error);
  if (error instanceof quicErrors.ErrorQUICConnectionPeerTLS) {
    return data?.errorCode === CryptoError.AccessDenied ? ConnectionErrorCode.AdmissionDenied : undefined;
  }
  if (error instanceof quicErrors.ErrorQUICConnectionPeer && data?.isApp !== true && data?.errorCode === QUIC_CONNECTION_REFUSED) {
    return codeForReason(reasonText(data.reason));
  }
  return undefined;
}

/** `quic://HOST:PORT` of the remote end of a library connection (undefined if it has no usable address). */
export function remoteAddressOf(quic: QUICConnection): string | undefined {
  try {
    return quicAddress(quic.remotePort, quic.remoteHost);
  } catch {
    return undefined;
  }
}

/** How the end of a QUIC connection looks to peerline. */
export function closeInfoOf(error: unknown): CloseInfo {
  const data = dataOf(error);
  const refusal = refusalCode(error);
  if (refusal !== undefined) {
    return { local: false, code: refusal, reason: `the remote refused the connection: ${reasonFor(refusal)}`, error: false };
  }
  if (error instanceof quicErrors.ErrorQUICConnectionPeerTLS) {
    return {
      local: false,
      code: ConnectionErrorCode.IdentityMismatch,
      reason: `the remote refused our certificate (TLS alert ${((data?.errorCode ?? 0x100) - 0x100).toString()})`,
      error: true,
    };
  }
  if (error instanceof quicErrors.ErrorQUICConnectionPeer) {
    if (data?.isApp === true) {
      return { local: false, code: data.errorCode, reason: reasonText(data.reason) || 'closed by the remote', error: false };
    }
    return {
      local: false,
      code: undefined,
      reason: `the remote closed the connection (transport error ${String(data?.errorCode)})`,
      error: true,
    };
  }
  if (error instanceof quicErrors.ErrorQUICConnectionIdleTimeout) {
    return { local: false, code: undefined, reason: 'idle timeout: nothing heard from the remote', error: true };
  }
  if (error instanceof quicErrors.ErrorQUICConnectionLocalTLS) {
    return { local: false, code: ConnectionErrorCode.IdentityMismatch, reason: 'the remote certificate failed verification', error: true };
  }
  return { local: false, code: undefined, reason: `transport failure: ${describe(error)}`, error: true };
}

/** How a connection that ended before it was handed over looks (from the library's `getConnectionError()`). */
export function earlyCloseInfo(early: { isApp: boolean; errorCode: number; reason: Uint8Array }): CloseInfo {
  // A refusal before TLS finished travels as CONNECTION_REFUSED with its reason text.
  const refused = !early.isApp && early.errorCode === QUIC_CONNECTION_REFUSED ? codeForReason(reasonText(early.reason)) : undefined;
  return {
    local: false,
    code: early.isApp ? early.errorCode : refused,
    reason: reasonText(early.reason) || 'closed before it was handed over',
    error: !early.isApp && refused === undefined,
  };
}
