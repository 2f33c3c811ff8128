/**
 * SPIFFE mTLS for `@grpc/grpc-js`: channel and server credentials that present an X509Source's
 * current SVID, follow its rotations (new connections use the new SVID, open calls keep going) and
 * authorize the peer by SPIFFE ID after verifying it against the bundle of its own trust domain,
 * not OpenSSL's union of all bundles. Needs the optional peer dependency `@grpc/grpc-js`;
 * importing `@spire-csi/sdk` or any other subpath never loads it.
 *
 * @packageDocumentation
 */
export { spiffeChannelCredentials } from './channel-credentials.js';
export { spiffeServerCredentials } from './server-credentials.js';
export type { SpiffeGrpcCredentialsOptions } from './options.js';
export { peerSpiffeId, type GrpcAuthContext, type GrpcAuthContextCarrier } from './peer-id.js';
export { SpiffeGrpcError, type SpiffeGrpcErrorKind } from './errors.js';
