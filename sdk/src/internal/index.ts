/**
 * UNSTABLE. `@spire-csi/sdk/internal` exists for the spire-csi driver and its dev tools, which
 * write the files this SDK reads and share its helpers for that. Nothing here is part of the
 * public API: names and behaviour change without notice, in any release. Applications import the
 * root or the documented subpaths.
 *
 * @packageDocumentation
 * @internal
 */
export { splitDer } from '../x509/der.js';
export { encodePem, encodeCertificatesPem } from '../x509/pem.js';
export { isWithinValidity } from '../x509/validity.js';
export { ownBytes, ownConcat } from './own-bytes.js';
export { silentLogger } from '../logger.js';
export type { Logger } from '../logger.js';
