import { isIP } from 'node:net';
import {
  checkBoolean,
  checkFunction,
  checkNumber,
  checkObject,
  checkOptionalFunction,
  checkOptionalNumber,
  invalidType,
  invalidValue,
  PORT,
  POSITIVE,
} from '../../protocol/arguments.js';
import type { TransportPolicy } from '../../protocol/adapter.js';
import type { QuicAdapterOptions } from './adapter.js';

/**
 * Checks `createQuicAdapter`'s options: a TypeError or RangeError naming the
 * bad field. The identity's contents (key, certificate, peer id) are checked
 * by `checkIdentity`, which throws an IdentityError.
 */
export function validateQuicAdapterOptions(options: QuicAdapterOptions): void {
  checkObject('options', options);
  checkObject('options.identity', options.identity);
  if (options.host !== undefined) {
    if (typeof options.host !== 'string') throw invalidType('options.host', 'an IP address string', options.host);
    if (isIP(options.host) === 0) throw invalidValue('options.host', 'an IP address (no host names)', options.host);
  }
  checkOptionalNumber('options.port', options.port, PORT);
  if (options.logger !== undefined) {
    checkObject('options.logger', options.logger);
    checkFunction('options.logger.warn', options.logger.warn);
    checkOptionalFunction('options.logger.trace', options.logger.trace);
  }
  checkOptionalFunction('options.allowInbound', options.allowInbound);
  if (options.retryTokenMs !== undefined) checkNumber('options.retryTokenMs', options.retryTokenMs, POSITIVE);
  if (options.quicConfig !== undefined) checkObject('options.quicConfig', options.quicConfig);
  checkBoolean('options.tuning', options.tuning);
}

/** Checks the heartbeat fields `quicTimings` reads from a transport policy. */
export function validateTransportPolicy(policy: TransportPolicy): void {
  checkObject('policy', policy);
  checkNumber('policy.heartbeatIntervalMs', policy.heartbeatIntervalMs, POSITIVE);
  checkNumber('policy.heartbeatTimeoutMs', policy.heartbeatTimeoutMs, POSITIVE);
  checkNumber('policy.heartbeatMisses', policy.heartbeatMisses, { min: 1, integer: true });
}
