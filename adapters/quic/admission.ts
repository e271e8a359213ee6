/**
 * Admission control of inbound QUIC connections (`TransportPolicy.admission`,
 * from the engine), enforced as early as each check can be made.
 *
 * A server connection is registered by the library once the dialler proved
 * its address (stateless retry, `retry-tokens.ts`) and before any TLS work:
 * the rate per remote IP, the inbound limit and the handshaking limit are
 * checked then. A refused connection gets the server's first flight and right
 * after it a transport CONNECTION_CLOSE with CONNECTION_REFUSED and the reason
 * text of its ConnectionErrorCode (QUIC allows no application code before the
 * handshake completes; a peerline dialler maps the text back, see
 * `close-info.ts`); it never reaches TLS verification.
 *
 * The gates need the peer id, so they run in the TLS verify callback. A gate
 * that answers at once refuses there (TLS alert access_denied). One that
 * answers later cannot be waited for there: the library drops every stream
 * that arrives while the connection is not started yet, and a verify callback
 * that waits keeps it from starting (the dialler's control stream would be
 * lost). Its answer is awaited after TLS instead, nothing being read from the
 * connection meanwhile.
 *
 * Every inbound connection must be handed over (TLS done and the dialler's
 * control stream arrived) within `handshakeTimeoutMs` of its registration, or
 * it is closed with HandshakeTimeout.
 */
import { events as quicEvents, type QUICConnection } from '@matrixai/quic';
import type { InboundGate, TransportPolicy } from '../../protocol/adapter.js';
import { RateLimiter } from '../../protocol/rate-limit.js';
import { ConnectionErrorCode, reasonFor } from '../../protocol/codes.js';
import { CryptoError, remoteAddressOf } from './close-info.js';
import { peerIdFromCertificate } from './identity.js';
import { closeBeforeTls, refuseAfterFirstFlight, verifyWith } from './seam/index.js';

/** An inbound library connection between its registration and its handover. */
interface Handshaking {
  readonly timer: ReturnType<typeof setTimeout>;
  /** TLS completed (the library started the connection). */
  tlsDone: boolean;
  /** The gates' answer once asked: a promise while they decide. */
  verdict: boolean | Promise<boolean> | undefined;
}

/** What admission control needs from the adapter. */
export interface AdmissionHost {
  readonly policy: TransportPolicy;
  /** The adapter's own gate (`allowInbound` option). */
  readonly allowInbound: InboundGate | undefined;
  /** The adapter is closed, or not listening: nothing is taken over. */
  refusing(): boolean;
  /** The peerline connection made for `quic` (past TLS), if any. */
  ownerOf(quic: QUICConnection): { close(code: number, reason: string): void } | undefined;
  /** Makes the peerline connection for a verified, admitted `quic`. */
  takeOver(quic: QUICConnection, peerId: string): void;
  report(what: string, error: unknown): void;
}

export class InboundAdmission {
  readonly #host: AdmissionHost;
  /** Inbound library connections not handed over yet, from their registration. */
  readonly #handshaking = new Map<QUICConnection, Handshaking>();
  #rate: RateLimiter | undefined;
  #refused = 0;

  constructor(host: AdmissionHost) {
    this.#host = host;
  }

  /** Inbound connections refused: before TLS, by a gate, or for a bad certificate. */
  get refused(): number {
    return this.#refused;
  }

  /** Inbound connections not handed over yet. */
  get handshaking(): number {
    return this.#handshaking.size;
  }

