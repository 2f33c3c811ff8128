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

/**
 * With several audiences the driver writes one JWT-SVID per audience, each fetched for that
 * audience alone, as `jwt-svid.<encoded audience>.token`: a token for several audiences could be
 * replayed by any of them to the others.
 */
export const JWT_SVID_AUDIENCE_FILE_PREFIX = 'jwt-svid.';
export const JWT_SVID_AUDIENCE_FILE_SUFFIX = '.token';

/** Audience bytes kept as they are in a file name; every other byte is `%XX`. */
const FILE_NAME_SAFE_BYTE = /^[A-Za-z0-9._-]$/;
const ENCODED_AUDIENCE = /^(?:[A-Za-z0-9._-]|%[0-9A-F]{2})+$/;

export type LayoutErrorKind = 'audience';

/** A name the layout cannot represent (an empty audience). */
export class LayoutError extends Error {
  constructor(
    readonly kind: LayoutErrorKind,
    message: string,
  ) {
    super(`layout: ${message}`);
    this.name = 'LayoutError';
  }
}

/**
 * `audience` as it appears in a file name: ASCII letters, digits, `.`, `_` and `-` as they are,
 * every other UTF-8 byte as `%XX` (uppercase hex), so `/`, `%`, spaces and unicode are safe and
 * the mapping is one to one.
 */
export function encodeAudience(audience: string): string {
  if (typeof audience !== 'string' || audience === '') throw new LayoutError('audience', 'an audience must be a non-empty string');
  let encoded = '';
  for (const byte of Buffer.from(audience, 'utf8')) {
    const char = String.fromCharCode(byte);
    encoded += byte < 0x80 && FILE_NAME_SAFE_BYTE.test(char) ? char : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return encoded;
}

/** The inverse of encodeAudience, or undefined for anything encodeAudience would not produce. */
export function decodeAudience(encoded: string): string | undefined {
  if (!ENCODED_AUDIENCE.test(encoded)) return undefined;
  const bytes: number[] = [];
  for (let i = 0; i < encoded.length; i++) {
    if (encoded[i] === '%') {
      bytes.push(Number.parseInt(encoded.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(encoded.charCodeAt(i));
    }
  }
  let audience: string;
  try {
    audience = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(Uint8Array.from(bytes));
  } catch {
    return undefined;
  }
  // Only the canonical spelling counts (no `%41` for `A`, no lowercase hex): one audience, one name.
  return encodeAudience(audience) === encoded ? audience : undefined;
}

/** `jwt-svid.<encoded audience>.token`: the file holding the JWT-SVID minted for `audience` alone. */
export function jwtSvidFileName(audience: string): string {
  return `${JWT_SVID_AUDIENCE_FILE_PREFIX}${encodeAudience(audience)}${JWT_SVID_AUDIENCE_FILE_SUFFIX}`;
}

/** The audience a `jwt-svid.<encoded audience>.token` name is for, or undefined for other names. */
export function audienceOfJwtSvidFileName(name: string): string | undefined {
  const min = JWT_SVID_AUDIENCE_FILE_PREFIX.length + JWT_SVID_AUDIENCE_FILE_SUFFIX.length;
  if (name.length <= min || !name.startsWith(JWT_SVID_AUDIENCE_FILE_PREFIX) || !name.endsWith(JWT_SVID_AUDIENCE_FILE_SUFFIX)) {
    return undefined;
  }
  return decodeAudience(name.slice(JWT_SVID_AUDIENCE_FILE_PREFIX.length, -JWT_SVID_AUDIENCE_FILE_SUFFIX.length));
}
