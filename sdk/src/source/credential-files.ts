/**
 * The credential folder layouts FileSource understands, and the pure step from file bytes to
 * X509Material.
 *
 * - SPIFFE Filesystem Delivery (draft): one credential bundle (PKCS#8 PRIVATE KEY, then the chain
 *   leaf first) plus one `<trust-domain>.spiffe-trust-bundle.pem` per trust domain. The draft's
 *   text and its Kubernetes example spell the bundle differently; both are accepted.
 * - Split files (spiffe-helper style): chain, key and one bundle file with configurable names. The
 *   bundle file has no per-domain structure, and with the driver's bundle-include-federated it
 *   holds federated roots too. Taking all of them as the SVID's own trust domain would let a
 *   federated CA mint identities of our trust domain, so per-trust-domain bundle files are used
 *   instead whenever the folder has them, and otherwise a root whose own SPIFFE URI SAN names
 *   another trust domain is dropped (and reported).
 */
import type { X509Certificate } from 'node:crypto';
import { CREDENTIAL_BUNDLE_FILES, DEFAULT_SPLIT_FILES, TRUST_BUNDLE_SUFFIX, trustBundleFileName, type SplitFileNames } from '../layout/layout.js';
import { TrustDomain } from '../spiffe-id/trust-domain.js';
import { X509BundleSet } from '../x509/bundle-set.js';
import { X509Bundle } from '../x509/bundle.js';
import { uriSansOf } from '../x509/extensions.js';
import { X509Svid } from '../x509/svid.js';
import { FileSourceError, messageOf } from './errors.js';
import type { X509Material } from './x509-source.js';

export type { SplitFileNames };

/** `auto`: the credential bundle when present, else the split files. */
export type CredentialLayout = 'auto' | 'credential-bundle' | 'split';

export interface CredentialFilesOptions {
  readonly layout?: CredentialLayout;
  readonly files?: Partial<SplitFileNames>;
}

/** A root of the split bundle file that is not an authority for the SVID's own trust domain. */
export interface ForeignRoot {
  /** The split bundle file it was in. */
  readonly file: string;
  /** What its SPIFFE URI SAN names instead: a trust domain name, or the URI as written when unparseable. */
  readonly trustDomain: string;
  /** SHA-256 fingerprint, to find the certificate. */
  readonly fingerprint256: string;
}

export interface ParsedCredentials {
  readonly material: X509Material;
  readonly layout: Exclude<CredentialLayout, 'auto'>;
  /** The files the material came from, for logs. */
  readonly sources: readonly string[];
  /** Roots left out of the split bundle file because they belong to other trust domains. */
  readonly foreignRoots: readonly ForeignRoot[];
}

const LAYOUTS: readonly CredentialLayout[] = ['auto', 'credential-bundle', 'split'];

function invalid(message: string, cause?: unknown): FileSourceError {
  return new FileSourceError('invalid', message, cause === undefined ? undefined : { cause });
}

/** Split names come from users; they must name a file directly inside the folder. */
export function resolveSplitFileNames(files: Partial<SplitFileNames> = {}): SplitFileNames {
  const names: SplitFileNames = { ...DEFAULT_SPLIT_FILES, ...files };
  for (const [role, name] of Object.entries(names) as [keyof SplitFileNames, string][]) {
    if (typeof name !== 'string' || name === '' || name.includes('/') || name.includes('\\') || name.startsWith('.')) {
      throw new FileSourceError('config', `files.${role} must be a plain file name (no "/", no leading "."), got ${JSON.stringify(name)}`);
    }
  }
  if (new Set([names.svid, names.key, names.bundle]).size !== 3) {
    throw new FileSourceError('config', 'files.svid, files.key and files.bundle must be three different names');
  }
  return names;
}

export function checkLayout(layout: unknown): CredentialLayout {
  if (layout === undefined) return 'auto';
  if (!LAYOUTS.includes(layout as CredentialLayout)) {
    throw new FileSourceError('config', `layout must be one of ${LAYOUTS.join(', ')}, got ${JSON.stringify(layout)}`);
  }
  return layout as CredentialLayout;
}

