/**
 * Turns anything a machine holds (context, events, snapshots, definitions)
 * into plain JSON data that is safe to keep, send and stringify: no
 * functions, no live actors, no cycles, bounded depth. It mirrors what
 * `@statelyai/inspect` sends (`JSON.parse(safeStringify(x))`), without its
 * dependencies.
 */
import { checkObject, checkOneOf, checkOptionalNumber, COUNT } from '../protocol/arguments.js';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface SerializeOptions {
  /** Objects nested deeper than this become `'[Object]'` / `'[Array]'`. @default 10 */
  readonly depth?: number;
  /** `'drop'` (data) or `'name'`: `{ type: fn.name }`, as @statelyai/inspect writes guards and actions in definitions. @default 'drop' */
  readonly functions?: 'drop' | 'name';
  /** Longest string kept whole; longer ones are cut with a note. @default 10000 */
  readonly maxString?: number;
}

/** An actor reference, as XState writes it in JSON (`ActorRef.toJSON()`). */
export interface ActorRefJson {
  readonly xstate$$type: 1;
  readonly id: string;
}

function isActorRef(value: object): value is { id: string; sessionId: string } {
  const v = value as { sessionId?: unknown; send?: unknown; getSnapshot?: unknown };
  return typeof v.sessionId === 'string' && typeof v.send === 'function' && typeof v.getSnapshot === 'function';
}

function isStateNode(value: object): value is { id: string } {
  const v = value as { id?: unknown; key?: unknown; path?: unknown; machine?: unknown };
  return typeof v.id === 'string' && typeof v.key === 'string' && Array.isArray(v.path) && typeof v.machine === 'object';
}

export function toJson(value: unknown, options: SerializeOptions = {}): Json {
  checkObject('options', options);
  checkOptionalNumber('options.depth', options.depth, { min: 0, integer: true });
  if (options.functions !== undefined) checkOneOf('options.functions', options.functions, ['drop', 'name']);
  checkOptionalNumber('options.maxString', options.maxString, COUNT);
  const depthLimit = options.depth ?? 10;
  const names = options.functions === 'name';
  const maxString = options.maxString ?? 10_000;
  // Objects being written, outermost first (for cycles); never deeper than the depth limit.
  const stack: object[] = [];

  const visit = (v: unknown, depth: number): Json | undefined => {
    if (v === null) return null;
    switch (typeof v) {
      case 'string':
        return v.length > maxString ? `${v.slice(0, maxString)}… (${v.length} chars)` : v;
      case 'number':
        // As JSON.stringify writes them.
        return Number.isFinite(v) ? v : null;
      case 'boolean':
        return v;
      case 'bigint':
        return v.toString();
      case 'function':
        if (!names) return undefined;
        return depth >= depthLimit ? '[Object]' : { type: v.name };
      case 'object':
        break;
      default:
        return undefined;
    }
    const obj = v as object;
    if (stack.includes(obj)) return '[Circular]';
    if (Array.isArray(obj)) {
      if (depth >= depthLimit) return '[Array]';
      stack.push(obj);
      const out = obj.map((item: unknown) => visit(item, depth + 1) ?? null);
      stack.pop();
      return out;
    }
    const proto: unknown = Object.getPrototypeOf(obj);
    if ((proto === Object.prototype || proto === null) && typeof (obj as { toJSON?: unknown }).toJSON !== 'function') {
      // The common case, plain data: no getters or classes to worry about.
      if (depth >= depthLimit) return '[Object]';
      stack.push(obj);
      const out: { [key: string]: Json } = {};
      for (const key of Object.keys(obj)) {
        const j = visit((obj as Record<string, unknown>)[key], depth + 1);
        if (j !== undefined) out[key] = j;
      }
      stack.pop();
      return out;
    }
    stack.push(obj);
    try {
      return special(obj, depth);
    } catch {
      return '[Unserializable]';
    } finally {
      stack.pop();
    }
  };

  /** Class instances and objects with `toJSON`. */
  const special = (obj: object, depth: number): Json | undefined => {
    if (isActorRef(obj)) return { xstate$$type: 1, id: obj.id };
    if (isStateNode(obj)) return { id: obj.id };
    if (obj instanceof Date) return Number.isNaN(obj.getTime()) ? null : obj.toISOString();
    if (ArrayBuffer.isView(obj) || obj instanceof ArrayBuffer) return `[${obj.constructor.name} ${obj.byteLength} bytes]`;
    if (obj instanceof Promise || obj instanceof WeakMap || obj instanceof WeakSet) return undefined;
    const toJSON = (obj as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') {
      const replaced: unknown = toJSON.call(obj);
      // The replacement is written in place of the object, at the same depth.
      if (replaced !== obj) {
        stack.pop();
        try {
          return visit(replaced, depth);
        } finally {
          stack.push(obj);
        }
      }
    }
    if (depth >= depthLimit) return '[Object]';
    if (obj instanceof Map) return mapLike([...obj.entries()].map(([k, item]) => [String(k), item]), depth);
    if (obj instanceof Set) return [...obj].map((item) => visit(item, depth + 1) ?? null);
    const out: { [key: string]: Json } = {};
    if (obj instanceof Error) {
      out.name = obj.name;
      out.message = obj.message;
    }
    for (const key of Object.keys(obj)) {
      let item: unknown;
      try {
        item = (obj as Record<string, unknown>)[key];
      } catch {
        continue;
      }
      const j = visit(item, depth + 1);
      if (j !== undefined) out[key] = j;
    }
    return out;
  };

  const mapLike = (entries: [string, unknown][], depth: number): Json => {
    const out: { [key: string]: Json } = {};
    for (const [k, item] of entries) {
      const j = visit(item, depth + 1);
      if (j !== undefined) out[k] = j;
    }
    return out;
  };

  return visit(value, 0) ?? null;
}
