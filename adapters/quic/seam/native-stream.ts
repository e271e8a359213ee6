/**
 * A QUIC stream read and written straight on quiche (the library's native
 * binding), without the library's QUICStream: no web streams, no events, no
 * locks, and no per-stream buffer. Reads copy what quiche holds out of one
 * shared buffer; writes hand bytes to quiche as its flow control allows.
 *
 * quiche's answers that matter here (checked by the probe, `probe.ts`):
 * - `streamSend` throws `StreamStopped(code)` once the remote sent
 *   STOP_SENDING; after quiche collected the stream (both directions over) it
 *   returns null, like a stream without capacity, and only
 *   `streamCapacity` tells them apart (it throws `InvalidStreamState`). The
 *   library's own writer waits for capacity for ever in that case; here the
 *   write fails at once.
 * - `streamRecv` throws `StreamReset(code)` once the remote reset its
 *   direction, returns null when nothing is there yet, and `[n, true]` with
 *   the last bytes.
 */
import { TransportError } from '../../../protocol/adapter.js';
import type { NativeConnection } from './internals.js';
import { localStreamError, remoteStreamError, type TransportStream } from './transport.js';

/** Largest read handed out at once. One buffer for every stream: reads are synchronous. */
const READ_CHUNK = 64 * 1024;
const scratch = new Uint8Array(READ_CHUNK);

/** quiche's stream directions (`Shutdown`). */
export const SHUTDOWN_READ = 0;
export const SHUTDOWN_WRITE = 1;

/** Shuts one direction of stream `id` down in quiche with `code`; a direction already over there (stopped by the remote, or collected) is left as it is. */
export function shutdownStream(conn: NativeConnection, id: number, direction: typeof SHUTDOWN_READ | typeof SHUTDOWN_WRITE, code: number): void {
  try {
    conn.streamShutdown(id, direction, code);
  } catch {
    // Already over in quiche.
  }
}

/** What a native stream needs from its connection's path. */
export interface NativeStreamOwner {
  readonly conn: NativeConnection;
  /** Something must be sent (flow control credit to give back, a reset): at the end of this turn of the event loop. */
  wake(): void;
  /** Bytes were written: they go out before the next datagram is handled (see `NativePath.written`). */
  written(): void;
  /** The stream waits for flow control (true) or not any more (false). */
  blocked(stream: NativeStream, waiting: boolean): void;
  /** Both directions of the stream are over on our side. */
  released(stream: NativeStream): void;
}

/** How a quiche stream call failed. */
export function quicheStreamError(error: unknown): { kind: 'stopped' | 'reset' | 'gone' | 'other'; code: number } {
  const message = error instanceof Error ? error.message : String(error);
  const match = /^(StreamStopped|StreamReset)\((\d{1,16})\)$/.exec(message);
  if (match !== null) return { kind: match[1] === 'StreamStopped' ? 'stopped' : 'reset', code: Number(match[2]) };
  if (message.startsWith('InvalidStreamState')) return { kind: 'gone', code: 0 };
  return { kind: 'other', code: 0 };
}

interface PendingWrite {
  readonly bytes: Uint8Array;
  offset: number;
  readonly fin: boolean;
  readonly resolve: () => void;
  readonly reject: (error: TransportError) => void;
}

function noop(): void {}

export class NativeStream implements TransportStream {
  readonly id: number;
  readonly #owner: NativeStreamOwner;

  /** The read direction is over for us (FIN handed out, reset, stopped, failed). */
  #readOver = false;
  /** The FIN came with the last bytes handed out: the next read returns null. */
  #finSeen = false;
  #readError: TransportError | undefined;
  #reader: { resolve(bytes: Uint8Array | null): void; reject(error: TransportError): void } | undefined;

  readonly #queue: PendingWrite[] = [];
  /** The write direction is over for us (FIN accepted by quiche, reset, stopped by the remote, failed). */
  #writeOver = false;
  /** A FIN is queued: nothing may be written after it. */
  #finQueued = false;
  #writeError: TransportError | undefined;
  #released = false;

  constructor(owner: NativeStreamOwner, id: number) {
    this.#owner = owner;
    this.id = id;
  }

  // ---------------------------------------------------------------- read

