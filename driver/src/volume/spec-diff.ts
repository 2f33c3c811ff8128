import type { VolumeSpec } from './volume-spec.js';

/** Field-by-field differences between two specs, as `field: old → new` (no secrets in a spec). */
export function diffSpecs(existing: VolumeSpec, requested: VolumeSpec): string[] {
  const fields: [string, unknown, unknown][] = [
    ['targetPath', existing.targetPath, requested.targetPath],
    ['pod.name', existing.pod.name, requested.pod.name],
    ['pod.namespace', existing.pod.namespace, requested.pod.namespace],
    ['pod.uid', existing.pod.uid, requested.pod.uid],
    ['pod.serviceAccount', existing.pod.serviceAccount, requested.pod.serviceAccount],
    ['svid-file', existing.files.svid, requested.files.svid],
    ['key-file', existing.files.key, requested.files.key],
    ['bundle-file', existing.files.bundle, requested.files.bundle],
    ['bundle-include-federated', existing.bundleIncludeFederated, requested.bundleIncludeFederated],
    ['fs-group', existing.fsGroup, requested.fsGroup],
    ['spiffe-id', existing.spiffeId, requested.spiffeId],
    ['jwt-audiences', [...existing.jwtAudiences], [...requested.jwtAudiences]],
    ['jwt-svid-file', existing.jwtSvidFile, requested.jwtSvidFile],
  ];
  return fields
    .filter(([, a, b]) => JSON.stringify(a) !== JSON.stringify(b))
    .map(([name, a, b]) => `${name}: ${JSON.stringify(a)} → ${JSON.stringify(b)}`);
}
