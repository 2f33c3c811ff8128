/**
 * `@spire-csi/sdk`: rotating SPIFFE mTLS and JWT-SVIDs for Node.js services, from a mounted
 * credential folder. The root has what a service needs; everything else is in the subpaths
 * (`/spiffeid`, `/x509`, `/jwt`, `/authorize`, `/source`, `/tls`, `/undici`, `/http`, `/clock`,
 * `/layout`), and the gRPC-based ones (`/workload-api`, `/grpc`), which need the optional peer
 * dependencies `@grpc/grpc-js` and `@grpc/proto-loader` and are never loaded from here.
 *
 * @packageDocumentation
 */
export { FileSource, JwtSource, type X509Source } from './source/index.js';
export { createHttpsServer, createHttp2SecureServer, peerSpiffeId, SPIFFE_AUTHORIZATION_FAILED } from './tls/index.js';
export { SpiffeDispatcher } from './undici/index.js';
export { jwtSvidMiddleware, jwtPeerId, bearerTokenInterceptor } from './http/index.js';
export {
  authorizeAny,
  authorizeId,
  authorizeOneOf,
  authorizeMemberOf,
  authorizeIf,
  AuthorizationError,
  type Authorizer,
} from './authorize/index.js';
export { SpiffeId, TrustDomain } from './spiffeid/index.js';
export type { Logger } from './logger.js';
