/**
 * X.509: the SVID a workload holds, trust bundles, and peer verification per X509-SVID.md against
 * the bundle of the peer's own trust domain.
 *
 * @packageDocumentation
 */
export { X509Svid } from './svid.js';
export { X509Bundle, type X509BundleSource } from './bundle.js';
export { X509BundleSet } from './bundle-set.js';
export { verifyX509Svid, type VerifyOptions, type VerifiedSvid } from './verify.js';
export { X509Error, type X509ErrorKind } from './errors.js';
