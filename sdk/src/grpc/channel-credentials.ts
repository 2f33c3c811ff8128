/**
 * Client credentials: present the source's current SVID and accept only a server whose chain ends
 * in the bundle of the server's own trust domain and that passes the Authorizer. The check runs in
 * checkServerIdentity, which Node calls on every handshake after OpenSSL's union-of-bundles
 * filter; an Error there fails the connection, so no call is ever sent to a refused server.
 * grpc-js never resumes TLS sessions on its own, so no handshake skips the check.
 */
import { experimental, type ChannelCredentials } from '@grpc/grpc-js';
import { silentLogger } from '../logger.js';
import type { X509Source } from '../source/x509-source.js';
import { serverIdentityCheck } from '../tls/client-options.js';
import { X509SourceCertificateProvider } from './certificate-provider.js';
import { checkAuthorizer, type SpiffeGrpcCredentialsOptions } from './options.js';
import { rememberVerifiedPeer } from './verified-peers.js';

/**
 * grpc-js channel credentials for SPIFFE mTLS: every new connection presents the source's current
 * SVID and verifies the server against the bundle of the server's own trust domain (never the
 * union of all bundles), then `options.authorize`. A refused server fails the connection: calls
 * end with UNAVAILABLE and the verifier's or authorizer's message in their details. Follows the
 * source's rotations; connections already open keep going.
 */
export function spiffeChannelCredentials(source: X509Source, options: SpiffeGrpcCredentialsOptions): ChannelCredentials {
  const authorize = checkAuthorizer(options, 'spiffeChannelCredentials');
  const logger = options.logger ?? silentLogger;
  const provider = new X509SourceCertificateProvider(source);
  return experimental.createCertificateProviderChannelCredentials(provider, provider, {
    rejectUnauthorized: true,
    checkServerIdentity: serverIdentityCheck(source, authorize, logger, 'grpc', (peer, verified) => {
      if (Buffer.isBuffer(peer.raw)) rememberVerifiedPeer(peer.raw, verified.id);
    }),
  });
}