/** The trust domain a `<td>.spiffe-trust-bundle.pem` file is for, or undefined for other names. */
export function trustDomainOfBundleFile(name: string): TrustDomain | undefined {
  if (!name.endsWith(TRUST_BUNDLE_SUFFIX)) return undefined;
  try {
    return TrustDomain.parse(name.slice(0, -TRUST_BUNDLE_SUFFIX.length));
  } catch {
    // Not a trust domain name, so not a file of this standard; extra files are to be ignored.
    return undefined;
  }
}

/** The names worth reading from a folder listing, for the given layout. */
export function selectCredentialFiles(names: readonly string[], options: CredentialFilesOptions = {}): string[] {
  const layout = checkLayout(options.layout);
  const split = resolveSplitFileNames(options.files);
  const wanted = new Set<string>();
  if (layout !== 'split') {
    for (const name of names) {
      if ((CREDENTIAL_BUNDLE_FILES as readonly string[]).includes(name) || trustDomainOfBundleFile(name) !== undefined) {
        wanted.add(name);
      }
    }
  }
  if (layout !== 'credential-bundle') {
    for (const name of [split.svid, split.key, split.bundle]) if (names.includes(name)) wanted.add(name);
    // Per-trust-domain bundles take precedence over the split bundle file (see parseSplitLayout).
    for (const name of names) if (trustDomainOfBundleFile(name) !== undefined) wanted.add(name);
  }
  return [...wanted];
}

/** Every non-empty `<td>.spiffe-trust-bundle.pem` of the snapshot, in name order. */
function parseTrustBundleFiles(files: ReadonlyMap<string, Buffer>): { bundles: X509Bundle[]; sources: string[] } {
  const bundles: X509Bundle[] = [];
  const sources: string[] = [];
  for (const [name, content] of [...files].sort(([a], [b]) => a.localeCompare(b))) {
    const td = trustDomainOfBundleFile(name);
    if (td === undefined) continue;
    let bundle: X509Bundle;
    try {
      bundle = X509Bundle.parse(td, content);
    } catch (err) {
      throw invalid(`${name}: ${messageOf(err)}`, err);
    }
    // A bundle file without anchors trusts nothing, exactly like an absent one.
    if (bundle.isEmpty()) continue;
    bundles.push(bundle);
    sources.push(name);
  }
  return { bundles, sources };
}

function requireOwnBundle(bundles: readonly X509Bundle[], own: TrustDomain): void {
  if (!bundles.some((bundle) => bundle.trustDomain.equals(own))) {
    throw invalid(`no trust bundle for the SVID's own trust domain "${own.name}" (expected a non-empty ${trustBundleFileName(own.name)})`);
  }
}

const SPIFFE_SCHEME = /^spiffe:\/\//i;
const SPIFFE_PREFIX = 'spiffe://';

/**
 * What a CA certificate's SPIFFE URI SANs name other than `own` (SPIFFE CA certificates carry
 * `spiffe://<trust domain>`), or undefined when they name only `own` or there is none: a root
 * without a SPIFFE URI SAN (a non-SPIFFE upstream CA) says nothing, and stays trusted as before.
 */
function foreignNameOf(root: X509Certificate, own: TrustDomain): string | undefined {
  let uris: string[];
  try {
    uris = uriSansOf(root);
  } catch {
    // A SAN extension that does not parse cannot vouch for our trust domain.
    return 'an unreadable subject alternative name';
  }
  for (const uri of uris) {
    if (!SPIFFE_SCHEME.test(uri)) continue;
    const host = uri.slice(SPIFFE_PREFIX.length).split('/')[0] ?? '';
    if (uri.startsWith(SPIFFE_PREFIX) && host === own.name) continue;
    // Another trust domain, or ours spelled in a way SPIFFE does not allow: not our authority.
    if (!uri.startsWith(SPIFFE_PREFIX)) return uri;
    try {
      return TrustDomain.parse(host).name;
    } catch {
      return uri;
    }
  }
  return undefined;
}

