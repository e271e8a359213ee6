/**
 * QUIC addresses: `quic://127.0.0.1:4433`, `quic://[::1]:4433`. Hosts are IP
 * literals (no name resolution: an address book should not depend on DNS).
 */
import { isIP } from 'node:net';
import { checkNumber, invalidType, invalidValue } from '../../protocol/arguments.js';

export const QUIC_SCHEME = 'quic://';

export interface QuicTarget {
  readonly host: string;
  readonly port: number;
}

/** The address of a QUIC adapter bound to `port` on `host` (default the IPv4 loopback). */
export function quicAddress(port: number, host = '127.0.0.1'): string {
  checkNumber('port', port, { min: 1, max: 65_535, integer: true });
  if (typeof host !== 'string') throw invalidType('host', 'an IP address string', host);
  if (isIP(host) === 0) throw invalidValue('host', 'an IP address (no host names)', host);
  return isIP(host) === 6 ? `${QUIC_SCHEME}[${host}]:${port}` : `${QUIC_SCHEME}${host}:${port}`;
}

/** Parses `quic://HOST:PORT`; undefined when `address` is not one. */
export function parseQuicAddress(address: string): QuicTarget | undefined {
  if (typeof address !== 'string') throw invalidType('address', 'a string', address);
  if (!address.startsWith(QUIC_SCHEME)) return undefined;
  const rest = address.slice(QUIC_SCHEME.length);
  let host: string;
  let portText: string;
  if (rest.startsWith('[')) {
    const end = rest.indexOf(']');
    if (end < 0 || rest[end + 1] !== ':') return undefined;
    host = rest.slice(1, end);
    portText = rest.slice(end + 2);
    if (isIP(host) !== 6) return undefined;
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon < 0) return undefined;
    host = rest.slice(0, colon);
    portText = rest.slice(colon + 1);
    if (isIP(host) !== 4) return undefined;
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port < 1 || port > 65535) return undefined;
  return { host, port };
}
