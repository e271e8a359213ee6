/**
 * What peerline writes on QUIC streams. All integers are big endian.
 *
 * Every stream starts with one kind byte:
 * - `0x00` control: the connection's control channel. Exactly one per
 *   connection, opened by the dialler right after the QUIC handshake. Then a
 *   sequence of frames `u16 length | body` (1..1024 bytes), body = `u8 type |
 *   fields`:
 *     0x01 hello      u32 version | utf8 peerId (rest of the body)
 *     0x02 hello-ack  u32 version | utf8 peerId
 *     0x03 ping       f64 seq
 *     0x04 pong       f64 seq
 *     0x05 goaway     (nothing)
 *   Anything else (unknown type, wrong length, bad UTF-8, a frame too big or
 *   empty) is a protocol violation: the connection is closed with
 *   `ConnectionErrorCode.ProtocolViolation`.
 * - `0x01` user stream: `u16 length | utf8 protocol` (1..maxProtocolLength
 *   bytes). The acceptor answers `0x06` (ACK) or `0x15` (NACK) followed by
 *   `u16 length | utf8 reason` (at most 1024 bytes) and FIN. A malformed
 *   header resets that stream (both directions) with the ProtocolViolation
 *   code; the connection and its other streams go on.
 *   After the ACK each direction is a sequence of data frames
 *   `varint length | bytes` (length 1..2^30-1, varint as in QUIC: 1, 2 or 4
 *   bytes) ended by one of two one-byte frames, always sent in the same QUIC
 *   write as the FIN: `0x00` END (the writer finished) or `0xc1` ABORT (the
 *   writer aborted the stream). The `Stream` API shows only the bytes.
 *
 * Why frames, and why every direction ends with a byte and the FIN rather
 * than a bare FIN or a RESET_STREAM: quiche 0.18 (inside @matrixai/quic
 * 2.0.9)
 * - loses a FIN sent alone when the stream's data was already acknowledged:
 *   the zero-length frame is never retransmitted and the stream counts as
 *   complete, so the reader waits forever (150 concurrent echo streams: 142
 *   of 750 hung in a raw @matrixai/quic test here; MatrixAI/js-quic issue 20
 *   describes the same). A FIN that travels with a byte is retransmitted with
 *   it.
 * - never frees a stream, so never gives its credit back to the peer, when
 *   its reader stopped reading it (STOP_SENDING, the library's `cancel()`)
 *   after its own direction ended: with 100 streams of credit, a listener
 *   that answers and then cancels lets the opener open 100 streams and no
 *   more; one that reads the opener's direction to its end (FIN or reset)
 *   lets it open all 120 (bench/quic/library-behaviours.ts). So peerline never
 *   stops reading a stream: what nobody reads any more is read and dropped
 *   until the remote's end, and refusals (NACK) and aborts (ABORT) are bytes
 *   the remote reads in order before it ends its own direction.
 * Resets and STOP_SENDING remain for malformed headers, for a direction
 * that keeps sending long after nobody reads it, and as a fallback when the
 * FIN cannot go with a byte; they may cost the connection a stream of credit.
 */
import { ByteQueue } from '../../protocol/byte-queue.js';
import type { ControlMessage } from '../../protocol/control.js';

export const KIND_CONTROL = 0x00;
export const KIND_USER = 0x01;
export const ACK = 0x06;
export const NACK = 0x15;

/** Largest control frame body, in bytes. */
export const MAX_CONTROL_FRAME = 1024;
/** Longest NACK reason on the wire, in bytes (longer reasons are cut). */
export const MAX_NACK_REASON = 1024;

/**
 * Application codes on QUIC `RESET_STREAM` / `STOP_SENDING`, which peerline
 * sends only for protocol violations, as a fallback, or to stop a remote that
 * keeps writing to a stream nobody reads.
 */
export const StreamCode = {
  /** We stopped reading. */
  Closed: 0,
  /** The stream was aborted. */
  Aborted: 1,
  /** A malformed stream (same value as ConnectionErrorCode.ProtocolViolation). */
  ProtocolViolation: 5,
} as const;

const TYPE_HELLO = 0x01;
const TYPE_HELLO_ACK = 0x02;
const TYPE_PING = 0x03;
const TYPE_PONG = 0x04;
const TYPE_GOAWAY = 0x05;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** Bytes on a stream that break the format above. */
export class WireError extends Error {
  override name = 'WireError';
}

export function decodeUtf8(bytes: Uint8Array): string {
  try {
    return decoder.decode(bytes);
  } catch {
    throw new WireError('invalid UTF-8');
  }
}