  /** Library connections past TLS still waiting for the dialler's control stream. */
  awaitingControl(): number {
    let count = 0;
    for (const quic of this.#handshaking.keys()) if (this.#host.ownerOf(quic) !== undefined) count++;
    return count;
  }

  /** The policy changed (`configure`). */
  configure(policy: TransportPolicy): void {
    const admission = policy.admission;
    this.#rate = admission === undefined ? undefined : new RateLimiter(admission.inboundRateLimit, Date.now);
  }

  /** A server connection the library just registered, before its TLS handshake. */
  register(quic: QUICConnection): void {
    const admission = this.#host.policy.admission;
    let code: ConnectionErrorCode | undefined;
    if (this.#host.refusing()) {
      code = ConnectionErrorCode.Shutdown;
    } else if (admission !== undefined) {
      const held = admission.held();
      if (this.#rate !== undefined && !this.#rate.take(quic.remoteHost ?? '')) code = ConnectionErrorCode.RateLimited;
      else if (held.inbound + this.#handshaking.size >= admission.maxInboundConnections) code = ConnectionErrorCode.ConnectionLimit;
      else if (held.handshaking + this.#handshaking.size >= admission.maxHandshakingConnections) code = ConnectionErrorCode.HandshakeLimit;
    }
    if (code !== undefined) {
      this.#refuseBeforeTls(quic, code);
      return;
    }
    // This connection's own TLS verification: it knows the remote address.
    verifyWith(quic, (certs) => this.#verify(quic, certs));
    this.#track(quic);
  }

  /** The library started an inbound connection (TLS done, the verify callback accepted it). */
  started(quic: QUICConnection): void {
    let peerId: string;
    try {
      peerId = peerIdFromCertificate(quic.getRemoteCertsChain()[0] ?? new Uint8Array());
    } catch (error) {
      // The verify callback already accepted it; this cannot happen unless the library changed.
      this.#host.report('inbound certificate', error);
      this.drop(quic);
      this.#stopBare(quic, ConnectionErrorCode.IdentityMismatch);
      return;
    }
    if (this.#host.refusing()) {
      this.drop(quic);
      this.#stopBare(quic, ConnectionErrorCode.Shutdown);
      return;
    }
    // Not registered through the connection map (the hook did not match the
    // library): the handshake bound starts now, and the gates are asked now.
    let pending = this.#handshaking.get(quic);
    if (pending === undefined) {
      pending = this.#track(quic);
      pending.verdict = this.#gate(peerId, remoteAddressOf(quic));
    }
    pending.tlsDone = true;
    const verdict = pending.verdict;
    if (typeof verdict !== 'object') {
      if (verdict === false) return this.#deny(quic);
      this.#host.takeOver(quic, peerId);
      return;
    }
    // A gate is still deciding: the connection waits, verified, with nothing
    // read from it (the library buffers what arrives, within QUIC's limits).
    const record = pending;
    void verdict.then((allowed) => {
      if (this.#handshaking.get(quic) !== record) return; // Expired or closed meanwhile.
      record.verdict = allowed;
      if (!allowed) this.#deny(quic);
      else if (this.#host.refusing()) {
        this.drop(quic);
        this.#stopBare(quic, ConnectionErrorCode.Shutdown);
      } else this.#host.takeOver(quic, peerId);
    });
  }

  /** The connection was handed over, closed, or forgotten by the library. */
  drop(quic: QUICConnection): boolean {
    const pending = this.#handshaking.get(quic);
    if (pending === undefined) return false;
    clearTimeout(pending.timer);
    this.#handshaking.delete(quic);
    return true;
  }

  /** The adapter closes: forgets every handshake; returns the connections already past TLS (to be closed with the rest). */
  closeAll(): QUICConnection[] {
    const quics = [...this.#handshaking.keys()];
    for (const quic of quics) this.drop(quic);
    return quics;
  }

  /**
   * The server's verify callback for connections that did not get their own
   * (the registration hook did not match the library): the certificate only;
   * the gates are asked once TLS is done.
   */
  readonly fallbackVerify = async (certs: Uint8Array[]): Promise<number | undefined> => {
    try {
      peerIdFromCertificate(certs[0] ?? new Uint8Array());
      return this.#host.refusing() ? CryptoError.UserCanceled : undefined;
    } catch (error) {
      this.#host.report('inbound certificate refused', error);
      return CryptoError.BadCertificate;
    }
  };

  #track(quic: QUICConnection): Handshaking {
    const record: Handshaking = {
      timer: setTimeout(() => this.#expired(quic), this.#host.policy.handshakeTimeoutMs),
      tlsDone: false,
      verdict: undefined,
    };
    this.#handshaking.set(quic, record);
    quic.addEventListener(quicEvents.EventQUICConnectionError.name, () => this.drop(quic), { once: true });
    return record;
  }

  /** Not handed over within the handshake timeout of its registration. */
  #expired(quic: QUICConnection): void {
    const record = this.#handshaking.get(quic);
    if (record === undefined) return;
    // A gate that has not answered by now denies.
    if (typeof record.verdict === 'object') {
      this.#host.report('inbound gate: no answer within the handshake timeout', undefined);
      this.#deny(quic);
      return;
    }
    this.drop(quic);
    const owner = this.#host.ownerOf(quic);
    // Past TLS an application code can go; before it, only the transport close.
    if (owner !== undefined) owner.close(ConnectionErrorCode.HandshakeTimeout, reasonFor(ConnectionErrorCode.HandshakeTimeout));
    else if (record.tlsDone) this.#stopBare(quic, ConnectionErrorCode.HandshakeTimeout);
    else this.#closeBeforeTls(quic, ConnectionErrorCode.HandshakeTimeout);
  }

  /** A gate said no after TLS (it answered asynchronously): closed with AdmissionDenied. */
  #deny(quic: QUICConnection): void {
    this.drop(quic);
    this.#count(ConnectionErrorCode.AdmissionDenied, remoteAddressOf(quic));
    this.#stopBare(quic, ConnectionErrorCode.AdmissionDenied);
  }

  /** Refuses a connection at its registration: it gets the server's first flight, then the close. */
  #refuseBeforeTls(quic: QUICConnection, code: ConnectionErrorCode): void {
    this.#count(code, remoteAddressOf(quic));
    if (!refuseAfterFirstFlight(quic, () => this.#closeBeforeTls(quic, code))) this.#closeBeforeTls(quic, code);
  }

  #closeBeforeTls(quic: QUICConnection, code: ConnectionErrorCode): void {
    try {
      closeBeforeTls(quic, reasonFor(code));
    } catch (error) {
      this.#host.report('refusing a connection', error);
    }
  }

  #count(code: ConnectionErrorCode, remoteAddress: string | undefined): void {
    this.#refused += 1;
    try {
      this.#host.policy.admission?.refused(code, remoteAddress);
    } catch (error) {
      this.#host.report('admission refused callback', error);
    }
  }

  /** TLS verification of one inbound connection: the certificate, then the gates (see the top of this file). */
  async #verify(quic: QUICConnection, certs: Uint8Array[]): Promise<number | undefined> {
    let peerId: string;
    try {
      peerId = peerIdFromCertificate(certs[0] ?? new Uint8Array());
    } catch (error) {
      this.#host.report('inbound certificate refused', error);
      this.#count(ConnectionErrorCode.IdentityMismatch, remoteAddressOf(quic));
      return CryptoError.BadCertificate;
    }
    if (this.#host.refusing()) return CryptoError.UserCanceled;
    const record = this.#handshaking.get(quic);
    // Verified once already (the library may ask again while an answer is pending).
    if (record?.verdict !== undefined) return undefined;
    const verdict = this.#gate(peerId, remoteAddressOf(quic));
    if (verdict === false) {
      this.#count(ConnectionErrorCode.AdmissionDenied, remoteAddressOf(quic));
      return CryptoError.AccessDenied;
    }
    if (record !== undefined) record.verdict = verdict;
    return undefined;
  }

  /**
   * Asks the gates (the adapter's `allowInbound`, then the engine's): true or
   * false when they answer at once, else a promise of the answer. A gate that
   * throws or rejects says no.
   */
  #gate(peerId: string, address: string | undefined): boolean | Promise<boolean> {
    const gates = [this.#host.allowInbound, this.#host.policy.admission?.allowInbound].filter((gate): gate is InboundGate => gate !== undefined);
    const ask = (index: number): boolean | Promise<boolean> => {
      for (let i = index; i < gates.length; i++) {
        let answer: boolean | Promise<boolean>;
        try {
          answer = gates[i]!(peerId, address);
        } catch (error) {
          this.#host.report(`inbound gate threw for peer ${peerId}`, error);
          return false;
        }
        if (typeof (answer as Promise<boolean> | undefined)?.then === 'function') {
          return Promise.resolve(answer).then(
            (allowed) => (allowed === true ? ask(i + 1) : false),
            (error: unknown) => {
              this.#host.report(`inbound gate rejected for peer ${peerId}`, error);
              return false;
            },
          );
        }
        if (answer !== true) return false;
      }
      return true;
    };
    return ask(0);
  }

  /** Stops a library connection that never became a peerline connection. */
  #stopBare(quic: QUICConnection, code: ConnectionErrorCode): void {
    void quic.stop({ isApp: true, errorCode: code, reason: Buffer.from(reasonFor(code)), force: true }).catch(() => {});
  }
}
