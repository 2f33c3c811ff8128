import { SpiffeId } from '@spire-csi/sdk/spiffeid';
import {
  CURRENT_LAYOUT_NAMES,
  isLayoutNamesVersion,
  JWT_SVID_AUDIENCE_FILE_PREFIX,
  JWT_SVID_AUDIENCE_FILE_SUFFIX,
  LAYOUT_NAMES_VERSIONS,
  layoutNames,
  type LayoutNamesVersion,
} from '@spire-csi/sdk/layout';
import type { AccessModeName, NodePublishVolumeRequest, NodeUnpublishVolumeRequest } from '../proto/csi-messages.js';
import type { PodReference } from '../identity/pod-reference.js';
import { DEFAULT_FILES, DEFAULT_JWT_SVID_FILE, type VolumeSpec } from '../volume/volume-spec.js';
import { jwtSvidFilesOf } from '../volume/volume-state.js';
import { isSelinuxLabel } from '../mount/selinux.js';
import { attr, invalid, q, SPIRE_ATTRIBUTE_PREFIX, SPIRE_ATTRIBUTES, type SpireAttribute, type SpireAttributes } from './attributes.js';
import { checkAudienceFileNames, checkDistinct, checkExtraCredentialNames, fileName } from './file-names.js';

/*
 * Pure request validation: no I/O, so every rejection is unit-testable. Each message names the
 * field, what was wrong and what to change, because it is what `kubectl describe pod` shows.
 * Values are quoted with JSON.stringify so control characters cannot garble a message.
 */

export interface ValidationConfig {
  /** kubelet's --root-dir, absolute (e.g. /var/lib/kubelet). */
  readonly kubeletRoot: string;
}

export { SPIRE_ATTRIBUTE_PREFIX, SPIRE_ATTRIBUTES, type SpireAttribute } from './attributes.js';

export const EPHEMERAL_KEY = 'csi.storage.k8s.io/ephemeral';
export const POD_INFO_KEYS = {
  name: 'csi.storage.k8s.io/pod.name',
  namespace: 'csi.storage.k8s.io/pod.namespace',
  uid: 'csi.storage.k8s.io/pod.uid',
  serviceAccount: 'csi.storage.k8s.io/serviceAccount.name',
} as const;

/**
 * Kubelet sends SINGLE_NODE_WRITER for every inline volume (SINGLE_NODE_MULTI_WRITER only to
 * drivers advertising that capability). The other single-node modes and MULTI_NODE_READER_ONLY
 * are harmless for a per-pod read-only tmpfs, so they are accepted too; multi-node writers are not.
 */
export const ACCEPTED_ACCESS_MODES: readonly AccessModeName[] = [
  'SINGLE_NODE_WRITER',
  'SINGLE_NODE_READER_ONLY',
  'SINGLE_NODE_SINGLE_WRITER',
  'SINGLE_NODE_MULTI_WRITER',
  'MULTI_NODE_READER_ONLY',
];

/**
 * The mount flags this tmpfs takes: kubelet's SELinux `context="<label>"` (sent with
 * `seLinuxMount: true` on the CSIDriver), and the flags the driver always sets anyway. Anything
 * else (ro, size=, mode=, exec, ...) would be ignored or contradict what the driver must do
 * (write the files, keep keys non-executable), so it is refused rather than silently dropped.
 */
export const ACCEPTED_MOUNT_FLAGS: readonly string[] = ['context="<SELinux label>"', 'nosuid', 'nodev', 'noexec'];
const NO_OP_MOUNT_FLAGS: readonly string[] = ['nosuid', 'nodev', 'noexec'];
const MAX_HINT_BYTES = 1024;

const MAX_GROUP_ID = 2 ** 31 - 1;
/** CSI's general size limit for string fields (spec, "Size Limits"); kubelet's handles are 68 bytes. */
const MAX_VOLUME_ID_BYTES = 128;
/** Linux PATH_MAX (including the terminating NUL) and NAME_MAX: longer paths fail every syscall. */
const MAX_PATH_BYTES = 4095;
const MAX_SEGMENT_BYTES = 255;

export interface UnpublishTarget {
  readonly volumeId: string;
  readonly targetPath: string;
}

