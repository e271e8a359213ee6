/**
 * One 'abort' listener per AbortSignal, however many requests share it.
 *
 * Passing one signal to many requests is normal use (a request batch, a
 * component's lifetime), but Node warns with MaxListenersExceededWarning once
 * an EventTarget holds more than 10 listeners for one event. Every place in
 * peerline that reacts to a caller's signal registers here instead: the first
 * registration for a signal adds the one listener, the last removal takes it
 * off again, so nothing is left on a signal that outlives its requests.
 */

interface Fanout {
  readonly callbacks: Set<{ readonly fn: () => void }>;
  readonly listener: () => void;
}

const fanouts = new WeakMap<AbortSignal, Fanout>();

/**
 * Runs `fn` once when `signal` aborts. Returns the function that cancels the
 * registration (idempotent). A signal that is already aborted never calls
 * back: callers check `signal.aborted` first.
 */
export function onAbort(signal: AbortSignal, fn: () => void): () => void {
  let fanout = fanouts.get(signal);
  if (fanout === undefined) {
    const callbacks = new Set<{ readonly fn: () => void }>();
    const listener = (): void => {
      fanouts.delete(signal);
      // A copy: callbacks remove themselves (and others) while they run.
      for (const token of [...callbacks]) {
        if (!callbacks.has(token)) continue;
        callbacks.delete(token);
        token.fn();
      }
    };
    fanout = { callbacks, listener };
    fanouts.set(signal, fanout);
    signal.addEventListener('abort', listener, { once: true });
  }
  const token = { fn };
  const own = fanout;
  own.callbacks.add(token);
  return () => {
    if (!own.callbacks.delete(token) || own.callbacks.size > 0) return;
    if (fanouts.get(signal) === own) fanouts.delete(signal);
    signal.removeEventListener('abort', own.listener);
  };
}

/** Registrations still held on `signal` (for tests). */
export function abortCallbacks(signal: AbortSignal): number {
  return fanouts.get(signal)?.callbacks.size ?? 0;
}
