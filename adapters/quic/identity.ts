/**
 * Peer identities of the QUIC transport.
 *
 * An identity is an Ed25519 key pair and a self-signed X.509 certificate for
 * it. The peer id is the 32-byte raw public key in RFC 4648 base32, lower
 * case, without padding: 52 characters of `a-z2-7` (case-insensitive safe,
 * usable in file names and DNS labels). The certificate only carries the key
 * into TLS; whoever holds the private key of a peer id *is* that peer, so the
 * certificate is checked for its key and its self-signature, never for its
 * issuer.
 *
 * On disk an identity is a directory with two PEM files:
 * `identity.key` (PKCS#8 private key, mode 0600) and `identity.crt`.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, webcrypto, X509Certificate, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { checkObject, checkString, invalidType, outOfRange } from '../../protocol/arguments.js';

// Node's webcrypto is the provider @peculiar/x509 needs; @types/node and the DOM typings x509 uses differ in overloads only.
x509.cryptoProvider.set(webcrypto as ReturnType<typeof x509.cryptoProvider.get>);

export interface QuicIdentity {
  /** base32 (RFC 4648, lower case, unpadded) of the raw 32-byte Ed25519 public key. */
  readonly peerId: string;
  /** The raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array;
  /** The private key, PKCS#8 PEM. */
  readonly privateKeyPem: string;
  /** A self-signed X.509 certificate for the key, PEM. */
  readonly certificatePem: string;
}

export class IdentityError extends Error {
  override name = 'IdentityError';
}

export const KEY_FILE = 'identity.key';
export const CERT_FILE = 'identity.crt';

/** How long a generated certificate is valid. */
const CERT_LIFETIME_MS = 10 * 365 * 24 * 3600 * 1000;
/** Clock skew tolerated between peers when checking a certificate's validity window. */
const CLOCK_SKEW_MS = 60 * 60 * 1000;

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
const PEER_ID_LENGTH = 52;

function base32(bytes: Uint8Array): string {
  let out = '';
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(buffer >>> bits) & 31];
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits > 0) out += ALPHABET[(buffer << (5 - bits)) & 31];
  return out;
}

function unbase32(text: string): Uint8Array | undefined {
  const out: number[] = [];
  let buffer = 0;
  let bits = 0;
  for (const char of text) {
    const value = ALPHABET.indexOf(char);
    if (value < 0) return undefined;
    buffer = (buffer << 5) | value;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((buffer >>> bits) & 0xff);
    }
    buffer &= (1 << bits) - 1;
  }
  // Leftover bits must be zero padding for the encoding to be canonical.
  if (buffer !== 0) return undefined;
  return Uint8Array.from(out);
}

/** The peer id of a raw 32-byte Ed25519 public key. */
export function peerIdFromPublicKey(publicKey: Uint8Array): string {
  if (!(publicKey instanceof Uint8Array)) throw invalidType('publicKey', 'a Uint8Array', publicKey);
  if (publicKey.length !== 32) throw outOfRange('publicKey.length', '32 (an Ed25519 public key)', publicKey.length);
  return base32(publicKey);
}

/** The raw public key a peer id names, or undefined when `peerId` is not a valid peer id. */
export function publicKeyFromPeerId(peerId: string): Uint8Array | undefined {
  if (typeof peerId !== 'string') throw invalidType('peerId', 'a string', peerId);
  if (peerId.length !== PEER_ID_LENGTH) return undefined;
  const key = unbase32(peerId);
  return key?.length === 32 ? key : undefined;
}

export function isPeerId(value: unknown): value is string {
  return typeof value === 'string' && publicKeyFromPeerId(value) !== undefined;
}

function rawPublicKey(key: KeyObject): Uint8Array {
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new IdentityError(`expected an Ed25519 key, got ${key.asymmetricKeyType ?? 'an unknown key type'}`);
  }
  const jwk = key.export({ format: 'jwk' });
  if (typeof jwk.x !== 'string') throw new IdentityError('the Ed25519 key has no public part');
  return new Uint8Array(Buffer.from(jwk.x, 'base64url'));
}

