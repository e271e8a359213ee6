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
 * Inbound streams are refused.
 */
import type { Connection, ControlMessage, MemoryAdapter } from '../adapters/memory/index.js';
import { ConnectionErrorCode } from '../machines/codes.js';
import { PROTOCOL_VERSION } from '../machines/types.js';

export interface ResponderStats {
  hellos: number;
  pings: number;
  connections: number;
}

export function respond(adapter: MemoryAdapter, stats: ResponderStats): Promise<void> {
  const peerId = adapter.localPeerId;
  return adapter.listen((connection: Connection) => {
    stats.connections += 1;
    connection.setHandlers({
      onControl: (message: ControlMessage) => {
        switch (message.type) {
          case 'hello':
            stats.hellos += 1;
            connection.sendControl({ type: 'hello-ack', version: PROTOCOL_VERSION, peerId });
            return;
          case 'ping':
            stats.pings += 1;
            connection.sendControl({ type: 'pong', seq: message.seq });
            return;
          case 'goaway':
            connection.close(ConnectionErrorCode.Drain, 'drained');
            return;
          default:
            return;
        }
      },
      onStream: (incoming) => incoming.reject('this peer serves no streams'),
      onClose: () => {
        stats.connections -= 1;
      },
    });
  });
}
