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

/**
 * The credential bundle the driver writes by default: PKCS#8 `PRIVATE KEY`, then the chain leaf
 * first. The `.x509` marker is what the draft's reviewers settled on (2026-08) to leave room for
 * other credential types.
 */
export const CREDENTIAL_BUNDLE_FILE = 'credential-bundle.private-key.x509.pem';
/** The draft's section 2 spelling before the `.x509` marker; read, never written. */
export const CREDENTIAL_BUNDLE_FILE_PRIVATE_KEY = 'credential-bundle.private-key.pem';
/** The draft's Kubernetes example spelling; written with layout-names `2026-02`. */
export const CREDENTIAL_BUNDLE_FILE_2026_02 = 'credential-bundle.pem';
/** Every spelling of the credential bundle the draft has had, newest (preferred) first. */
export const CREDENTIAL_BUNDLE_FILES = [CREDENTIAL_BUNDLE_FILE, CREDENTIAL_BUNDLE_FILE_PRIVATE_KEY, CREDENTIAL_BUNDLE_FILE_2026_02] as const;
/** `<trust-domain>.spiffe-trust-bundle.x509.pem`: one PEM bundle per trust domain, as the driver writes it by default. */
export const TRUST_BUNDLE_SUFFIX = '.spiffe-trust-bundle.x509.pem';
/** `<trust-domain>.spiffe-trust-bundle.pem`: the draft's earlier spelling, written with layout-names `2026-02`. */
export const TRUST_BUNDLE_SUFFIX_2026_02 = '.spiffe-trust-bundle.pem';
/** Every spelling of the per-trust-domain bundle suffix, newest (preferred) first. */
export const TRUST_BUNDLE_SUFFIXES = [TRUST_BUNDLE_SUFFIX, TRUST_BUNDLE_SUFFIX_2026_02] as const;
/** `<trust-domain>.jwt-bundle.json`: one JWKS per trust domain. */
export const JWT_BUNDLE_SUFFIX = '.jwt-bundle.json';
/** Non-secret facts about the current SVID, for humans and tools. */
export const IDENTITY_FILE = 'identity.json';
/** With every SVID published: which credential bundle file holds which SPIFFE ID and hint (see HintsFile). */
export const HINTS_FILE = 'hints.json';

/**
 * Which spellings a folder's SPIFFE Filesystem Delivery names take, by the date the draft's
 * review settled them: `2026-08` the `.x509.pem` names (the default), `2026-02` the earlier
 * `credential-bundle.pem` and `.spiffe-trust-bundle.pem`, for consumers that read those. Dated
 * rather than "current", so a recorded volume keeps its names when a later driver adds a newer set.
 */
export const LAYOUT_NAMES_VERSIONS = ['2026-08', '2026-02'] as const;
/** One of LAYOUT_NAMES_VERSIONS. */
export type LayoutNamesVersion = (typeof LAYOUT_NAMES_VERSIONS)[number];
/** What the driver writes when a volume does not ask for a layout-names version. */
export const CURRENT_LAYOUT_NAMES: LayoutNamesVersion = '2026-08';

/** The names one layout-names version gives the standard's files. */
export interface LayoutNames {
  /** The credential bundle of the chosen SVID; extra SVIDs get `<n>.` in front of it. */
  readonly credentialBundle: string;
  /** Appended to a trust domain name for its trust bundle file. */
  readonly trustBundleSuffix: string;
}

const LAYOUT_NAMES: Readonly<Record<LayoutNamesVersion, LayoutNames>> = Object.freeze({
  '2026-08': Object.freeze({ credentialBundle: CREDENTIAL_BUNDLE_FILE, trustBundleSuffix: TRUST_BUNDLE_SUFFIX }),
  '2026-02': Object.freeze({ credentialBundle: CREDENTIAL_BUNDLE_FILE_2026_02, trustBundleSuffix: TRUST_BUNDLE_SUFFIX_2026_02 }),
});

/** True for a known layout-names version. */
export function isLayoutNamesVersion(value: unknown): value is LayoutNamesVersion {
  return typeof value === 'string' && (LAYOUT_NAMES_VERSIONS as readonly string[]).includes(value);
}

/** The file names of a layout-names version (default: the current one). */
export function layoutNames(version: LayoutNamesVersion = CURRENT_LAYOUT_NAMES): LayoutNames {
  const names = isLayoutNamesVersion(version) ? LAYOUT_NAMES[version] : undefined;
  if (names === undefined) {
    throw new LayoutError('layout-names', `unknown layout-names version ${JSON.stringify(version)}; use one of ${LAYOUT_NAMES_VERSIONS.join(', ')}`);
  }
  return names;
}

