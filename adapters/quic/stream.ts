/**
 * A peerline stream over one QUIC stream, after the header and the ACK.
 *
 * The QUIC stream (a `TransportStream`, whichever path carries it) is read
 * and written by this object only: the `Stream` hands out web streams of its
 * own that forward to it. That way `close()` and `abort()` work whoever holds
 * the user-facing reader or writer, and bytes that arrived together with the
 * ACK (or the header) are handed out first.
 *
 * On the wire (see `wire.ts`) the user's bytes travel in data frames, and
 * each direction ends with END or ABORT plus the FIN in one QUIC write. The
 * user-facing side of a direction may finish before the QUIC side does:
 * after `close()` or `abort()` the QUIC direction is still read (and what comes
 * is dropped) until the remote's FIN, because quiche 0.18 only frees a stream,
 * and returns its credit, once both ends were read or acknowledged.
 */
import { TransportError, type Stream } from '../../protocol/adapter.js';
import { WriteQueue } from '../../protocol/write-queue.js';
import type { TransportStream } from './seam/index.js';
import { ABORT_FRAME, END_FRAME, FrameParser, MAX_DATA_FRAME, StreamCode, WireError, dataFrameHeader } from './wire.js';

/** Longest wait for a QUIC write in flight before a direction that must end is reset instead. */
const WRITE_SETTLE_MS = 1_000;

/** Bytes dropped from a direction nobody reads any more before STOP_SENDING is sent instead. */
export const MAX_DISCARD_BYTES = 1024 * 1024;

/** What a stream needs from its connection. */
export interface StreamOwner {
  /** Error for a failure caused by the connection ending, or undefined while it is up. */
  connectionError(): TransportError | undefined;
  /** Called once when both user-facing directions are finished. */
  streamEnded(stream: QuicStreamEnd): void;
  /** Longest wait for the remote's FIN on a direction nobody reads, ms. */
  readonly drainTimeoutMs: number;
  /** Reports an unexpected failure (never thrown). */
  report(what: string, error: unknown): void;
}

function noop(): void {}

/** Turns whatever a stream operation failed with into a TransportError. */
export function asTransportError(error: unknown, owner: StreamOwner): TransportError {
  if (error instanceof TransportError) return error;
  return owner.connectionError() ?? new TransportError('closed', `stream failed: ${error instanceof Error ? error.message : String(error)}`);
}

/** Resets both directions of a stream (STOP_SENDING and RESET_STREAM with `code`); never throws. */
export function abandon(transport: TransportStream, code: number, reason: string): void {
  transport.stop(code, reason);
  transport.reset(code, reason);
}

/**
 * Reads `transport` to its end, dropping what comes, for at most
 * `owner.drainTimeoutMs` and `MAX_DISCARD_BYTES`; past either it stops the
 * remote with STOP_SENDING. Never rejects.
 */
export async function drain(transport: TransportStream, owner: StreamOwner): Promise<void> {
  let dropped = 0;
  const timer = setTimeout(() => transport.stop(StreamCode.Closed, 'nobody reads this stream'), owner.drainTimeoutMs);
  try {
    for (;;) {
      const chunk = await transport.read();
      if (chunk === null) return;
      dropped += chunk.length;
      if (dropped > MAX_DISCARD_BYTES) {
        transport.stop(StreamCode.Closed, 'nobody reads this stream');
        return;
      }
    }
  } catch {
    // Reset by the remote, stopped, or the connection ended: the direction is over.
  } finally {
    clearTimeout(timer);
  }
}

export class QuicStreamEnd implements Stream {
  readonly id: string;
  readonly protocol: string;
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  readonly closed: Promise<void>;

  readonly #transport: TransportStream;
  readonly #owner: StreamOwner;
  #resolveClosed: () => void = noop;
  #done = false;

  // Read direction. The user-facing side, and the QUIC side below it.
  #rc!: ReadableStreamDefaultController<Uint8Array>;
  readonly #parser = new FrameParser();
  #readDone = false;
  /** The QUIC read direction is finished or being drained: nobody else may read it. */
  #quicReadTaken = false;
  #enqueued = 0;

