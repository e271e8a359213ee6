/**
 * Admission control on the engine's side: which inbound connections the
 * engine takes, and how many it holds.
 *
 * Every inbound connection the adapter hands over is tracked from then until
 * it closes, as `handshaking` until the engine sends its hello-ack on it (the
 * application handshake succeeded) and as `inbound` all along. When the
 * adapter does not enforce admission itself (`Adapter.enforcesAdmission`),
 * the checks run here, in this order, cheapest first: the rate per remote
 * address, `maxInboundConnections`, `maxHandshakingConnections`, then the
 * gate (`allowInbound`). A refused connection is closed with its code and
 * counted; an adapter that enforces admission reports its own refusals
 * through `policy.refused`, and reads the engine's counts through
 * `policy.held()` so that its limits cover both stages.
 */
import type { AdmissionPolicy, Connection, ConnectionHandlers, Stream } from '../protocol/adapter.js';
import type { Clock } from '../protocol/time.js';
import type { ControlMessage } from '../protocol/control.js';
import { RateLimiter } from '../protocol/rate-limit.js';
import { ConnectionErrorCode, reasonFor } from '../protocol/codes.js';
import type { EngineOptions } from './defaults.js';
import { diagnostics } from './diagnostics.js';

/** Why admission control refused connections, by code name. */
export type RefusalCode = 'ConnectionLimit' | 'HandshakeLimit' | 'RateLimited' | 'AdmissionDenied' | 'IdentityMismatch';

export interface AdmissionSnapshot {
  /** Inbound connections the engine holds (handed over by the adapter, not closed). */
  readonly inbound: number;
  /** Of those, the ones whose application handshake has not finished. */
  readonly handshaking: number;
  /** Connections refused, by the engine or by the adapter (IdentityMismatch: a certificate refused during TLS), in total and by code. */
  readonly refused: number;
  readonly refusedByCode: Readonly<Partial<Record<RefusalCode, number>>>;
}

/** An inbound connection the engine holds: counts itself out when it closes. */
class TrackedConnection implements Connection {
  readonly id: string;
  readonly localPeerId: string;
  readonly remotePeerId: string;
  readonly direction: 'inbound' | 'outbound';
  readonly remoteAddress: string | undefined;
  readonly #inner: Connection;
  readonly #admission: Admission;
  #handshaking = true;
  #released = false;

  constructor(inner: Connection, admission: Admission) {
    this.#inner = inner;
    this.#admission = admission;
    this.id = inner.id;
    this.localPeerId = inner.localPeerId;
    this.remotePeerId = inner.remotePeerId;
    this.direction = inner.direction;
    this.remoteAddress = inner.remoteAddress;
  }

  get handshaking(): boolean {
    return this.#handshaking && !this.#released;
  }

  setHandlers(handlers: ConnectionHandlers): void {
    this.#inner.setHandlers({
      onControl: (message) => handlers.onControl(message),
      onStream: (stream) => handlers.onStream(stream),
      onClose: (info) => {
        this.release();
        handlers.onClose(info);
      },
    });
  }

  sendControl(message: ControlMessage): void {
    // The engine answers a valid hello with hello-ack: the handshake is done.
    if (message.type === 'hello-ack' && this.#handshaking && !this.#released) {
      this.#handshaking = false;
      this.#admission.handshakeDone();
    }
    this.#inner.sendControl(message);
  }

  openStream(protocol: string, options: { signal: AbortSignal }): Promise<Stream> {
    return this.#inner.openStream(protocol, options);
  }

  close(code: number, reason: string): void {
    this.release();
    this.#inner.close(code, reason);
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#admission.released(this.#handshaking);
  }
}

export class Admission {
  /** What an adapter that enforces admission gets with the transport policy. */
  readonly policy: AdmissionPolicy;
  readonly #options: EngineOptions;
  readonly #clock: Clock;
  readonly #warn: (line: string, error?: unknown) => void;
  readonly #rate: RateLimiter;
  #inbound = 0;
  #handshaking = 0;
  #refused = 0;
  readonly #refusedByCode: Partial<Record<RefusalCode, number>> = {};
  readonly #engine: { readonly localPeerId: string; readonly debug: ((line: string) => void) | undefined };

  constructor(
    options: EngineOptions,
    clock: Clock,
    warn: (line: string, error?: unknown) => void,
    engine: { readonly localPeerId: string; readonly debug: ((line: string) => void) | undefined } = { localPeerId: '', debug: undefined },
  ) {
    this.#options = options;
    this.#clock = clock;
    this.#warn = warn;
    this.#engine = engine;
    this.#rate = new RateLimiter(options.inboundRateLimit, () => clock.now());
    const held = { inbound: 0, handshaking: 0 };
    this.policy = Object.freeze({
      maxInboundConnections: options.maxInboundConnections,
      maxHandshakingConnections: options.maxHandshakingConnections,
      inboundRateLimit: options.inboundRateLimit,
      allowInbound: options.allowInbound,
      held: () => {
        held.inbound = this.#inbound;
        held.handshaking = this.#handshaking;
        return held;
      },
      refused: (code: number, remoteAddress: string | undefined) => this.count(code, undefined, remoteAddress),
    });
  }

