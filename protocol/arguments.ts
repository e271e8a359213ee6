/**
 * Argument checks for every public function of peerline, in every layer
 * (runtime, adapters, visualizer): a wrong type or value is a programmer
 * error, reported at once as a TypeError or RangeError that names the
 * argument and carries a `code` as Node's own do (`ERR_INVALID_ARG_TYPE`,
 * `ERR_INVALID_ARG_VALUE`, `ERR_OUT_OF_RANGE`), e.g.
 * `TypeError: options.timeoutMs must be a positive finite number, got "5"`.
 *
 * Runtime failures are never reported this way: they stay PeerlineErrors
 * (or TransportErrors) with their own codes.
 */

export type ArgumentErrorCode = 'ERR_INVALID_ARG_TYPE' | 'ERR_INVALID_ARG_VALUE' | 'ERR_OUT_OF_RANGE';

/** A TypeError or RangeError with the Node-style `code` of a bad argument. */
export type ArgumentError = (TypeError | RangeError) & { readonly code: ArgumentErrorCode };

/** `value` as a message shows it: strings quoted, objects by kind, never their contents. */
export function received(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
    case 'number':
      return Object.is(value, -0) ? '-0' : String(value);
    case 'bigint':
      return `${value}n`;
    case 'function':
      return value.name === '' ? 'a function' : `function ${value.name}`;
    case 'symbol':
      return value.toString();
    case 'object':
      if (value === null) return 'null';
      if (Array.isArray(value)) return `an array of length ${value.length}`;
      return `an instance of ${(value as object).constructor?.name ?? 'Object'}`;
    default:
      return String(value);
  }
}

function argumentError<E extends TypeError | RangeError>(error: E, code: ArgumentErrorCode): E & { readonly code: ArgumentErrorCode } {
  Object.defineProperty(error, 'code', { value: code, enumerable: true, writable: false, configurable: true });
  return error as E & { readonly code: ArgumentErrorCode };
}

/** `name` has the wrong type: TypeError ERR_INVALID_ARG_TYPE. */
export function invalidType(name: string, expected: string, value: unknown): ArgumentError {
  return argumentError(new TypeError(`${name} must be ${expected}, got ${received(value)}`), 'ERR_INVALID_ARG_TYPE');
}

/** `name` has the right type but a value that is not allowed: TypeError ERR_INVALID_ARG_VALUE. */
export function invalidValue(name: string, expected: string, value: unknown): ArgumentError {
  return argumentError(new TypeError(`${name} must be ${expected}, got ${received(value)}`), 'ERR_INVALID_ARG_VALUE');
}

/** A number (or a length) of `name` out of its range: RangeError ERR_OUT_OF_RANGE. */
export function outOfRange(name: string, expected: string, value: unknown): ArgumentError {
  return argumentError(new RangeError(`${name} must be ${expected}, got ${received(value)}`), 'ERR_OUT_OF_RANGE');
}

/** True for an error made by this module (a bad argument, not a runtime failure). */
export function isArgumentError(error: unknown): error is ArgumentError {
  if (!(error instanceof TypeError || error instanceof RangeError)) return false;
  const code = (error as { code?: unknown }).code;
  return code === 'ERR_INVALID_ARG_TYPE' || code === 'ERR_INVALID_ARG_VALUE' || code === 'ERR_OUT_OF_RANGE';
}

// ------------------------------------------------------------------ checks

/** What `checkObject` proves: an object, with its own type when it had one. */
export type Checked<T> = unknown extends T ? Record<string, unknown> : T extends object ? T : Record<string, unknown>;

/** A non-null object that is not an array (an options bag, a policy). */
export function checkObject<T>(name: string, value: T): asserts value is Checked<T> & T {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalidType(name, 'an object', value);
}

/** An options bag that may be left out. Returns it, or an empty one. */
export function optionsObject<T extends object>(name: string, value: T | undefined): Partial<T> {
  if (value === undefined) return {};
  checkObject(name, value);
  return value;
}

