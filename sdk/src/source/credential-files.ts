/**
 * The credential folder layouts FileSource understands, and the pure step from file bytes to
 * X509Material.
 *
 * - SPIFFE Filesystem Delivery (draft): one credential bundle (PKCS#8 PRIVATE KEY, then the chain
 *   leaf first) plus one `<trust-domain>.spiffe-trust-bundle.x509.pem` per trust domain. Every
 *   spelling the draft has had is accepted (credential-names.ts); where a folder holds two
 *   spellings of one file the newest is read and the other reported. With several SVIDs in the
 *   folder, hints.json says which credential bundle holds which SPIFFE ID and hint.
 * - Split files (spiffe-helper style): chain, key and one bundle file with configurable names. The
 *   bundle file has no per-domain structure, and with the driver's bundle-include-federated it
 *   holds federated roots too. Taking all of them as the SVID's own trust domain would let a
 *   federated CA mint identities of our trust domain, so per-trust-domain bundle files are used
 *   instead whenever the folder has them, and otherwise a root whose own SPIFFE URI SAN names
 *   another trust domain is dropped (and reported).
 */
import type { X509Certificate } from 'node:crypto';
import { createHash } from 'node:crypto';
import { CREDENTIAL_BUNDLE_FILES, DEFAULT_SPLIT_FILES, HINTS_FILE, trustBundleFileName, type SplitFileNames } from '../layout/layout.js';
import { SpiffeId } from '../spiffeid/spiffe-id.js';
import { TrustDomain } from '../spiffeid/trust-domain.js';
import { X509BundleSet } from '../x509/bundle-set.js';
import { X509Bundle } from '../x509/bundle.js';
import { uriSansOf } from '../x509/extensions.js';
import { X509Svid } from '../x509/svid.js';
import { messageOf } from '../internal/error-text.js';
import { SourceError } from './errors.js';
import type { X509Material } from './x509-source.js';
import {
  credentialBundleFileOf,
  describeSvidChoice,
  parseHintsFile,
  pickHintsEntry,
  trustBundleFilesOf,
  trustDomainOfTrustBundleFile,
  type DuplicateSpelling,
  type SvidChoice,
} from './credential-names.js';

export type { SplitFileNames, DuplicateSpelling, SvidChoice };

/** `auto`: the credential bundle when present, else the split files. */
export type CredentialLayout = 'auto' | 'credential-bundle' | 'split';

export interface CredentialFilesOptions {
  readonly layout?: CredentialLayout;
  readonly files?: Partial<SplitFileNames>;
  /**
   * Which SVID of a folder holding several to load (the driver's `csi.spire.io/all-svids`), by
   * SPIFFE ID and/or the agent's hint, looked up in hints.json; without either, the primary
   * credential bundle. Credential bundle layout only.
   */
  readonly spiffeId?: string;
  readonly hint?: string;
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
  /** Files present under several spellings: the newest was read, the others ignored. */
  readonly duplicates: readonly DuplicateSpelling[];
}

const LAYOUTS: readonly CredentialLayout[] = ['auto', 'credential-bundle', 'split'];

function invalid(message: string, cause?: unknown): SourceError {
  return new SourceError('filesource', 'invalid', message, cause === undefined ? undefined : { cause });
}

/** Split names come from users; they must name a file directly inside the folder. */
export function resolveSplitFileNames(files: Partial<SplitFileNames> = {}): SplitFileNames {
  const names: SplitFileNames = { ...DEFAULT_SPLIT_FILES, ...files };
  for (const [role, name] of Object.entries(names) as [keyof SplitFileNames, string][]) {
    if (typeof name !== 'string' || name === '' || name.includes('/') || name.includes('\\') || name.startsWith('.')) {
      throw new SourceError('filesource', 'config', `files.${role} must be a plain file name (no "/", no leading "."), got ${JSON.stringify(name)}`);
    }
  }
  if (new Set([names.svid, names.key, names.bundle]).size !== 3) {
    throw new SourceError('filesource', 'config', 'files.svid, files.key and files.bundle must be three different names');
  }
  return names;
}

export function checkLayout(layout: unknown): CredentialLayout {
  if (layout === undefined) return 'auto';
  if (!LAYOUTS.includes(layout as CredentialLayout)) {
    throw new SourceError('filesource', 'config', `layout must be one of ${LAYOUTS.join(', ')}, got ${JSON.stringify(layout)}`);
  }
  return layout as CredentialLayout;
}

/** The trust domain a `<td>.spiffe-trust-bundle[.x509].pem` file is for, or undefined for other names. */
export function trustDomainOfBundleFile(name: string): TrustDomain | undefined {
  return trustDomainOfTrustBundleFile(name);
}