function frame(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(2 + body.length);
  out[0] = body.length >>> 8;
  out[1] = body.length & 0xff;
  out.set(body, 2);
  return out;
}

/** Encodes one control message as a frame. Throws a TypeError for a message that is not a ControlMessage. */
export function encodeControl(message: ControlMessage): Uint8Array {
  const m = message as Partial<Record<string, unknown>> & { type?: unknown };
  switch (m.type) {
    case 'hello':
    case 'hello-ack': {
      if (typeof m.version !== 'number' || !Number.isInteger(m.version) || m.version < 0 || m.version > 0xffffffff) {
        throw new TypeError(`${m.type}: version must be a u32, got ${String(m.version)}`);
      }
      if (typeof m.peerId !== 'string' || m.peerId.length === 0) throw new TypeError(`${m.type}: peerId must be a non-empty string`);
      const id = encoder.encode(m.peerId);
      if (5 + id.length > MAX_CONTROL_FRAME) throw new TypeError(`${m.type}: peerId is too long`);
      const body = new Uint8Array(5 + id.length);
      body[0] = m.type === 'hello' ? TYPE_HELLO : TYPE_HELLO_ACK;
      new DataView(body.buffer).setUint32(1, m.version);
      body.set(id, 5);
      return frame(body);
    }
    case 'ping':
    case 'pong': {
      if (typeof m.seq !== 'number') throw new TypeError(`${m.type}: seq must be a number`);
      const body = new Uint8Array(9);
      body[0] = m.type === 'ping' ? TYPE_PING : TYPE_PONG;
      new DataView(body.buffer).setFloat64(1, m.seq);
      return frame(body);
    }
    case 'goaway':
      return frame(Uint8Array.of(TYPE_GOAWAY));
    default:
      throw new TypeError(`not a control message: ${String(m.type)}`);
  }
}

function decodeBody(body: Uint8Array): ControlMessage {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  switch (body[0]) {
    case TYPE_HELLO:
    case TYPE_HELLO_ACK: {
      if (body.length < 6) throw new WireError('hello frame too short');
      const version = view.getUint32(1);
      const peerId = decodeUtf8(body.subarray(5));
      return body[0] === TYPE_HELLO ? { type: 'hello', version, peerId } : { type: 'hello-ack', version, peerId };
    }
    case TYPE_PING:
    case TYPE_PONG: {
      if (body.length !== 9) throw new WireError('ping frame has the wrong length');
      const seq = view.getFloat64(1);
      if (Number.isNaN(seq)) throw new WireError('ping seq is not a number');
      return body[0] === TYPE_PING ? { type: 'ping', seq } : { type: 'pong', seq };
    }
    case TYPE_GOAWAY:
      if (body.length !== 1) throw new WireError('goaway frame has the wrong length');
      return { type: 'goaway' };
    default:
      throw new WireError(`unknown control frame type ${String(body[0])}`);
  }
}

/** Splits the control stream's bytes into messages. */
export class ControlDecoder {
  readonly #queue = new ByteQueue();

