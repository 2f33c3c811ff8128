/**
 * The names of a published credential folder: what the driver writes and the SDK reads, defined
 * once. The file layout follows the SPIFFE Filesystem Delivery draft and Kubernetes' projected
 * volumes (`..data` swapped atomically, visible names linking into it).
 */

/** The link readers resolve once per read; swapped by one rename on every update. */
export const DATA_LINK = '..data';
/** Where the next `..data` link is made before it is renamed over the current one. */
export const DATA_TMP_LINK = '..data_tmp';
/** One payload directory per generation: `..YYYY_MM_DD_HH_MM_SS.<hex>` (UTC, then nanoseconds and randomness). */
export const PAYLOAD_DIR_PATTERN = /^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.[0-9a-f]+$/;

/** The credential bundle the driver writes: PKCS#8 `PRIVATE KEY`, then the chain leaf first. */
export const CREDENTIAL_BUNDLE_FILE = 'credential-bundle.pem';
/** Every spelling of the credential bundle readers accept, preferred first. */
export const CREDENTIAL_BUNDLE_FILES = [CREDENTIAL_BUNDLE_FILE, 'credential-bundle.private-key.pem'] as const;
/** `<trust-domain>.spiffe-trust-bundle.pem`: one PEM bundle per trust domain. */
export const TRUST_BUNDLE_SUFFIX = '.spiffe-trust-bundle.pem';
/** `<trust-domain>.jwt-bundle.json`: one JWKS per trust domain. */
export const JWT_BUNDLE_SUFFIX = '.jwt-bundle.json';
/** Non-secret facts about the current SVID, for humans and tools. */
export const IDENTITY_FILE = 'identity.json';

/** Split-file names (spiffe-helper style). */
export interface SplitFileNames {
  /** Certificate chain, leaf first. */
  readonly svid: string;
  /** PKCS#8 private key. */
  readonly key: string;
  /** Trust anchors of the SVID's own trust domain. */
  readonly bundle: string;
}

/** spiffe-helper compatible, and what the driver writes by default. */
export const DEFAULT_SPLIT_FILES: SplitFileNames = Object.freeze({ svid: 'svid.pem', key: 'svid_key.pem', bundle: 'bundle.pem' });
/** The JWT-SVID file the driver writes by default. */
export const DEFAULT_JWT_SVID_FILE = 'jwt-svid.token';

/** Names the driver writes itself, which user-chosen file names may not take. */
export const RESERVED_FILE_NAMES: readonly string[] = [CREDENTIAL_BUNDLE_FILE, IDENTITY_FILE];
/** Suffixes of per-trust-domain files, which user-chosen file names may not end with. */
export const RESERVED_FILE_SUFFIXES: readonly string[] = [TRUST_BUNDLE_SUFFIX, JWT_BUNDLE_SUFFIX];

/** The per-trust-domain X.509 bundle file name for a trust domain name (no scheme). */
export function trustBundleFileName(trustDomain: string): string {
  return `${trustDomain}${TRUST_BUNDLE_SUFFIX}`;
}

/** The per-trust-domain JWT bundle file name for a trust domain name (no scheme). */
export function jwtBundleFileName(trustDomain: string): string {
  return `${trustDomain}${JWT_BUNDLE_SUFFIX}`;
}

/** True for the entries the writer owns (`..data`, `..data_tmp`, payload directories). */
export function isLayoutEntry(name: string): boolean {
  return name === DATA_LINK || name === DATA_TMP_LINK || PAYLOAD_DIR_PATTERN.test(name);
}
