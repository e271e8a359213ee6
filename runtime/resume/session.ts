import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createActor, type Actor, type InspectionEvent } from 'xstate';
import type { Clock } from '../../protocol/time.js';
import { errorInfo, type ErrorInfo } from '../../protocol/codes.js';
import { sessionMachine, type SessionEvent, type SessionMachine, type SessionState } from '../../machines/session-machine.js';
import { toPeerlineError, type PeerlineError } from '../errors.js';
import type { PeerStream } from '../streams.js';
import { encode, FrameError, FrameReader, FrameType, MAX_DATA_PAYLOAD, type Frame } from './frames.js';

/** What a session needs from the engine that hosts it. */
export interface SessionHost {
  readonly clock: Clock;
  /** Bytes kept for replay (and the window offered to the remote). */
  readonly bufferBytes: number;
  /** An acknowledgement goes out at the latest this long after a read. */
  readonly ackDelayMs: number;
  /** The machine, with its delays and effects supplied. */
  readonly machine: SessionMachine;
  /** Opener: starts one resume attempt (see ResumeManager). */
  attemptResume(session: ResumableSession): void;
  /** The session reached a final state. */
  ended(session: ResumableSession, error: ErrorInfo | null): void;
  transition(session: ResumableSession, from: string | null, to: string, event: string): void;
  warn(line: string, error?: unknown): void;
}

/** A resumable stream as users get it: a PeerStream that survives reconnects. */
export interface ResumableStream extends PeerStream {
  readonly resumable: true;
  readonly sessionId: string;
  /** `open`, `suspended.waiting`, `suspended.resuming`, `closed`, `failed`, ... */
  readonly state: string;
  /** Successful resumes so far. */
  readonly resumes: number;
}

export interface SessionSnapshot {
  readonly sessionId: string;
  readonly peerId: string;
  readonly protocol: string;
  readonly role: 'opener' | 'acceptor';
  readonly state: string;
  readonly resumes: number;
  /** Bytes written and not yet acknowledged (the replay buffer). */
  readonly buffered: number;
  /** Bytes received and not yet read by the application. */
  readonly unread: number;
  readonly sent: number;
  readonly received: number;
}

interface Link {
  readonly stream: PeerStream;
  readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly frames: FrameReader;
}

interface Chunk {
  offset: number;
  bytes: Uint8Array;
}

const HMAC = 'sha256';

/** The proof for `generation`: an HMAC of the session id and generation under the current secret. */
export function proofFor(secret: Buffer, sessionId: string, generation: number): string {
  return createHmac(HMAC, secret).update(`peerline-resume|${sessionId}|${generation}`).digest('hex');
}

/** The next secret, after a resume answered with `nonce`. */
export function rotate(secret: Buffer, nonce: string): Buffer {
  return createHmac(HMAC, secret).update(`peerline-rotate|${nonce}`).digest();
}

