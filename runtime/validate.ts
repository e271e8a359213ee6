/**
 * The argument checks of the engine's public methods. Each throws a
 * TypeError or RangeError with a Node-style `code`, naming the argument
 * (see protocol/arguments.ts); the promise-returning methods turn that into
 * a rejection.
 */
import type { InspectionEvent, Observer } from 'xstate';
import {
  checkBoolean,
  checkFunction,
  checkNumber,
  checkObject,
  checkOptionalFunction,
  checkSignal,
  checkString,
  invalidType,
  invalidValue,
  optionsObject,
  outOfRange,
  POSITIVE,
} from '../protocol/arguments.js';
import { checkLogger, checkLogLevel } from './logger.js';

/** What `createEngine({ inspect })` and `engine.inspect()` take: XState's own inspection observer, or a function. */
export type InspectionObserver = Observer<InspectionEvent> | ((event: InspectionEvent) => void);

/** Throws unless `value` is a function or an observer with a `next` method; returns the function to call. */
export function inspectionCallback(name: string, value: unknown): (event: InspectionEvent) => void {
  if (typeof value === 'function') return value as (event: InspectionEvent) => void;
  if (value === null || typeof value !== 'object') throw invalidType(name, 'a function or an observer { next }', value);
  const observer = value as Observer<InspectionEvent>;
  // An observer without `next` would receive nothing: almost surely a mistake.
  if (typeof observer.next !== 'function') throw invalidType(`${name}.next`, 'a function', observer.next);
  return (event) => observer.next!(event);
}

const ADAPTER_METHODS = ['listen', 'dial', 'close'] as const;
const CLOCK_METHODS = ['now', 'setTimeout', 'clearTimeout'] as const;

/** The collaborators of `createEngine` (the policies are checked by `resolveOptions`). */
export function checkEngineConfig(config: unknown): void {
  checkObject('config', config);
  const adapter = config.adapter;
  if (adapter === null || typeof adapter !== 'object') throw invalidType('config.adapter', 'an Adapter (see protocol/adapter.ts)', adapter);
  const a = adapter as Record<string, unknown>;
  for (const method of ADAPTER_METHODS) checkFunction(`config.adapter.${method}`, a[method]);
  checkString('config.adapter.localPeerId', a.localPeerId);
  const clock = config.clock as Record<string, unknown> | undefined;
  if (clock !== undefined) {
    checkObject('config.clock', clock);
    for (const method of CLOCK_METHODS) checkFunction(`config.clock.${method}`, clock[method]);
  }
  checkOptionalFunction('config.random', config.random);
  if (config.logger !== undefined) checkLogger('config.logger', config.logger);
  checkLogLevel('config.logLevel', config.logLevel);
  if (config.inspect !== undefined) inspectionCallback('config.inspect', config.inspect);
  checkBoolean('config.trace', config.trace);
}

/** A peer id argument: a non-empty string, not the engine's own. */
export function checkPeerId(name: string, value: unknown, self: string): asserts value is string {
  checkString(name, value);
  if (value === self) throw invalidValue(name, "another peer's id (not this engine's own)", value);
}

/** A protocol name: a non-empty string of at most `maxBytes` bytes (UTF-8). */
export function checkProtocol(name: string, value: unknown, maxBytes: number): asserts value is string {
  checkString(name, value);
  const bytes = Buffer.byteLength(value);
  if (bytes > maxBytes) throw outOfRange(`${name} length`, `at most ${maxBytes} bytes (maxProtocolLength)`, bytes);
}

export interface RequestOptions {
  readonly signal: AbortSignal | undefined;
  readonly timeoutMs: number | undefined;
  readonly resumable: boolean;
  readonly waitForReady: boolean;
}

/** `openStream` / `withConnection` options. */
export function checkRequestOptions(name: string, value: unknown): RequestOptions {
  const options = optionsObject(name, value as object | undefined) as Record<string, unknown>;
  checkSignal(`${name}.signal`, options.signal);
  if (options.timeoutMs !== undefined) checkNumber(`${name}.timeoutMs`, options.timeoutMs, POSITIVE);
  checkBoolean(`${name}.resumable`, options.resumable);
  checkBoolean(`${name}.waitForReady`, options.waitForReady);
  return {
    signal: options.signal as AbortSignal | undefined,
    timeoutMs: options.timeoutMs as number | undefined,
    resumable: options.resumable === true,
    waitForReady: options.waitForReady === true,
  };
}

/** `start()` options. */
export function checkStartOptions(value: unknown): { signal: AbortSignal | undefined } {
  const options = optionsObject('options', value as object | undefined) as Record<string, unknown>;
  checkSignal('options.signal', options.signal);
  return { signal: options.signal as AbortSignal | undefined };
}

/** `stop()` options. */
export function checkStopOptions(value: unknown): { force: boolean; signal: AbortSignal | undefined } {
  const options = optionsObject('options', value as object | undefined) as Record<string, unknown>;
  checkBoolean('options.force', options.force);
  checkSignal('options.signal', options.signal);
  return { force: options.force === true, signal: options.signal as AbortSignal | undefined };
}