/** Certificates already checked, by their DER bytes: a connection checks one up to three times. */
const checked = new Map<string, { peerId: string; notBefore: number; notAfter: number }>();
const CHECKED_LIMIT = 4096;

/**
 * Checks a peer's certificate (DER) and returns the peer id it proves: an
 * Ed25519 key, a valid self-signature, and a validity window that includes
 * `now` (give or take an hour of clock skew). Throws an IdentityError
 * otherwise. TLS itself proves that the peer holds the private key.
 * Certificates that passed are remembered (parsing and checking one costs
 * about 0.3 ms); the validity window is checked again on every call.
 */
export function peerIdFromCertificate(der: Uint8Array, now: number = Date.now()): string {
  if (!(der instanceof Uint8Array)) throw invalidType('der', 'a Uint8Array (a DER certificate)', der);
  const key = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  let entry = checked.get(key);
  if (entry === undefined) {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(der);
    } catch (error) {
      throw new IdentityError(`unreadable certificate: ${error instanceof Error ? error.message : String(error)}`);
    }
    const publicKey = cert.publicKey;
    const raw = rawPublicKey(publicKey);
    if (!cert.verify(publicKey)) throw new IdentityError('the certificate is not signed by its own key');
    entry = { peerId: peerIdFromPublicKey(raw), notBefore: Date.parse(cert.validFrom), notAfter: Date.parse(cert.validTo) };
    if (checked.size >= CHECKED_LIMIT) checked.delete(checked.keys().next().value as string);
    checked.set(key, entry);
  }
  if (!(entry.notBefore - CLOCK_SKEW_MS <= now && now <= entry.notAfter + CLOCK_SKEW_MS)) {
    throw new IdentityError(
      `the certificate is not valid now (${new Date(entry.notBefore).toISOString()} to ${new Date(entry.notAfter).toISOString()})`,
    );
  }
  return entry.peerId;
}

async function issueCertificate(privateKey: KeyObject, peerId: string): Promise<string> {
  const subtle = webcrypto.subtle;
  const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  const keys: webcrypto.CryptoKeyPair = {
    privateKey: await subtle.importKey('pkcs8', pkcs8, { name: 'Ed25519' }, false, ['sign']),
    publicKey: await subtle.importKey('spki', spki, { name: 'Ed25519' }, true, ['verify']),
  };
  const serial = randomBytes(16);
  serial[0] = serial[0]! & 0x7f; // a positive serial number
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial.toString('hex'),
    name: `CN=${peerId}`,
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter: new Date(now + CERT_LIFETIME_MS),
    keys,
    signingAlgorithm: { name: 'Ed25519' },
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    ],
  });
  return cert.toString('pem');
}

function identityOf(privateKey: KeyObject, certificatePem: string): QuicIdentity {
  const publicKey = rawPublicKey(createPublicKey(privateKey));
  return {
    peerId: peerIdFromPublicKey(publicKey),
    publicKey,
    privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    certificatePem,
  };
}

/** A fresh Ed25519 identity with its self-signed certificate. */
export async function generateIdentity(): Promise<QuicIdentity> {
  const { privateKey } = generateKeyPairSync('ed25519');
  const peerId = peerIdFromPublicKey(rawPublicKey(createPublicKey(privateKey)));
  return identityOf(privateKey, await issueCertificate(privateKey, peerId));
}

/**
 * Checks that `identity` is consistent: an Ed25519 private key, a certificate
 * for that same key with a valid self-signature, and a peer id that names it.
 * Returns the identity with its certificate re-issued if it has expired.
 */