  read(): Promise<Uint8Array | null> {
    if (this.#readError !== undefined) return Promise.reject(this.#readError);
    if (this.#finSeen || this.#readOver) {
      this.#readEnded();
      return Promise.resolve(null);
    }
    if (this.#reader !== undefined) return Promise.reject(new TransportError('protocol', 'a read is already pending on this stream'));
    const now = this.#pull();
    if (now instanceof TransportError) return Promise.reject(now);
    if (now !== undefined) return Promise.resolve(now);
    return new Promise<Uint8Array | null>((resolve, reject) => {
      this.#reader = { resolve, reject };
    });
  }

  /** quiche listed the stream as readable. */
  readable(): void {
    const reader = this.#reader;
    if (reader === undefined) return;
    const got = this.#pull();
    if (got === undefined) return;
    this.#reader = undefined;
    if (got instanceof TransportError) reader.reject(got);
    else reader.resolve(got);
  }

  /** Bytes, null at the end, a failure, or undefined when nothing is there yet. */
  #pull(): Uint8Array | null | TransportError | undefined {
    let result: [number, boolean] | null;
    try {
      result = this.#owner.conn.streamRecv(this.id, scratch);
    } catch (error) {
      const failure = quicheStreamError(error);
      const reason =
        failure.kind === 'reset'
          ? remoteStreamError('read', failure.code)
          : new TransportError('closed', failure.kind === 'gone' ? 'the stream is gone' : `stream read failed: ${String(error)}`);
      this.#readError = reason;
      this.#readEnded();
      return reason;
    }
    if (result === null) return undefined;
    const [length, fin] = result;
    // Reading gives flow control credit back: the remote hears of it on the next send.
    this.#owner.wake();
    if (fin) this.#finSeen = true;
    if (length === 0) {
      if (!fin) return undefined;
      this.#readEnded();
      return null;
    }
    return scratch.slice(0, length);
  }

  #readEnded(): void {
    if (this.#readOver) return;
    this.#readOver = true;
    this.#checkReleased();
  }

  // --------------------------------------------------------------- write

  write(bytes: Uint8Array): Promise<void> {
    return this.#enqueue(bytes, false);
  }

  finish(bytes: Uint8Array): Promise<void> {
    return this.#enqueue(bytes, true).catch(noop);
  }

  #enqueue(bytes: Uint8Array, fin: boolean): Promise<void> {
    if (this.#writeError !== undefined) return Promise.reject(this.#writeError);
    if (this.#finQueued || this.#writeOver) return Promise.reject(new TransportError('closed', 'the stream is closed for writing'));
    if (bytes.length === 0 && !fin) return Promise.resolve();
    if (fin) this.#finQueued = true;
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ bytes, offset: 0, fin, resolve, reject });
      if (this.#queue.length === 1) this.#drain();
    });
  }

  /** Called after packets arrived while writes wait for flow control. */
  writable(): void {
    if (this.#queue.length === 0) return;
    let capacity: number;
    try {
      capacity = this.#owner.conn.streamCapacity(this.id);
    } catch (error) {
      this.#failWrites(this.#writeFailure(error));
      return;
    }
    if (capacity > 0) this.#drain();
  }

  #drain(): void {
    const conn = this.#owner.conn;
    while (this.#queue.length > 0) {
      const head = this.#queue[0]!;
      const rest = head.offset === 0 ? head.bytes : head.bytes.subarray(head.offset);
      let sent: number | null;
      try {
        sent = conn.streamSend(this.id, rest, head.fin);
      } catch (error) {
        this.#failWrites(this.#writeFailure(error));
        return;
      }
      if (sent === null) {
        // Nothing taken: no capacity yet, or quiche already collected the
        // stream (the remote stopped it and both directions are over).
        const gone = this.#gone();
        if (gone !== undefined) {
          this.#failWrites(gone);
          return;
        }
        break;
      }
      this.#owner.written();
      head.offset += sent;
      // Partly taken: the FIN (if any) was not, and the rest waits for capacity.
      if (head.offset < head.bytes.length) break;
      this.#queue.shift();
      if (head.fin) {
        this.#writeOver = true;
        this.#checkReleased();
      }
      head.resolve();
    }
    this.#owner.blocked(this, this.#queue.length > 0);
  }

  /** The failure if the stream cannot be written any more, else undefined. */
  #gone(): TransportError | undefined {
    try {
      this.#owner.conn.streamCapacity(this.id);
      return undefined;
    } catch (error) {
      return this.#writeFailure(error);
    }
  }

  #writeFailure(error: unknown): TransportError {
    const failure = quicheStreamError(error);
    if (failure.kind === 'stopped') return remoteStreamError('write', failure.code);
    // Collected by quiche: the remote stopped our direction and read its own to the end.
    if (failure.kind === 'gone') return new TransportError('closed', 'the remote stopped reading the stream');
    return new TransportError('closed', `stream write failed: ${String(error)}`);
  }

  #failWrites(error: TransportError): void {
    if (this.#writeError === undefined) this.#writeError = error;
    const queued = this.#queue.splice(0);
    this.#writeOver = true;
    this.#owner.blocked(this, false);
    for (const write of queued) write.reject(error);
    this.#checkReleased();
  }

  // ---------------------------------------------------------------- ends

  reset(code: number, reason: string): void {
    if (this.#writeOver) return;
    this.#shutdown(SHUTDOWN_WRITE, code);
    this.#failWrites(localStreamError(code, reason));
  }

  stop(code: number, reason: string): void {
    if (this.#readOver) return;
    this.#shutdown(SHUTDOWN_READ, code);
    this.#failRead(localStreamError(code, reason));
  }

  /** The connection ended: everything pending fails with `error`; quiche is not touched. */
  fail(error: TransportError): void {
    this.#failRead(error);
    this.#failWrites(error);
  }

  /** The read direction is over: a pending read, and every read after, fails with `error` (or the failure seen first). */
  #failRead(error: TransportError): void {
    this.#readError ??= error;
    const reader = this.#reader;
    this.#reader = undefined;
    reader?.reject(error);
    this.#readEnded();
  }

  /** RESET_STREAM or STOP_SENDING, sent at the end of this turn. */
  #shutdown(direction: typeof SHUTDOWN_READ | typeof SHUTDOWN_WRITE, code: number): void {
    shutdownStream(this.#owner.conn, this.id, direction, code);
    this.#owner.wake();
  }

  #checkReleased(): void {
    if (this.#released || !this.#readOver || !this.#writeOver) return;
    this.#released = true;
    this.#owner.released(this);
  }
}
