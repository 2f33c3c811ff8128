import type { SpiffeId } from '../spiffeid/spiffe-id.js';
import { verifiedPeerId } from './verified-peers.js';

/** The part of grpc-js's AuthContext this module reads (grpc-js does not export the type itself). */
export interface GrpcAuthContext {
  /** `ssl` on a TLS connection. */
  readonly transportSecurityType?: string;
  /** The peer's leaf certificate, when it presented one that OpenSSL accepted. */
  readonly sslPeerCertificate?: { readonly raw?: Buffer };
}

/** Anything with grpc-js's getAuthContext(): a server call, or a client call once it has a connection. */
export interface GrpcAuthContextCarrier {
  /** The call's auth context; null before a client call has a connection. */
  getAuthContext(): GrpcAuthContext | null;
}

/**
 * The SPIFFE ID of the mTLS peer of a call (from `call.getAuthContext()`), or undefined. Answers
 * only for a peer that spiffeServerCredentials or spiffeChannelCredentials verified in this
 * process (against its own trust domain's bundle, and its Authorizer); a certificate that merely
 * names a SPIFFE ID gets undefined.
 */
export function peerSpiffeId(call: GrpcAuthContextCarrier): SpiffeId | undefined {
  let raw: unknown;
  try {
    raw = call.getAuthContext()?.sslPeerCertificate?.raw;
  } catch {
    // A call whose connection is gone has no peer.
    return undefined;
  }
  return Buffer.isBuffer(raw) ? verifiedPeerId(raw) : undefined;
}
