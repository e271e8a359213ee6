/**
 * The control channel: one QUIC stream per connection, frames in both
 * directions (`wire.ts`). The dialler opens it right after the QUIC
 * handshake and marks it with its kind byte; the listener hands the
 * connection over when it arrives.
 *
 * Bounded both ways, so that a peer cannot make us hold memory or spend CPU
 * with it:
 * - outbound: frames the transport has not taken yet (the remote's flow
 *   control window is full because it never reads the channel) are limited
 *   to `MAX_CONTROL_BACKLOG` bytes. Past it the remote is closed with
 *   `ControlFlood`: it keeps sending pings whose pongs it never reads.
 * - inbound: messages are limited to a budget per second (a token bucket of
 *   `CONTROL_BURST`, refilled at `CONTROL_RATE` per second; a peer's
 *   heartbeat sends one ping per interval). Past it: `ControlFlood`.
 */
import type { ControlMessage } from '../../protocol/control.js';
import { RateLimiter } from '../../protocol/rate-limit.js';
import type { TransportStream } from './seam/index.js';
import { ControlDecoder, KIND_CONTROL, WireError } from './wire.js';

/** Control bytes the transport may leave unsent (beyond the remote's flow control window) before the remote is closed. */
export const MAX_CONTROL_BACKLOG = 16 * 1024;
/** Control messages a remote may send at once, and per second after that. */
export const CONTROL_BURST = 1_000;
export const CONTROL_RATE = 1_000;

/** What a control channel reports to its connection. */
export interface ControlHost {
  /** A message arrived. */
  deliver(message: ControlMessage): void;
  /** The remote broke the format, or ended or reset the channel: close with ProtocolViolation. */
  violation(why: string): void;
  /** The remote floods the channel: close with ControlFlood. */
  flood(why: string): void;
  /** True once the connection ended (nothing more is delivered or reported). */
  controlClosed(): boolean;
}

function noop(): void {}

export class ControlChannel {
  readonly transport: TransportStream;
  readonly #host: ControlHost;
  /** The kind byte, still to go with the first frame (dialler side only). */
  #prefix: Uint8Array | undefined;
  /** Bytes written that the transport has not taken yet. */
  #backlog = 0;
  /** The inbound budget: one bucket of `CONTROL_BURST` tokens, refilled at `CONTROL_RATE` per second. */
  readonly #budget = new RateLimiter({ connections: CONTROL_BURST, windowMs: (1_000 * CONTROL_BURST) / CONTROL_RATE }, () => performance.now(), 1);

  private constructor(transport: TransportStream, host: ControlHost, prefix: Uint8Array | undefined) {
    this.transport = transport;
    this.#host = host;
    this.#prefix = prefix;
  }

  /** The dialler's side: a new stream, marked with the kind byte. */
  static open(transport: TransportStream, host: ControlHost): ControlChannel {
    const channel = new ControlChannel(transport, host, Uint8Array.of(KIND_CONTROL));
    void channel.#read([]);
    // The listener hands the connection over when this stream arrives, so the
    // kind byte must go even if no control message does. The runtime sends
    // hello right after the dial: give it the chance to share the packet.
    setImmediate(() => {
      if (channel.#prefix === undefined || host.controlClosed()) return;
      channel.#prefix = undefined;
      channel.#write(Uint8Array.of(KIND_CONTROL));
    });
    return channel;
  }

  /** The listener's side: the dialler's stream. Reading starts with `listen`. */
  static accept(transport: TransportStream, host: ControlHost): ControlChannel {
    return new ControlChannel(transport, host, undefined);
  }

  /** Starts reading the listener's side, `leftover` (read past the kind byte) first. */
  listen(leftover: Uint8Array[]): void {
    void this.#read(leftover);
  }

  /** Sends one encoded frame. */
  send(frame: Uint8Array): void {
    let bytes = frame;
    if (this.#prefix !== undefined) {
      bytes = new Uint8Array(this.#prefix.length + frame.length);
      bytes.set(this.#prefix, 0);
      bytes.set(frame, this.#prefix.length);
      this.#prefix = undefined;
    }
    this.#write(bytes);
  }

  #write(bytes: Uint8Array): void {
    if (this.#backlog + bytes.length > MAX_CONTROL_BACKLOG) {
      this.#host.flood(`the remote left ${this.#backlog} bytes of control frames unread`);
      return;
    }
    this.#backlog += bytes.length;
    // A failed write means the stream or the connection died: the reader sees it.
    this.transport.write(bytes).then(
      () => void (this.#backlog -= bytes.length),
      noop,
    );
  }

  async #read(leftover: Uint8Array[]): Promise<void> {
    const decoder = new ControlDecoder();
    try {
      for (const chunk of leftover) this.#deliver(decoder.push(chunk));
      for (;;) {
        const chunk = await this.transport.read();
        if (this.#host.controlClosed()) return;
        if (chunk === null) {
          this.#host.violation('the control stream ended');
          return;
        }
        this.#deliver(decoder.push(chunk));
      }
    } catch (error) {
      if (this.#host.controlClosed()) return;
      if (error instanceof WireError) {
        this.#host.violation(`malformed control frame: ${error.message}`);
        return;
      }
      // A reset of the control stream usually means the connection is going:
      // give its close event the chance to arrive first.
      setImmediate(() => {
        if (!this.#host.controlClosed()) this.#host.violation(`the control stream failed: ${error instanceof Error ? error.message : String(error)}`);
      });
    }
  }

  #deliver(messages: ControlMessage[]): void {
    for (const message of messages) {
      if (this.#host.controlClosed()) return;
      if (!this.#budget.take('')) {
        this.#host.flood(`more than ${CONTROL_RATE} control messages per second`);
        return;
      }
      this.#host.deliver(message);
    }
  }
}
