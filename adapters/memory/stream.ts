/**
 * Streams of the in-memory network.
 *
 * A `StreamPair` is one stream between two connection sides: the opener's end
 * exists from `openStream()` on, the acceptor's end from `accept()` on. Each
 * direction has its own `Lane`, so a stream's header, ACK/NACK, data, FIN and
 * resets arrive in the order they were sent.
 *
 * Flow control: a writer may have at most `windowBytes` bytes that the remote
 * reader has not consumed yet (in flight or queued unread). `write()` resolves
 * once the whole chunk fits in that window, so a writer whose remote does not
 * read feels backpressure, and no queue grows without bound.
 */
import { TransportError, type IncomingStream, type Stream } from '../../protocol/adapter.js';
import { WriteQueue } from '../../protocol/write-queue.js';
import type { Fabric, Lane, Tracked } from './fabric.js';

/** What a stream needs from the connection side it lives on. */
export interface StreamSide {
  readonly fabric: Fabric;
  readonly localPeerId: string;
  readonly isClosed: boolean;
  /** Hands an incoming stream to the runtime (`onStream`). */
  offerStream(incoming: IncomingStream): void;
}

function noop(): void {}

/**
 * A stream failure whose error object is made on first use and kept: most
 * are never looked at, and an `Error` costs a stack trace to make.
 */
class Failure {
  readonly kind: 'aborted' | 'closed';
  readonly message: string;
  #error: TransportError | undefined;

  constructor(kind: 'aborted' | 'closed', message: string) {
    this.kind = kind;
    this.message = message;
  }

  get error(): TransportError {
    return (this.#error ??= new TransportError(this.kind, this.message));
  }
}

function errorOf(failure: Failure | TransportError): TransportError {
  return failure instanceof Failure ? failure.error : failure;
}

/**
 * One end of a stream. Implements the adapter's `Stream`.
 *
 * The end keeps the state of both directions itself; its `readable` and
 * `writable` are WHATWG streams made on first access and brought to that
 * state then (a Node web stream costs about as much to make as the rest of a
 * request on this network, and a handler that only closes the stream never
 * reads or writes). Until then, data that arrives waits in the read queue
 * (counted against the window, as when nobody reads), and `close()` sends the
 * FIN at once, as the writable would with nothing queued.
 */
export class StreamEnd implements Stream {
  readonly id: string;
  readonly protocol: string;
  /** The other end; set when the stream is accepted. */
  peer: StreamEnd | undefined;

  readonly #fabric: Fabric;
  readonly #out: Lane;
  readonly #onChange: () => void;
  #closed: Promise<void> | undefined;
  #resolveClosed: () => void = noop;
  #done = false;

  // Read direction.
  #readable: ReadableStream<Uint8Array> | undefined;
  #rc: ReadableStreamDefaultController<Uint8Array> | undefined;
  readonly #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #fin = false;
  #readDone = false;
  /** Why the read direction failed; undefined when it ended cleanly (or has not ended). */
  #readFailure: Failure | TransportError | undefined;
  #pull: (() => void) | undefined;

  // Write direction.
  #writable: WritableStream<Uint8Array> | undefined;
  /** Node's controller has `signal` (WHATWG streams); @types/node does not declare it. */
  #wc: (WritableStreamDefaultController & { readonly signal: AbortSignal }) | undefined;
  #writeDone = false;
  /** Why the write direction failed; undefined when it ended by FIN (or has not ended). */
  #writeFailure: Failure | TransportError | undefined;
  #outstanding = 0;
  #room: { resolve(): void; reject(error: unknown): void } | undefined;
  #writing = false;
  /** Lets close() on a locked writable send the FIN after the writes queued before it; made with the writable. */
  #writes: WriteQueue | undefined;

  constructor(fabric: Fabric, id: string, protocol: string, out: Lane, onChange: () => void) {
    this.#fabric = fabric;
    this.id = id;
    this.protocol = protocol;
    this.#out = out;
    this.#onChange = onChange;
  }

