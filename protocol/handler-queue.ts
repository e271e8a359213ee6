import type { CloseInfo, ConnectionHandlers, IncomingStream } from './adapter.js';
import type { ControlMessage } from './control.js';

/** What a transport connection hands to the runtime's handlers (as opposed to `ConnectionEvent`, the events of the connection machine). */
export type TransportEvent =
  | { readonly type: 'control'; readonly message: ControlMessage }
  | { readonly type: 'stream'; readonly stream: IncomingStream }
  | { readonly type: 'close'; readonly info: CloseInfo };

/**
 * The adapter contract's delivery rule, shared by every adapter: events that
 * arrive before `setHandlers` are kept and delivered in order once it is
 * called; delivery is never re-entrant; a side that never installs handlers
 * cannot make the buffer grow past `limit` (the close event always fits).
 */
export class HandlerQueue {
  readonly #limit: number;
  readonly #onOverflow: () => void;
  readonly #run: (what: TransportEvent['type'], deliver: () => void) => void;
  #handlers: ConnectionHandlers | undefined;
  readonly #buffer: TransportEvent[] = [];
  #flushing = false;

  /**
   * @param limit events kept before handlers are installed
   * @param onOverflow called instead of buffering past the limit
   * @param run calls `deliver`, catching what a handler throws
   */
  constructor(limit: number, onOverflow: () => void, run: (what: TransportEvent['type'], deliver: () => void) => void) {
    this.#limit = limit;
    this.#onOverflow = onOverflow;
    this.#run = run;
  }

  setHandlers(handlers: ConnectionHandlers): void {
    this.#handlers = handlers;
    this.#flush();
  }

  emit(event: TransportEvent): void {
    if (event.type !== 'close' && this.#handlers === undefined && this.#buffer.length >= this.#limit) {
      this.#onOverflow();
      return;
    }
    this.#buffer.push(event);
    this.#flush();
  }

  #flush(): void {
    if (this.#flushing) return;
    this.#flushing = true;
    try {
      for (;;) {
        const handlers = this.#handlers;
        if (handlers === undefined) break;
        const event = this.#buffer.shift();
        if (event === undefined) break;
        this.#run(event.type, () => {
          switch (event.type) {
            case 'control':
              handlers.onControl(event.message);
              break;
            case 'stream':
              handlers.onStream(event.stream);
              break;
            case 'close':
              handlers.onClose(event.info);
              break;
          }
        });
      }
    } finally {
      this.#flushing = false;
    }
  }
}
