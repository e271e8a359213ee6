/**
 * The control channel's vocabulary: the messages the engine and its peer
 * exchange on every connection (handshake, heartbeats, goaway) and the
 * handshake's version. The machine decides what to send, the runtime decodes
 * what arrives, each adapter carries them; all three speak these types.
 */

/** Version of the application handshake spoken on the control channel. */
export const PROTOCOL_VERSION = 1;

/** Messages the runtime exchanges on a connection's control channel. */
export type ControlMessage =
  | { type: 'hello'; version: number; peerId: string }
  | { type: 'hello-ack'; version: number; peerId: string }
  | { type: 'ping'; seq: number }
  | { type: 'pong'; seq: number }
  | { type: 'goaway' };