  /** Resolves once, when both directions are finished (never rejects). */
  get closed(): Promise<void> {
    if (this.#closed === undefined) {
      if (this.#done) {
        this.#closed = Promise.resolve();
      } else {
        this.#closed = new Promise<void>((resolve) => {
          this.#resolveClosed = resolve;
        });
      }
    }
    return this.#closed;
  }

  get readable(): ReadableStream<Uint8Array> {
    if (this.#readable === undefined) {
      this.#readable = new ReadableStream<Uint8Array>(
        {
          start: (controller) => {
            this.#rc = controller;
            // Brought to the state the read direction reached before anyone looked.
            if (!this.#readDone) return;
            const failure = this.#readFailure;
            if (failure === undefined) controller.close();
            else controller.error(this.#readError());
          },
          pull: () => this.#onPull(),
          cancel: () => this.#onCancel(),
        },
        { highWaterMark: 0 },
      );
    }
    return this.#readable;
  }

  get writable(): WritableStream<Uint8Array> {
    if (this.#writable === undefined) {
      const finished = this.#writeDone;
      const writes = (this.#writes = new WriteQueue());
      this.#writable = new WritableStream<Uint8Array>(
        {
          start: (controller) => {
            this.#wc = controller as WritableStreamDefaultController & { readonly signal: AbortSignal };
            if (finished && this.#writeFailure !== undefined) controller.error(this.#writeError());
          },
          write: (chunk) => this.#write(chunk),
          close: () => this.#onWritableClose(),
          abort: (reason) => this.#onWritableAbort(reason),
        },
        writes.strategy,
      );
      // The FIN went out before anyone looked: the writable is closed too.
      if (finished && this.#writeFailure === undefined) this.#writable.close().catch(noop);
    }
    return this.#writable;
  }

  /** True once both directions are finished on this end. */
  get isDone(): boolean {
    return this.#done;
  }

  close(): void {
    if (this.#done) return;
    if (!this.#readDone) {
      if (!this.#fin) this.#toPeer(deliverStop);
      this.#discardQueue();
      this.#readDone = true;
      try {
        this.#rc?.close();
      } catch {
        // Already closed by the consumer.
      }
      this.#resolvePull();
    }
    const writes = this.#writes;
    if (!this.#writeDone && writes?.closing !== true) {
      if (writes === undefined) {
        // Nothing was ever written: nothing is queued ahead of the FIN.
        this.#onWritableClose();
      } else {
        // Unlocked, the queued writes are flushed, then the sink sends the FIN; else the FIN after the writes queued so far.
        writes.close(this.#writable!);
        this.#maybeFinishClosing();
      }
    }
    this.#check();
  }

  abort(reason?: string): void {
    if (this.#done) return;
    const text = reason ?? 'stream aborted';
    this.#toPeer(deliverAbort, text);
    const failure = new Failure('aborted', text);
    this.#errorRead(failure);
    this.#errorWrite(failure);
  }

  /** Ends both directions with `error` without telling the remote. */
  terminate(error: TransportError): void {
    this.#errorRead(error);
    this.#errorWrite(error);
  }

  // Deliveries from the remote end.

  receiveData(chunk: Uint8Array): void {
    if (this.#readDone) {
      this.#releasePeer(chunk.length);
      return;
    }
    const pull = this.#pull;
    if (pull !== undefined) {
      this.#pull = undefined;
      this.#rc!.enqueue(chunk);
      this.#releasePeer(chunk.length);
      pull();
      return;
    }
    this.#queue.push(chunk);
    this.#queuedBytes += chunk.length;
  }

  receiveFin(): void {
    if (this.#readDone) return;
    this.#fin = true;
    if (this.#queue.length === 0) this.#endRead();
  }

  /** The remote stopped reading: our writes can no longer go anywhere. */
  receiveStop(): void {
    this.#errorWrite(new Failure('closed', 'the remote closed the stream'));
  }

  /** The remote aborted its write direction. */
  receiveReset(reason: string): void {
    this.#errorRead(new Failure('aborted', reason));
  }

  /** The remote aborted the whole stream. */
  receiveAbort(reason: string): void {
    const failure = new Failure('aborted', reason);
    this.#errorRead(failure);
    this.#errorWrite(failure);
  }

  // Read direction.

  #readError(): TransportError {
    return errorOf(this.#readFailure!);
  }

  #onPull(): Promise<void> | undefined {
    if (this.#readDone) return undefined;
    const chunk = this.#queue.shift();
    if (chunk !== undefined) {
      this.#queuedBytes -= chunk.length;
      this.#rc!.enqueue(chunk);
      this.#releasePeer(chunk.length);
      if (this.#queue.length === 0 && this.#fin) this.#endRead();
      return undefined;
    }
    if (this.#fin) {
      this.#endRead();
      return undefined;
    }
    return new Promise<void>((resolve) => {
      this.#pull = resolve;
    });
  }

  #onCancel(): void {
    if (this.#readDone) return;
    this.#readDone = true;
    if (!this.#fin) this.#toPeer(deliverStop);
    this.#discardQueue();
    this.#resolvePull();
    this.#check();
  }

  #endRead(): void {
    if (this.#readDone) return;
    this.#readDone = true;
    try {
      this.#rc?.close();
    } catch {
      // Already closed.
    }
    this.#resolvePull();
    this.#check();
  }

  #errorRead(failure: Failure | TransportError): void {
    if (this.#readDone) return;
    this.#readDone = true;
    this.#readFailure = failure;
    this.#discardQueue();
    const rc = this.#rc;
    if (rc !== undefined) {
      try {
        rc.error(this.#readError());
      } catch {
        // Already errored.
      }
    }
    this.#resolvePull();
    this.#check();
  }

  #discardQueue(): void {
    const bytes = this.#queuedBytes;
    this.#queue.length = 0;
    this.#queuedBytes = 0;
    if (bytes > 0) this.#releasePeer(bytes);
  }

  #resolvePull(): void {
    const pull = this.#pull;
    this.#pull = undefined;
    if (pull !== undefined) pull();
  }

  #releasePeer(bytes: number): void {
    const peer = this.peer;
    if (peer !== undefined) peer.#release(bytes);
  }

  // Write direction.

  #writeError(): TransportError {
    return errorOf(this.#writeFailure!);
  }

  #release(bytes: number): void {
    this.#outstanding = Math.max(0, this.#outstanding - bytes);
    const room = this.#room;
    if (room !== undefined && this.#outstanding < this.#fabric.windowBytes) {
      this.#room = undefined;
      room.resolve();
    }
  }

  async #write(chunk: Uint8Array): Promise<void> {
    if (!(chunk instanceof Uint8Array)) throw new TypeError('memory streams carry Uint8Array chunks');
    this.#writing = true;
    try {
      let rest = chunk;
      while (rest.length > 0) {
        if (this.#writeDone) throw this.#writeFailure === undefined ? new TransportError('closed', 'stream closed') : this.#writeError();
        const room = this.#fabric.windowBytes - this.#outstanding;
        if (room <= 0) {
          await this.#waitForRoom();
          continue;
        }
        const piece = rest.slice(0, room);
        rest = rest.subarray(piece.length);
        this.#outstanding += piece.length;
        this.#out.send('transport', () => this.peer?.receiveData(piece), {
          onDrop: () => this.#release(piece.length),
        });
      }
    } finally {
      this.#writing = false;
      this.#writes!.processed();
      this.#maybeFinishClosing();
    }
  }

  #waitForRoom(): Promise<void> {
    const signal = this.#wc!.signal;
    return new Promise<void>((resolve, reject) => {
      if (signal.aborted) {
        reject(signal.reason);
        return;
      }
      const onAbort = (): void => {
        this.#room = undefined;
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#room = {
        resolve: () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (error) => {
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
    });
  }

  #onWritableClose(): void {
    if (this.#writeDone) return;
    this.#toPeer(deliverFin);
    this.#writeDone = true;
    this.#check();
  }

  /** `close()` while a writer holds the writable: FIN once the writes queued before it are done. */
  #maybeFinishClosing(): void {
    if (this.#writes?.due !== true || this.#writing || this.#writeDone) return;
    this.#toPeer(deliverFin);
    this.#errorWrite(new Failure('closed', 'stream closed'));
  }

  #onWritableAbort(reason: unknown): void {
    if (this.#writeDone) return;
    const text = typeof reason === 'string' ? reason : reason instanceof Error ? reason.message : 'stream write aborted';
    this.#toPeer(deliverReset, text);
    this.#writeDone = true;
    this.#writeFailure = new TransportError('aborted', text);
    this.#rejectRoom(this.#writeFailure);
    this.#check();
  }

  #errorWrite(failure: Failure | TransportError): void {
    if (this.#writeDone) return;
    this.#writeDone = true;
    this.#writeFailure = failure;
    const wc = this.#wc;
    if (wc !== undefined) {
      try {
        wc.error(this.#writeError());
      } catch {
        // Already errored.
      }
    }
    if (this.#room !== undefined) this.#rejectRoom(this.#writeError());
    this.#check();
  }

  #rejectRoom(error: unknown): void {
    const room = this.#room;
    this.#room = undefined;
    if (room !== undefined) room.reject(error);
  }

  /** Sends a signal (`deliver(peer, text)`: STOP, FIN, RESET, ABORT) to the other end, in order with the data. */
  #toPeer(deliver: (peer: StreamEnd, text: string) => void, text = ''): void {
    this.#out.send('transport', () => {
      const peer = this.peer;
      if (peer !== undefined) deliver(peer, text);
    });
  }

  #check(): void {
    if (this.#done || !this.#readDone || !this.#writeDone) return;
    this.#done = true;
    this.#resolveClosed();
    this.#onChange();
  }
}

function deliverStop(peer: StreamEnd): void {
  peer.receiveStop();
}

function deliverFin(peer: StreamEnd): void {
  peer.receiveFin();
}

function deliverAbort(peer: StreamEnd, text: string): void {
  peer.receiveAbort(text);
}

function deliverReset(peer: StreamEnd, text: string): void {
  peer.receiveReset(text);
}

/**
 * Where the acceptor's side of a stream stands: the header is `in-flight`,
 * then `pending` until the runtime answers; `cancelled` when the opener gave
 * up first, `orphaned` when the acceptor's connection closed first, `lost`
 * when the header never arrived.
 */
type IncomingState = 'in-flight' | 'pending' | 'accepted' | 'rejected' | 'cancelled' | 'orphaned' | 'lost';

/** One stream between two connection sides. */
export class StreamPair implements Tracked {
  readonly id: string;
  readonly protocol: string;
  readonly openerSide: StreamSide;
  readonly acceptorSide: StreamSide;
  readonly opener: StreamEnd;
  #acceptor: StreamEnd | undefined;

  readonly #fabric: Fabric;
  readonly #toAcceptor: Lane;
  readonly #toOpener: Lane;
  readonly #onChange: (pair: StreamPair) => void;
  #incoming: IncomingState = 'in-flight';
  #orphanError: TransportError | undefined;
  #settled = false;
  #resolve: (stream: Stream) => void = noop;
  #reject: (error: unknown) => void = noop;
  #signal: AbortSignal | undefined;
  readonly #onAbort = (): void => this.#abandon();

  constructor(
    fabric: Fabric,
    id: string,
    protocol: string,
    sides: { opener: StreamSide; acceptor: StreamSide; toAcceptor: Lane; toOpener: Lane },
    onChange: (pair: StreamPair) => void,
  ) {
    this.#fabric = fabric;
    this.id = id;
    this.protocol = protocol;
    this.openerSide = sides.opener;
    this.acceptorSide = sides.acceptor;
    this.#toAcceptor = sides.toAcceptor;
    this.#toOpener = sides.toOpener;
    this.#onChange = onChange;
    this.opener = new StreamEnd(fabric, id, protocol, this.#toAcceptor, () => this.#changed());
  }

  /** True while any part of the stream is still open on either side. */
  get live(): boolean {
    return (
      !this.opener.isDone ||
      this.#incoming === 'in-flight' ||
      this.#incoming === 'pending' ||
      (this.#acceptor !== undefined && !this.#acceptor.isDone)
    );
  }

  /** Sends the header; resolves on ACK, rejects on NACK, abort or close. */
  open(signal: AbortSignal): Promise<Stream> {
    const promise = new Promise<Stream>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.#signal = signal;
    signal.addEventListener('abort', this.#onAbort, { once: true });
    this.#toAcceptor.send('transport', () => this.#headerArrived(), { onDrop: () => this.#headerLost() });
    return promise;
  }

  /** The connection side of the opener or the acceptor has closed. */
  sideClosed(side: 'opener' | 'acceptor', error: TransportError): void {
    if (side === 'opener') {
      if (this.#settle()) this.#reject(error);
      this.opener.terminate(error);
    } else {
      if (this.#incoming === 'in-flight' || this.#incoming === 'pending') {
        this.#incoming = 'orphaned';
        this.#orphanError = error;
      }
      this.#acceptor?.terminate(error);
    }
    this.#changed();
  }

  /** The connection failed: nothing in flight on this stream arrives. */
  cancelInFlight(): void {
    this.#toAcceptor.cancel();
    this.#toOpener.cancel();
    if (this.#incoming === 'in-flight') this.#incoming = 'lost';
    this.#changed();
  }

  #settle(): boolean {
    if (this.#settled) return false;
    this.#settled = true;
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#signal = undefined;
    return true;
  }

  #changed(): void {
    if (!this.live) {
      // Both ends are done: anything still in flight would be a no-op.
      this.#toAcceptor.cancel();
      this.#toOpener.cancel();
    }
    this.#onChange(this);
  }

  #headerLost(): void {
    if (this.#incoming !== 'in-flight') return;
    this.#incoming = 'lost';
    this.#changed();
  }

  #headerArrived(): void {
    if (this.#incoming !== 'in-flight') return;
    if (this.acceptorSide.isClosed) {
      this.#incoming = 'orphaned';
      this.#orphanError = new TransportError('closed', 'connection closed');
      this.#changed();
      return;
    }
    this.#incoming = 'pending';
    const incoming: IncomingStream = {
      protocol: this.protocol,
      accept: () => this.#accept(),
      reject: (reason: string) => this.#rejectIncoming(reason),
    };
    this.acceptorSide.offerStream(incoming);
  }

  #accept(): Stream {
    if (this.#acceptor !== undefined) return this.#acceptor;
    if (this.#incoming === 'rejected') throw new TransportError('protocol', `stream ${this.id} was already rejected`);
    const end = new StreamEnd(this.#fabric, this.id, this.protocol, this.#toOpener, () => this.#changed());
    end.peer = this.opener;
    this.opener.peer = end;
    this.#acceptor = end;
    if (this.#incoming !== 'pending') {
      end.terminate(
        this.#incoming === 'cancelled'
          ? new TransportError('aborted', 'the opener abandoned the stream')
          : (this.#orphanError ?? new TransportError('closed', 'connection closed')),
      );
      return end;
    }
    this.#incoming = 'accepted';
    this.#fabric.counters.streamsOpened++;
    this.#answer(() => this.#ackArrived());
    this.#changed();
    return end;
  }

  #rejectIncoming(reason: string): void {
    if (this.#incoming !== 'pending') return;
    this.#incoming = 'rejected';
    this.#fabric.counters.streamsRejected++;
    const text = String(reason);
    this.#answer(() => this.#nackArrived(text));
    this.#changed();
  }

  /** Sends an ACK or NACK, subject to the acceptor's `ackFault`. */
  #answer(deliver: () => void): void {
    const fault = this.#fabric.ackFault(this.acceptorSide.localPeerId);
    if (fault?.lose === true) {
      this.#fabric.counters.dropped++;
      return;
    }
    this.#toOpener.send('transport', deliver, { extraDelayMs: fault?.delayMs ?? 0 });
  }

  #ackArrived(): void {
    if (!this.#settle()) return;
    this.#resolve(this.opener);
  }

  #nackArrived(reason: string): void {
    if (!this.#settle()) return;
    const error = new TransportError('rejected', reason);
    this.opener.terminate(error);
    this.#reject(error);
  }

  /** The opener's signal aborted before the ACK arrived. */
  #abandon(): void {
    if (!this.#settle()) return;
    const error = new TransportError('aborted', 'stream open aborted');
    this.opener.terminate(error);
    this.#reject(error);
    this.#toAcceptor.send('transport', () => this.#cancelArrived());
  }

  #cancelArrived(): void {
    if (this.#incoming === 'pending') {
      this.#incoming = 'cancelled';
      this.#changed();
    } else if (this.#incoming === 'accepted') {
      this.#acceptor?.receiveAbort('the opener abandoned the stream');
    }
  }
}