  snapshot(): AdmissionSnapshot {
    return {
      inbound: this.#inbound,
      handshaking: this.#handshaking,
      refused: this.#refused,
      refusedByCode: { ...this.#refusedByCode },
    };
  }

  /** Counts a refusal (by the engine, or reported by the adapter), logs it at debug level and publishes it. */
  count(code: number, peerId?: string, remoteAddress?: string): void {
    this.#refused += 1;
    const name = ConnectionErrorCode[code] as RefusalCode | undefined;
    if (name !== undefined) this.#refusedByCode[name] = (this.#refusedByCode[name] ?? 0) + 1;
    const { localPeerId } = this.#engine;
    this.#engine.debug?.(`peerline ${localPeerId}: refused ${peerId ?? 'a connection'} from ${remoteAddress ?? 'an unknown address'}: ${name ?? code}`);
    if (diagnostics.admissionRefused.hasSubscribers) {
      diagnostics.admissionRefused.publish({ localPeerId, code: name ?? String(code), peerId, remoteAddress, at: this.#clock.now() });
    }
  }

  /**
   * Takes an inbound connection in. `check`: apply the limits and the gate
   * here (the adapter did not). Returns the connection to use from now on,
   * a promise of it while the gate decides (undefined if it refused), or
   * undefined when it was refused (it is already closed).
   */
  admit(connection: Connection, check: boolean): Connection | Promise<Connection | undefined> | undefined {
    if (check) {
      const o = this.#options;
      let code: ConnectionErrorCode | undefined;
      if (!this.#rate.take(connection.remoteAddress ?? `peer:${connection.remotePeerId}`)) code = ConnectionErrorCode.RateLimited;
      else if (this.#inbound >= o.maxInboundConnections) code = ConnectionErrorCode.ConnectionLimit;
      else if (this.#handshaking >= o.maxHandshakingConnections) code = ConnectionErrorCode.HandshakeLimit;
      if (code !== undefined) {
        this.refuse(connection, code);
        return undefined;
      }
    }
    this.#inbound += 1;
    this.#handshaking += 1;
    const tracked = new TrackedConnection(connection, this);
    const gate = this.#options.allowInbound;
    if (!check || gate === undefined) return tracked;
    let verdict: boolean | Promise<boolean>;
    try {
      verdict = gate(connection.remotePeerId, connection.remoteAddress);
    } catch (error) {
      this.#warn(`peerline: allowInbound threw for peer ${connection.remotePeerId}; refused`, error);
      verdict = false;
    }
    if (typeof (verdict as Promise<boolean> | undefined)?.then !== 'function') {
      if (verdict === true) return tracked;
      this.refuse(tracked, ConnectionErrorCode.AdmissionDenied);
      return undefined;
    }
    return this.#await(tracked, verdict as Promise<boolean>);
  }

  /** Closes `connection` with `code` and counts it. */
  refuse(connection: Connection, code: ConnectionErrorCode): void {
    this.count(code, connection.remotePeerId, connection.remoteAddress);
    try {
      connection.close(code, reasonFor(code));
    } catch (error) {
      this.#warn('peerline: closing a refused connection failed', error);
    }
  }

  /** @internal A tracked connection's application handshake finished. */
  handshakeDone(): void {
    this.#handshaking -= 1;
  }

  /** @internal A tracked connection closed. */
  released(handshaking: boolean): void {
    this.#inbound -= 1;
    if (handshaking) this.#handshaking -= 1;
  }

  async #await(tracked: TrackedConnection, verdict: Promise<boolean>): Promise<Connection | undefined> {
    let timer: unknown;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = this.#clock.setTimeout(() => resolve('timeout'), this.#options.handshakeTimeoutMs);
    });
    let answer: boolean | 'timeout';
    try {
      answer = await Promise.race([verdict, timeout]);
    } catch (error) {
      this.#warn(`peerline: allowInbound rejected for peer ${tracked.remotePeerId}; refused`, error);
      answer = false;
    } finally {
      this.#clock.clearTimeout(timer);
    }
    if (answer === 'timeout') {
      this.#warn(`peerline: allowInbound did not answer for peer ${tracked.remotePeerId} within ${this.#options.handshakeTimeoutMs} ms; refused`);
    }
    if (answer !== true) {
      this.refuse(tracked, ConnectionErrorCode.AdmissionDenied);
      return undefined;
    }
    // Closed (by the remote, or the engine stopping) while the gate decided.
    if (!tracked.handshaking) return undefined;
    return tracked;
  }
}