export interface TargetPathParts {
  /** Normalized (repeated and trailing slashes collapsed). */
  readonly path: string;
  readonly podUid: string;
  readonly volumeName: string;
}

export function validatePublishRequest(req: NodePublishVolumeRequest, config: ValidationConfig): VolumeSpec {
  const volumeId = requireVolumeId(req.volume_id);
  const rawTargetPath = requireTargetPath(req.target_path);
  const { mountGroup, mountContext } = checkVolumeCapability(req);
  const context = req.volume_context ?? {};
  const pod = checkPodReference(context);
  checkEphemeral(context);
  if (req.readonly !== true) {
    throw invalid(
      'readonly is false: this driver only publishes read-only volumes; set `readOnly: true` on the csi volume in the pod spec',
    );
  }
  const target = parseTargetPath(rawTargetPath, config.kubeletRoot);
  if (target.podUid !== pod.uid) {
    throw invalid(
      `target_path ${q(rawTargetPath)} belongs to pod UID ${q(target.podUid)} but volume_context ` +
        `${POD_INFO_KEYS.uid} is ${q(pod.uid)}; the request does not come from kubelet for this pod`,
    );
  }
  const attributes = readSpireAttributes(context);
  return buildSpec(volumeId, target.path, pod, mountGroup, mountContext, attributes);
}

export function validateUnpublishRequest(req: NodeUnpublishVolumeRequest, config: ValidationConfig): UnpublishTarget {
  const volumeId = requireVolumeId(req.volume_id);
  const target = parseTargetPath(requireTargetPath(req.target_path), config.kubeletRoot);
  return { volumeId, targetPath: target.path };
}

/**
 * Lexical check that a path is `<kubeletRoot>/pods/<uid>/volumes/kubernetes.io~csi/<name>/mount`.
 * Symlinks are checked separately, on disk (target-path.ts).
 */
export function parseTargetPath(targetPath: string, kubeletRoot: string): TargetPathParts {
  const root = kubeletRoot.replace(/\/+$/, '');
  const expected = `${root}/pods/<pod uid>/volumes/kubernetes.io~csi/<volume name>/mount`;
  if (targetPath.includes('\0')) throw invalid(`target_path ${q(targetPath)} contains a NUL byte`);
  if (Buffer.byteLength(targetPath, 'utf8') > MAX_PATH_BYTES) {
    throw invalid(`target_path ${q(targetPath)} is longer than ${MAX_PATH_BYTES} bytes; expected ${expected}`);
  }
  if (!targetPath.startsWith('/')) {
    throw invalid(`target_path ${q(targetPath)} is not an absolute path; expected ${expected}`);
  }
  const segments = targetPath.split('/').filter((s) => s !== '');
  if (segments.some((s) => s === '.' || s === '..')) {
    throw invalid(`target_path ${q(targetPath)} contains a "." or ".." segment; expected ${expected}`);
  }
  if (segments.some((s) => Buffer.byteLength(s, 'utf8') > MAX_SEGMENT_BYTES)) {
    throw invalid(`target_path ${q(targetPath)} has a path segment longer than ${MAX_SEGMENT_BYTES} bytes; expected ${expected}`);
  }
  const path = `/${segments.join('/')}`;
  const prefix = `${root}/pods/`;
  if (!path.startsWith(prefix)) {
    throw invalid(
      `target_path ${q(targetPath)} is not under ${root}/pods; expected ${expected}. ` +
        "If kubelet runs with another --root-dir, set the driver's --kubelet-root to it",
    );
  }
  const rest = path.slice(prefix.length).split('/');
  const [podUid, volumes, plugin, volumeName, mount] = rest;
  if (
    rest.length !== 5 ||
    podUid === undefined ||
    volumeName === undefined ||
    volumes !== 'volumes' ||
    plugin !== 'kubernetes.io~csi' ||
    mount !== 'mount'
  ) {
    throw invalid(`target_path ${q(targetPath)} is not a CSI volume path; expected ${expected}`);
  }
  return { path, podUid, volumeName };
}

