import { Subject, type Observable } from 'rxjs';
import type { Clock } from '../../protocol/time.js';
import { errorInfo, ErrorCodes, type ErrorCode, type ErrorInfo } from '../../protocol/codes.js';
import { sessionMachine, type SessionMachine } from '../../machines/session-machine.js';
import type { Random } from '../../protocol/time.js';
import { onAbort } from '../abort.js';
import { isPeerlineError, PeerlineError, toPeerlineError } from '../errors.js';
import { backoffDelay, type RetryPolicy } from '../retry.js';
import type { PeerStream, StreamHandler } from '../streams.js';
import { encode, FrameError, FrameReader, FrameType, RESUME_VERSION, type Frame, type OpenBody, type ResumeBody } from './frames.js';
import {
  newNonce,
  newSecret,
  newSessionId,
  proofFor,
  proofMatches,
  ResumableSession,
  rotate,
  type ResumableStream,
  type SessionHost,
  type SessionSnapshot,
} from './session.js';

/** Resumable streams' policy (engine option `resume`). */
export interface ResumeOptions {
  /** Bytes written and not yet read by the remote that a stream keeps for replay; writers wait past it. @default 4 MiB */
  bufferBytes: number;
  /** A suspended session not resumed within this expires with RESUME_EXPIRED and frees its buffer. @default 60_000 */
  ttlMs: number;
  /** Resumable sessions per peer, opened and accepted together, live or suspended. @default 16 */
  maxSessionsPerPeer: number;
  /** Wait for the remote's answer to an open or a resume (and for the first frame of an inbound one). @default 10_000 */
  timeoutMs: number;
  /** Backoff between resume attempts; the first attempt goes at once. @default the engine's `pinnedRetry` */
  retry: RetryPolicy | undefined;
  /** An acknowledgement goes out at the latest this long after the application read. @default 20 */
  ackDelayMs: number;
}

export interface SessionTransition {
  readonly sessionId: string;
  readonly peerId: string;
  readonly role: 'opener' | 'acceptor';
  /** null when the session was just created. */
  readonly from: string | null;
  /** `opening`, `open`, `suspended.waiting`, `suspended.resuming`, `closed` or `failed`. */
  readonly to: string;
  readonly event: string;
  readonly at: number;
}

export interface ResumeStats {
  /** Sessions by state right now. */
  readonly live: number;
  readonly suspended: number;
  readonly opened: number;
  readonly accepted: number;
  readonly suspensions: number;
  readonly resumes: number;
  readonly closed: number;
  readonly failedByCode: Readonly<Partial<Record<ErrorCode, number>>>;
  /** Resume attempts refused because the proof was wrong. */
  readonly badProofs: number;
  /** Bytes held in replay buffers right now, all sessions. */
  readonly bufferedBytes: number;
}

/** What the manager needs from its engine. */
export interface ResumeHost {
  readonly clock: Clock;
  readonly random: Random;
  readonly pinnedRetry: RetryPolicy;
  /** Opens a stream of the resume protocol (the engine's own openStream). */
  openLink(peerId: string, options: { signal?: AbortSignal; timeoutMs?: number }): Promise<PeerStream>;
  handler(protocol: string): StreamHandler | undefined;
  handlerFailed(protocol: string, error: unknown): void;
  warn(line: string, error?: unknown): void;
  /** One line per session transition, when tracing is on. */
  trace: ((line: string) => void) | undefined;
}

interface Tombstone {
  readonly outcome: 'FINISHED' | ErrorCode;
  readonly timer: unknown;
}


const KNOWN = new Set<string>(ErrorCodes);

/**
 * Hosts the resumable sessions of one engine: opens them, accepts them,
 * resumes them, and keeps them bounded (sessions per peer, bytes per session,
 * a TTL while suspended, tombstones of ended sessions for one TTL so a late
 * resume gets the right answer).
 */
