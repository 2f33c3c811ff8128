/** The pod facts kubelet passes in volume_context when the CSIDriver sets podInfoOnMount. */
export interface PodInfo {
  readonly name: string;
  readonly namespace: string;
  readonly uid: string;
  readonly serviceAccount: string;
}

/** Split-file names chosen per volume (spiffe-helper-compatible defaults). */
export interface SplitFileNames {
  readonly svid: string;
  readonly key: string;
  readonly bundle: string;
}

/**
 * Everything a validated NodePublishVolume asks for. It is what the metadata record stores (no
 * secrets) and what a re-publish is compared against.
 */
export interface VolumeSpec {
  readonly volumeId: string;
  readonly targetPath: string;
  readonly pod: PodInfo;
  readonly files: SplitFileNames;
  readonly bundleIncludeFederated: boolean;
  /** Group that may read key material; null means owner-only. */
  readonly fsGroup: number | null;
  /** Which SVID to publish when several match; null picks the first. */
  readonly spiffeId: string | null;
  /** JWT-SVID audiences; empty means no JWT is fetched or written. */
  readonly jwtAudiences: readonly string[];
  readonly jwtSvidFile: string;
}

export const DEFAULT_FILES: SplitFileNames = { svid: 'svid.pem', key: 'svid_key.pem', bundle: 'bundle.pem' };
export const DEFAULT_JWT_SVID_FILE = 'jwt-svid.token';

/** True when two specs ask for the same volume, so a re-publish is a no-op rather than a conflict. */
export function sameSpec(a: VolumeSpec, b: VolumeSpec): boolean {
  return canonicalSpec(a) === canonicalSpec(b);
}

function canonicalSpec(spec: VolumeSpec): string {
  return JSON.stringify([
    spec.volumeId,
    spec.targetPath,
    spec.pod.name,
    spec.pod.namespace,
    spec.pod.uid,
    spec.pod.serviceAccount,
    spec.files.svid,
    spec.files.key,
    spec.files.bundle,
    spec.bundleIncludeFederated,
    spec.fsGroup,
    spec.spiffeId,
    [...spec.jwtAudiences],
    spec.jwtSvidFile,
  ]);
}