  // Write direction.
  #wc!: WritableStreamDefaultController;
  #writeDone = false;
  /** The END or ABORT (or a reset) went out: our QUIC direction is over. */
  #quicWriteDone = false;
  /** QUIC writes in flight, and the last one. */
  #writing = 0;
  #lastWrite: Promise<void> = Promise.resolve();
  /** Lets close() on a locked writable send END after the writes queued before it. */
  readonly #writes = new WriteQueue();
  #finishing: Promise<void> | undefined;

  constructor(options: {
    id: string;
    protocol: string;
    transport: TransportStream;
    /** Bytes already read past the header or the ACK. */
    leftover: Uint8Array[];
    owner: StreamOwner;
  }) {
    this.id = options.id;
    this.protocol = options.protocol;
    this.#transport = options.transport;
    this.#owner = options.owner;
    this.closed = new Promise<void>((resolve) => {
      this.#resolveClosed = resolve;
    });
    const leftover = options.leftover;
    this.readable = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.#rc = controller;
          for (const chunk of leftover) {
            if (this.#readDone) break;
            this.#ingest(chunk);
          }
        },
        pull: () => this.#pull(),
        cancel: () => this.#endRead(),
      },
      // One chunk read ahead: the end of the stream is noticed (and `closed`
      // settles) without waiting for the next read.
      { highWaterMark: 1 },
    );
    this.writable = new WritableStream<Uint8Array>(
      {
        start: (controller) => {
          this.#wc = controller;
        },
        write: (chunk) => this.#write(chunk),
        close: () => this.#finishWriting(),
        abort: () => this.abort('writer aborted'),
      },
      this.#writes.strategy,
    );
  }

  get isDone(): boolean {
    return this.#done;
  }

  /** Graceful: pending writes then END; what the remote still sends is dropped. */
  close(): void {
    if (this.#done) return;
    this.#endRead();
    if (!this.#writeDone && !this.#writes.closing && this.#finishing === undefined) {
      // Unlocked, the queued writes are flushed, then the sink sends END and the FIN; else END after the writes queued so far.
      this.#writes.close(this.writable);
      this.#maybeFinish();
    }
    this.#check();
  }

  /** Both directions fail at once on both sides; the remote reads ABORT. */
  abort(reason?: string): void {
    if (this.#done) return;
    const error = new TransportError('aborted', reason ?? 'stream aborted');
    this.#endQuicWrite('abort');
    this.#failRead(error);
    this.#failWrite(error);
  }

  /** Ends both directions with `error` (the connection ended); the QUIC stream is reset quietly. */
  terminate(error: TransportError): void {
    if (!this.#quicReadTaken || !this.#quicWriteDone) {
      this.#quicReadTaken = true;
      this.#quicWriteDone = true;
      abandon(this.#transport, StreamCode.Aborted, error.message);
    }
    this.#failRead(error);
    this.#failWrite(error);
  }

  // ---------------------------------------------------------------- read

  async #pull(): Promise<void> {
    // Loops until it handed out some bytes: a chunk may hold only a frame header.
    while (!this.#readDone && !this.#quicReadTaken) {
      let chunk: Uint8Array | null;
      try {
        chunk = await this.#transport.read();
      } catch (error) {
        this.#quicReadTaken = true;
        this.#remoteFailed(asTransportError(error, this.#owner));
        return;
      }
      if (this.#readDone) return;
      if (chunk === null) {
        // A FIN without END: the end all the same.
        this.#quicReadTaken = true;
        this.#endRead();
        return;
      }
      const before = this.#enqueued;
      this.#ingest(chunk);
      if (this.#enqueued > before) return;
    }
  }

  /** Hands out the payload of `chunk`, and acts on END or ABORT. */
  #ingest(chunk: Uint8Array): void {
    const payloads: Uint8Array[] = [];
    let end: 'end' | 'abort' | undefined;
    try {
      end = this.#parser.push(chunk, payloads);
    } catch (error) {
      const why = error instanceof WireError ? error.message : String(error);
      this.#quicReadTaken = true;
      this.#quicWriteDone = true;
      abandon(this.#transport, StreamCode.ProtocolViolation, why);
      const failure = new TransportError('protocol', `malformed stream data: ${why}`);
      this.#failRead(failure);
      this.#failWrite(failure);
      return;
    }
    for (const payload of payloads) {
      this.#rc.enqueue(payload);
      this.#enqueued++;
    }
    if (end === 'end') this.#endRead();
    else if (end === 'abort') this.#remoteFailed(new TransportError('aborted', 'the remote aborted the stream'));
  }

  /**
   * The read direction is over, because the remote finished it or the user is
   * done reading: EOF for the user, then QUIC is read to its FIN and dropped.
   */
  #endRead(): void {
    if (this.#readDone) return;
    this.#readDone = true;
    try {
      this.#rc.close();
    } catch {
      // Already closed.
    }
    this.#drain();
    this.#check();
  }

  /** The remote aborted (or reset) the stream: both user directions fail, our direction ends. */
  #remoteFailed(error: TransportError): void {
    this.#drain();
    this.#endQuicWrite('end');
    this.#failRead(error);
    this.#failWrite(error);
  }

  #drain(): void {
    if (this.#quicReadTaken) return;
    this.#quicReadTaken = true;
    void drain(this.#transport, this.#owner);
  }

  #failRead(error: TransportError): void {
    if (this.#readDone) return;
    this.#readDone = true;
    this.#drain();
    try {
      this.#rc.error(error);
    } catch {
      // Already closed.
    }
    this.#check();
  }

  // --------------------------------------------------------------- write

  async #write(chunk: Uint8Array): Promise<void> {
    try {
      if (this.#writeDone || this.#writes.due) {
        throw this.#owner.connectionError() ?? new TransportError('closed', 'stream closed for writing');
      }
      if (!(chunk instanceof Uint8Array)) throw new TypeError('a stream carries Uint8Array chunks');
      this.#writing++;
      try {
        for (let offset = 0; offset < chunk.length; offset += MAX_DATA_FRAME) {
          const payload = chunk.subarray(offset, offset + MAX_DATA_FRAME);
          // Header and payload as two writes in order: the payload is not copied.
          this.#transport.write(dataFrameHeader(payload.length)).catch(noop);
          this.#lastWrite = this.#transport.write(payload);
          await this.#lastWrite;
        }
      } catch (error) {
        const failure = asTransportError(error, this.#owner);
        this.#failWrite(failure);
        throw failure;
      } finally {
        this.#writing--;
      }
    } finally {
      this.#writes.processed();
      this.#maybeFinish();
    }
  }

  #maybeFinish(): void {
    if (this.#writes.due && this.#finishing === undefined && !this.#writeDone) {
      void this.#finishWriting().then(() => {
        // Writes queued after close() must fail rather than wait forever.
        try {
          this.#wc.error(new TransportError('closed', 'stream closed for writing'));
        } catch {
          // Already errored.
        }
      });
    }
  }

  /** Sends END (and the FIN) after the writes before it. */
  #finishWriting(): Promise<void> {
    this.#finishing ??= (async () => {
      if (this.#writeDone) return;
      this.#writeDone = true;
      this.#endQuicWrite('end');
      this.#check();
    })();
    return this.#finishing;
  }

  /**
   * Ends our QUIC direction once: END or ABORT with the FIN. A QUIC write
   * still in flight goes first (the frame must follow the whole chunk); if it
   * stays blocked (the remote does not read) the direction is reset instead.
   */
  #endQuicWrite(how: 'end' | 'abort'): void {
    if (this.#quicWriteDone) return;
    this.#quicWriteDone = true;
    const frame = how === 'end' ? END_FRAME : ABORT_FRAME;
    if (this.#writing === 0) {
      void this.#transport.finish(frame);
      return;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    void Promise.race([
      this.#lastWrite.then(
        () => true,
        () => false,
      ),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), WRITE_SETTLE_MS);
      }),
    ]).then((settled) => {
      clearTimeout(timer);
      if (settled && this.#writing === 0) void this.#transport.finish(frame);
      else this.#transport.reset(StreamCode.Aborted, 'stream aborted');
    });
  }

  #failWrite(error: TransportError): void {
    if (this.#writeDone) return;
    this.#writeDone = true;
    this.#endQuicWrite('abort');
    try {
      this.#wc.error(error);
    } catch {
      // Already errored.
    }
    this.#check();
  }

  #check(): void {
    if (this.#done || !this.#readDone || !this.#writeDone) return;
    this.#done = true;
    this.#resolveClosed();
    this.#owner.streamEnded(this);
  }
}