export function checkFunction(name: string, value: unknown): asserts value is (...args: never[]) => unknown {
  if (typeof value !== 'function') throw invalidType(name, 'a function', value);
}

export function checkOptionalFunction(name: string, value: unknown): void {
  if (value !== undefined) checkFunction(name, value);
}

export function checkBoolean(name: string, value: unknown): asserts value is boolean | undefined {
  if (value !== undefined && typeof value !== 'boolean') throw invalidType(name, 'a boolean', value);
}

export function checkString(name: string, value: unknown): asserts value is string {
  if (typeof value !== 'string') throw invalidType(name, 'a non-empty string', value);
  if (value.length === 0) throw invalidValue(name, 'a non-empty string', value);
}

export function checkOptionalString(name: string, value: unknown): void {
  if (value !== undefined && typeof value !== 'string') throw invalidType(name, 'a string', value);
}

/** One of `allowed` (strings). */
export function checkOneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): asserts value is T {
  const expected = `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`;
  if (typeof value !== 'string') throw invalidType(name, expected, value);
  if (!allowed.includes(value as T)) throw invalidValue(name, expected, value);
}

export function checkSignal(name: string, value: unknown): asserts value is AbortSignal | undefined {
  if (value !== undefined && !(value instanceof AbortSignal)) throw invalidType(name, 'an AbortSignal', value);
}

export interface NumberRule {
  /** Smallest allowed value. @default -Infinity */
  readonly min?: number;
  /** `min` itself is not allowed. */
  readonly above?: boolean;
  readonly max?: number;
  readonly integer?: boolean;
  /** Infinity passes (the other bounds still apply). */
  readonly infinity?: boolean;
}

function describeRule(rule: NumberRule): string {
  const kind = rule.integer ? 'integer' : 'number';
  const finite = rule.infinity || rule.integer ? '' : 'finite ';
  const inf = rule.infinity ? ' or Infinity' : '';
  if (rule.min === 0 && rule.above && rule.max === undefined) return `a positive ${finite}${kind}${inf}`;
  const parts: string[] = [];
  if (rule.min !== undefined) parts.push(`${rule.above ? '>' : '>='} ${rule.min}`);
  if (rule.max !== undefined) parts.push(`<= ${rule.max}`);
  const noun = `${finite}${kind}`;
  return `${/^[aeiou]/.test(noun) ? 'an' : 'a'} ${noun}${parts.length === 0 ? '' : ` ${parts.join(' and ')}`}${inf}`;
}

/** A number within `rule`: TypeError for another type, RangeError for NaN or a value outside. */
export function checkNumber(name: string, value: unknown, rule: NumberRule = {}): asserts value is number {
  if (typeof value !== 'number') throw invalidType(name, describeRule(rule), value);
  const infinite = value === Infinity && rule.infinity === true;
  const ok =
    !Number.isNaN(value) &&
    (Number.isFinite(value) || infinite) &&
    (!rule.integer || Number.isInteger(value) || infinite) &&
    (rule.min === undefined || (rule.above ? value > rule.min : value >= rule.min)) &&
    (rule.max === undefined || value <= rule.max);
  if (!ok) throw outOfRange(name, describeRule(rule), value);
}

export function checkOptionalNumber(name: string, value: unknown, rule: NumberRule = {}): void {
  if (value !== undefined) checkNumber(name, value, rule);
}

/** Rules used throughout. */
export const POSITIVE: NumberRule = Object.freeze({ min: 0, above: true });
export const NON_NEGATIVE: NumberRule = Object.freeze({ min: 0 });
export const COUNT: NumberRule = Object.freeze({ min: 1, integer: true });
export const COUNT_OR_INFINITY: NumberRule = Object.freeze({ ...COUNT, infinity: true });
export const PORT: NumberRule = Object.freeze({ min: 0, max: 65_535, integer: true });