function parseCredentialBundleLayout(files: ReadonlyMap<string, Buffer>, bundleFile: string): ParsedCredentials {
  let svid: X509Svid;
  try {
    svid = X509Svid.parseCredentialBundle(files.get(bundleFile)!);
  } catch (err) {
    throw invalid(`${bundleFile}: ${messageOf(err)}`, err);
  }
  const { bundles, sources } = parseTrustBundleFiles(files);
  requireOwnBundle(bundles, svid.id.trustDomain);
  return {
    material: { svid, bundles: new X509BundleSet(bundles) },
    layout: 'credential-bundle',
    sources: [bundleFile, ...sources],
    foreignRoots: [],
  };
}

function parseSplitLayout(files: ReadonlyMap<string, Buffer>, names: SplitFileNames): ParsedCredentials {
  const perTrustDomain = [...files.keys()].some((name) => trustDomainOfBundleFile(name) !== undefined);
  // With per-trust-domain files the split bundle file is not needed: they say which root is whose.
  const required = perTrustDomain ? [names.svid, names.key] : [names.svid, names.key, names.bundle];
  const missing = required.filter((name) => !files.has(name));
  if (missing.length > 0) throw new FileSourceError('missing', `split credential files missing: ${missing.join(', ')}`);
  let svid: X509Svid;
  try {
    svid = X509Svid.parse(files.get(names.svid)!, files.get(names.key)!);
  } catch (err) {
    throw invalid(`${names.svid} + ${names.key}: ${messageOf(err)}`, err);
  }
  if (perTrustDomain) {
    const { bundles, sources } = parseTrustBundleFiles(files);
    requireOwnBundle(bundles, svid.id.trustDomain);
    return {
      material: { svid, bundles: new X509BundleSet(bundles) },
      layout: 'split',
      sources: [names.svid, names.key, ...sources],
      foreignRoots: [],
    };
  }
  const own = svid.id.trustDomain;
  let bundle: X509Bundle;
  try {
    bundle = X509Bundle.parse(own, files.get(names.bundle)!);
  } catch (err) {
    throw invalid(`${names.bundle}: ${messageOf(err)}`, err);
  }
  if (bundle.isEmpty()) throw invalid(`${names.bundle} holds no certificates`);
  const foreignRoots: ForeignRoot[] = [];
  const anchors = bundle.authorities.filter((root) => {
    const foreign = foreignNameOf(root, own);
    if (foreign === undefined) return true;
    foreignRoots.push({ file: names.bundle, trustDomain: foreign, fingerprint256: root.fingerprint256 });
    return false;
  });
  if (anchors.length === 0) {
    const named = [...new Set(foreignRoots.map((root) => root.trustDomain))].join(', ');
    throw invalid(`${names.bundle} holds no authority for ${own.name}: every root in it names another trust domain (${named})`);
  }
  return {
    material: { svid, bundles: new X509BundleSet([new X509Bundle(own, anchors)]) },
    layout: 'split',
    sources: [names.svid, names.key, names.bundle],
    foreignRoots,
  };
}

/**
 * X509Material from the bytes of one snapshot. Throws a FileSourceError saying which file is
 * wrong. Time validity is not checked here: that depends on the clock, not on the files.
 */
export function parseCredentialFiles(files: ReadonlyMap<string, Buffer>, options: CredentialFilesOptions = {}): ParsedCredentials {
  const layout = checkLayout(options.layout);
  const split = resolveSplitFileNames(options.files);
  if (layout !== 'split') {
    const bundleFile = CREDENTIAL_BUNDLE_FILES.find((name) => files.has(name));
    if (bundleFile !== undefined) return parseCredentialBundleLayout(files, bundleFile);
    if (layout === 'credential-bundle') {
      throw new FileSourceError('missing', `no credential bundle (${CREDENTIAL_BUNDLE_FILES.join(' or ')})`);
    }
    if (![split.svid, split.key, split.bundle].some((name) => files.has(name))) {
      throw new FileSourceError(
        'missing',
        `no credential files (expected ${CREDENTIAL_BUNDLE_FILES.join(' or ')}, or ${split.svid} + ${split.key} + ${split.bundle})`,
      );
    }
  }
  return parseSplitLayout(files, split);
}
