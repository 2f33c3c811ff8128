export { DerError, readDer, derChildren, derContent, derBytes, derOid, splitDer, DerTag } from './der.js';
export type { DerNode } from './der.js';
export { PemError, decodePem, encodePem, encodeCertificatesPem } from './pem.js';
export type { PemBlock } from './pem.js';
export { X509SvidError, X509BundleError, X509VerificationError } from './errors.js';
export {
  OID,
  keyUsageOf,
  basicConstraintsOf,
  uriSansOf,
  dnsSansOf,
  extendedKeyUsagesOf,
  extensionsOf,
  unhandledCriticalExtensionsOf,
} from './extensions.js';
export type { KeyUsage, BasicConstraints, CertificateExtension } from './extensions.js';
export { nameConstraintsOf } from './name-constraints.js';
export type { NameConstraints } from './name-constraints.js';
export { validityOf, isWithinValidity } from './validity.js';
export type { Validity } from './validity.js';
export { X509Svid } from './svid.js';
export { X509Bundle } from './bundle.js';
export type { X509BundleSource } from './bundle.js';
export { X509BundleSet } from './bundle-set.js';
export { verifyX509Svid } from './verify.js';
export type { VerifyOptions, VerifiedSvid } from './verify.js';
