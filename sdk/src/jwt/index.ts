export {
  JwtSvidError,
  JwtBundleError,
  JwtSourceError,
  BearerTokenError,
  JwtAuthenticationError,
} from './errors.js';
export type { JwtSvidErrorKind, JwtSourceErrorKind, JwtAuthenticationStatus } from './errors.js';
export { JwtBundle, JWT_SVID_KEY_USE } from './jwt-bundle.js';
export type { JwtAuthority, JwtBundleSource, Jwks } from './jwt-bundle.js';
export { JwtBundleSet } from './jwt-bundle-set.js';
export { JWT_SVID_ALGORITHMS, MAX_JWT_SVID_LENGTH, JwtSvidToken, parseJwtSvidInsecure } from './jwt-svid.js';
export type { JwtSvidAlgorithm, JwtSvidHeader, UnverifiedJwtSvid } from './jwt-svid.js';
export { validateJwtSvid, DEFAULT_JWT_CLOCK_SKEW_MS, MAX_JWT_CLOCK_SKEW_MS } from './validate.js';
export type { ValidateJwtSvidOptions, ValidatedJwtSvid } from './validate.js';
// Layout names: defined once in ../layout, re-exported here for existing imports.
export { DEFAULT_JWT_SVID_FILE, JWT_BUNDLE_SUFFIX } from '../layout/layout.js';
export { parseJwtFiles, selectJwtFiles, trustDomainOfJwtBundleFile } from './jwt-files.js';
export type { JwtMaterial, ParsedJwtFiles } from './jwt-files.js';
export { JwtSource, DEFAULT_JWT_READY_TIMEOUT_MS } from './jwt-source.js';
export type { JwtSourceOptions, JwtSourceEvents } from './jwt-source.js';
export { bearerTokenInterceptor } from './bearer-interceptor.js';
export type { BearerTokenProvider, BearerTokenInterceptorOptions } from './bearer-interceptor.js';
export { authenticateJwtSvid, authenticateJwtSvidDetailed, bearerTokenFrom, jwtPeerId } from './authenticate.js';
export type { JwtAuthenticationOptions, RequestWithHeaders } from './authenticate.js';
export { jwtSvidMiddleware } from './middleware.js';
export type { JwtSvidMiddleware, JwtSvidMiddlewareOptions, JwtSvidNextFunction } from './middleware.js';
