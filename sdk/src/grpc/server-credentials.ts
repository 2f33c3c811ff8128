/**
 * Server credentials: present the source's current SVID, require a client certificate, and admit
 * a call only from a client whose SVID verifies against the bundle of its own trust domain and
 * passes the Authorizer.
 *
 * Where the check runs, and why: grpc-js gives server credentials no hook into the TLS handshake or
 * the accepted socket (ServerCredentials only supply context options and interceptors; the http2
 * server and its sockets stay inside grpc-js), and node:tls has no per-connection verify callback
 * (SNICallback runs only when a client sends SNI, before its certificate; ALPNCallback cannot be
 * combined with the `h2` protocol list). So there are two gates:
 *
 * 1. At the handshake, OpenSSL refuses a client without a certificate or whose chain ends in none
 *    of the bundles (the union): that client never gets a connection.
 * 2. Per call, before the handler runs, an interceptor verifies the client's leaf against its own
 *    trust domain's bundle and runs the Authorizer. A refused call ends with UNAUTHENTICATED (not a
 *    valid SVID of its trust domain, e.g. another trust domain's CA minting an ID of ours) or
 *    PERMISSION_DENIED (verified, but the Authorizer said no); the details start with `spiffe: `.
 *
 * grpc-js shows a call only the client's leaf certificate, not the intermediates it sent. The
 * per-call check therefore offers the intermediates of the server's own SVID as path candidates
 * (public certificates; every signature is still checked and the path must still end in the
 * client's own trust domain's bundle), which covers a trust domain whose SVIDs share one signing
 * CA; a client whose leaf is signed by an intermediate the server does not hold is refused.
 */
import type { X509Certificate } from 'node:crypto';
import {
  experimental,
  Metadata,
  ServerInterceptingCall,
  status,
  type ServerCredentials,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
} from '@grpc/grpc-js';
import type { Authorizer } from '../authorize/authorizer.js';
import { messageOf } from '../internal/error-text.js';
import { silentLogger, type Logger } from '../logger.js';
import type { X509Source } from '../source/x509-source.js';
import { verifyPeer } from '../tls/verify-peer.js';
import { X509Error } from '../x509/errors.js';
import { X509SourceCertificateProvider } from './certificate-provider.js';
import { checkAuthorizer, type SpiffeGrpcCredentialsOptions } from './options.js';
import { rememberVerifiedPeer } from './verified-peers.js';

/** What a refused call is answered with. */
interface Refusal {
  readonly code: status;
  readonly details: string;
}

/** The per-call gate: undefined when the caller may proceed. */
function checkCaller(call: ServerInterceptingCallInterface, source: X509Source, authorize: Authorizer): Refusal | undefined {
  const leaf: unknown = call.getAuthContext()?.sslPeerCertificate?.raw;
  if (!Buffer.isBuffer(leaf)) {
    return { code: status.UNAUTHENTICATED, details: 'spiffe: the client presented no verified X509-SVID' };
  }
  let own: { intermediates: readonly X509Certificate[]; bundles: ReturnType<X509Source['current']>['bundles'] };
  try {
    const material = source.current();
    own = { intermediates: material.svid.certificates.slice(1), bundles: material.bundles };
  } catch (err) {
    return { code: status.UNAVAILABLE, details: `spiffe: the server has no X509 material to verify clients with: ${messageOf(err)}` };
  }
  try {
    const verified = verifyPeer([leaf, ...own.intermediates], own.bundles, authorize);
    rememberVerifiedPeer(leaf, verified.id);
    return undefined;
  } catch (err) {
    // The verifier throws X509Errors; anything else came from the Authorizer.
    return err instanceof X509Error
      ? { code: status.UNAUTHENTICATED, details: `spiffe: client refused: ${messageOf(err)}` }
      : { code: status.PERMISSION_DENIED, details: `spiffe: client not authorized: ${messageOf(err)}` };
  }
}

function spiffeCallGate(source: X509Source, authorize: Authorizer, logger: Logger): ServerInterceptor {
  return (methodDescriptor, call) =>
    new ServerInterceptingCall(call, {
      start(next) {
        next({
          // Metadata comes first on every call, and grpc-js holds the request messages until it is
          // passed on: a refused call never reaches the handler.
          onReceiveMetadata(metadata, pass) {
            const refusal = checkCaller(call, source, authorize);
            if (refusal === undefined) {
              pass(metadata);
              return;
            }
            logger.warn({ method: methodDescriptor.path, code: status[refusal.code], reason: refusal.details }, 'grpc: client rejected');
            call.sendStatus({ code: refusal.code, details: refusal.details, metadata: new Metadata() });
          },
        });
      },
    });
}

/**
 * grpc-js server credentials for SPIFFE mTLS: the server presents the source's current SVID (a
 * rotation applies to new connections; open ones keep going), requires client certificates and
 * admits a call only from a client verified against the bundle of its own trust domain (never the
 * union of all bundles) that passes `options.authorize`. A client whose chain ends in none of the
 * bundles fails the handshake; any other refused client gets UNAUTHENTICATED or PERMISSION_DENIED
 * (details starting with `spiffe: `) before its call reaches a handler. See the module comment
 * for why the last check is per call.
 */
export function spiffeServerCredentials(source: X509Source, options: SpiffeGrpcCredentialsOptions): ServerCredentials {
  const authorize = checkAuthorizer(options, 'spiffeServerCredentials');
  const logger = options.logger ?? silentLogger;
  const provider = new X509SourceCertificateProvider(source);
  // One provider serves both roles, which also makes grpc-js's argument order (the exported
  // function's parameter names and its constructor's disagree) irrelevant.
  const tls = experimental.createCertificateProviderServerCredentials(provider, provider, true);
  return experimental.createServerCredentialsWithInterceptors(tls, [spiffeCallGate(source, authorize, logger)]);
}
