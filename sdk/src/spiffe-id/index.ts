export { SpiffeIdError } from './errors.js';
export { TrustDomain, MAX_TRUST_DOMAIN_LENGTH, SPIFFE_SCHEME_PREFIX } from './trust-domain.js';
export { SpiffeId, MAX_SPIFFE_ID_LENGTH } from './spiffe-id.js';
