import type { PodInfo, SplitFileNames, VolumeSpec } from '../volume/volume-spec.js';

/** Rebuilds a VolumeSpec from untrusted JSON (a record on disk), checking every field's type. */
export function parseVolumeSpec(raw: unknown): VolumeSpec {
  const obj = asObject(raw, 'spec');
  const pod = asObject(obj.pod, 'spec.pod');
  const files = asObject(obj.files, 'spec.files');
  const podInfo: PodInfo = {
    name: str(pod.name, 'spec.pod.name'),
    namespace: str(pod.namespace, 'spec.pod.namespace'),
    uid: str(pod.uid, 'spec.pod.uid'),
    serviceAccount: str(pod.serviceAccount, 'spec.pod.serviceAccount'),
  };
  const fileNames: SplitFileNames = {
    svid: str(files.svid, 'spec.files.svid'),
    key: str(files.key, 'spec.files.key'),
    bundle: str(files.bundle, 'spec.files.bundle'),
  };
  if (obj.fsGroup !== null && !(Number.isInteger(obj.fsGroup) && (obj.fsGroup as number) >= 0)) {
    throw new Error('spec.fsGroup must be null or a non-negative integer');
  }
  if (obj.spiffeId !== null && typeof obj.spiffeId !== 'string') throw new Error('spec.spiffeId must be null or a string');
  if (typeof obj.bundleIncludeFederated !== 'boolean') throw new Error('spec.bundleIncludeFederated must be a boolean');
  const audiences = obj.jwtAudiences;
  if (!Array.isArray(audiences) || !audiences.every((a) => typeof a === 'string')) {
    throw new Error('spec.jwtAudiences must be an array of strings');
  }
  return {
    volumeId: str(obj.volumeId, 'spec.volumeId'),
    targetPath: str(obj.targetPath, 'spec.targetPath'),
    pod: podInfo,
    files: fileNames,
    bundleIncludeFederated: obj.bundleIncludeFederated,
    fsGroup: obj.fsGroup as number | null,
    spiffeId: obj.spiffeId as string | null,
    jwtAudiences: audiences as string[],
    jwtSvidFile: str(obj.jwtSvidFile, 'spec.jwtSvidFile'),
  };
}

function asObject(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${what} must be an object`);
  return value as Record<string, unknown>;
}

function str(value: unknown, what: string): string {
  if (typeof value !== 'string' || value === '') throw new Error(`${what} must be a non-empty string`);
  return value;
}
