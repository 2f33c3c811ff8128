/**
 * Every spelling the SPIFFE Filesystem Delivery draft has had for its files, read back: which
 * credential bundle and which trust bundle file of a folder count, what to do when one folder holds
 * two spellings of the same file (the newest wins, and the caller warns), and hints.json, the map
 * from credential bundle files to SPIFFE IDs and hints that a folder with several SVIDs carries.
 *
 * Pure: names and bytes in, names and entries out; the caller turns problems into its own errors.
 */
import {
  CREDENTIAL_BUNDLE_FILES,
  HINTS_FILE,
  splitTrustBundleFileName,
  TRUST_BUNDLE_SUFFIXES,
  type HintsFileEntry,
} from '../layout/layout.js';
import { TrustDomain } from '../spiffeid/trust-domain.js';

/** One file the folder holds under several spellings: the newest is used, the others ignored. */
export interface DuplicateSpelling {
  readonly used: string;
  /** Older spellings present in the same folder, newest first. */
  readonly ignored: readonly string[];
}

/** The credential bundle spelling to read from `names` (newest first), and what else was there. */
export function credentialBundleFileOf(names: Iterable<string>): { readonly file?: string; readonly duplicate?: DuplicateSpelling } {
  const present = new Set(names);
  const found = CREDENTIAL_BUNDLE_FILES.filter((name) => present.has(name));
  const [file, ...ignored] = found;
  if (file === undefined) return {};
  return ignored.length === 0 ? { file } : { file, duplicate: { used: file, ignored } };
}

/** The trust domain of a `<td>.spiffe-trust-bundle[.x509].pem` file, or undefined for other names. */
export function trustDomainOfTrustBundleFile(name: string): TrustDomain | undefined {
  const split = splitTrustBundleFileName(name);
  if (split === undefined) return undefined;
  try {
    return TrustDomain.parse(split.trustDomain);
  } catch {
    // Not a trust domain name, so not a file of this standard; extra files are to be ignored.
    return undefined;
  }
}

/**
 * One trust bundle file per trust domain: `<td>.spiffe-trust-bundle.x509.pem` when present, else
 * the older `<td>.spiffe-trust-bundle.pem`. Keyed by trust domain name; in name order.
 */
export function trustBundleFilesOf(names: Iterable<string>): {
  readonly files: ReadonlyMap<string, { readonly file: string; readonly trustDomain: TrustDomain }>;
  readonly duplicates: readonly DuplicateSpelling[];
} {
  const byDomain = new Map<string, { trustDomain: TrustDomain; spellings: { file: string; rank: number }[] }>();
  for (const name of names) {
    const trustDomain = trustDomainOfTrustBundleFile(name);
    if (trustDomain === undefined) continue;
    // The suffixes are listed newest first, so the index is the preference.
    const rank = (TRUST_BUNDLE_SUFFIXES as readonly string[]).indexOf(splitTrustBundleFileName(name)!.suffix);
    const entry = byDomain.get(trustDomain.name) ?? { trustDomain, spellings: [] };
    entry.spellings.push({ file: name, rank });
    byDomain.set(trustDomain.name, entry);
  }
  const files = new Map<string, { file: string; trustDomain: TrustDomain }>();
  const duplicates: DuplicateSpelling[] = [];
  for (const td of [...byDomain.keys()].sort()) {
    const { trustDomain, spellings } = byDomain.get(td)!;
    const [used, ...ignored] = spellings.sort((a, b) => a.rank - b.rank || a.file.localeCompare(b.file)).map((s) => s.file);
    files.set(td, { file: used!, trustDomain });
    if (ignored.length > 0) duplicates.push({ used: used!, ignored });
  }
  return { files, duplicates };
}

/** What hints.json says, or the reason it cannot be used (for the caller's error). */
export type HintsParse = { readonly entries: readonly HintsFileEntry[] } | { readonly problem: string };

const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * Reads hints.json. Every entry must name a plain file of the folder (no `/`, no leading `.`), so
 * a hostile or broken file cannot point the reader outside it.
 */
export function parseHintsFile(content: Buffer): HintsParse {
  let value: unknown;
  try {
    value = JSON.parse(content.toString('utf8'));
  } catch (err) {
    return { problem: `${HINTS_FILE} is not JSON (${(err as Error).message})` };
  }
  const list = typeof value === 'object' && value !== null ? (value as { credentialBundles?: unknown }).credentialBundles : undefined;
  if (!Array.isArray(list)) return { problem: `${HINTS_FILE} has no "credentialBundles" array` };
  const entries: HintsFileEntry[] = [];
  for (const [i, raw] of list.entries()) {
    const entry = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>) : {};
    const { file, spiffeId, hint, leafSha256 } = entry;
    if (typeof file !== 'string' || file === '' || file.includes('/') || file.includes('\\') || file.startsWith('.')) {
      return { problem: `${HINTS_FILE} credentialBundles[${i}].file must be a plain file name of the folder` };
    }
    if (typeof spiffeId !== 'string' || typeof hint !== 'string') {
      return { problem: `${HINTS_FILE} credentialBundles[${i}] needs string "spiffeId" and "hint" fields` };
    }
    if (typeof leafSha256 !== 'string' || !SHA256_HEX.test(leafSha256)) {
      return { problem: `${HINTS_FILE} credentialBundles[${i}].leafSha256 must be 64 lowercase hex digits` };
    }
    entries.push({ file, spiffeId, hint, leafSha256 });
  }
  return { entries };
}

/** Which SVID of a folder to load; an unset field matches every entry. */
export interface SvidChoice {
  readonly spiffeId?: string;
  readonly hint?: string;
}

/** The first entry with the asked SPIFFE ID and hint (the driver lists the chosen SVID first). */
export function pickHintsEntry(entries: readonly HintsFileEntry[], choice: SvidChoice): HintsFileEntry | undefined {
  return entries.find(
    (entry) => (choice.spiffeId === undefined || entry.spiffeId === choice.spiffeId) && (choice.hint === undefined || entry.hint === choice.hint),
  );
}

/** The choice in words, for messages. */
export function describeSvidChoice(choice: SvidChoice): string {
  const parts = [choice.spiffeId, choice.hint === undefined ? undefined : `hint ${JSON.stringify(choice.hint)}`].filter(
    (part): part is string => part !== undefined,
  );
  return parts.join(' with ');
}
