/**
 * SPIFFE IDs and trust domains (SPIFFE-ID.md): parsing that enforces every rule, and value types
 * that compare exactly as written.
 *
 * @packageDocumentation
 */
export { SpiffeId } from './spiffe-id.js';
export { TrustDomain } from './trust-domain.js';
export { SpiffeIdError, type SpiffeIdErrorKind } from './errors.js';
