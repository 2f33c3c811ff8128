import { CURRENT_LAYOUT_NAMES, DEFAULT_JWT_SVID_FILE, DEFAULT_SPLIT_FILES, layoutNames, type LayoutNamesVersion, type SplitFileNames } from '@spire-csi/sdk/layout';
import type { PodReference } from '../identity/pod-reference.js';

export type { SplitFileNames };
export { DEFAULT_JWT_SVID_FILE };
/** Split-file names of a volume that names none. */
export const DEFAULT_FILES: SplitFileNames = DEFAULT_SPLIT_FILES;

/**
 * Everything a validated NodePublishVolume asks for. It is what the metadata record stores (no
 * secrets) and what a re-publish is compared against.
 */
export interface VolumeSpec {
  readonly volumeId: string;
  readonly targetPath: string;
  readonly pod: PodReference;
  readonly files: SplitFileNames;
  readonly bundleIncludeFederated: boolean;
  /** Group that may read key material; null means owner-only. */
  readonly fsGroup: number | null;
  /** Which SVID to publish when several match; null picks the first. */
  readonly spiffeId: string | null;
  /** JWT-SVID audiences; empty means no JWT is fetched or written. */
  readonly jwtAudiences: readonly string[];
  readonly jwtSvidFile: string;
  /** Which spellings of the standard's names the folder uses (csi.spire.io/layout-names). */
  readonly layoutNames: LayoutNamesVersion;
  /** The chosen SVID's credential bundle; extra SVIDs get `<n>.` in front of it. */
  readonly credentialBundleFile: string;
  /** Which SVID to publish by the agent's hint; null does not filter by hint. */
  readonly hint: string | null;
  /** Also publish every other SVID of the pod, numbered, with hints.json. */
  readonly allSvids: boolean;
  /** SELinux label for the tmpfs from kubelet's `context=` mount flag; null when kubelet sent none. */
  readonly mountContext: string | null;
}

/** The fields of a request that sets none of layout-names, credential-bundle-file, hint, all-svids or a mount context. */
export const DEFAULT_LAYOUT_OPTIONS: Pick<VolumeSpec, 'layoutNames' | 'credentialBundleFile' | 'hint' | 'allSvids' | 'mountContext'> = Object.freeze({
  layoutNames: CURRENT_LAYOUT_NAMES,
  credentialBundleFile: layoutNames(CURRENT_LAYOUT_NAMES).credentialBundle,
  hint: null,
  allSvids: false,
  mountContext: null,
});

/**
 * Layout names of a record written before the field existed: the names that volume was published
 * with, so a driver upgrade never renames the files of a running pod.
 */
export const RECORD_LAYOUT_NAMES_DEFAULT: LayoutNamesVersion = '2026-02';

/** How a field's value is checked when it is read back from a record. */
export type SpecFieldType = 'string' | 'boolean' | 'gid-or-null' | 'string-or-null' | 'strings';

export interface SpecField {
  /** Where the value sits in a VolumeSpec (and in its JSON record). */
  readonly path: readonly string[];
  /** The name users know it by (the volume attribute where there is one), for conflict messages. */
  readonly label: string;
  readonly type: SpecFieldType;
  /**
   * The value of a record written before the field existed, from the fields parsed before it (the
   * table's order); without it the field is required.
   */
  readonly whenAbsent?: (earlier: Readonly<Record<string, unknown>>) => unknown;
}

/** The one list of a spec's fields: equality, conflict diffs and record parsing all follow it. */
export const VOLUME_SPEC_FIELDS: readonly SpecField[] = [
  { path: ['volumeId'], label: 'volumeId', type: 'string' },
  { path: ['targetPath'], label: 'targetPath', type: 'string' },
  { path: ['pod', 'name'], label: 'pod.name', type: 'string' },
  { path: ['pod', 'namespace'], label: 'pod.namespace', type: 'string' },
  { path: ['pod', 'uid'], label: 'pod.uid', type: 'string' },
  { path: ['pod', 'serviceAccount'], label: 'pod.serviceAccount', type: 'string' },
  { path: ['files', 'svid'], label: 'svid-file', type: 'string' },
  { path: ['files', 'key'], label: 'key-file', type: 'string' },
  { path: ['files', 'bundle'], label: 'bundle-file', type: 'string' },
  { path: ['bundleIncludeFederated'], label: 'bundle-include-federated', type: 'boolean' },
  { path: ['fsGroup'], label: 'fs-group', type: 'gid-or-null' },
  { path: ['spiffeId'], label: 'spiffe-id', type: 'string-or-null' },
  { path: ['jwtAudiences'], label: 'jwt-audiences', type: 'strings' },
  { path: ['jwtSvidFile'], label: 'jwt-svid-file', type: 'string' },
  // Added with the SPIFFE Filesystem Delivery names (issue #15): older records resume unchanged.
  { path: ['layoutNames'], label: 'layout-names', type: 'string', whenAbsent: () => RECORD_LAYOUT_NAMES_DEFAULT },
  {
    path: ['credentialBundleFile'],
    label: 'credential-bundle-file',
    type: 'string',
    whenAbsent: (earlier) => layoutNames(earlier.layoutNames as LayoutNamesVersion).credentialBundle,
  },
  { path: ['hint'], label: 'hint', type: 'string-or-null', whenAbsent: () => null },
  { path: ['allSvids'], label: 'all-svids', type: 'boolean', whenAbsent: () => false },
  { path: ['mountContext'], label: 'mount_flags context', type: 'string-or-null', whenAbsent: () => null },
];

/** The value at `path` of a spec or of any JSON object; undefined where the path breaks off. */
export function valueAt(obj: unknown, path: readonly string[]): unknown {
  let value: unknown = obj;
  for (const key of path) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

/** True when two specs ask for the same volume, so a re-publish is a no-op rather than a conflict. */
export function sameSpec(a: VolumeSpec, b: VolumeSpec): boolean {
  return diffSpecs(a, b).length === 0;
}

/** Field-by-field differences between two specs, as `field: old → new` (no secrets in a spec). */
export function diffSpecs(existing: VolumeSpec, requested: VolumeSpec): string[] {
  const out: string[] = [];
  for (const field of VOLUME_SPEC_FIELDS) {
    const a = JSON.stringify(valueAt(existing, field.path));
    const b = JSON.stringify(valueAt(requested, field.path));
    if (a !== b) out.push(`${field.label}: ${a} → ${b}`);
  }
  return out;
}