  /** Takes the next chunk; returns the messages it completed. Throws a WireError on malformed input. */
  push(chunk: Uint8Array): ControlMessage[] {
    this.#queue.push(chunk);
    const out: ControlMessage[] = [];
    for (;;) {
      if (this.#queue.length < 2) break;
      const head = this.#queue.peek(2);
      const length = (head[0]! << 8) | head[1]!;
      if (length === 0 || length > MAX_CONTROL_FRAME) throw new WireError(`control frame of ${length} bytes`);
      if (this.#queue.length < 2 + length) break;
      this.#queue.take(2);
      out.push(decodeBody(this.#queue.take(length)));
    }
    return out;
  }

  /** Bytes of an incomplete frame still held. */
  get buffered(): number {
    return this.#queue.length;
  }
}

/** The header a user stream starts with. */
export function encodeHeader(protocol: string): Uint8Array {
  const name = encoder.encode(protocol);
  if (name.length === 0 || name.length > 0xffff) throw new TypeError('protocol must be 1..65535 bytes');
  const out = new Uint8Array(3 + name.length);
  out[0] = KIND_USER;
  out[1] = name.length >>> 8;
  out[2] = name.length & 0xff;
  out.set(name, 3);
  return out;
}

export function encodeNack(reason: string): Uint8Array {
  let text = encoder.encode(reason);
  if (text.length > MAX_NACK_REASON) {
    // Cut at a character boundary so the reason stays valid UTF-8.
    let end = MAX_NACK_REASON;
    while (end > 0 && (text[end]! & 0xc0) === 0x80) end--;
    text = text.subarray(0, end);
  }
  const out = new Uint8Array(3 + text.length);
  out[0] = NACK;
  out[1] = text.length >>> 8;
  out[2] = text.length & 0xff;
  out.set(text, 3);
  return out;
}

/** Reads from `source` until `queue` holds at least `n` bytes. False when the stream ended first. */
export async function fill(source: { read(): Promise<Uint8Array | null> }, queue: ByteQueue, n: number): Promise<boolean> {
  while (queue.length < n) {
    const chunk = await source.read();
    if (chunk === null) return false;
    queue.push(chunk);
  }
  return true;
}

/** Largest payload of one data frame (a 4-byte varint). */
export const MAX_DATA_FRAME = 2 ** 30 - 1;
/** The end frame: varint 0. */
export const END_FRAME = Uint8Array.of(0x00);
/** The abort frame (a first byte no length uses). */
export const ABORT_FRAME = Uint8Array.of(0xc1);

/** How a direction ended: the writer finished, or aborted. */
export type FrameEnd = 'end' | 'abort';

/** The varint header of a data frame carrying `length` bytes (1..MAX_DATA_FRAME). */
export function dataFrameHeader(length: number): Uint8Array {
  if (length < 0x40) return Uint8Array.of(length);
  if (length < 0x4000) return Uint8Array.of(0x40 | (length >>> 8), length & 0xff);
  if (length <= MAX_DATA_FRAME) return Uint8Array.of(0x80 | (length >>> 24), (length >>> 16) & 0xff, (length >>> 8) & 0xff, length & 0xff);
  throw new RangeError(`a data frame carries at most ${MAX_DATA_FRAME} bytes`);
}

/** One data frame: varint length, then a copy of `payload` (1..MAX_DATA_FRAME bytes). */
export function encodeDataFrame(payload: Uint8Array): Uint8Array {
  const n = payload.length;
  let out: Uint8Array;
  let offset: number;
  if (n < 0x40) {
    out = new Uint8Array(1 + n);
    out[0] = n;
    offset = 1;
  } else if (n < 0x4000) {
    out = new Uint8Array(2 + n);
    out[0] = 0x40 | (n >>> 8);
    out[1] = n & 0xff;
    offset = 2;
  } else if (n <= MAX_DATA_FRAME) {
    out = new Uint8Array(4 + n);
    out[0] = 0x80 | (n >>> 24);
    out[1] = (n >>> 16) & 0xff;
    out[2] = (n >>> 8) & 0xff;
    out[3] = n & 0xff;
    offset = 4;
  } else {
    throw new RangeError(`a data frame carries at most ${MAX_DATA_FRAME} bytes`);
  }
  out.set(payload, offset);
  return out;
}

/** Turns the bytes of one direction of a user stream back into the user's bytes. */
export class FrameParser {
  /** Payload bytes still expected in the current frame. */
  #remaining = 0;
  /** A varint header split across chunks. */
  #header: number[] = [];
  #end: FrameEnd | undefined;

  /** How the direction ended, once it did. */
  get end(): FrameEnd | undefined {
    return this.#end;
  }

  get ended(): boolean {
    return this.#end !== undefined;
  }

  /**
   * Takes one chunk and appends the payload it carries to `out` (as views
   * into `chunk`). Returns how the direction ended once the END or ABORT
   * frame was seen. Throws a WireError for bytes after the end or an unknown
   * frame.
   */
  push(chunk: Uint8Array, out: Uint8Array[]): FrameEnd | undefined {
    let i = 0;
    while (i < chunk.length) {
      if (this.#end !== undefined) throw new WireError('data after the end of the stream');
      if (this.#remaining > 0) {
        const take = Math.min(this.#remaining, chunk.length - i);
        out.push(chunk.subarray(i, i + take));
        this.#remaining -= take;
        i += take;
        continue;
      }
      const byte = chunk[i]!;
      i++;
      if (this.#header.length === 0 && byte >= 0xc0) {
        if (byte === ABORT_FRAME[0]) {
          this.#end = 'abort';
          continue;
        }
        throw new WireError(`unknown frame 0x${byte.toString(16)}`);
      }
      this.#header.push(byte);
      const first = this.#header[0]!;
      const size = 1 << (first >>> 6);
      if (this.#header.length < size) continue;
      let length = first & 0x3f;
      for (let k = 1; k < size; k++) length = length * 256 + this.#header[k]!;
      this.#header = [];
      if (length === 0) this.#end = 'end';
      else this.#remaining = length;
    }
    return this.#end;
  }
}
