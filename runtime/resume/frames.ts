/**
 * The resumable-stream wire format, spoken on a stream of the reserved
 * protocol `RESUME_PROTOCOL` after the engine's header/ACK.
 *
 * Every frame is `type (u8) | length (u32 BE) | payload`. Control frames
 * carry a small JSON object; data frames carry their position:
 *
 * | type | payload |
 * | --- | --- |
 * | OPEN | `{ v, sessionId, secret, protocol, window }`: a new session (opener -> acceptor) |
 * | OPENED | `{ window }`: accepted |
 * | RESUME | `{ sessionId, generation, proof, received, fin }`: prove and resume (opener -> acceptor) |
 * | RESUMED | `{ received, fin, nonce }`: proven; the acceptor's counters |
 * | REFUSE | `{ code, message }`: refused (the code is a peerline error code, or FINISHED) |
 * | DATA | `offset (u64) | bytes`: the bytes at `offset` of the sender's byte sequence |
 * | ACK | `consumed (u64) | fin (u8)`: the receiver's application has read this far (and the end) |
 * | FIN | `length (u64)`: the sender's byte sequence ends at `length` |
 * | ABORT | `{ message }`: the sender ended the session on purpose |
 *
 * Offsets are byte sequence numbers, as in TCP: a receiver that already holds
 * a range drops it (so a replay can never duplicate a byte) and a range that
 * starts past what it holds is a protocol violation (it can never skip one).
 */
import { ByteQueue } from '../../protocol/byte-queue.js';

export const RESUME_PROTOCOL = '/peerline/resume/1';
export const RESUME_VERSION = 1;

export enum FrameType {
  Open = 1,
  Opened = 2,
  Resume = 3,
  Resumed = 4,
  Refuse = 5,
  Data = 16,
  Ack = 17,
  Fin = 18,
  Abort = 19,
}

/** Largest DATA payload a sender puts in one frame. */
export const MAX_DATA_PAYLOAD = 64 * 1024;
/** Largest control (JSON) payload accepted. */
export const MAX_CONTROL_PAYLOAD = 4 * 1024;
const HEADER = 5;

export interface OpenBody {
  readonly v: number;
  readonly sessionId: string;
  readonly secret: string;
  readonly protocol: string;
  readonly window: number;
}
export interface OpenedBody {
  readonly window: number;
}
export interface ResumeBody {
  readonly sessionId: string;
  readonly generation: number;
  readonly proof: string;
  readonly received: number;
  readonly fin: boolean;
}
export interface ResumedBody {
  readonly received: number;
  readonly fin: boolean;
  readonly nonce: string;
}
export interface RefuseBody {
  readonly code: string;
  readonly message: string;
}
export interface AbortBody {
  readonly message: string;
}

export type Frame =
  | { readonly type: FrameType.Open; readonly body: OpenBody }
  | { readonly type: FrameType.Opened; readonly body: OpenedBody }
  | { readonly type: FrameType.Resume; readonly body: ResumeBody }
  | { readonly type: FrameType.Resumed; readonly body: ResumedBody }
  | { readonly type: FrameType.Refuse; readonly body: RefuseBody }
  | { readonly type: FrameType.Abort; readonly body: AbortBody }
  /** The payload may come in several parts (views of the transport's chunks, not copies). */
  | { readonly type: FrameType.Data; readonly offset: number; readonly length: number; readonly parts: readonly Uint8Array[] }
  | { readonly type: FrameType.Ack; readonly consumed: number; readonly fin: boolean }
  | { readonly type: FrameType.Fin; readonly length: number };

export class FrameError extends Error {
  override name = 'FrameError';
}

function header(type: FrameType, length: number): Uint8Array {
  const out = new Uint8Array(HEADER + length);
  out[0] = type;
  new DataView(out.buffer).setUint32(1, length);
  return out;
}

function json(type: FrameType, body: object): Uint8Array {
  const payload = Buffer.from(JSON.stringify(body));
  if (payload.length > MAX_CONTROL_PAYLOAD) throw new FrameError(`control frame of ${payload.length} bytes is too large`);
  const out = header(type, payload.length);
  out.set(payload, HEADER);
  return out;
}

function u64(view: DataView, at: number, value: number): void {
  view.setBigUint64(at, BigInt(value));
}

export const encode = {
  open: (body: OpenBody): Uint8Array => json(FrameType.Open, body),
  opened: (body: OpenedBody): Uint8Array => json(FrameType.Opened, body),
  resume: (body: ResumeBody): Uint8Array => json(FrameType.Resume, body),
  resumed: (body: ResumedBody): Uint8Array => json(FrameType.Resumed, body),
  refuse: (body: RefuseBody): Uint8Array => json(FrameType.Refuse, body),
  abort: (body: AbortBody): Uint8Array => json(FrameType.Abort, body),
  data(offset: number, bytes: Uint8Array): Uint8Array {
    if (bytes.length > MAX_DATA_PAYLOAD) throw new FrameError(`data frame of ${bytes.length} bytes is too large`);
    const out = header(FrameType.Data, 8 + bytes.length);
    u64(new DataView(out.buffer), HEADER, offset);
    out.set(bytes, HEADER + 8);
    return out;
  },
  ack(consumed: number, fin: boolean): Uint8Array {
    const out = header(FrameType.Ack, 9);
    const view = new DataView(out.buffer);
    u64(view, HEADER, consumed);
    out[HEADER + 8] = fin ? 1 : 0;
    return out;
  },
  fin(length: number): Uint8Array {
    const out = header(FrameType.Fin, 8);
    u64(new DataView(out.buffer), HEADER, length);
    return out;
  },
};

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isText = (v: unknown, max = 512): v is string => typeof v === 'string' && v.length > 0 && v.length <= max;
const isHex = (v: unknown, bytes: number): v is string => typeof v === 'string' && v.length === bytes * 2 && /^[0-9a-f]+$/.test(v);

