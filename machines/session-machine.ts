import { assign, setup } from 'xstate';
import { errorInfo, type ErrorInfo } from '../protocol/codes.js';

/**
 * The resumable session machine: one per resumable stream, on each side,
 * pure. It tracks whether the stream's bytes are flowing over a link
 * (`open`), waiting for a new link after the old one was lost
 * (`suspended.waiting`), or proving the session on a new link
 * (`suspended.resuming`); it ends `closed` (both directions finished or the
 * stream was ended on purpose) or `failed` (RESUME_GAP, RESUME_EXPIRED,
 * RESUME_REJECTED, ENGINE_STOPPED, ...). The runtime (`runtime/resume/`)
 * moves the bytes; the machine decides when to try again and when to give up.
 *
 * Timers (no state can hang): `opening` waits at most `resumeTimeout` for
 * the remote to accept; `suspended` as a whole expires after `resumeTtl`
 * (`failed` with RESUME_EXPIRED, or `closed` for a session that is complete
 * on this side: everything it sent was read, everything sent to it was read,
 * and only the remote's last acknowledgement was lost with the link),
 * however many attempts it makes; inside it the opener waits `resumeRetry`
 * (the retry policy's backoff) between attempts and `resumeTimeout` for each
 * attempt's answer. The side that accepted the stream never dials: it waits
 * in `suspended.waiting` for the opener's proof, bounded by the TTL.
 */

export const SessionStates = ['opening', 'open', 'suspended', 'closed', 'failed'] as const;
export type SessionState = (typeof SessionStates)[number];

export interface SessionInput {
  readonly sessionId: string;
  readonly peerId: string;
  /** `opener` called `openStream(..., { resumable: true })` and resumes; `acceptor` waits to be resumed. */
  readonly role: 'opener' | 'acceptor';
}

export interface SessionContext extends SessionInput {
  /** Failed resume attempts since the link was lost (drives the backoff). */
  readonly attempts: number;
  /** Successful resumes so far. */
  readonly resumes: number;
  readonly lastError: ErrorInfo | null;
}

export type SessionEvent =
  /** The remote accepted the new session (opener). */
  | { type: 'OPENED' }
  /** The link under the stream failed or ended before the session did. */
  | { type: 'LINK.LOST'; reason: string }
  /** The peer's connection is ready again: try now instead of waiting for the backoff. */
  | { type: 'LINK.READY' }
  /** The session was proven on a new link and the counters exchanged. */
  | { type: 'RESUMED' }
  /** One attempt failed for a reason that may pass (no connection yet, timeout). */
  | { type: 'RESUME.RETRY'; error: ErrorInfo }
  /** Both directions finished, or the stream was ended on purpose. */
  | { type: 'FINISHED' }
  /** The session cannot go on: gap, expiry on the remote, wrong proof, abort, stop. */
  | { type: 'FAIL'; error: ErrorInfo };


/** Effects named here, implemented by the runtime. */
function stub<T>(): (_args: unknown, _params: T) => void {
  return () => {};
}

export const sessionMachine = setup({
  types: {
    context: {} as SessionContext,
    events: {} as SessionEvent,
    input: {} as SessionInput,
  },
  actions: {
    /** Opener: open a link to the peer and send the proof. */
    attemptResume: stub<{ attempt: number }>(),
    /** Opener: give up the attempt in flight (its answer came too late). */
    abandonAttempt: () => {},
    /** The session ended: free its buffers, answer its readers and writers with `error` (null: clean end). */
    release: stub<{ error: ErrorInfo | null }>(),
    failWith: assign({ lastError: ({ event }) => (event.type === 'FAIL' ? event.error : null) }),
    countAttempt: assign({
      attempts: ({ context }) => context.attempts + 1,
      lastError: ({ context, event }) => (event.type === 'RESUME.RETRY' ? event.error : context.lastError),
    }),
  },
  guards: {
    isOpener: ({ context }) => context.role === 'opener',
    /**
     * Supplied by the runtime: both directions are done as far as this side
     * knows (its end acknowledged as read, the remote's end read).
     */
    isComplete: (_args) => false,
  },
  delays: {
    /** Supplied by the runtime from its resume policy. */
    resumeTtl: 60_000,
    resumeTimeout: 10_000,
    /** Supplied by the runtime: the retry policy's backoff for `context.attempts`. */
    resumeRetry: 1_000,
  },
}).createMachine({
  id: 'resumableSession',
  context: ({ input }) => ({ ...input, attempts: 0, resumes: 0, lastError: null }),
  initial: 'opening',
  states: {
    opening: {
      always: { guard: ({ context }) => context.role === 'acceptor', target: 'open' },
      after: {
        resumeTimeout: {
          target: 'failed',
          actions: assign({ lastError: () => errorInfo('STREAM_TIMEOUT', 'the remote did not accept the session in time') }),
        },
      },
      on: {
        OPENED: 'open',
        FAIL: { target: 'failed', actions: 'failWith' },
      },
    },
    open: {
      on: {
        'LINK.LOST': 'suspended',
        // The acceptor may be resumed before it noticed that the old link died.
        RESUMED: { target: 'open', reenter: true, actions: assign({ resumes: ({ context }) => context.resumes + 1 }) },
        FINISHED: 'closed',
        FAIL: { target: 'failed', actions: 'failWith' },
      },
    },
    suspended: {
      entry: assign({ attempts: 0 }),
      after: {
        resumeTtl: [
          // Nothing was lost: only the other side may not know yet (it expires or resumes to learn it).
          { guard: 'isComplete', target: 'closed' },
          {
            target: 'failed',
            actions: assign({ lastError: () => errorInfo('RESUME_EXPIRED', 'the session was not resumed before its TTL') }),
          },
        ],
      },
      initial: 'waiting',
      states: {
        waiting: {
          // The opener tries again after the backoff; the acceptor waits (the TTL bounds it).
          after: { resumeRetry: { guard: 'isOpener', target: 'resuming' } },
          on: { 'LINK.READY': { guard: 'isOpener', target: 'resuming' } },
        },
        resuming: {
          entry: { type: 'attemptResume', params: ({ context }) => ({ attempt: context.attempts + 1 }) },
          after: {
            resumeTimeout: {
              target: 'waiting',
              actions: ['abandonAttempt', 'countAttempt'],
            },
          },
          on: {
            'RESUME.RETRY': { target: 'waiting', actions: 'countAttempt' },
          },
        },
      },
      on: {
        RESUMED: { target: 'open', actions: assign({ resumes: ({ context }) => context.resumes + 1, lastError: null }) },
        // A link lost while suspended changes nothing.
        'LINK.LOST': {},
        FINISHED: 'closed',
        FAIL: { target: 'failed', actions: 'failWith' },
      },
    },
    closed: {
      type: 'final',
      entry: { type: 'release', params: () => ({ error: null }) },
    },
    failed: {
      type: 'final',
      entry: {
        type: 'release',
        params: ({ context }) => ({ error: context.lastError ?? errorInfo('CONNECTION_LOST', 'the session failed') }),
      },
    },
  },
});

export type SessionMachine = typeof sessionMachine;