/**
 * `<n>.<credential bundle>`: the credential bundle of the n-th extra SVID (n from 1), written
 * next to the chosen one's when a volume asks for every SVID.
 */
export function extraCredentialBundleFileName(n: number, credentialBundle: string = CREDENTIAL_BUNDLE_FILE): string {
  if (!Number.isSafeInteger(n) || n < 1) throw new LayoutError('index', `an extra SVID's number must be a positive integer, got ${String(n)}`);
  return `${n}.${credentialBundle}`;
}

/** True for `<n>.<credentialBundle>` names (n a positive decimal without leading zeros). */
export function isExtraCredentialBundleFileName(name: string, credentialBundle: string = CREDENTIAL_BUNDLE_FILE): boolean {
  if (!name.endsWith(`.${credentialBundle}`)) return false;
  return /^[1-9][0-9]*$/.test(name.slice(0, -credentialBundle.length - 1));
}

/**
 * One entry of hints.json: a credential bundle file of the folder, the SVID it holds, the agent's
 * hint for it (empty when none) and the SHA-256 of its leaf certificate (DER, lowercase hex), so a
 * reader can tell which file to load without parsing every one.
 */
export interface HintsFileEntry {
  /** The credential bundle file, a plain name in the folder. */
  readonly file: string;
  /** The SPIFFE ID of the SVID in it. */
  readonly spiffeId: string;
  /** The agent's hint for it; empty when none. */
  readonly hint: string;
  /** SHA-256 of its leaf certificate (DER), lowercase hex. */
  readonly leafSha256: string;
}

/** hints.json: the chosen SVID's entry first, then the extra SVIDs in the agent's order. */
export interface HintsFile {
  /** One entry per credential bundle file, the chosen SVID's first. */
  readonly credentialBundles: readonly HintsFileEntry[];
}

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

/**
 * Names the driver writes itself, which user-chosen file names may not take: every spelling of the
 * credential bundle (a reader takes any of them for one), identity.json and hints.json.
 */
export const RESERVED_FILE_NAMES: readonly string[] = [...CREDENTIAL_BUNDLE_FILES, IDENTITY_FILE, HINTS_FILE];
/** Suffixes of per-trust-domain files (every spelling), which user-chosen file names may not end with. */
export const RESERVED_FILE_SUFFIXES: readonly string[] = [...TRUST_BUNDLE_SUFFIXES, JWT_BUNDLE_SUFFIX];

/** The per-trust-domain X.509 bundle file name for a trust domain name (no scheme), in a layout-names version's spelling. */
export function trustBundleFileName(trustDomain: string, version: LayoutNamesVersion = CURRENT_LAYOUT_NAMES): string {
  return `${trustDomain}${layoutNames(version).trustBundleSuffix}`;
}

/**
 * The trust domain name (unchecked) and suffix of a `<td>.spiffe-trust-bundle[.x509].pem` name,
 * or undefined for other names. The newest suffix is tried first.
 */
export function splitTrustBundleFileName(name: string): { readonly trustDomain: string; readonly suffix: string } | undefined {
  for (const suffix of TRUST_BUNDLE_SUFFIXES) {
    if (name.length > suffix.length && name.endsWith(suffix)) return { trustDomain: name.slice(0, -suffix.length), suffix };
  }
  return undefined;
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
/** The end of a per-audience JWT-SVID file name (see JWT_SVID_AUDIENCE_FILE_PREFIX). */
export const JWT_SVID_AUDIENCE_FILE_SUFFIX = '.token';

/** Audience bytes kept as they are in a file name; every other byte is `%XX`. */
const FILE_NAME_SAFE_BYTE = /^[A-Za-z0-9._-]$/;
const ENCODED_AUDIENCE = /^(?:[A-Za-z0-9._-]|%[0-9A-F]{2})+$/;

/** `audience`: an empty audience. `layout-names`: an unknown layout-names version. `index`: a bad extra-SVID number. */
export type LayoutErrorKind = 'audience' | 'layout-names' | 'index';

/** A name the layout cannot represent (an empty audience, an unknown layout-names version). */
export class LayoutError extends Error {
  /** `message` says what cannot be named; it gets the `layout: ` prefix here. */
  constructor(
    /** What could not be named. */
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
