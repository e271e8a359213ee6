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

/** What is told of an abort: an object, so a hot path registers itself without a closure (as EventTarget's `handleEvent`). */
export interface AbortTarget {
  handleEvent(): void;
}

interface Fanout {
  readonly targets: Set<AbortTarget>;
  readonly listener: () => void;
}

const fanouts = new WeakMap<AbortSignal, Fanout>();

/**
 * Calls `target.handleEvent()` once when `signal` aborts, unless
 * `unlistenAbort` came first. A signal that is already aborted never calls
 * back: callers check `signal.aborted` first. Registering a target twice is
 * one registration.
 */
export function listenAbort(signal: AbortSignal, target: AbortTarget): void {
  let fanout = fanouts.get(signal);
  if (fanout === undefined) {
    const targets = new Set<AbortTarget>();
    const listener = (): void => {
      fanouts.delete(signal);
      // A copy: targets remove themselves (and others) while they run.
      for (const t of [...targets]) {
        if (!targets.delete(t)) continue;
        t.handleEvent();
      }
    };
    fanout = { targets, listener };
    fanouts.set(signal, fanout);
    signal.addEventListener('abort', listener, { once: true });
  }
  fanout.targets.add(target);
}

/** Cancels `target`'s registration on `signal` (idempotent); the last one takes the listener off. */
export function unlistenAbort(signal: AbortSignal, target: AbortTarget): void {
  const fanout = fanouts.get(signal);
  if (fanout === undefined || !fanout.targets.delete(target) || fanout.targets.size > 0) return;
  fanouts.delete(signal);
  signal.removeEventListener('abort', fanout.listener);
}

/** Runs `fn` once when `signal` aborts. Returns the function that cancels the registration (idempotent). */
export function onAbort(signal: AbortSignal, fn: () => void): () => void {
  const target: AbortTarget = { handleEvent: fn };
  listenAbort(signal, target);
  return () => unlistenAbort(signal, target);
}

/** Registrations still held on `signal` (for tests). */
export function abortCallbacks(signal: AbortSignal): number {
  return fanouts.get(signal)?.targets.size ?? 0;
}
