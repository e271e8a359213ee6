/**
 * A minimal remote peer for benchmarks: a `MemoryAdapter` that answers the
 * engine's control channel and nothing else. It costs a few objects per
 * connection instead of a whole engine, so a hub can be measured against
 * 100k of them.
 *
 * Protocol (see runtime/engine.ts `#onControl` and the `handshaking` and
 * `ready.heartbeat` states of machines/connection-machine.ts):
 *   hello { version, peerId }  ->  hello-ack { version: PROTOCOL_VERSION, peerId: <own id> }
 *   ping { seq }               ->  pong { seq }
 *   goaway                     ->  close the connection (graceful)
 * Inbound streams are refused. The hello-ack names the connection's local
 * peer id, which is the node's.
 */
import type { CloseInfo, Connection, ConnectionHandlers, ControlMessage, IncomingStream, MemoryAdapter } from '../adapters/memory/index.js';
import { ConnectionErrorCode } from '../protocol/codes.js';
import { PROTOCOL_VERSION } from '../protocol/control.js';

export interface ResponderStats {
  hellos: number;
  pings: number;
  connections: number;
}

/**
 * One connection's handlers: a small object whose handlers are functions
 * shared by every connection (three closures per connection would cost more
 * than the rest of the responder). They find the connection through `this`.
 */
class Answering implements ConnectionHandlers {
  readonly connection: Connection;
  readonly stats: ResponderStats;
  readonly onControl = answerControl;
  readonly onStream = refuseStream;
  readonly onClose = countClose;

  constructor(connection: Connection, stats: ResponderStats) {
    this.connection = connection;
    this.stats = stats;
  }
}

function answerControl(this: Answering, message: ControlMessage): void {
  switch (message.type) {
    case 'hello':
      this.stats.hellos += 1;
      this.connection.sendControl({ type: 'hello-ack', version: PROTOCOL_VERSION, peerId: this.connection.localPeerId });
      return;
    case 'ping':
      this.stats.pings += 1;
      this.connection.sendControl({ type: 'pong', seq: message.seq });
      return;
    case 'goaway':
      this.connection.close(ConnectionErrorCode.Drain, 'drained');
      return;
    default:
      return;
  }
}

function refuseStream(incoming: IncomingStream): void {
  incoming.reject('this peer serves no streams');
}

function countClose(this: Answering, _close: CloseInfo): void {
  this.stats.connections -= 1;
}

/** One listener per stats record, shared by every node that reports to it. */
const listeners = new WeakMap<ResponderStats, (connection: Connection) => void>();

export function respond(adapter: MemoryAdapter, stats: ResponderStats): Promise<void> {
  let listener = listeners.get(stats);
  if (listener === undefined) {
    listener = (connection) => {
      stats.connections += 1;
      connection.setHandlers(new Answering(connection, stats));
    };
    listeners.set(stats, listener);
  }
  return adapter.listen(listener);
}