function requireVolumeId(value: string | undefined): string {
  if (value === undefined || value === '') throw invalid('volume_id is missing; it is required');
  if (Buffer.byteLength(value, 'utf8') > MAX_VOLUME_ID_BYTES) {
    throw invalid(`volume_id ${q(value)} is longer than the ${MAX_VOLUME_ID_BYTES} bytes CSI allows for it`);
  }
  return value;
}

function requireTargetPath(value: string | undefined): string {
  if (value === undefined || value === '') throw invalid('target_path is missing; it is required');
  return value;
}

/** The volume_mount_group as sent ('' when unset) and the SELinux label of the mount flags (null without one). */
function checkVolumeCapability(req: NodePublishVolumeRequest): { mountGroup: string; mountContext: string | null } {
  const capability = req.volume_capability;
  if (capability === undefined || capability === null) {
    throw invalid('volume_capability is missing; it is required');
  }
  if (capability.access_type === 'block' || (capability.block !== undefined && capability.block !== null)) {
    throw invalid(
      'volume_capability.block is not supported: this driver only publishes a filesystem (volume_capability.mount); ' +
        'use it as a csi volume mounted into the container, not as a raw block device',
    );
  }
  const mount = capability.mount;
  if (mount === undefined || mount === null) {
    throw invalid('volume_capability.mount is missing; this driver only publishes filesystem volumes');
  }
  const mode = capability.access_mode?.mode;
  if (mode === undefined) {
    throw invalid('volume_capability.access_mode is missing; it is required');
  }
  if (typeof mode !== 'string' || !ACCEPTED_ACCESS_MODES.includes(mode)) {
    throw invalid(
      `volume_capability.access_mode.mode ${q(String(mode))} is not supported; ` +
        `use one of ${ACCEPTED_ACCESS_MODES.join(', ')} (kubelet sends SINGLE_NODE_WRITER for inline volumes)`,
    );
  }
  return { mountGroup: mount.volume_mount_group ?? '', mountContext: mountContextOf(mount.mount_flags ?? []) };
}