function parseBody(type: FrameType, payload: Uint8Array): Frame {
  let body: Record<string, unknown>;
  try {
    const value: unknown = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'));
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not an object');
    body = value as Record<string, unknown>;
  } catch {
    throw new FrameError(`frame ${FrameType[type]} does not hold a JSON object`);
  }
  const bad = (): never => {
    throw new FrameError(`frame ${FrameType[type]} has missing or malformed fields`);
  };
  switch (type) {
    case FrameType.Open:
      if (!isCount(body.v) || !isHex(body.sessionId, 16) || !isHex(body.secret, 32) || !isText(body.protocol, 1024) || !isCount(body.window)) bad();
      return { type, body: body as unknown as OpenBody };
    case FrameType.Opened:
      if (!isCount(body.window)) bad();
      return { type, body: body as unknown as OpenedBody };
    case FrameType.Resume:
      if (!isHex(body.sessionId, 16) || !isCount(body.generation) || !isHex(body.proof, 32) || !isCount(body.received) || typeof body.fin !== 'boolean') bad();
      return { type, body: body as unknown as ResumeBody };
    case FrameType.Resumed:
      if (!isCount(body.received) || typeof body.fin !== 'boolean' || !isHex(body.nonce, 16)) bad();
      return { type, body: body as unknown as ResumedBody };
    case FrameType.Refuse:
      if (!isText(body.code, 64) || typeof body.message !== 'string') bad();
      return { type, body: body as unknown as RefuseBody };
    case FrameType.Abort:
      if (typeof body.message !== 'string') bad();
      return { type, body: body as unknown as AbortBody };
    default:
      return bad();
  }
}

/**
 * Cuts frames out of a byte stream, whatever the chunking. Bounded: a frame
 * longer than its type allows, or of an unknown type, is a FrameError before
 * its payload is buffered.
 */
export class FrameReader {
  readonly #queue = new ByteQueue();

  get buffered(): number {
    return this.#queue.length;
  }

  /** Adds bytes and returns every frame now complete. Throws FrameError on a malformed frame. */
  push(chunk: Uint8Array): Frame[] {
    const queue = this.#queue;
    queue.push(chunk);
    const frames: Frame[] = [];
    while (queue.length >= HEADER) {
      const head = queue.peek(HEADER);
      const type = head[0]! as FrameType;
      const length = new DataView(head.buffer, head.byteOffset, HEADER).getUint32(1);
      const limit = limitOf(type);
      if (limit === undefined) throw new FrameError(`unknown frame type ${type}`);
      if (length > limit.max || length < limit.min) throw new FrameError(`frame ${FrameType[type]} of ${length} bytes is out of bounds`);
      if (queue.length < HEADER + length) break;
      queue.take(HEADER);
      if (type === FrameType.Data) {
        const offset = readU64(queue.take(8));
        frames.push({ type, offset, length: length - 8, parts: queue.takeParts(length - 8) });
      } else {
        frames.push(decodePayload(type, queue.take(length)));
      }
    }
    return frames;
  }
}

function limitOf(type: FrameType): { min: number; max: number } | undefined {
  switch (type) {
    case FrameType.Data:
      return { min: 9, max: 8 + MAX_DATA_PAYLOAD };
    case FrameType.Ack:
      return { min: 9, max: 9 };
    case FrameType.Fin:
      return { min: 8, max: 8 };
    case FrameType.Open:
    case FrameType.Opened:
    case FrameType.Resume:
    case FrameType.Resumed:
    case FrameType.Refuse:
    case FrameType.Abort:
      return { min: 2, max: MAX_CONTROL_PAYLOAD };
    default:
      return undefined;
  }
}

function readU64(payload: Uint8Array): number {
  const value = new DataView(payload.buffer, payload.byteOffset, 8).getBigUint64(0);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new FrameError('sequence number out of range');
  return Number(value);
}

function decodePayload(type: FrameType, payload: Uint8Array): Frame {
  switch (type) {
    case FrameType.Ack:
      if (payload[8]! > 1) throw new FrameError('ACK fin flag must be 0 or 1');
      return { type, consumed: readU64(payload), fin: payload[8] === 1 };
    case FrameType.Fin:
      return { type, length: readU64(payload) };
    default:
      return parseBody(type, payload);
  }
}
