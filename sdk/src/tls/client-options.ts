/**
 * Client-side SPIFFE TLS for tls.connect / https.request. Node's hostname check is replaced by
 * SPIFFE verification in checkServerIdentity: SVIDs carry no DNS names to check, and the peer is
 * identified by its SPIFFE ID alone.
 */
import type { ConnectionOptions, PeerCertificate, SecureVersion } from 'node:tls';
import type { Authorizer } from '../authorize/authorizer.js';
import { silentLogger, type Logger } from '../logger.js';
import type { X509Source } from '../source/x509-source.js';
import { tlsCredentials } from './credentials.js';
import { TlsError, asError } from './errors.js';
import { minVersionOf, rejectManagedOptions, type TlsSettings } from './tls-settings.js';
import type { VerifiedSvid } from '../x509/verify.js';
import { verifyPeerCertificate } from './verify-peer.js';

/** Options of {@link createClientTlsOptions}. */
export interface SpiffeClientOptions {
  /** Where refused servers are logged (pino-compatible). Default: nowhere. */
  logger?: Logger;
  /** TLS tunables (ciphers, sigalgs, maxVersion, ...). */
  tlsSettings?: TlsSettings;
}

/** Options for `tls.connect`/`https.request` that present the SVID and verify the server by SPIFFE ID. */
export interface SpiffeClientTlsOptions extends ConnectionOptions {
  /** The SVID's chain, PEM. */
  cert: string;
  /** The SVID's private key, PEM. */
  key: string;
  /** Every trust bundle's roots, PEM; only OpenSSL's first filter. */
  ca: string[];
  /** TLS 1.2 or later. */
  minVersion: SecureVersion;
  /** Always true. */
  rejectUnauthorized: true;
  /** Returns an Error (failing the handshake) unless the server is a verified, authorized SVID. */
  checkServerIdentity: (hostname: string, cert: PeerCertificate) => Error | undefined;
}

/**
 * Options presenting the source's SVID as of this call; the server is checked against the
 * source's bundles as of the handshake. Call it per connection (or use SpiffeHttpsAgent /
 * SpiffeDispatcher) to follow rotations. Never pass a `session` with these options: Node skips
 * checkServerIdentity on resumed sessions.
 */
export function createClientTlsOptions(
  source: X509Source,
  authorizer: Authorizer,
  options: SpiffeClientOptions = {},
): SpiffeClientTlsOptions {
  if (typeof authorizer !== 'function') {
    throw new TlsError('config', 'an Authorizer is required (use authorizeAny() to accept every verified peer)');
  }
  const settings = options.tlsSettings ?? {};
  rejectManagedOptions(settings, 'createClientTlsOptions');
  const logger = options.logger ?? silentLogger;
  const { svid, bundles } = source.current();
  const { cert, key, ca } = tlsCredentials(svid, bundles);
  return {
    ...settings,
    minVersion: minVersionOf(settings.minVersion),
    cert,
    key,
    ca,
    rejectUnauthorized: true,
    checkServerIdentity: serverIdentityCheck(source, authorizer, logger, 'tls'),
  };
}

/**
 * The `checkServerIdentity` of a SPIFFE client (node:tls here, grpc-js in `/grpc`): the server's
 * chain against the bundle of its own trust domain as of this handshake (current(), as in the
 * server gate, which is also what the verification cache is scoped to), then the authorizer.
 * A refusal is logged and returned, which fails the handshake.
 */
export function serverIdentityCheck(
  source: X509Source,
  authorizer: Authorizer,
  logger: Logger,
  prefix: string,
  onVerified?: (peer: PeerCertificate, verified: VerifiedSvid) => void,
): (hostname: string, peer: PeerCertificate) => Error | undefined {
  return (_hostname, peer) => {
    try {
      const verified = verifyPeerCertificate(peer, source.current().bundles, authorizer);
      onVerified?.(peer, verified);
      return undefined;
    } catch (err) {
      const error = asError(err);
      logger.warn({ reason: error.message }, `${prefix}: server rejected`);
      return error;
    }
  };
}
