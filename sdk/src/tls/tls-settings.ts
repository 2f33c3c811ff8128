/**
 * The TLS options a SPIFFE-managed endpoint owns versus those an application may still tune.
 * Identity and trust always come from the X509Source; anything that would bypass it (own CAs,
 * another certificate, disabling verification, resuming an unverified session) is refused.
 */
import type { SecureContextOptions, SecureVersion } from 'node:tls';
import { TlsError } from './errors.js';

/**
 * The Node TLS options a SPIFFE-managed endpoint sets itself (identity, trust, verification,
 * session reuse) and refuses from callers.
 */
export type ManagedTlsOption =
  | 'cert'
  | 'key'
  | 'pfx'
  | 'passphrase'
  | 'ca'
  | 'crl'
  | 'requestCert'
  | 'rejectUnauthorized'
  | 'checkServerIdentity'
  | 'SNICallback'
  | 'secureContext'
  | 'secureProtocol'
  | 'session'
  | 'ticketKeys'
  | 'clientCertEngine'
  | 'privateKeyEngine'
  | 'privateKeyIdentifier'
  | 'maxCachedSessions';

// A record, not a list, so the compiler proves every managed option is checked.
const MANAGED: Readonly<Record<ManagedTlsOption, true>> = {
  cert: true,
  key: true,
  pfx: true,
  passphrase: true,
  ca: true,
  crl: true,
  requestCert: true,
  rejectUnauthorized: true,
  checkServerIdentity: true,
  SNICallback: true,
  secureContext: true,
  secureProtocol: true,
  session: true,
  ticketKeys: true,
  clientCertEngine: true,
  privateKeyEngine: true,
  privateKeyIdentifier: true,
  maxCachedSessions: true,
};

export const MANAGED_TLS_OPTIONS = Object.keys(MANAGED) as readonly ManagedTlsOption[];

/** Tunables of the TLS context (ciphers, sigalgs, curves, maxVersion, ...); never identity or trust. */
export type TlsSettings = Omit<SecureContextOptions, ManagedTlsOption>;

/** Below TLS 1.2 there is no SPIFFE-worthy security; SPIRE itself requires 1.2+. */
export const DEFAULT_MIN_VERSION: SecureVersion = 'TLSv1.2';
const ALLOWED_MIN_VERSIONS: readonly string[] = ['TLSv1.2', 'TLSv1.3'];

/** Throws when a caller (typically plain JavaScript, past the types) passes a managed option. */
export function rejectManagedOptions(options: object, where: string): void {
  for (const name of MANAGED_TLS_OPTIONS) {
    if ((options as Record<string, unknown>)[name] !== undefined) {
      throw new TlsError('config', `${where}: option "${name}" is managed from the X509Source and cannot be set`);
    }
  }
}

export function minVersionOf(requested: unknown): SecureVersion {
  if (requested === undefined) return DEFAULT_MIN_VERSION;
  if (typeof requested !== 'string' || !ALLOWED_MIN_VERSIONS.includes(requested)) {
    throw new TlsError('config', `minVersion must be TLSv1.2 or TLSv1.3, got ${String(requested)}`);
  }
  return requested as SecureVersion;
}
