/**
 * Staggered dials, in the manner of Happy Eyeballs v2 (RFC 8305): a peer's
 * addresses are ranked, then dialled one after another, `delayMs` apart (the
 * RFC's "connection attempt delay", 250 ms recommended), each next attempt
 * starting early when the one before it failed. The first connection wins;
 * attempts still running are aborted, and one that connects anyway is closed.
 * Dialling every address at once (what peerline did before) costs the remote
 * a handshake per address and, over QUIC, a TLS handshake each.
 */
import { isIP } from 'node:net';
import { TransportError, type Connection } from '../protocol/adapter.js';
import { type Clock } from '../protocol/time.js';

/** The IP family of an address `scheme://host:port` (`[v6]` in brackets), or undefined (memory addresses, names). */
export function addressFamily(address: string): 4 | 6 | undefined {
  const match = /^[a-z][a-z0-9+.-]*:\/\/(\[([^\]]+)\]|([^/:\]]+))/i.exec(address);
  if (match === null) return undefined;
  if (match[2] !== undefined) return isIP(match[2]) === 6 ? 6 : undefined;
  return isIP(match[3] ?? '') === 4 ? 4 : undefined;
}

/**
 * The order addresses are tried in. `interleave` (RFC 8305 section 4): IPv6
 * first, then alternating families, each family in its given order;
 * addresses of no IP family follow in their given order. `given`: as is.
 */
export function rankAddresses(addresses: readonly string[], order: 'interleave' | 'given'): string[] {
  if (order === 'given' || addresses.length < 2) return [...addresses];
  const v6: string[] = [];
  const v4: string[] = [];
  const other: string[] = [];
  for (const address of addresses) {
    const family = addressFamily(address);
    (family === 6 ? v6 : family === 4 ? v4 : other).push(address);
  }
  const ranked: string[] = [];
  for (let i = 0; i < Math.max(v6.length, v4.length); i++) {
    if (i < v6.length) ranked.push(v6[i]!);
    if (i < v4.length) ranked.push(v4[i]!);
  }
  return [...ranked, ...other];
}

export interface StaggeredDial {
  /** In the order to try them. */
  readonly addresses: readonly string[];
  /** Wait before the next attempt while the previous one is still running; 0 starts all at once. */
  readonly delayMs: number;
  readonly clock: Clock;
  /** The whole dial is abandoned when it aborts (the machine's connect timeout, a shutdown). */
  readonly signal: AbortSignal;
  dial(address: string, signal: AbortSignal): Promise<Connection>;
  /** A connection that arrived after another one won. */
  abandon(connection: Connection): void;
}

/** Dials `addresses` staggered; resolves with the first connection, rejects when every attempt failed. */
export function staggeredDial(spec: StaggeredDial): Promise<Connection> {
  const { addresses, clock, signal } = spec;
  if (addresses.length === 1) {
    // Nothing to stagger: the adapter takes the machine's signal itself, without
    // a controller and a timer per dial.
    return attempt(spec, addresses[0]!, signal);
  }
  if (signal.aborted) return Promise.reject(new TransportError('aborted', 'dial aborted'));
  return new Promise<Connection>((resolve, reject) => {
    const controllers: AbortController[] = [];
    const errors: unknown[] = [];
    let next = 0;
    let running = 0;
    let won = false;
    let timer: unknown;
    const stopTimer = (): void => {
      if (timer !== undefined) clock.clearTimeout(timer);
      timer = undefined;
    };
    const abortAll = (): void => {
      stopTimer();
      next = addresses.length;
      for (const c of controllers) c.abort();
    };
    signal.addEventListener('abort', abortAll, { once: true });
    const failIfDone = (): void => {
      if (won || running > 0 || next < addresses.length) return;
      signal.removeEventListener('abort', abortAll);
      // An identity mismatch says more than a refusal from another address.
      const mismatch = errors.find((e) => e instanceof TransportError && e.kind === 'identity-mismatch');
      reject(mismatch ?? errors[0] ?? new TransportError('aborted', 'dial aborted'));
    };
    const start = (): void => {
      stopTimer();
      if (won || next >= addresses.length) return;
      const i = next++;
      const controller = new AbortController();
      controllers.push(controller);
      running += 1;
      attempt(spec, addresses[i]!, controller.signal).then(
        (connection) => {
          running -= 1;
          if (won) {
            spec.abandon(connection);
            return;
          }
          won = true;
          stopTimer();
          signal.removeEventListener('abort', abortAll);
          for (const c of controllers) if (c !== controller) c.abort();
          resolve(connection);
        },
        (error: unknown) => {
          running -= 1;
          errors.push(error);
          if (won) return;
          // A failed attempt does not wait out the delay: the next one starts now.
          if (next < addresses.length) start();
          else failIfDone();
        },
      );
      if (next < addresses.length) {
        if (spec.delayMs === 0) start();
        else timer = clock.setTimeout(start, spec.delayMs);
      }
    };
    start();
  });
}

function attempt(spec: StaggeredDial, address: string, signal: AbortSignal): Promise<Connection> {
  try {
    return spec.dial(address, signal);
  } catch (error) {
    return Promise.reject(error);
  }
}