/** The SVID choice of the options, checked; undefined when they ask for none. */
export function checkSvidChoice(options: Pick<CredentialFilesOptions, 'spiffeId' | 'hint' | 'layout'>): SvidChoice | undefined {
  const { spiffeId, hint } = options;
  if (spiffeId === undefined && hint === undefined) return undefined;
  if (spiffeId !== undefined) {
    try {
      SpiffeId.parse(spiffeId);
    } catch (err) {
      throw new SourceError('filesource', 'config', `spiffeId ${JSON.stringify(spiffeId)} is not a SPIFFE ID: ${messageOf(err)}`);
    }
  }
  if (hint !== undefined && (typeof hint !== 'string' || hint === '')) {
    throw new SourceError('filesource', 'config', `hint must be a non-empty string, got ${JSON.stringify(hint)}`);
  }
  if (options.layout === 'split') {
    throw new SourceError('filesource', 'config', 'spiffeId and hint pick a credential bundle; they do not apply to layout "split"');
  }
  return { ...(spiffeId === undefined ? {} : { spiffeId }), ...(hint === undefined ? {} : { hint }) };
}

/** The names worth reading from a folder listing, for the given layout. */
export function selectCredentialFiles(names: readonly string[], options: CredentialFilesOptions = {}): string[] {
  const layout = checkLayout(options.layout);
  const split = resolveSplitFileNames(options.files);
  const wanted = new Set<string>();
  if (layout !== 'split') {
    // With a choice, hints.json may point at any credential bundle of the folder, numbered or
    // renamed: every PEM file is read then (not the tokens and JSON, whose updates do not matter).
    const choosing = options.spiffeId !== undefined || options.hint !== undefined;
    for (const name of names) {
      if (
        (CREDENTIAL_BUNDLE_FILES as readonly string[]).includes(name) ||
        trustDomainOfBundleFile(name) !== undefined ||
        (choosing && (name === HINTS_FILE || name.endsWith('.pem')))
      ) {
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

/** Every non-empty trust bundle file of the snapshot (the newest spelling of each trust domain's), in name order. */
function parseTrustBundleFiles(files: ReadonlyMap<string, Buffer>): { bundles: X509Bundle[]; sources: string[]; duplicates: readonly DuplicateSpelling[] } {
  const bundles: X509Bundle[] = [];
  const sources: string[] = [];
  const { files: chosen, duplicates } = trustBundleFilesOf(files.keys());
  for (const { file: name, trustDomain: td } of chosen.values()) {
    const content = files.get(name)!;
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
  return { bundles, sources, duplicates };
}

function requireOwnBundle(bundles: readonly X509Bundle[], own: TrustDomain): void {
  if (!bundles.some((bundle) => bundle.trustDomain.equals(own))) {
    throw invalid(
      `no trust bundle for the SVID's own trust domain "${own.name}" ` +
        `(expected a non-empty ${trustBundleFileName(own.name)} or ${trustBundleFileName(own.name, '2026-02')})`,
    );
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

function parseCredentialBundleLayout(
  files: ReadonlyMap<string, Buffer>,
  bundleFile: string,
  bundleDuplicate: DuplicateSpelling | undefined,
): ParsedCredentials {
  let svid: X509Svid;
  try {
    svid = X509Svid.parseCredentialBundle(files.get(bundleFile)!);
  } catch (err) {
    throw invalid(`${bundleFile}: ${messageOf(err)}`, err);
  }
  const { bundles, sources, duplicates } = parseTrustBundleFiles(files);
  requireOwnBundle(bundles, svid.id.trustDomain);
  return {
    material: { svid, bundles: new X509BundleSet(bundles) },
    layout: 'credential-bundle',
    sources: [bundleFile, ...sources],
    foreignRoots: [],
    duplicates: bundleDuplicate === undefined ? duplicates : [bundleDuplicate, ...duplicates],
  };
}

/**
 * The credential bundle hints.json names for `choice`, checked against the entry (the same `..data`
 * generation, so a mismatch is a broken writer, not a race).
 */
function parseChosenCredentialBundle(files: ReadonlyMap<string, Buffer>, choice: SvidChoice): ParsedCredentials {
  const hints = parseHintsFile(files.get(HINTS_FILE)!);
  if ('problem' in hints) throw invalid(hints.problem);
  const wanted = describeSvidChoice(choice);
  const entry = pickHintsEntry(hints.entries, choice);
  if (entry === undefined) {
    const listed = hints.entries.map((e) => `${e.spiffeId}${e.hint === '' ? '' : ` (hint ${JSON.stringify(e.hint)})`}`).join(', ');
    throw new SourceError('filesource', 'missing', `${HINTS_FILE} lists no SVID ${wanted}; it lists ${listed || 'none'}`);
  }
  if (!files.has(entry.file)) {
    throw invalid(`${HINTS_FILE} names ${entry.file} for ${wanted}, but the folder has no such PEM file`);
  }
  const parsed = parseCredentialBundleLayout(files, entry.file, undefined);
  const { svid } = parsed.material;
  if (svid.id.toString() !== entry.spiffeId) {
    throw invalid(`${entry.file} holds ${svid.id.toString()}, but ${HINTS_FILE} says ${entry.spiffeId}`);
  }
  const leafSha256 = createHash('sha256').update(svid.certificates[0]!.raw).digest('hex');
  if (leafSha256 !== entry.leafSha256) throw invalid(`${entry.file} holds another certificate than the one ${HINTS_FILE} lists for it`);
  return { ...parsed, sources: [HINTS_FILE, ...parsed.sources] };
}

function parseSplitLayout(files: ReadonlyMap<string, Buffer>, names: SplitFileNames): ParsedCredentials {
  const perTrustDomain = [...files.keys()].some((name) => trustDomainOfBundleFile(name) !== undefined);
  // Only the per-trust-domain files have spellings; the split names are the user's.
  // With per-trust-domain files the split bundle file is not needed: they say which root is whose.
  const required = perTrustDomain ? [names.svid, names.key] : [names.svid, names.key, names.bundle];
  const missing = required.filter((name) => !files.has(name));
  if (missing.length > 0) throw new SourceError('filesource', 'missing', `split credential files missing: ${missing.join(', ')}`);
  let svid: X509Svid;
  try {
    svid = X509Svid.parse(files.get(names.svid)!, files.get(names.key)!);
  } catch (err) {
    throw invalid(`${names.svid} + ${names.key}: ${messageOf(err)}`, err);
  }
  if (perTrustDomain) {
    const { bundles, sources, duplicates } = parseTrustBundleFiles(files);
    requireOwnBundle(bundles, svid.id.trustDomain);
    return {
      material: { svid, bundles: new X509BundleSet(bundles) },
      layout: 'split',
      sources: [names.svid, names.key, ...sources],
      foreignRoots: [],
      duplicates,
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
    duplicates: [],
  };
}

/**
 * X509Material from the bytes of one snapshot. Throws a `filesource` SourceError saying which file is
 * wrong. Time validity is not checked here: that depends on the clock, not on the files.
 */
export function parseCredentialFiles(files: ReadonlyMap<string, Buffer>, options: CredentialFilesOptions = {}): ParsedCredentials {
  const layout = checkLayout(options.layout);
  const split = resolveSplitFileNames(options.files);
  const choice = checkSvidChoice(options);
  if (choice !== undefined) return parseChoice(files, choice, layout, split);
  if (layout !== 'split') {
    const { file: bundleFile, duplicate } = credentialBundleFileOf(files.keys());
    if (bundleFile !== undefined) return parseCredentialBundleLayout(files, bundleFile, duplicate);
    if (layout === 'credential-bundle') {
      throw new SourceError('filesource', 'missing', `no credential bundle (${CREDENTIAL_BUNDLE_FILES.join(' or ')})`);
    }
    if (![split.svid, split.key, split.bundle].some((name) => files.has(name))) {
      throw new SourceError(
        'filesource',
        'missing',
        `no credential files (expected ${CREDENTIAL_BUNDLE_FILES.join(' or ')}, or ${split.svid} + ${split.key} + ${split.bundle})`,
      );
    }
  }
  return parseSplitLayout(files, split);
}

/**
 * A chosen SVID: through hints.json when the folder has one; else the folder's only SVID, which
 * must then be the asked-for SPIFFE ID (a hint cannot be checked without hints.json).
 */
function parseChoice(
  files: ReadonlyMap<string, Buffer>,
  choice: SvidChoice,
  layout: CredentialLayout,
  split: SplitFileNames,
): ParsedCredentials {
  if (files.has(HINTS_FILE)) return parseChosenCredentialBundle(files, choice);
  if (choice.hint !== undefined) {
    throw new SourceError(
      'filesource',
      'missing',
      `no ${HINTS_FILE} in the folder, so no SVID can be picked by hint ${JSON.stringify(choice.hint)}; ` +
        'publish the volume with csi.spire.io/all-svids: "true", or pick by spiffeId',
    );
  }
  const parsed = parseCredentialFiles(files, { layout, files: split });
  const id = parsed.material.svid.id.toString();
  if (id !== choice.spiffeId) {
    throw new SourceError(
      'filesource',
      'missing',
      `the folder holds ${id}, not ${choice.spiffeId}, and no ${HINTS_FILE} listing other SVIDs ` +
        '(publish the volume with csi.spire.io/all-svids: "true", or with csi.spire.io/spiffe-id set to it)',
    );
  }
  return parsed;
}
