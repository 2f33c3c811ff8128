import { CURRENT_LAYOUT_NAMES, isLayoutNamesVersion, layoutNames } from '@spire-csi/sdk/layout';
import { DEFAULT_FILES, DEFAULT_JWT_SVID_FILE, diffSpecs, type VolumeSpec } from '../volume/volume-spec.js';
import type { NodePublishVolumeRequest } from '../proto/csi-messages.js';
import { checkTargetPathOnDisk } from '../target-path/target-path.js';
import { EPHEMERAL_KEY, POD_INFO_KEYS, SPIRE_ATTRIBUTE_PREFIX, validatePublishRequest, type ValidationConfig } from './validation.js';

export class RecordCheckError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RecordCheckError';
  }
}

/**
 * A record in the state dir is only as trustworthy as the directory's permissions. Before a
 * restart acts on one (mount, subscribe, tear down), it must pass exactly the checks a
 * NodePublishVolume would: it is turned back into the request kubelet would have sent, validated
 * like one, and the result must be the recorded spec itself; then the target is checked on disk.
 */
export async function checkRecordedSpec(spec: VolumeSpec, config: ValidationConfig): Promise<void> {
  let validated: VolumeSpec;
  try {
    validated = validatePublishRequest(requestOf(spec), config);
    await checkTargetPathOnDisk(validated.targetPath, config.kubeletRoot);
  } catch (err) {
    throw new RecordCheckError(`the record would not pass as a publish request: ${(err as Error).message}`, { cause: err });
  }
  const diff = diffSpecs(spec.jwtAudiences.length > 1 ? { ...spec, jwtSvidFile: validated.jwtSvidFile } : spec, validated);
  if (diff.length > 0) throw new RecordCheckError(`the record differs from what its request would publish: ${diff.join('; ')}`);
}

/** The NodePublishVolume kubelet would have sent for `spec` (attributes only where they differ from the defaults). */
function requestOf(spec: VolumeSpec): NodePublishVolumeRequest {
  const attributes: Record<string, string> = {};
  const set = (name: string, value: string, fallback: string): void => {
    if (value !== fallback) attributes[`${SPIRE_ATTRIBUTE_PREFIX}${name}`] = value;
  };
  set('svid-file', spec.files.svid, DEFAULT_FILES.svid);
  set('key-file', spec.files.key, DEFAULT_FILES.key);
  set('bundle-file', spec.files.bundle, DEFAULT_FILES.bundle);
  set('bundle-include-federated', String(spec.bundleIncludeFederated), 'false');
  set('fs-group', spec.fsGroup === null ? '' : String(spec.fsGroup), '');
  set('spiffe-id', spec.spiffeId ?? '', '');
  set('jwt-audiences', spec.jwtAudiences.join(','), '');
  // With several audiences the file name is per audience; a record written before that rule may
  // still carry a name, which is ignored rather than making the record fail.
  if (spec.jwtAudiences.length <= 1) set('jwt-svid-file', spec.jwtSvidFile, DEFAULT_JWT_SVID_FILE);
  set('layout-names', spec.layoutNames, CURRENT_LAYOUT_NAMES);
  // An unknown version is left to the validation to reject, naming the valid ones.
  const layoutDefault = isLayoutNamesVersion(spec.layoutNames) ? layoutNames(spec.layoutNames).credentialBundle : '';
  set('credential-bundle-file', spec.credentialBundleFile, layoutDefault);
  set('hint', spec.hint ?? '', '');
  set('all-svids', String(spec.allSvids), 'false');
  return {
    volume_id: spec.volumeId,
    target_path: spec.targetPath,
    readonly: true,
    volume_capability: {
      mount: { fs_type: '', mount_flags: spec.mountContext === null ? [] : [`context="${spec.mountContext}"`], volume_mount_group: '' },
      access_mode: { mode: 'SINGLE_NODE_WRITER' },
    },
    volume_context: {
      [POD_INFO_KEYS.name]: spec.pod.name,
      [POD_INFO_KEYS.namespace]: spec.pod.namespace,
      [POD_INFO_KEYS.uid]: spec.pod.uid,
      [POD_INFO_KEYS.serviceAccount]: spec.pod.serviceAccount,
      [EPHEMERAL_KEY]: 'true',
      ...attributes,
    },
  };
}