export class ResumeManager {
  readonly transitions$: Observable<SessionTransition>;
  readonly #options: ResumeOptions;
  readonly #host: ResumeHost;
  readonly #machine: SessionMachine;
  readonly #sessionHost: SessionHost;
  readonly #sessions = new Map<string, Map<string, ResumableSession>>();
  readonly #tombstones = new Map<string, Tombstone>();
  readonly #transitions = new Subject<SessionTransition>();
  /** Opener sessions suspended, by peer: told when the peer is ready again. */
  readonly #waiting = new Map<string, Set<ResumableSession>>();
  readonly #attempts = new Map<ResumableSession, AbortController>();
  #stopped = false;
  readonly #stats = {
    opened: 0,
    accepted: 0,
    suspensions: 0,
    resumes: 0,
    closed: 0,
    badProofs: 0,
    failedByCode: {} as Partial<Record<ErrorCode, number>>,
  };

  constructor(options: ResumeOptions, host: ResumeHost) {
    this.#options = options;
    this.#host = host;
    this.transitions$ = this.#transitions.asObservable();
    const retry = options.retry ?? host.pinnedRetry;
    this.#machine = sessionMachine.provide({
      delays: {
        resumeTtl: options.ttlMs,
        resumeTimeout: options.timeoutMs,
        resumeRetry: ({ context }) => (context.attempts === 0 ? 0 : backoffDelay(retry, context.attempts, host.random)),
      },
      actions: {
        attemptResume: ({ context }) => this.#withSession(context.peerId, context.sessionId, (s) => this.#attemptResume(s)),
        abandonAttempt: ({ context }) => this.#withSession(context.peerId, context.sessionId, (s) => this.#abandon(s)),
        release: ({ context }, params: { error: ErrorInfo | null }) =>
          this.#withSession(context.peerId, context.sessionId, (s) => s.release(params.error)),
      },
      guards: {
        isComplete: ({ context }) => this.#sessions.get(context.peerId)?.get(context.sessionId)?.complete === true,
      },
    });
    this.#sessionHost = {
      clock: host.clock,
      bufferBytes: options.bufferBytes,
      ackDelayMs: options.ackDelayMs,
      machine: this.#machine,
      attemptResume: (session) => this.#attemptResume(session),
      ended: (session, error) => this.#ended(session, error),
      transition: (session, from, to, event) => this.#transition(session, from, to, event),
      warn: (line, error) => host.warn(line, error),
    };
  }

  // ------------------------------------------------------------------ opener

  /** `openStream(peer, protocol, { resumable: true })`. Rejects only with a PeerlineError. */
  async open(peerId: string, protocol: string, options: { signal?: AbortSignal; timeoutMs?: number }): Promise<ResumableStream> {
    if (this.#stopped) throw new PeerlineError('ENGINE_STOPPED', 'the engine is stopping', { peerId });
    if (this.#count(peerId) >= this.#options.maxSessionsPerPeer) {
      throw new PeerlineError('QUEUE_FULL', `${this.#options.maxSessionsPerPeer} resumable sessions are open with peer ${peerId}`, { peerId });
    }
    const link = await this.#host.openLink(peerId, options);
    // Checked again: other opens may have taken the room while this one dialled.
    if (this.#stopped || this.#count(peerId) >= this.#options.maxSessionsPerPeer) {
      link.abort('no room');
      if (this.#stopped) throw new PeerlineError('ENGINE_STOPPED', 'the engine is stopping', { peerId });
      throw new PeerlineError('QUEUE_FULL', `${this.#options.maxSessionsPerPeer} resumable sessions are open with peer ${peerId}`, { peerId });
    }
    const secret = newSecret();
    const session = new ResumableSession(this.#sessionHost, {
      sessionId: newSessionId(),
      peerId,
      protocol,
      role: 'opener',
      secret,
      remoteWindow: this.#options.bufferBytes,
    });
    this.#add(session);
    this.#stats.opened += 1;
    session.start();
    const reader = link.readable.getReader();
    const frames = new FrameReader();
    const abort = (): void => session.fail(errorInfo('ABORTED', 'the request was aborted'), false);
    // One listener per signal however many sessions share it (see runtime/abort.ts).
    const abortOff = options.signal === undefined ? undefined : onAbort(options.signal, abort);
    try {
      const writer = link.writable.getWriter();
      const body: OpenBody = { v: RESUME_VERSION, sessionId: session.sessionId, secret: secret.toString('hex'), protocol, window: this.#options.bufferBytes };
      writer.write(encode.open(body)).catch(() => {});
      writer.releaseLock();
      const reply = this.#firstFrame(reader, frames, session);
      const outcome = await Promise.race([reply, session.opened().then(() => undefined)]);
      if (outcome === undefined) throw new PeerlineError('ABORTED', 'the session ended while opening', { peerId });
      const [frame, rest] = outcome;
      if (session.ended) throw session.error ?? toPeerlineError(errorInfo('ABORTED', 'the session ended while opening'), peerId);
      if (frame.type === FrameType.Opened) {
        session.resize(frame.body.window);
        session.attach(link, reader, frames, 0, rest);
        session.send({ type: 'OPENED' });
        return session.stream;
      }
      const error = frame.type === FrameType.Refuse ? refusal(frame.body.code, frame.body.message) : errorInfo('PROTOCOL_VIOLATION', 'unexpected answer to OPEN');
      session.fail(error, false);
      link.abort(error.code);
      throw toPeerlineError(error, peerId);
    } catch (error) {
      link.abort('open failed');
      session.fail(isPeerlineError(error) ? { code: error.code, message: error.message } : errorInfo('CONNECTION_LOST', 'the link failed while opening'), false);
      await session.opened().catch(() => {});
      throw isPeerlineError(error) ? error : toPeerlineError(errorInfo('CONNECTION_LOST', 'the link failed while opening'), peerId, error);
    } finally {
      abortOff?.();
    }
  }

  /** Reads one frame; resolves with it and any frames that came with it; rejects if the link ends first or the session ends. */
  async #firstFrame(reader: ReadableStreamDefaultReader<Uint8Array>, frames: FrameReader, session?: ResumableSession): Promise<[Frame, Frame[]]> {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw toPeerlineError(errorInfo('CONNECTION_LOST', 'the link ended during the session handshake'), session?.peerId);
      if (session?.ended === true) throw toPeerlineError(errorInfo('ABORTED', 'the session ended'), session.peerId);
      const got = frames.push(value);
      if (got.length > 0) return [got[0]!, got.slice(1)];
    }
  }

  /** The peer's connection is ready: suspended openers try now. */
  peerReady(peerId: string): void {
    const waiting = this.#waiting.get(peerId);
    if (waiting === undefined) return;
    for (const session of [...waiting]) session.send({ type: 'LINK.READY' });
  }

  #attemptResume(session: ResumableSession): void {
    if (this.#stopped || session.ended) return;
    this.#abandon(session);
    const controller = new AbortController();
    this.#attempts.set(session, controller);
    void this.#resume(session, controller.signal).catch((error: unknown) => {
      if (this.#attempts.get(session) !== controller) return;
      this.#attempts.delete(session);
      const cause = isPeerlineError(error) ? { code: error.code, message: error.message } : errorInfo('CONNECTION_LOST', String(error));
      session.send({ type: 'RESUME.RETRY', error: cause });
    });
  }

  #abandon(session: ResumableSession): void {
    const controller = this.#attempts.get(session);
    if (controller === undefined) return;
    this.#attempts.delete(session);
    controller.abort();
  }

  async #resume(session: ResumableSession, signal: AbortSignal): Promise<void> {
    const link = await this.#host.openLink(session.peerId, { signal, timeoutMs: this.#options.timeoutMs });
    if (signal.aborted || session.ended) {
      link.abort('resume abandoned');
      return;
    }
    const reader = link.readable.getReader();
    const frames = new FrameReader();
    const onAbort = (): void => link.abort('resume abandoned');
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const writer = link.writable.getWriter();
      const body: ResumeBody = {
        sessionId: session.sessionId,
        generation: session.generation,
        proof: proofFor(session.secret, session.sessionId, session.generation),
        received: session.received,
        fin: session.finReceived,
      };
      writer.write(encode.resume(body)).catch(() => {});
      writer.releaseLock();
      const [frame, rest] = await this.#firstFrame(reader, frames, session);
      if (signal.aborted || session.ended) {
        link.abort('resume abandoned');
        return;
      }
      this.#attempts.delete(session);
      if (frame.type === FrameType.Resumed) {
        const { received, nonce } = frame.body;
        if (received > session.sentEnd) {
          link.abort('protocol violation');
          session.fail(errorInfo('PROTOCOL_VIOLATION', `the remote claims ${received} bytes, only ${session.sentEnd} were sent`), false);
          return;
        }
        if (received < session.ackedTo) {
          link.writable.getWriter().write(encode.refuse({ code: 'RESUME_GAP', message: 'acknowledged bytes are gone' })).catch(() => {});
          link.abort('RESUME_GAP');
          session.fail(gap(received, session.ackedTo), false);
          return;
        }
        session.secret = rotate(session.secret, nonce);
        session.generation += 1;
        session.attach(link, reader, frames, received, rest);
        session.send({ type: 'RESUMED' });
        return;
      }
      link.abort('resume refused');
      if (frame.type !== FrameType.Refuse) {
        session.fail(errorInfo('PROTOCOL_VIOLATION', `unexpected ${FrameType[frame.type]} answer to RESUME`), false);
        return;
      }
      // The acceptor finished: it read all we sent, our end included, and we
      // acknowledged its end. Only the last ACK of our end was lost with the link.
      // Or we are complete ourselves: whatever ended the remote's side, nothing of ours is missing.
      if ((frame.body.code === 'FINISHED' && session.readDone) || session.complete) {
        session.send({ type: 'FINISHED' });
        return;
      }
      session.fail(refusal(frame.body.code, frame.body.message), false);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  // ---------------------------------------------------------------- acceptor

  /** The handler of RESUME_PROTOCOL streams: a new session (OPEN) or a resume (RESUME). */
  accept(link: PeerStream): void {
    void this.#accept(link).catch((error: unknown) => {
      link.abort('resume handshake failed');
      if (!isPeerlineError(error)) this.#host.warn('peerline: resumable stream handshake failed', error);
    });
  }

  async #accept(link: PeerStream): Promise<void> {
    const reader = link.readable.getReader();
    const frames = new FrameReader();
    let timer: unknown;
    const deadline = new Promise<never>((_, reject) => {
      timer = this.#host.clock.setTimeout(
        () => reject(toPeerlineError(errorInfo('STREAM_TIMEOUT', 'no session frame in time'), link.peerId)),
        this.#options.timeoutMs,
      );
    });
    let first: [Frame, Frame[]];
    try {
      first = await Promise.race([this.#firstFrame(reader, frames), deadline]);
    } catch (error) {
      reader.cancel().catch(() => {});
      // Garbage from the remote ends this link only.
      if (error instanceof FrameError) throw toPeerlineError(errorInfo('PROTOCOL_VIOLATION', error.message), link.peerId);
      throw error;
    } finally {
      this.#host.clock.clearTimeout(timer);
    }
    const [frame, rest] = first;
    const refuse = (code: string, message: string): void => {
      const writer = link.writable.getWriter();
      writer.write(encode.refuse({ code, message })).catch(() => {});
      writer.close().catch(() => {});
      reader.cancel().catch(() => {});
    };
    if (this.#stopped) return refuse('ENGINE_STOPPED', 'the engine is stopping');
    if (frame.type === FrameType.Open) return this.#acceptOpen(link, reader, frames, frame.body, rest, refuse);
    if (frame.type === FrameType.Resume) return this.#acceptResume(link, reader, frames, frame.body, rest, refuse);
    refuse('PROTOCOL_VIOLATION', `a session starts with OPEN or RESUME, not ${FrameType[frame.type]}`);
  }

  #acceptOpen(
    link: PeerStream,
    reader: ReadableStreamDefaultReader<Uint8Array>,
    frames: FrameReader,
    body: OpenBody,
    rest: Frame[],
    refuse: (code: string, message: string) => void,
  ): void {
    const peerId = link.peerId;
    if (body.v !== RESUME_VERSION) return refuse('STREAM_REJECTED', `resume protocol version ${body.v} is not spoken here`);
    const handler = this.#host.handler(body.protocol);
    if (handler === undefined) return refuse('STREAM_REJECTED', `no handler for ${body.protocol}`);
    if (this.#sessions.get(peerId)?.has(body.sessionId) === true || this.#tombstones.has(key(peerId, body.sessionId))) {
      return refuse('PROTOCOL_VIOLATION', 'session id already in use');
    }
    if (this.#count(peerId) >= this.#options.maxSessionsPerPeer) {
      return refuse('STREAM_REJECTED', `${this.#options.maxSessionsPerPeer} resumable sessions are open with this peer`);
    }
    const session = new ResumableSession(this.#sessionHost, {
      sessionId: body.sessionId,
      peerId,
      protocol: body.protocol,
      role: 'acceptor',
      secret: Buffer.from(body.secret, 'hex'),
      remoteWindow: body.window,
    });
    this.#add(session);
    this.#stats.accepted += 1;
    session.start();
    const writer = link.writable.getWriter();
    writer.write(encode.opened({ window: this.#options.bufferBytes })).catch(() => {});
    writer.releaseLock();
    session.attach(link, reader, frames, 0, rest);
    // The handler runs outside this step; its failure aborts the session only.
    void Promise.resolve()
      .then(() => handler(session.stream))
      .catch((error: unknown) => {
        this.#host.handlerFailed(body.protocol, error);
        session.abort('handler failed');
      });
  }

  #acceptResume(
    link: PeerStream,
    reader: ReadableStreamDefaultReader<Uint8Array>,
    frames: FrameReader,
    body: ResumeBody,
    rest: Frame[],
    refuse: (code: string, message: string) => void,
  ): void {
    const peerId = link.peerId;
    const session = this.#sessions.get(peerId)?.get(body.sessionId);
    if (session === undefined || session.ended) {
      const tomb = this.#tombstones.get(key(peerId, body.sessionId));
      return refuse(tomb?.outcome ?? 'RESUME_EXPIRED', tomb === undefined ? 'no such session here' : 'the session has ended');
    }
    if (session.role !== 'acceptor') return refuse('PROTOCOL_VIOLATION', 'only the side that opened a session resumes it');
    // The proof for the current generation, or for the previous one if the
    // opener never saw the last RESUMED (the link died right after it).
    let secret: Buffer | undefined;
    if (body.generation === session.generation && proofMatches(session.secret, session.sessionId, body.generation, body.proof)) {
      secret = session.secret;
    } else if (
      session.previous !== undefined &&
      body.generation === session.previous.generation &&
      proofMatches(session.previous.secret, session.sessionId, body.generation, body.proof)
    ) {
      secret = session.previous.secret;
    }
    if (secret === undefined) {
      this.#stats.badProofs += 1;
      // The session itself is untouched: a wrong proof must not end it.
      return refuse('RESUME_REJECTED', 'wrong session proof');
    }
    if (body.received > session.sentEnd) {
      refuse('PROTOCOL_VIOLATION', 'claims bytes that were never sent');
      session.fail(errorInfo('PROTOCOL_VIOLATION', `the remote claims ${body.received} bytes, only ${session.sentEnd} were sent`), false);
      return;
    }
    if (body.received < session.ackedTo) {
      refuse('RESUME_GAP', 'acknowledged bytes are gone');
      session.fail(gap(body.received, session.ackedTo), false);
      return;
    }
    const nonce = newNonce();
    session.previous = { generation: body.generation, secret };
    session.secret = rotate(secret, nonce);
    session.generation = body.generation + 1;
    const writer = link.writable.getWriter();
    writer.write(encode.resumed({ received: session.received, fin: session.finReceived, nonce })).catch(() => {});
    writer.releaseLock();
    // Confirmation of the new generation: the opener's first frame on this link.
    const confirm = (): void => {
      if (session.generation === body.generation + 1) session.previous = undefined;
    };
    session.attach(link, reader, frames, body.received, rest);
    session.onNextFrame(confirm);
    session.send({ type: 'RESUMED' });
  }

  // --------------------------------------------------------------- registry

  #add(session: ResumableSession): void {
    let peer = this.#sessions.get(session.peerId);
    if (peer === undefined) {
      peer = new Map();
      this.#sessions.set(session.peerId, peer);
    }
    peer.set(session.sessionId, session);
  }

  #count(peerId: string): number {
    return this.#sessions.get(peerId)?.size ?? 0;
  }

  #withSession(peerId: string, sessionId: string, fn: (session: ResumableSession) => void): void {
    const session = this.#sessions.get(peerId)?.get(sessionId);
    if (session !== undefined) fn(session);
  }

  #transition(session: ResumableSession, from: string | null, to: string, event: string): void {
    if (to.startsWith('suspended') && (from === null || !from.startsWith('suspended'))) {
      this.#stats.suspensions += 1;
      if (session.role === 'opener') {
        let set = this.#waiting.get(session.peerId);
        if (set === undefined) {
          set = new Set();
          this.#waiting.set(session.peerId, set);
        }
        set.add(session);
      }
    }
    if (from?.startsWith('suspended') === true && !to.startsWith('suspended')) {
      this.#unwait(session);
      if (to === 'open') this.#stats.resumes += 1;
    }
    if (from === 'open' && to === 'open') this.#stats.resumes += 1;
    this.#host.trace?.(`session ${session.sessionId.slice(0, 8)} (${session.role}) with ${session.peerId}: ${from ?? 'new'} -> ${to} (${event})`);
    if (this.#transitions.observed) {
      this.#transitions.next({ sessionId: session.sessionId, peerId: session.peerId, role: session.role, from, to, event, at: this.#host.clock.now() });
    }
  }

  #unwait(session: ResumableSession): void {
    const set = this.#waiting.get(session.peerId);
    if (set === undefined) return;
    set.delete(session);
    if (set.size === 0) this.#waiting.delete(session.peerId);
  }

  #ended(session: ResumableSession, error: ErrorInfo | null): void {
    this.#abandon(session);
    this.#unwait(session);
    const peer = this.#sessions.get(session.peerId);
    if (peer?.get(session.sessionId) === session) {
      peer.delete(session.sessionId);
      if (peer.size === 0) this.#sessions.delete(session.peerId);
    }
    if (error === null) this.#stats.closed += 1;
    else this.#stats.failedByCode[error.code] = (this.#stats.failedByCode[error.code] ?? 0) + 1;
    session.actor.stop();
    // The acceptor remembers how a session ended for one TTL, so a late resume gets that answer.
    if (session.role === 'acceptor' && !this.#stopped) {
      const k = key(session.peerId, session.sessionId);
      const old = this.#tombstones.get(k);
      if (old !== undefined) this.#host.clock.clearTimeout(old.timer);
      const timer = this.#host.clock.setTimeout(() => this.#tombstones.delete(k), this.#options.ttlMs);
      this.#tombstones.set(k, { outcome: error === null ? 'FINISHED' : error.code, timer });
      this.#boundTombstones();
    }
  }

  /** Tombstones are small, but bounded all the same: the oldest go first. */
  #boundTombstones(): void {
    const limit = 4_096;
    while (this.#tombstones.size > limit) {
      const [oldest, tomb] = this.#tombstones.entries().next().value as [string, Tombstone];
      this.#host.clock.clearTimeout(tomb.timer);
      this.#tombstones.delete(oldest);
    }
  }

  // ------------------------------------------------------------------ views

  sessions(): SessionSnapshot[] {
    const out: SessionSnapshot[] = [];
    for (const peer of this.#sessions.values()) for (const session of peer.values()) out.push(session.snapshot());
    return out;
  }

  stats(): ResumeStats {
    let live = 0;
    let suspended = 0;
    let bufferedBytes = 0;
    for (const peer of this.#sessions.values()) {
      for (const session of peer.values()) {
        live += 1;
        if (session.state.startsWith('suspended')) suspended += 1;
        bufferedBytes += session.sentEnd - session.ackedTo;
      }
    }
    return { live, suspended, ...this.#stats, failedByCode: { ...this.#stats.failedByCode }, bufferedBytes };
  }

  /** Engine stop: every session fails with ENGINE_STOPPED (the remote is told), tombstones go. */
  stop(): void {
    this.#stopped = true;
    for (const peer of [...this.#sessions.values()]) {
      for (const session of [...peer.values()]) session.fail(errorInfo('ENGINE_STOPPED', 'the engine stopped'), true);
    }
    for (const tomb of this.#tombstones.values()) this.#host.clock.clearTimeout(tomb.timer);
    this.#tombstones.clear();
    this.#transitions.complete();
  }
}

function key(peerId: string, sessionId: string): string {
  return `${peerId}\u0000${sessionId}`;
}

function gap(received: number, acked: number): ErrorInfo {
  return errorInfo('RESUME_GAP', `the remote holds ${received} bytes but ${acked} were acknowledged and dropped: the bytes between are gone`);
}

/** The error a REFUSE frame's code stands for. */
function refusal(code: string, message: string): ErrorInfo {
  if (code === 'FINISHED') return errorInfo('RESUME_EXPIRED', 'the remote already ended the session');
  if (code === 'ENGINE_STOPPED') return errorInfo('CONNECTION_LOST', `the remote is stopping: ${message}`);
  if (KNOWN.has(code)) return errorInfo(code as ErrorCode, `refused by the remote: ${message}`);
  return errorInfo('STREAM_REJECTED', `refused by the remote (${code}): ${message}`);
}
