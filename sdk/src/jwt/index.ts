/**
 * JWT-SVIDs (JWT-SVID.md): JWT bundles, parsing and validation. Reading tokens from a folder is
 * `JwtSource` in `@spire-csi/sdk/source`; HTTP middleware and the bearer interceptor are in
 * `@spire-csi/sdk/http`.
 *
 * @packageDocumentation
 */
export { JwtBundle, type JwtAuthority, type JwtBundleSource, type Jwks } from './jwt-bundle.js';
export { JwtBundleSet } from './jwt-bundle-set.js';
export {
  JWT_SVID_ALGORITHMS,
  JwtSvidToken,
  parseJwtSvidInsecure,
  type JwtSvidAlgorithm,
  type JwtSvidHeader,
  type UnverifiedJwtSvid,
} from './jwt-svid.js';
export { validateJwtSvid, type ValidateJwtSvidOptions, type ValidatedJwtSvid } from './validate.js';
export { JwtError, type JwtErrorKind } from './errors.js';