export async function validateIdentity(identity: QuicIdentity): Promise<QuicIdentity> {
  checkObject('identity', identity);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(identity.privateKeyPem);
  } catch (error) {
    throw new IdentityError(`unreadable private key: ${error instanceof Error ? error.message : String(error)}`);
  }
  const peerId = peerIdFromPublicKey(rawPublicKey(createPublicKey(privateKey)));
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(identity.certificatePem);
  } catch (error) {
    throw new IdentityError(`unreadable certificate: ${error instanceof Error ? error.message : String(error)}`);
  }
  const certPeerId = peerIdFromPublicKey(rawPublicKey(certificate.publicKey));
  if (certPeerId !== peerId) throw new IdentityError(`the certificate is for peer ${certPeerId}, the key is peer ${peerId}`);
  if (identity.peerId !== undefined && identity.peerId !== peerId) {
    throw new IdentityError(`the identity names peer ${identity.peerId}, its key is peer ${peerId}`);
  }
  if (!certificate.verify(certificate.publicKey)) throw new IdentityError('the certificate is not signed by its own key');
  let certificatePem = identity.certificatePem;
  try {
    peerIdFromCertificate(certificate.raw);
  } catch {
    // Expired (or not yet valid): the key is what identifies the peer, so a
    // fresh certificate for the same key keeps the same peer id.
    certificatePem = await issueCertificate(privateKey, peerId);
  }
  return identityOf(privateKey, certificatePem);
}

async function writeAtomically(path: string, data: string, mode: number): Promise<void> {
  const temporary = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(temporary, data, { mode, flag: 'wx' });
  // The umask may have narrowed or widened nothing we want: set the mode exactly.
  await chmod(temporary, mode);
  await rename(temporary, path);
}

/**
 * Writes `identity` to `dir` (created with mode 0700 if missing):
 * `identity.key` with mode 0600 and `identity.crt` with mode 0644.
 */
export async function saveIdentity(dir: string, identity: QuicIdentity): Promise<{ keyPath: string; certPath: string }> {
  checkString('dir', dir);
  const checked = await validateIdentity(identity);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const keyPath = join(dir, KEY_FILE);
  const certPath = join(dir, CERT_FILE);
  await writeAtomically(keyPath, checked.privateKeyPem, 0o600);
  await writeAtomically(certPath, checked.certificatePem, 0o644);
  return { keyPath, certPath };
}

/**
 * Reads the identity saved in `dir` and validates it (see `validateIdentity`).
 * Refuses a private key file that group or others may read or write.
 */
export async function loadIdentity(dir: string): Promise<QuicIdentity> {
  checkString('dir', dir);
  const keyPath = join(dir, KEY_FILE);
  const certPath = join(dir, CERT_FILE);
  const keyStat = await stat(keyPath);
  if (process.platform !== 'win32' && (keyStat.mode & 0o077) !== 0) {
    throw new IdentityError(
      `${keyPath} has mode 0${(keyStat.mode & 0o777).toString(8)}; a private key must be mode 0600 (owner only)`,
    );
  }
  const [privateKeyPem, certificatePem] = await Promise.all([readFile(keyPath, 'utf8'), readFile(certPath, 'utf8')]);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(privateKeyPem);
  } catch (error) {
    throw new IdentityError(`${keyPath}: unreadable private key: ${error instanceof Error ? error.message : String(error)}`);
  }
  const peerId = peerIdFromPublicKey(rawPublicKey(createPublicKey(privateKey)));
  return validateIdentity({ peerId, publicKey: new Uint8Array(), privateKeyPem, certificatePem });
}

/**
 * The peer id of `identity`, checked synchronously: its private key is
 * Ed25519, its certificate carries the same key, and its `peerId` names it.
 * Throws an IdentityError otherwise.
 */
export function checkIdentity(identity: QuicIdentity): string {
  if (identity === null || typeof identity !== 'object') throw invalidType('identity', 'an identity { peerId, privateKeyPem, certificatePem }', identity);
  let privateKey: KeyObject;
  let certificate: X509Certificate;
  try {
    privateKey = createPrivateKey(identity.privateKeyPem);
    certificate = new X509Certificate(identity.certificatePem);
  } catch (error) {
    throw new IdentityError(`unreadable identity: ${error instanceof Error ? error.message : String(error)}`);
  }
  const peerId = peerIdFromPublicKey(rawPublicKey(createPublicKey(privateKey)));
  const certPeerId = peerIdFromPublicKey(rawPublicKey(certificate.publicKey));
  if (certPeerId !== peerId) throw new IdentityError(`the certificate is for peer ${certPeerId}, the key is peer ${peerId}`);
  if (identity.peerId !== peerId) throw new IdentityError(`the identity names peer ${String(identity.peerId)}, its key is peer ${peerId}`);
  return peerId;
}