/** kubelet sends one option per flag, the label quoted as `context="..."` (its level may hold commas). */
function mountContextOf(flags: readonly string[]): string | null {
  let context: string | null = null;
  for (const flag of flags) {
    if (NO_OP_MOUNT_FLAGS.includes(flag)) continue;
    const match = /^context=("?)(.*)\1$/s.exec(flag);
    if (match === null) {
      throw invalid(
        `volume_capability.mount.mount_flags has ${q(flag)}, which this driver does not apply to its tmpfs; ` +
          `accepted flags, one per entry: ${ACCEPTED_MOUNT_FLAGS.join(', ')}`,
      );
    }
    const label = match[2] ?? '';
    if (!isSelinuxLabel(label)) {
      throw invalid(
        `volume_capability.mount.mount_flags ${q(flag)} does not hold an SELinux label; ` +
          'expected context="user:role:type:level", e.g. context="system_u:object_r:container_file_t:s0:c1,c2"',
      );
    }
    if (context !== null && context !== label) {
      throw invalid(
        `volume_capability.mount.mount_flags has two SELinux contexts (${q(context)} and ${q(label)}); a mount takes one, send only one`,
      );
    }
    context = label;
  }
  return context;
}

function checkPodReference(context: Record<string, string>): PodReference {
  const read = (key: string): string | undefined => (Object.hasOwn(context, key) ? context[key] : undefined);
  const name = read(POD_INFO_KEYS.name);
  const namespace = read(POD_INFO_KEYS.namespace);
  const uid = read(POD_INFO_KEYS.uid);
  // An empty service account name is what kubelet sends when the ServiceAccount admission plugin
  // is off; the pod is still identifiable by namespace and UID, so only absence is an error.
  const serviceAccount = read(POD_INFO_KEYS.serviceAccount);
  if (!name || !namespace || !uid || serviceAccount === undefined) {
    const missing = [
      name ? null : POD_INFO_KEYS.name,
      namespace ? null : POD_INFO_KEYS.namespace,
      uid ? null : POD_INFO_KEYS.uid,
      serviceAccount === undefined ? POD_INFO_KEYS.serviceAccount : null,
    ].filter((key) => key !== null);
    throw invalid(
      `volume_context lacks pod information (${missing.join(', ')}); set \`podInfoOnMount: true\` ` +
        'on the CSIDriver object of this driver so kubelet sends it',
    );
  }
  return { name, namespace, uid, serviceAccount };
}

function checkEphemeral(context: Record<string, string>): void {
  const value = Object.hasOwn(context, EPHEMERAL_KEY) ? context[EPHEMERAL_KEY] : undefined;
  if (value !== 'true') {
    throw invalid(
      `volume_context ${EPHEMERAL_KEY} is ${value === undefined ? 'missing' : q(value)}: this driver only supports ` +
        'ephemeral inline volumes (a `csi:` volume in the pod spec), not PersistentVolumes; ' +
        'the CSIDriver object must list `Ephemeral` in volumeLifecycleModes',
    );
  }
}

function readSpireAttributes(context: Record<string, string>): SpireAttributes {
  const attributes: SpireAttributes = {};
  const unknown: string[] = [];
  for (const [key, value] of Object.entries(context)) {
    if (!key.startsWith(SPIRE_ATTRIBUTE_PREFIX)) continue; // csi.storage.k8s.io/* and foreign keys
    const name = key.slice(SPIRE_ATTRIBUTE_PREFIX.length);
    if ((SPIRE_ATTRIBUTES as readonly string[]).includes(name)) attributes[name as SpireAttribute] = value;
    else unknown.push(key);
  }
  if (unknown.length > 0) {
    const list = unknown.sort().map(q).join(', ');
    throw invalid(
      `volume attribute${unknown.length > 1 ? 's' : ''} ${list} ${unknown.length > 1 ? 'are' : 'is'} not known; ` +
        `valid ${SPIRE_ATTRIBUTE_PREFIX} attributes are: ${SPIRE_ATTRIBUTES.join(', ')}`,
    );
  }
  return attributes;
}

function buildSpec(
  volumeId: string,
  targetPath: string,
  pod: PodReference,
  mountGroup: string,
  mountContext: string | null,
  attributes: SpireAttributes,
): VolumeSpec {
  const layout = parseLayoutNames(attributes['layout-names']);
  const allSvids = parseBoolean('all-svids', attributes['all-svids']);
  const jwtAudiences = attributes['jwt-audiences'] === undefined ? [] : parseAudiences(attributes['jwt-audiences']);
  if (attributes['jwt-svid-file'] !== undefined && jwtAudiences.length === 0) {
    throw invalid(
      `volume attribute ${attr('jwt-svid-file')} is set but ${attr('jwt-audiences')} is not; ` +
        `set ${attr('jwt-audiences')} (comma-separated) to get a JWT-SVID, or remove ${attr('jwt-svid-file')}`,
    );
  }
  const several = jwtAudiences.length > 1;
  if (attributes['jwt-svid-file'] !== undefined && several) {
    throw invalid(
      `volume attribute ${attr('jwt-svid-file')} is set but ${attr('jwt-audiences')} lists ${jwtAudiences.length} audiences, ` +
        `and each audience gets its own token in ${JWT_SVID_AUDIENCE_FILE_PREFIX}<audience>${JWT_SVID_AUDIENCE_FILE_SUFFIX}, ` +
        `so one file name is ambiguous; remove ${attr('jwt-svid-file')}, or list a single audience`,
    );
  }
  const files = {
    svid: fileName('svid-file', attributes, DEFAULT_FILES.svid, jwtAudiences),
    key: fileName('key-file', attributes, DEFAULT_FILES.key, jwtAudiences),
    bundle: fileName('bundle-file', attributes, DEFAULT_FILES.bundle, jwtAudiences),
  };
  const jwtSvidFile = fileName('jwt-svid-file', attributes, DEFAULT_JWT_SVID_FILE, jwtAudiences);
  const credentialBundleFile = fileName('credential-bundle-file', attributes, layoutNames(layout).credentialBundle, jwtAudiences);
  const named: [SpireAttribute, string][] = [
    ['credential-bundle-file', credentialBundleFile],
    ['svid-file', files.svid],
    ['key-file', files.key],
    ['bundle-file', files.bundle],
  ];
  // With several audiences jwt-svid-file is not written, so it cannot collide with anything.
  if (jwtAudiences.length === 1) named.push(['jwt-svid-file', jwtSvidFile]);
  checkDistinct(named, attributes);
  if (allSvids) checkExtraCredentialNames(named, credentialBundleFile);
  if (several) checkAudienceFileNames(jwtSvidFilesOf({ jwtAudiences, jwtSvidFile }));

  return {
    volumeId,
    targetPath,
    pod,
    files,
    bundleIncludeFederated: parseBoolean('bundle-include-federated', attributes['bundle-include-federated']),
    fsGroup: fsGroupOf(mountGroup, attributes['fs-group']),
    spiffeId: attributes['spiffe-id'] === undefined ? null : parseSpiffeId(attributes['spiffe-id']),
    jwtAudiences,
    jwtSvidFile,
    layoutNames: layout,
    credentialBundleFile,
    hint: attributes.hint === undefined ? null : parseHint(attributes.hint),
    allSvids,
    mountContext,
  };
}

function parseLayoutNames(value: string | undefined): LayoutNamesVersion {
  if (value === undefined) return CURRENT_LAYOUT_NAMES;
  if (isLayoutNamesVersion(value)) return value;
  const described = LAYOUT_NAMES_VERSIONS.map((version) => {
    const names = layoutNames(version);
    return `${version}${version === CURRENT_LAYOUT_NAMES ? ', the default' : ''}: ${names.credentialBundle} and <trust-domain>${names.trustBundleSuffix}`;
  });
  throw invalid(
    `volume attribute ${attr('layout-names')} is ${q(value)}; use one of ${LAYOUT_NAMES_VERSIONS.join(', ')} (${described.join('; ')})`,
  );
}

/** SPIRE's hints are free text; this keeps them printable and of a size a message can quote. */
function parseHint(value: string): string {
  const field = `volume attribute ${attr('hint')}`;
  if (value === '') throw invalid(`${field} is empty; set the hint of the registration entry to publish, or remove the attribute`);
  // eslint-disable-next-line no-control-regex -- rejecting control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(value)) throw invalid(`${field} ${q(value)} contains a control character; SPIRE hints are plain text`);
  if (Buffer.byteLength(value, 'utf8') > MAX_HINT_BYTES) throw invalid(`${field} is longer than ${MAX_HINT_BYTES} bytes; use the entry's hint as set in SPIRE`);
  return value;
}

function parseBoolean(name: SpireAttribute, value: string | undefined): boolean {
  if (value === undefined || value === 'false') return false;
  if (value === 'true') return true;
  throw invalid(`volume attribute ${attr(name)} is ${q(value)}; use "true" or "false"`);
}

function fsGroupOf(mountGroup: string, attribute: string | undefined): number | null {
  if (attribute !== undefined) {
    return parseGroupId(attribute, `volume attribute ${attr('fs-group')}`, 'set it to the numeric group ID');
  }
  if (mountGroup === '') return null;
  return parseGroupId(
    mountGroup,
    "volume_capability.mount.volume_mount_group (the pod's fsGroup)",
    `set ${attr('fs-group')} to override it`,
  );
}

function parseGroupId(value: string, field: string, fix: string): number {
  const id = /^(0|[1-9][0-9]{0,9})$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(id) || id > MAX_GROUP_ID) {
    throw invalid(`${field} ${q(value)} is not a group ID: expected a decimal integer from 0 to ${MAX_GROUP_ID}; ${fix}`);
  }
  return id;
}

function parseSpiffeId(value: string): string {
  try {
    return SpiffeId.parse(value).toString();
  } catch (err) {
    throw invalid(
      `volume attribute ${attr('spiffe-id')} ${q(value)} is not a valid SPIFFE ID (${(err as Error).message}); ` +
        'use the form spiffe://trust-domain/path',
    );
  }
}

function parseAudiences(value: string): string[] {
  const entries = value.split(',').map((entry) => entry.trim());
  if (entries.some((entry) => entry === '')) {
    throw invalid(
      `volume attribute ${attr('jwt-audiences')} ${q(value)} has an empty entry; ` +
        'list one or more audiences separated by commas, e.g. "api.example.org,vault"',
    );
  }
  return [...new Set(entries)];
}