export function proofMatches(secret: Buffer, sessionId: string, generation: number, proof: string): boolean {
  const expected = Buffer.from(proofFor(secret, sessionId, generation), 'hex');
  const given = Buffer.from(proof, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export function newSessionId(): string {
  return randomBytes(16).toString('hex');
}
export function newSecret(): Buffer {
  return randomBytes(32);
}
export function newNonce(): string {
  return randomBytes(16).toString('hex');
}

function stateName(value: unknown): string {
  if (typeof value === 'string') return value;
  const [top, sub] = Object.entries(value as Record<string, unknown>)[0]!;
  return `${top}.${stateName(sub)}`;
}


/**
 * One resumable stream on one side. The bytes it sends are numbered (their
 * offset in the stream) and kept until the remote's application has read them
 * (ACK); the bytes it receives are delivered in order, exactly once, whatever
 * links they came over. Links come and go (`attach` / link loss); the session
 * machine decides what happens in between.
 */
export class ResumableSession {
  readonly sessionId: string;
  readonly peerId: string;
  readonly protocol: string;
  readonly role: 'opener' | 'acceptor';
  readonly actor: Actor<SessionMachine>;
  readonly stream: ResumableStream;

  /** The shared secret of the current generation; it changes at every resume. */
  secret: Buffer;
  generation = 0;
  /** Acceptor: the previous generation, until the opener shows it got the new one. */
  previous: { generation: number; secret: Buffer } | undefined;

  readonly #host: SessionHost;
  #state = '';
  #ended = false;
  #link: Link | undefined;
  /** Bumped on every attach/detach: loops of an old link stop. */
  #epoch = 0;

  // Sending side: bytes [#ackedTo, #sentEnd) are in #chunks.
  #chunks: Chunk[] = [];
  #ackedTo = 0;
  #sentEnd = 0;
  #bufferCap: number;
  #finOffset: number | undefined;
  #finAcked = false;
  #spaceWaiters: Array<() => void> = [];
  #writableController: WritableStreamDefaultController | undefined;

  // Receiving side.
  #received = 0;
  #consumed = 0;
  #ackSent = 0;
  #remoteFin: number | undefined;
  #eofDelivered = false;
  #finAckSent = false;
  #readCancelled = false;
  #queue: Uint8Array[] = [];
  #queued = 0;
  #pullWaiter: (() => void) | undefined;
  #roomWaiter: (() => void) | undefined;
  #readableController: ReadableStreamDefaultController<Uint8Array> | undefined;
  #ackTimer: unknown;

  #error: PeerlineError | undefined;
  #nextFrame: (() => void) | undefined;
  #abortSent = false;
  #closed!: () => void;
  readonly #closedPromise: Promise<void>;
  #openedWaiter: { resolve: () => void; reject: (error: unknown) => void } | undefined;

  constructor(
    host: SessionHost,
    spec: { sessionId: string; peerId: string; protocol: string; role: 'opener' | 'acceptor'; secret: Buffer; remoteWindow: number },
  ) {
    this.#host = host;
    this.sessionId = spec.sessionId;
    this.peerId = spec.peerId;
    this.protocol = spec.protocol;
    this.role = spec.role;
    this.secret = spec.secret;
    this.#bufferCap = Math.max(1, Math.min(host.bufferBytes, spec.remoteWindow));
    this.#closedPromise = new Promise<void>((resolve) => {
      this.#closed = resolve;
    });
    const readable = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.#readableController = controller;
        },
        pull: (controller) => this.#pull(controller),
        cancel: () => this.#cancelRead(),
      },
      { highWaterMark: 0 },
    );
    const writable = new WritableStream<Uint8Array>(
      {
        start: (controller) => {
          this.#writableController = controller;
        },
        write: (chunk) => this.#write(chunk),
        close: () => this.#closeWrite(),
        abort: (reason: unknown) => this.abort(typeof reason === 'string' ? reason : 'writer aborted'),
      },
      { highWaterMark: 1 },
    );
    const session = this;
    this.stream = {
      id: `resume:${spec.sessionId}`,
      protocol: spec.protocol,
      peerId: spec.peerId,
      direction: spec.role === 'opener' ? 'outbound' : 'inbound',
      resumable: true,
      sessionId: spec.sessionId,
      readable,
      writable,
      closed: this.#closedPromise,
      get state() {
        return session.#state;
      },
      get resumes() {
        return session.actor.getSnapshot().context.resumes;
      },
      close: () => this.#closeBoth(),
      abort: (reason?: string) => this.abort(reason ?? 'aborted'),
    };
    this.actor = createActor(host.machine, {
      input: { sessionId: spec.sessionId, peerId: spec.peerId, role: spec.role },
      clock: host.clock,
      inspect: (event) => this.#inspect(event),
    });
  }

  start(): void {
    this.actor.start();
    this.#observe(this.actor.getSnapshot().value, 'xstate.init');
  }

  get state(): string {
    return this.#state;
  }
  get ended(): boolean {
    return this.#ended;
  }
  get attached(): boolean {
    return this.#link !== undefined;
  }
  /** The bytes of ours the remote has received (what it said at the last resume, or acked since). */
  get ackedTo(): number {
    return this.#ackedTo;
  }
  get sentEnd(): number {
    return this.#sentEnd;
  }
  get received(): number {
    return this.#received;
  }
  /** Whether our side holds the remote's whole byte sequence (its FIN included). */
  get finReceived(): boolean {
    return this.#remoteFin !== undefined && this.#received === this.#remoteFin;
  }
  /** Our application has read the remote's whole stream, its end included. */
  get readDone(): boolean {
    return this.#eofDelivered;
  }
  /** Both directions are done: our FIN acknowledged, the remote's end read. */
  get complete(): boolean {
    return this.#finAcked && this.#eofDelivered;
  }

  /** The error the session failed with, if it did. */
  get error(): PeerlineError | undefined {
    return this.#error;
  }

  /** Takes the remote's window: the replay buffer never holds more than it can take. */
  resize(remoteWindow: number): void {
    this.#bufferCap = Math.max(1, Math.min(this.#host.bufferBytes, remoteWindow));
  }

  /** Calls `fn` once, on the next frame that arrives (any link). */
  onNextFrame(fn: () => void): void {
    this.#nextFrame = fn;
  }

  snapshot(): SessionSnapshot {
    return {
      sessionId: this.sessionId,
      peerId: this.peerId,
      protocol: this.protocol,
      role: this.role,
      state: this.#state,
      resumes: this.actor.getSnapshot().context.resumes,
      buffered: this.#sentEnd - this.#ackedTo,
      unread: this.#queued,
      sent: this.#sentEnd,
      received: this.#received,
    };
  }

  send(event: SessionEvent): void {
    if (this.#ended) return;
    this.actor.send(event);
  }

  /** Opener: resolves once the remote accepted the session (OPENED), rejects if it did not. */
  opened(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.#error !== undefined) return reject(this.#error);
      if (this.#state !== 'opening') return resolve();
      this.#openedWaiter = { resolve, reject };
    });
  }

  // ------------------------------------------------------------------ links

  /**
   * Puts the session on a new link. `remoteReceived` is how much of our byte
   * sequence the remote holds: everything after it is sent again, in order.
   * `pending` are frames already read from the link after the handshake.
   */
  attach(stream: PeerStream, reader: ReadableStreamDefaultReader<Uint8Array>, frames: FrameReader, remoteReceived: number, pending: Frame[]): void {
    this.#detach('replaced');
    if (this.#ended) {
      stream.abort('session ended');
      return;
    }
    const epoch = ++this.#epoch;
    const link: Link = { stream, writer: stream.writable.getWriter(), reader, frames };
    this.#link = link;
    // Replay what the remote does not hold: [max(remoteReceived, acked), sentEnd).
    const from = Math.max(remoteReceived, this.#ackedTo);
    for (const chunk of this.#chunks) {
      const end = chunk.offset + chunk.bytes.length;
      if (end <= from) continue;
      const start = Math.max(chunk.offset, from);
      this.#sendFrame(link, encode.data(start, chunk.bytes.subarray(start - chunk.offset)));
    }
    if (this.#finOffset !== undefined && !this.#finAcked) this.#sendFrame(link, encode.fin(this.#finOffset));
    // Tell the remote how far our application has read (and confirm the resume).
    this.#sendAck(link, true);
    void this.#readLoop(link, epoch, pending);
  }

  /** Drops the current link without telling the machine (the caller does, or a new link replaces it). */
  #detach(reason: string): void {
    const link = this.#link;
    if (link === undefined) return;
    this.#link = undefined;
    this.#epoch += 1;
    link.reader.cancel(reason).catch(() => {});
    link.writer.releaseLock();
    link.stream.abort(reason);
  }

  #linkLost(link: Link, reason: string): void {
    if (this.#link !== link) return;
    this.#detach(reason);
    this.send({ type: 'LINK.LOST', reason });
  }

  #sendFrame(link: Link, frame: Uint8Array): void {
    link.writer.write(frame).then(undefined, () => this.#linkLost(link, 'write failed'));
  }

  async #readLoop(link: Link, epoch: number, pending: Frame[]): Promise<void> {
    try {
      for (const frame of pending) {
        if (this.#epoch !== epoch) return;
        this.#onFrame(link, frame);
      }
      while (this.#epoch === epoch) {
        // Backpressure: read the link only while the remote keeps within our window.
        while (this.#received - this.#consumed >= this.#host.bufferBytes && this.#epoch === epoch && !this.#readCancelled) {
          await new Promise<void>((resolve) => {
            this.#roomWaiter = resolve;
          });
        }
        if (this.#epoch !== epoch) return;
        const { value, done } = await link.reader.read();
        if (this.#epoch !== epoch) return;
        if (done) {
          this.#linkEnded(link);
          return;
        }
        for (const frame of link.frames.push(value)) {
          if (this.#epoch !== epoch) return;
          this.#onFrame(link, frame);
        }
      }
    } catch (error) {
      if (this.#epoch !== epoch) return;
      if (error instanceof FrameError || error instanceof ViolationError) {
        this.fail(errorInfo('PROTOCOL_VIOLATION', `resumable stream: ${error.message}`), true);
      } else {
        this.#linkLost(link, 'link failed');
      }
    }
  }

  /** The link ended cleanly. For the opener of a completed session that is the acceptor's goodbye. */
  #linkEnded(link: Link): void {
    if (this.role === 'opener' && this.complete) {
      this.#link = undefined;
      this.#epoch += 1;
      link.writer.releaseLock();
      link.stream.close();
      this.send({ type: 'FINISHED' });
      return;
    }
    this.#linkLost(link, 'link ended');
  }

  #onFrame(link: Link, frame: Frame): void {
    const next = this.#nextFrame;
    this.#nextFrame = undefined;
    next?.();
    switch (frame.type) {
      case FrameType.Data:
        return this.#onData(frame.offset, frame.length, frame.parts);
      case FrameType.Ack:
        return this.#onAck(frame.consumed, frame.fin);
      case FrameType.Fin:
        if (frame.length < this.#received || (this.#remoteFin !== undefined && this.#remoteFin !== frame.length)) {
          throw new ViolationError('FIN before bytes already received');
        }
        this.#remoteFin = frame.length;
        this.#wakeReader();
        return;
      case FrameType.Abort:
        this.fail(errorInfo('ABORTED', `the remote ended the session: ${frame.body.message}`), false);
        return;
      default:
        void link;
        throw new ViolationError(`unexpected ${FrameType[frame.type]} frame on an open session`);
    }
  }

  #onData(offset: number, length: number, parts: readonly Uint8Array[]): void {
    const end = offset + length;
    if (this.#remoteFin !== undefined && end > this.#remoteFin) throw new ViolationError('data past the end of the stream');
    if (offset > this.#received) throw new ViolationError(`data at ${offset} skips bytes from ${this.#received}`);
    if (end <= this.#received) return; // already held: a replay of what arrived before the loss
    let skip = this.#received - offset;
    this.#received = end;
    if (this.#readCancelled) {
      this.#consumed = this.#received;
      this.#scheduleAck();
      return;
    }
    // Views of the link's chunks (the transport hands each chunk over once).
    for (const part of parts) {
      if (skip >= part.length) {
        skip -= part.length;
        continue;
      }
      const fresh = skip > 0 ? part.subarray(skip) : part;
      skip = 0;
      this.#queue.push(fresh);
      this.#queued += fresh.length;
    }
    if (this.#received - this.#consumed > this.#host.bufferBytes) throw new ViolationError('the remote sent past the window');
    this.#wakeReader();
  }

  #onAck(consumed: number, fin: boolean): void {
    if (consumed > this.#sentEnd) throw new ViolationError(`ACK of ${consumed} bytes, only ${this.#sentEnd} sent`);
    if (fin && (this.#finOffset === undefined || consumed !== this.#finOffset)) throw new ViolationError('ACK of an end not sent');
    // The resume handshake already says who acked the most; an older ACK changes nothing.
    if (consumed > this.#ackedTo) {
      this.#ackedTo = consumed;
      while (this.#chunks.length > 0) {
        const head = this.#chunks[0]!;
        const end = head.offset + head.bytes.length;
        if (end <= consumed) {
          this.#chunks.shift();
        } else {
          if (head.offset < consumed) {
            head.bytes = head.bytes.subarray(consumed - head.offset);
            head.offset = consumed;
          }
          break;
        }
      }
      for (const wake of this.#spaceWaiters.splice(0)) wake();
    }
    if (fin && !this.#finAcked) {
      this.#finAcked = true;
      this.#checkComplete();
    }
  }

  // ---------------------------------------------------------------- reading

  #pull(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> | void {
    for (;;) {
      if (this.#error !== undefined) {
        controller.error(this.#error);
        return;
      }
      const chunk = this.#queue.shift();
      if (chunk !== undefined) {
        this.#queued -= chunk.length;
        this.#consumed += chunk.length;
        controller.enqueue(chunk);
        this.#scheduleAck();
        const room = this.#roomWaiter;
        this.#roomWaiter = undefined;
        room?.();
        return;
      }
      if (this.#remoteFin !== undefined && this.#consumed === this.#remoteFin) {
        controller.close();
        this.#eof();
        return;
      }
      if (this.#ended) {
        controller.close();
        return;
      }
      return new Promise<void>((resolve) => {
        this.#pullWaiter = resolve;
      }).then(() => this.#pull(controller));
    }
  }

  #wakeReader(): void {
    const wake = this.#pullWaiter;
    this.#pullWaiter = undefined;
    wake?.();
    if (this.#readCancelled && this.#remoteFin !== undefined && this.#received === this.#remoteFin && !this.#eofDelivered) this.#eof();
  }

  #eof(): void {
    if (this.#eofDelivered) return;
    this.#eofDelivered = true;
    this.#flushAck();
    this.#checkComplete();
  }

  /** The application stopped reading: what arrives from now on is acknowledged and dropped. */
  #cancelRead(): void {
    this.#readCancelled = true;
    this.#consumed = this.#received;
    this.#queue = [];
    this.#queued = 0;
    const room = this.#roomWaiter;
    this.#roomWaiter = undefined;
    room?.();
    this.#scheduleAck();
    if (this.#remoteFin !== undefined && this.#received === this.#remoteFin) this.#eof();
  }

  #scheduleAck(): void {
    if (this.#link === undefined) return;
    // Often enough that the sender never waits on a full buffer, rarely enough to cost little.
    const threshold = Math.max(1, Math.floor(this.#host.bufferBytes / 8));
    if (this.#consumed - this.#ackSent >= threshold) {
      this.#flushAck();
      return;
    }
    if (this.#ackTimer === undefined && this.#consumed > this.#ackSent) {
      this.#ackTimer = this.#host.clock.setTimeout(() => {
        this.#ackTimer = undefined;
        this.#flushAck();
      }, this.#host.ackDelayMs);
    }
  }

  #flushAck(): void {
    if (this.#ackTimer !== undefined) {
      this.#host.clock.clearTimeout(this.#ackTimer);
      this.#ackTimer = undefined;
    }
    const link = this.#link;
    if (link === undefined) return;
    this.#sendAck(link, false);
  }

  #sendAck(link: Link, always: boolean): void {
    const fin = this.#eofDelivered;
    if (!always && this.#consumed === this.#ackSent && fin === this.#finAckSent) return;
    this.#ackSent = this.#consumed;
    this.#finAckSent = fin;
    this.#sendFrame(link, encode.ack(this.#consumed, fin));
  }

  // ---------------------------------------------------------------- writing

  async #write(chunk: Uint8Array): Promise<void> {
    if (!(chunk instanceof Uint8Array)) throw new TypeError('a resumable stream takes Uint8Array chunks');
    if (this.#finOffset !== undefined) throw new TypeError('the stream was closed for writing');
    for (let at = 0; at < chunk.length; at += MAX_DATA_PAYLOAD) {
      // Copied: the caller may reuse its buffer, and this one may be replayed.
      const piece = chunk.slice(at, Math.min(chunk.length, at + MAX_DATA_PAYLOAD));
      // Backpressure: wait until the replay buffer has room (one piece always fits an empty buffer).
      while (this.#sentEnd - this.#ackedTo > 0 && this.#sentEnd - this.#ackedTo + piece.length > this.#bufferCap) {
        this.#throwIfEnded();
        await new Promise<void>((resolve) => this.#spaceWaiters.push(resolve));
      }
      this.#throwIfEnded();
      const offset = this.#sentEnd;
      this.#chunks.push({ offset, bytes: piece });
      this.#sentEnd += piece.length;
      const link = this.#link;
      if (link !== undefined) this.#sendFrame(link, encode.data(offset, piece));
    }
    // Backpressure from the link itself.
    const link = this.#link;
    if (link !== undefined) await link.writer.ready.catch(() => {});
    this.#throwIfEnded();
  }

  #throwIfEnded(): void {
    if (this.#error !== undefined) throw this.#error;
    if (this.#ended) throw toPeerlineError(errorInfo('ABORTED', 'the session has ended'), this.peerId);
  }

  #closeWrite(): Promise<void> {
    if (this.#finOffset !== undefined) return Promise.resolve();
    this.#throwIfEnded();
    if (this.#finOffset === undefined) {
      this.#finOffset = this.#sentEnd;
      const link = this.#link;
      if (link !== undefined) this.#sendFrame(link, encode.fin(this.#finOffset));
    }
    // Like a socket's close: the end is queued behind the data; the session
    // keeps both until the remote has read them (`closed` says when it is all over).
    return Promise.resolve();
  }

  /** `close()` on the stream: end our direction after what is written, stop reading theirs. */
  #closeBoth(): void {
    if (this.#ended) return;
    const writable = this.stream.writable;
    if (!writable.locked) writable.close().catch(() => {});
    else void this.#closeWrite().catch(() => {});
    const readable = this.stream.readable;
    if (!readable.locked) readable.cancel().catch(() => {});
    else this.#cancelRead();
  }

  #checkComplete(): void {
    if (!this.complete || this.#ended) return;
    // The acceptor says goodbye by closing the link; the opener waits for that (or resumes to learn it).
    if (this.role === 'acceptor') this.send({ type: 'FINISHED' });
  }

  // ---------------------------------------------------------------- endings

  /** Ends the session on purpose; the remote's reads and writes fail with ABORTED. */
  abort(reason: string): void {
    if (this.#ended) return;
    const link = this.#link;
    if (link !== undefined) {
      this.#sendFrame(link, encode.abort({ message: reason }));
      this.#abortSent = true;
    }
    this.send({ type: 'FAIL', error: errorInfo('ABORTED', `the stream was aborted: ${reason}`) });
  }

  /** Fails the session with `error`; `tellRemote` sends an ABORT first when a link is up. */
  fail(error: ErrorInfo, tellRemote: boolean): void {
    if (this.#ended) return;
    const link = this.#link;
    if (tellRemote && link !== undefined) {
      this.#sendFrame(link, encode.abort({ message: `${error.code}: ${error.message}` }));
      this.#abortSent = true;
    }
    this.send({ type: 'FAIL', error });
  }

  /** The machine's `release`: the session is over; free everything and answer everyone. */
  release(error: ErrorInfo | null): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#ackTimer !== undefined) this.#host.clock.clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    const link = this.#link;
    if (link !== undefined) {
      this.#link = undefined;
      this.#epoch += 1;
      link.reader.cancel().catch(() => {});
      link.writer.releaseLock();
      // A clean end, or an ABORT just queued for the remote, closes the link
      // gracefully (the queued frames go out first); any other failure aborts it.
      if (error === null || this.#abortSent) link.stream.close();
      else link.stream.abort(error.code);
    }
    this.#chunks = [];
    this.#queue = [];
    this.#queued = 0;
    if (error !== null) {
      this.#error = toPeerlineError(error, this.peerId);
      this.#readableController?.error(this.#error);
      this.#writableController?.error(this.#error);
      this.#openedWaiter?.reject(this.#error);
    } else {
      this.#openedWaiter?.resolve();
    }
    this.#openedWaiter = undefined;
    for (const wake of this.#spaceWaiters.splice(0)) wake();
    this.#wakeReader();
    this.#roomWaiter?.();
    this.#roomWaiter = undefined;
    this.#closed();
    this.#host.ended(this, error);
  }

  // ------------------------------------------------------------ machine glue

  #inspect(event: InspectionEvent): void {
    if (event.type === '@xstate.microstep' && event.actorRef === this.actor) {
      this.#observe((event.snapshot as unknown as { value: unknown }).value, event.event.type);
    }
  }

  #observe(value: unknown, eventType: string): void {
    const to = stateName(value);
    const from = this.#state;
    if (to === from) return;
    this.#state = to;
    if (to === 'open') {
      this.#openedWaiter?.resolve();
      this.#openedWaiter = undefined;
    }
    this.#host.transition(this, from === '' ? null : from, to, from === '' ? 'xstate.init' : eventType);
  }
}

/** A frame the remote should not have sent at this point. */
class ViolationError extends Error {
  override name = 'ViolationError';
}

export type { SessionState };
