/**
 * The credential folder layouts FileSource understands, and the pure step from file bytes to
 * X509Material.
 *
 * - SPIFFE Filesystem Delivery (draft): one credential bundle (PKCS#8 PRIVATE KEY, then the chain
 *   leaf first) plus one `<trust-domain>.spiffe-trust-bundle.pem` per trust domain. The draft's
 *   text and its Kubernetes example spell the bundle differently; both are accepted.
 * - Split files (spiffe-helper style): chain, key and one bundle file with configurable names. The
 *   bundle file has no per-domain structure, so all of its roots are taken as the SVID's own
 *   trust domain's authorities.
 */
import { TrustDomain } from '../spiffe-id/trust-domain.js';
import { X509BundleSet } from '../x509/bundle-set.js';
import { X509Bundle } from '../x509/bundle.js';
import { X509Svid } from '../x509/svid.js';
import { FileSourceError, messageOf } from './errors.js';
import type { X509Material } from './x509-source.js';

/** Preferred first: our driver and the draft's Kubernetes example write `credential-bundle.pem`. */
export const CREDENTIAL_BUNDLE_FILES = ['credential-bundle.pem', 'credential-bundle.private-key.pem'] as const;
export const TRUST_BUNDLE_SUFFIX = '.spiffe-trust-bundle.pem';

export interface SplitFileNames {
  /** Certificate chain, leaf first. */
  readonly svid: string;
  /** PKCS#8 private key. */
  readonly key: string;
  /** Trust anchors, all taken as the SVID's own trust domain. */
  readonly bundle: string;
}

/** spiffe-helper compatible, and what the driver writes by default. */
export const DEFAULT_SPLIT_FILES: SplitFileNames = { svid: 'svid.pem', key: 'svid_key.pem', bundle: 'bundle.pem' };

/** `auto`: the credential bundle when present, else the split files. */
export type CredentialLayout = 'auto' | 'credential-bundle' | 'split';

export interface CredentialFilesOptions {
  readonly layout?: CredentialLayout;
  readonly files?: Partial<SplitFileNames>;
}

export interface ParsedCredentials {
  readonly material: X509Material;
  readonly layout: Exclude<CredentialLayout, 'auto'>;
  /** The files the material came from, for logs. */
  readonly sources: readonly string[];
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
  }
  return [...wanted];
}

function parseCredentialBundleLayout(files: ReadonlyMap<string, Buffer>, bundleFile: string): ParsedCredentials {
  let svid: X509Svid;
  try {
    svid = X509Svid.parseCredentialBundle(files.get(bundleFile)!);
  } catch (err) {
    throw invalid(`${bundleFile}: ${messageOf(err)}`, err);
  }
  const bundles: X509Bundle[] = [];
  const sources = [bundleFile];
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
  const own = svid.id.trustDomain;
  if (!bundles.some((bundle) => bundle.trustDomain.equals(own))) {
    throw invalid(
      `no trust bundle for the SVID's own trust domain "${own.name}" (expected a non-empty ${own.name}${TRUST_BUNDLE_SUFFIX})`,
    );
  }
  return { material: { svid, bundles: new X509BundleSet(bundles) }, layout: 'credential-bundle', sources };
}

function parseSplitLayout(files: ReadonlyMap<string, Buffer>, names: SplitFileNames): ParsedCredentials {
  const missing = [names.svid, names.key, names.bundle].filter((name) => !files.has(name));
  if (missing.length > 0) throw new FileSourceError('missing', `split credential files missing: ${missing.join(', ')}`);
  let svid: X509Svid;
  try {
    svid = X509Svid.parse(files.get(names.svid)!, files.get(names.key)!);
  } catch (err) {
    throw invalid(`${names.svid} + ${names.key}: ${messageOf(err)}`, err);
  }
  let bundle: X509Bundle;
  try {
    bundle = X509Bundle.parse(svid.id.trustDomain, files.get(names.bundle)!);
  } catch (err) {
    throw invalid(`${names.bundle}: ${messageOf(err)}`, err);
  }
  if (bundle.isEmpty()) throw invalid(`${names.bundle} holds no certificates`);
  return {
    material: { svid, bundles: new X509BundleSet([bundle]) },
    layout: 'split',
    sources: [names.svid, names.key, names.bundle],
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
