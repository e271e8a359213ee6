import { Console } from 'node:console';
import { checkObject, checkOneOf, checkOptionalFunction } from '../protocol/arguments.js';

/**
 * What the engine logs through. Every method is optional: a level the logger
 * lacks is not written, except `error`, which falls back to `warn`. `console`,
 * pino and winston loggers fit as they are.
 *
 * - `trace`: one line per transition of every machine (and of every
 *   resumable stream's session), as grpc-js's `GRPC_TRACE` does;
 * - `debug`: dials that failed, connections refused by admission control;
 * - `info`: the engine listens, the engine stopped;
 * - `warn`: a user's callback failed (a stream handler, `allowInbound`, a
 *   reply or lease callback), the adapter failed to close;
 * - `error`: an internal error was caught (each is a bug report, not a crash).
 */
export interface Logger {
  trace?(message: string, error?: unknown): void;
  debug?(message: string, error?: unknown): void;
  info?(message: string, error?: unknown): void;
  warn?(message: string, error?: unknown): void;
  error?(message: string, error?: unknown): void;
}

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'silent'] as const;
/** Lines below the level are not written (nor built). `silent` writes nothing. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The logger the engine calls: every method is there, and those below the level do nothing. */
export interface LevelledLogger {
  readonly level: LogLevel;
  /** True when trace lines are written: check it before building one. */
  readonly tracing: boolean;
  /** True when lines of `level` are written. */
  enabled(level: Exclude<LogLevel, 'silent'>): boolean;
  trace(message: string, error?: unknown): void;
  debug(message: string, error?: unknown): void;
  info(message: string, error?: unknown): void;
  warn(message: string, error?: unknown): void;
  error(message: string, error?: unknown): void;
}

const stderrLine =
  (stack: boolean) =>
  (message: string, error?: unknown): void => {
    const detail = error === undefined ? '' : `: ${error instanceof Error ? ((stack ? error.stack : undefined) ?? error.message) : String(error)}`;
    process.stderr.write(`${message}${detail}\n`);
  };

/** The default: every level to stderr, one line each; an internal error with its stack. */
export const stderrLogger: Required<Logger> = {
  trace: stderrLine(false),
  debug: stderrLine(false),
  info: stderrLine(false),
  warn: stderrLine(false),
  error: stderrLine(true),
};

const noop = (): void => {};

/**
 * True for the values of an environment flag that mean on: `1`, `true`,
 * `yes`, `on` (any case). `0`, `false`, `no`, `off` and the empty string
 * mean off, as does anything else.
 */
export function envFlag(value: string | undefined): boolean {
  if (value === undefined) return false;
  return ['1', 'true', 'yes', 'on'].includes(value.trim().toLowerCase());
}

/** Throws a TypeError naming the bad field of a logger given as `name`. */
export function checkLogger(name: string, logger: unknown): asserts logger is Logger {
  checkObject(name, logger);
  for (const level of ['trace', 'debug', 'info', 'warn', 'error'] as const) checkOptionalFunction(`${name}.${level}`, logger[level]);
}

export function checkLogLevel(name: string, level: unknown): asserts level is LogLevel | undefined {
  if (level !== undefined) checkOneOf(name, level, LOG_LEVELS);
}

/**
 * `logger` with the levels below `level` switched off. A `console` (the
 * global one or any `new Console(...)`) writes trace lines with
 * `console.debug`: `console.trace` would print a stack for every line.
 */
export function levelled(logger: Logger, level: LogLevel): LevelledLogger {
  const rank = LOG_LEVELS.indexOf(level);
  const isConsole = logger instanceof Console;
  const pick = (name: Exclude<LogLevel, 'silent'>, fallback?: 'warn'): ((message: string, error?: unknown) => void) => {
    if (LOG_LEVELS.indexOf(name) < rank) return noop;
    const method = isConsole && name === 'trace' ? logger.debug : (logger[name] ?? (fallback === undefined ? undefined : logger[fallback]));
    if (method === undefined) return noop;
    // A console prints `undefined` for an error that is not there: leave it out.
    return (message, error) => (error === undefined ? method.call(logger, message) : method.call(logger, message, error));
  };
  const trace = pick('trace');
  return {
    level,
    tracing: trace !== noop,
    enabled: (name) => LOG_LEVELS.indexOf(name) >= rank,
    trace,
    debug: pick('debug'),
    info: pick('info'),
    warn: pick('warn'),
    error: pick('error', 'warn'),
  };
}
