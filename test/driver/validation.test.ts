import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { CsiError } from '../../driver/src/csi/errors.js';
import {
  ACCEPTED_ACCESS_MODES,
  parseTargetPath,
  validatePublishRequest,
  validateUnpublishRequest,
} from '../../driver/src/csi/validation.js';
import type { NodePublishVolumeRequest } from '../../driver/src/proto/csi-messages.js';
import { DEFAULT_LAYOUT_OPTIONS, type VolumeSpec } from '../../driver/src/volume/volume-spec.js';

const ROOT = '/var/lib/kubelet';
const UID = '6f1c0a52-3b0e-4d55-9a4e-0a6b3f1b2c3d';
const TARGET = `${ROOT}/pods/${UID}/volumes/kubernetes.io~csi/spiffe/mount`;
const config = { kubeletRoot: ROOT };

/** What kubelet sends for an inline volume, decoded with the loader's options. */
function kubeletRequest(): NodePublishVolumeRequest {
  return {
    volume_id: 'csi-0123abcd',
    publish_context: {},
    staging_target_path: '',
    target_path: TARGET,
    volume_capability: {
      mount: { fs_type: '', mount_flags: [], volume_mount_group: '' },
      block: null,
      access_type: 'mount',
      access_mode: { mode: 'SINGLE_NODE_WRITER' },
    },
    readonly: true,
    secrets: {},
    volume_context: {
      'csi.storage.k8s.io/ephemeral': 'true',
      'csi.storage.k8s.io/pod.name': 'web-0',
      'csi.storage.k8s.io/pod.namespace': 'shop',
      'csi.storage.k8s.io/pod.uid': UID,
      'csi.storage.k8s.io/serviceAccount.name': 'web',
    },
  };
}

type Mutation = (req: NodePublishVolumeRequest) => void;

function withAttributes(attributes: Record<string, string>): Mutation {
  return (req) => Object.assign(req.volume_context!, attributes);
}

function withoutContextKey(key: string): Mutation {
  return (req) => {
    delete req.volume_context![key];
  };
}

function mountOf(req: NodePublishVolumeRequest) {
  return req.volume_capability!.mount!;
}

function publish(mutate: Mutation, kubeletRoot = ROOT): VolumeSpec {
  const req = kubeletRequest();
  mutate(req);
  return validatePublishRequest(req, { kubeletRoot });
}

function rejection(fn: () => unknown): CsiError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CsiError);
    expect((err as CsiError).code).toBe(status.INVALID_ARGUMENT);
    return err as CsiError;
  }
  throw new Error('expected an InvalidArgument rejection');
}

const DEFAULT_SPEC: VolumeSpec = {
  volumeId: 'csi-0123abcd',
  targetPath: TARGET,
  pod: { name: 'web-0', namespace: 'shop', uid: UID, serviceAccount: 'web' },
  files: { svid: 'svid.pem', key: 'svid_key.pem', bundle: 'bundle.pem' },
  bundleIncludeFederated: false,
  fsGroup: null,
  spiffeId: null,
  jwtAudiences: [],
  jwtSvidFile: 'jwt-svid.token',
  ...DEFAULT_LAYOUT_OPTIONS,
};

describe('validatePublishRequest accepts', () => {
  it('exactly what kubelet sends for an inline volume, with defaults', () => {
    expect(publish(() => {})).toEqual(DEFAULT_SPEC);
  });

  const accepted: [string, Mutation, Partial<VolumeSpec>][] = [
    ...ACCEPTED_ACCESS_MODES.map((mode): [string, Mutation, Partial<VolumeSpec>] => [
      `access mode ${mode}`,
      (req) => {
        req.volume_capability!.access_mode = { mode };
      },
      {},
    ]),
    ['an empty service account name (ServiceAccount admission off)', withAttributes({ 'csi.storage.k8s.io/serviceAccount.name': '' }), { pod: { ...DEFAULT_SPEC.pod, serviceAccount: '' } }],
    [
      'foreign keys and other csi.storage.k8s.io keys, which are ignored',
      withAttributes({ foo: 'bar', 'example.com/x': 'y', 'csi.storage.k8s.io/serviceAccount.tokens': '{"a":{}}', 'CSI.SPIRE.IO/svid-file': 'ignored' }),
      {},
    ],
    ['secrets and fs_type, which are ignored', (req) => { req.secrets = { token: 's3cret' }; mountOf(req).fs_type = 'ext4'; }, {}],
    // The SELinux label kubelet sends with seLinuxMount: true, quoted (its categories hold commas).
    ['kubelet\'s SELinux context', (req) => { mountOf(req).mount_flags = ['context="system_u:object_r:container_file_t:s0:c12,c34"']; }, { mountContext: 'system_u:object_r:container_file_t:s0:c12,c34' }],
    ['an unquoted SELinux context', (req) => { mountOf(req).mount_flags = ['context=system_u:object_r:container_file_t:s0'] }, { mountContext: 'system_u:object_r:container_file_t:s0' }],
    ['a context with a sensitivity range', (req) => { mountOf(req).mount_flags = ['context="u:r:t:s0-s0:c0.c1023"'] }, { mountContext: 'u:r:t:s0-s0:c0.c1023' }],
    ['the same context twice', (req) => { mountOf(req).mount_flags = ['context="u:r:t:s0"', 'context="u:r:t:s0"'] }, { mountContext: 'u:r:t:s0' }],
    ['the flags the driver sets anyway', (req) => { mountOf(req).mount_flags = ['nosuid', 'nodev', 'noexec'] }, {}],
    ['layout-names 2026-02, which keeps the earlier names', withAttributes({ 'csi.spire.io/layout-names': '2026-02' }), { layoutNames: '2026-02', credentialBundleFile: 'credential-bundle.pem' }],
    ['layout-names 2026-08, the default said out loud', withAttributes({ 'csi.spire.io/layout-names': '2026-08' }), {}],
    ['a credential-bundle-file', withAttributes({ 'csi.spire.io/credential-bundle-file': 'tls-bundle.pem' }), { credentialBundleFile: 'tls-bundle.pem' }],
    [
      'credential-bundle-file taking another spelling of itself',
      withAttributes({ 'csi.spire.io/credential-bundle-file': 'credential-bundle.private-key.pem' }),
      { credentialBundleFile: 'credential-bundle.private-key.pem' },
    ],
    [
      'credential-bundle-file with layout-names 2026-02',
      withAttributes({ 'csi.spire.io/layout-names': '2026-02', 'csi.spire.io/credential-bundle-file': 'creds.pem' }),
      { layoutNames: '2026-02', credentialBundleFile: 'creds.pem' },
    ],
    ['a hint', withAttributes({ 'csi.spire.io/hint': 'internal' }), { hint: 'internal' }],
    [
      'a hint together with a spiffe-id',
      withAttributes({ 'csi.spire.io/hint': 'external', 'csi.spire.io/spiffe-id': 'spiffe://example.org/web' }),
      { hint: 'external', spiffeId: 'spiffe://example.org/web' },
    ],
    ['all-svids "true"', withAttributes({ 'csi.spire.io/all-svids': 'true' }), { allSvids: true }],
    ['all-svids "false"', withAttributes({ 'csi.spire.io/all-svids': 'false' }), { allSvids: false }],
    [
      // 1.credential-bundle.pem is only an extra SVID's name with layout-names 2026-02.
      'a split file named like an extra SVID of another layout',
      withAttributes({ 'csi.spire.io/all-svids': 'true', 'csi.spire.io/svid-file': '1.credential-bundle.pem' }),
      { allSvids: true, files: { ...DEFAULT_SPEC.files, svid: '1.credential-bundle.pem' } },
    ],
    [
      'custom split-file names',
      withAttributes({ 'csi.spire.io/svid-file': 'tls.crt', 'csi.spire.io/key-file': 'tls.key', 'csi.spire.io/bundle-file': 'ca.crt' }),
      { files: { svid: 'tls.crt', key: 'tls.key', bundle: 'ca.crt' } },
    ],
    ['a file name of exactly 255 bytes', withAttributes({ 'csi.spire.io/svid-file': 'a'.repeat(255) }), { files: { ...DEFAULT_SPEC.files, svid: 'a'.repeat(255) } }],
    ['a non-ASCII file name', withAttributes({ 'csi.spire.io/svid-file': 'zertifikät.pem' }), { files: { ...DEFAULT_SPEC.files, svid: 'zertifikät.pem' } }],
    ['a name containing dots and spaces', withAttributes({ 'csi.spire.io/key-file': 'my key..pem' }), { files: { ...DEFAULT_SPEC.files, key: 'my key..pem' } }],
    ['bundle-include-federated "true"', withAttributes({ 'csi.spire.io/bundle-include-federated': 'true' }), { bundleIncludeFederated: true }],
    ['bundle-include-federated "false"', withAttributes({ 'csi.spire.io/bundle-include-federated': 'false' }), { bundleIncludeFederated: false }],
    ['the pod fsGroup from volume_mount_group', (req) => { mountOf(req).volume_mount_group = '1000'; }, { fsGroup: 1000 }],
    ['fs-group overriding volume_mount_group', (req) => { mountOf(req).volume_mount_group = '1000'; withAttributes({ 'csi.spire.io/fs-group': '2000' })(req); }, { fsGroup: 2000 }],
    ['fs-group overriding a volume_mount_group it makes irrelevant', (req) => { mountOf(req).volume_mount_group = 'staff'; withAttributes({ 'csi.spire.io/fs-group': '5' })(req); }, { fsGroup: 5 }],
    ['fs-group 0', withAttributes({ 'csi.spire.io/fs-group': '0' }), { fsGroup: 0 }],
    ['fs-group 2147483647', withAttributes({ 'csi.spire.io/fs-group': '2147483647' }), { fsGroup: 2147483647 }],
    ['a spiffe-id', withAttributes({ 'csi.spire.io/spiffe-id': 'spiffe://example.org/ns/shop/sa/web' }), { spiffeId: 'spiffe://example.org/ns/shop/sa/web' }],
    ['jwt-audiences, trimmed and de-duplicated', withAttributes({ 'csi.spire.io/jwt-audiences': ' api , vault,api' }), { jwtAudiences: ['api', 'vault'] }],
    [
      'jwt-svid-file with audiences',
      withAttributes({ 'csi.spire.io/jwt-audiences': 'api', 'csi.spire.io/jwt-svid-file': 'token' }),
      { jwtAudiences: ['api'], jwtSvidFile: 'token' },
    ],
    [
      'several jwt-audiences, each to get its own token file',
      withAttributes({ 'csi.spire.io/jwt-audiences': 'api,billing,https://x.example/v1' }),
      { jwtAudiences: ['api', 'billing', 'https://x.example/v1'] },
    ],
    [
      // With several audiences nothing is written to jwt-svid.token, so a split file may take it.
      'a split file named jwt-svid.token with several audiences',
      withAttributes({ 'csi.spire.io/jwt-audiences': 'api,billing', 'csi.spire.io/key-file': 'jwt-svid.token' }),
      { jwtAudiences: ['api', 'billing'], files: { ...DEFAULT_SPEC.files, key: 'jwt-svid.token' } },
    ],
    [
      'jwt-svid-file naming the per-audience file of its single audience',
      withAttributes({ 'csi.spire.io/jwt-audiences': 'https://x.example/v1', 'csi.spire.io/jwt-svid-file': 'jwt-svid.https%3A%2F%2Fx.example%2Fv1.token' }),
      { jwtAudiences: ['https://x.example/v1'], jwtSvidFile: 'jwt-svid.https%3A%2F%2Fx.example%2Fv1.token' },
    ],
    [
      'a long single audience (its token goes to jwt-svid-file)',
      withAttributes({ 'csi.spire.io/jwt-audiences': '/'.repeat(100) }),
      { jwtAudiences: ['/'.repeat(100)] },
    ],
    [
      'a jwt-svid-file equal to a split file name when no JWT is requested',
      withAttributes({ 'csi.spire.io/svid-file': 'jwt-svid.token' }),
      { files: { ...DEFAULT_SPEC.files, svid: 'jwt-svid.token' } },
    ],
    ['a target path with repeated and trailing slashes, normalized', (req) => { req.target_path = `${ROOT}//pods/${UID}/volumes/kubernetes.io~csi/spiffe/mount/`; }, { targetPath: TARGET }],
  ];

  it.each(accepted)('%s', (_name, mutate, expected) => {
    expect(publish(mutate)).toEqual({ ...DEFAULT_SPEC, ...expected });
  });

  it('a kubelet root given with a trailing slash', () => {
    expect(publish(() => {}, `${ROOT}/`).targetPath).toBe(TARGET);
  });

  it('a kubelet root of /', () => {
    const target = `/pods/${UID}/volumes/kubernetes.io~csi/v/mount`;
    expect(publish((req) => { req.target_path = target; }, '/').targetPath).toBe(target);
  });
});

describe('validatePublishRequest rejects with InvalidArgument naming the field and the fix', () => {
  const rejected: [string, Mutation, string[]][] = [
    ['a missing volume_id', (req) => { req.volume_id = ''; }, ['volume_id is missing']],
    ['an absent volume_id', (req) => { delete req.volume_id; }, ['volume_id is missing']],
    ['a missing target_path', (req) => { req.target_path = ''; }, ['target_path is missing']],
    ['a missing volume_capability', (req) => { req.volume_capability = null; }, ['volume_capability is missing']],
    [
      'a block capability',
      (req) => { req.volume_capability = { block: {}, mount: null, access_type: 'block', access_mode: { mode: 'SINGLE_NODE_WRITER' } }; },
      ['volume_capability.block is not supported', 'volume_capability.mount'],
    ],
    [
      'a capability with neither mount nor block',
      (req) => { req.volume_capability = { block: null, mount: null, access_mode: { mode: 'SINGLE_NODE_WRITER' } }; },
      ['volume_capability.mount is missing'],
    ],
    ['a missing access mode', (req) => { req.volume_capability!.access_mode = null; }, ['volume_capability.access_mode is missing']],
    ['access mode UNKNOWN', (req) => { req.volume_capability!.access_mode = { mode: 'UNKNOWN' }; }, ['volume_capability.access_mode.mode "UNKNOWN"', 'SINGLE_NODE_WRITER']],
    ['access mode MULTI_NODE_MULTI_WRITER', (req) => { req.volume_capability!.access_mode = { mode: 'MULTI_NODE_MULTI_WRITER' }; }, ['"MULTI_NODE_MULTI_WRITER" is not supported']],
    ['access mode MULTI_NODE_SINGLE_WRITER', (req) => { req.volume_capability!.access_mode = { mode: 'MULTI_NODE_SINGLE_WRITER' }; }, ['"MULTI_NODE_SINGLE_WRITER" is not supported']],
    ['an access mode number this proto does not know', (req) => { req.volume_capability!.access_mode = { mode: 42 }; }, ['access_mode.mode "42"']],
    ['a persistent volume (ephemeral "false")', withAttributes({ 'csi.storage.k8s.io/ephemeral': 'false' }), ['csi.storage.k8s.io/ephemeral is "false"', 'only supports ephemeral inline volumes']],
    ['no ephemeral key', withoutContextKey('csi.storage.k8s.io/ephemeral'), ['csi.storage.k8s.io/ephemeral is missing', 'ephemeral inline volumes']],
    ['readonly false', (req) => { req.readonly = false; }, ['readonly is false', 'set `readOnly: true` on the csi volume']],
    ...(['pod.name', 'pod.namespace', 'pod.uid', 'serviceAccount.name'] as const).map((key): [string, Mutation, string[]] => [
      `no csi.storage.k8s.io/${key}`,
      withoutContextKey(`csi.storage.k8s.io/${key}`),
      [`csi.storage.k8s.io/${key}`, 'set `podInfoOnMount: true`', 'CSIDriver'],
    ]),
    ['an empty pod.name', withAttributes({ 'csi.storage.k8s.io/pod.name': '' }), ['csi.storage.k8s.io/pod.name', 'podInfoOnMount']],
    [
      'no pod information at all (podInfoOnMount false)',
      (req) => { req.volume_context = {}; },
      ['csi.storage.k8s.io/pod.name, csi.storage.k8s.io/pod.namespace, csi.storage.k8s.io/pod.uid, csi.storage.k8s.io/serviceAccount.name', 'podInfoOnMount: true'],
    ],
    ['a relative target path', (req) => { req.target_path = 'pods/x/mount'; }, ['target_path "pods/x/mount" is not an absolute path']],
    ['a target path outside the kubelet root', (req) => { req.target_path = `/tmp/pods/${UID}/volumes/kubernetes.io~csi/spiffe/mount`; }, ['is not under /var/lib/kubelet/pods', '--kubelet-root']],
    ['a sibling of the kubelet root sharing its prefix', (req) => { req.target_path = `${ROOT}2/pods/${UID}/volumes/kubernetes.io~csi/spiffe/mount`; }, ['is not under /var/lib/kubelet/pods']],
    ['a ".." segment', (req) => { req.target_path = `${ROOT}/pods/${UID}/volumes/kubernetes.io~csi/../../../../etc/mount`; }, ['contains a "." or ".." segment']],
    ['a "." segment', (req) => { req.target_path = `${ROOT}/pods/${UID}/volumes/./kubernetes.io~csi/spiffe/mount`; }, ['contains a "." or ".." segment']],
    ['a NUL byte in the target path', (req) => { req.target_path = `${TARGET}\0`; }, ['target_path', 'NUL']],
    ['another plugin folder', (req) => { req.target_path = `${ROOT}/pods/${UID}/volumes/kubernetes.io~empty-dir/spiffe/mount`; }, ['is not a CSI volume path', 'kubernetes.io~csi/<volume name>/mount']],
    ['a path not ending in /mount', (req) => { req.target_path = `${ROOT}/pods/${UID}/volumes/kubernetes.io~csi/spiffe`; }, ['is not a CSI volume path']],
    ['a path below /mount', (req) => { req.target_path = `${TARGET}/deeper`; }, ['is not a CSI volume path']],
    ['the pods folder itself', (req) => { req.target_path = `${ROOT}/pods`; }, ['is not under /var/lib/kubelet/pods']],
    ['a pod UID in the path different from pod.uid', withAttributes({ 'csi.storage.k8s.io/pod.uid': 'other-uid' }), ['belongs to pod UID', '"other-uid"', 'csi.storage.k8s.io/pod.uid']],
    [
      'an unknown csi.spire.io attribute',
      withAttributes({ 'csi.spire.io/svid-fil': 'x' }),
      [
        '"csi.spire.io/svid-fil" is not known',
        'svid-file, key-file, bundle-file, bundle-include-federated, fs-group, spiffe-id, jwt-audiences, jwt-svid-file, ' +
          'credential-bundle-file, layout-names, hint, all-svids',
      ],
    ],
    ['two unknown attributes', withAttributes({ 'csi.spire.io/b': 'x', 'csi.spire.io/a': 'y' }), ['attributes "csi.spire.io/a", "csi.spire.io/b" are not known']],
    ['the bare prefix as a key', withAttributes({ 'csi.spire.io/': 'x' }), ['"csi.spire.io/" is not known']],
    ['bundle-include-federated "yes"', withAttributes({ 'csi.spire.io/bundle-include-federated': 'yes' }), ['csi.spire.io/bundle-include-federated is "yes"', 'use "true" or "false"']],
    ['bundle-include-federated "TRUE"', withAttributes({ 'csi.spire.io/bundle-include-federated': 'TRUE' }), ['use "true" or "false"']],
    ['bundle-include-federated ""', withAttributes({ 'csi.spire.io/bundle-include-federated': '' }), ['use "true" or "false"']],
    ...['abc', '-1', '1.5', '007', '', ' 5', '2147483648', '99999999999', '1e3', '0x10'].map((value): [string, Mutation, string[]] => [
      `fs-group ${JSON.stringify(value)}`,
      withAttributes({ 'csi.spire.io/fs-group': value }),
      [`csi.spire.io/fs-group ${JSON.stringify(value)} is not a group ID`, 'decimal integer from 0 to 2147483647'],
    ]),
    ['a volume_mount_group that is not a number', (req) => { mountOf(req).volume_mount_group = 'staff'; }, ['volume_capability.mount.volume_mount_group', '"staff"', 'set csi.spire.io/fs-group to override it']],
    ['a volume_mount_group out of range', (req) => { mountOf(req).volume_mount_group = '4294967295'; }, ['volume_mount_group', '0 to 2147483647']],
    ...['not-an-id', 'spiffe://', 'https://example.org/x', 'spiffe://example.org/', 'spiffe://Example.org/x', ''].map((value): [string, Mutation, string[]] => [
      `spiffe-id ${JSON.stringify(value)}`,
      withAttributes({ 'csi.spire.io/spiffe-id': value }),
      [`csi.spire.io/spiffe-id ${JSON.stringify(value)} is not a valid SPIFFE ID`, 'spiffe://trust-domain/path'],
    ]),
    ...['', 'a,,b', ' , ', 'a,'].map((value): [string, Mutation, string[]] => [
      `jwt-audiences ${JSON.stringify(value)}`,
      withAttributes({ 'csi.spire.io/jwt-audiences': value }),
      ['csi.spire.io/jwt-audiences', 'has an empty entry', 'separated by commas'],
    ]),
    ['jwt-svid-file without jwt-audiences', withAttributes({ 'csi.spire.io/jwt-svid-file': 'token' }), ['csi.spire.io/jwt-svid-file is set but csi.spire.io/jwt-audiences is not']],
    [
      'svid-file and key-file naming the same file',
      withAttributes({ 'csi.spire.io/svid-file': 'tls.pem', 'csi.spire.io/key-file': 'tls.pem' }),
      ['csi.spire.io/svid-file "tls.pem" and csi.spire.io/key-file "tls.pem" name the same file'],
    ],
    ['key-file naming the default svid file', withAttributes({ 'csi.spire.io/key-file': 'svid.pem' }), ['csi.spire.io/svid-file (default "svid.pem") and csi.spire.io/key-file "svid.pem"']],
    ['bundle-file naming the key file', withAttributes({ 'csi.spire.io/bundle-file': 'svid_key.pem' }), ['csi.spire.io/key-file (default "svid_key.pem") and csi.spire.io/bundle-file "svid_key.pem"']],
    [
      'jwt-svid-file naming a split file',
      withAttributes({ 'csi.spire.io/jwt-audiences': 'api', 'csi.spire.io/jwt-svid-file': 'bundle.pem' }),
      ['csi.spire.io/bundle-file (default "bundle.pem") and csi.spire.io/jwt-svid-file "bundle.pem"'],
    ],
    [
      'jwt-svid-file with several audiences, which is ambiguous',
      withAttributes({ 'csi.spire.io/jwt-audiences': 'api,billing', 'csi.spire.io/jwt-svid-file': 'token.jwt' }),
      [
        'volume attribute csi.spire.io/jwt-svid-file is set but csi.spire.io/jwt-audiences lists 2 audiences',
        'jwt-svid.<audience>.token',
        'ambiguous',
        'remove csi.spire.io/jwt-svid-file, or list a single audience',
      ],
    ],
    [
      'jwt-svid-file set to the default name with several audiences',
      withAttributes({ 'csi.spire.io/jwt-audiences': 'api, billing', 'csi.spire.io/jwt-svid-file': 'jwt-svid.token' }),
      ['csi.spire.io/jwt-svid-file is set but csi.spire.io/jwt-audiences lists 2 audiences', 'remove csi.spire.io/jwt-svid-file'],
    ],
    [
      'svid-file taking the token file of one of several audiences',
      withAttributes({ 'csi.spire.io/jwt-audiences': 'api,billing', 'csi.spire.io/svid-file': 'jwt-svid.billing.token' }),
      [
        'volume attribute csi.spire.io/svid-file "jwt-svid.billing.token" names the file the JWT-SVID for audience "billing" of csi.spire.io/jwt-audiences',
        'choose another name for csi.spire.io/svid-file',
      ],
    ],
    [
      'bundle-file taking the percent-encoded token file of an audience',
      withAttributes({ 'csi.spire.io/jwt-audiences': 'https://x.example/v1,api', 'csi.spire.io/bundle-file': 'jwt-svid.https%3A%2F%2Fx.example%2Fv1.token' }),
      ['csi.spire.io/bundle-file "jwt-svid.https%3A%2F%2Fx.example%2Fv1.token" names the file the JWT-SVID for audience "https://x.example/v1"'],
    ],
    [
      'jwt-svid-file naming the per-audience file of another audience',
      withAttributes({ 'csi.spire.io/jwt-audiences': 'api', 'csi.spire.io/jwt-svid-file': 'jwt-svid.billing.token' }),
      ['csi.spire.io/jwt-svid-file "jwt-svid.billing.token" is reserved', 'one JWT-SVID per audience as jwt-svid.<audience>.token', 'choose another name'],
    ],
    [
      'an audience whose token file name would be longer than 255 bytes',
      withAttributes({ 'csi.spire.io/jwt-audiences': `api,${'/'.repeat(81)}` }),
      ['volume attribute csi.spire.io/jwt-audiences has the audience', 'longer than 255 bytes', 'use a shorter audience'],
    ],
    ...['current', '2026-12', '2026-2', '', 'v1'].map((value): [string, Mutation, string[]] => [
      `layout-names ${JSON.stringify(value)}`,
      withAttributes({ 'csi.spire.io/layout-names': value }),
      [`volume attribute csi.spire.io/layout-names is ${JSON.stringify(value)}`, 'use one of 2026-08, 2026-02'],
    ]),
    ...['yes', '1', 'True', ''].map((value): [string, Mutation, string[]] => [
      `all-svids ${JSON.stringify(value)}`,
      withAttributes({ 'csi.spire.io/all-svids': value }),
      [`volume attribute csi.spire.io/all-svids is ${JSON.stringify(value)}`, 'use "true" or "false"'],
    ]),
    ['an empty hint', withAttributes({ 'csi.spire.io/hint': '' }), ['volume attribute csi.spire.io/hint is empty', 'or remove the attribute']],
    ['a hint with a newline', withAttributes({ 'csi.spire.io/hint': 'a\nb' }), ['csi.spire.io/hint "a\\nb" contains a control character']],
    ['a hint longer than 1024 bytes', withAttributes({ 'csi.spire.io/hint': 'h'.repeat(1025) }), ['csi.spire.io/hint is longer than 1024 bytes']],
    [
      'credential-bundle-file naming the default svid file',
      withAttributes({ 'csi.spire.io/credential-bundle-file': 'svid.pem' }),
      ['csi.spire.io/credential-bundle-file "svid.pem" and csi.spire.io/svid-file (default "svid.pem") name the same file'],
    ],
    [
      'credential-bundle-file named like a trust bundle file',
      withAttributes({ 'csi.spire.io/credential-bundle-file': 'x.spiffe-trust-bundle.x509.pem' }),
      ['volume attribute csi.spire.io/credential-bundle-file "x.spiffe-trust-bundle.x509.pem" is reserved'],
    ],
    [
      'credential-bundle-file taking hints.json',
      withAttributes({ 'csi.spire.io/credential-bundle-file': 'hints.json' }),
      ['volume attribute csi.spire.io/credential-bundle-file "hints.json" is reserved'],
    ],
    [
      'a split file taking an extra SVID\'s name with all-svids',
      withAttributes({ 'csi.spire.io/all-svids': 'true', 'csi.spire.io/key-file': '2.credential-bundle.private-key.x509.pem' }),
      ['csi.spire.io/key-file "2.credential-bundle.private-key.x509.pem" has the form <n>.credential-bundle.private-key.x509.pem', 'csi.spire.io/all-svids', 'choose another name'],
    ],
    [
      'a split file taking an extra SVID\'s name of a renamed credential bundle',
      withAttributes({ 'csi.spire.io/all-svids': 'true', 'csi.spire.io/credential-bundle-file': 'c.pem', 'csi.spire.io/bundle-file': '1.c.pem' }),
      ['csi.spire.io/bundle-file "1.c.pem" has the form <n>.c.pem'],
    ],
    [
      'a mount flag the tmpfs does not take',
      (req) => { mountOf(req).mount_flags = ['ro']; },
      ['volume_capability.mount.mount_flags has "ro"', 'accepted flags, one per entry: context="<SELinux label>", nosuid, nodev, noexec'],
    ],
    ...['size=1g', 'exec', 'nosuid,nodev', 'fscontext="u:r:t:s0"', 'defcontext=u:r:t:s0'].map((flag): [string, Mutation, string[]] => [
      `mount flag ${JSON.stringify(flag)}`,
      (req) => { mountOf(req).mount_flags = [flag]; },
      [`mount_flags has ${JSON.stringify(flag)}`, 'accepted flags'],
    ]),
    ...['context=', 'context=""', 'context="a,b"', 'context="u:r:t:s0', 'context="u:r:t:s0" x', 'context="u r:t:s0"', 'context=u:r', 'context="u:r:t:s0:c1,"'].map(
      (flag): [string, Mutation, string[]] => [
        `SELinux context flag ${JSON.stringify(flag)}`,
        (req) => { mountOf(req).mount_flags = [flag]; },
        [`volume_capability.mount.mount_flags ${JSON.stringify(flag)} does not hold an SELinux label`, 'context="user:role:type:level"'],
      ],
    ),
    [
      'two different SELinux contexts',
      (req) => { mountOf(req).mount_flags = ['context="u:r:t:s0:c1"', 'context="u:r:t:s0:c2"']; },
      ['mount_flags has two SELinux contexts ("u:r:t:s0:c1" and "u:r:t:s0:c2")', 'send only one'],
    ],
  ];

  const badNames: [string, string][] = [
    ['', 'is empty'],
    ['a/b', 'contains "/"'],
    ['/abs', 'contains "/"'],
    ['.', 'is not a file name'],
    ['..', 'is not a file name'],
    ['.hidden', 'starts with "."'],
    ['..data', 'starts with "."'],
    ['a\0b', 'control character'],
    ['a\nb', 'control character'],
    ['x'.repeat(256), 'longer than 255 bytes'],
    ['é'.repeat(128), 'longer than 255 bytes'],
    ['credential-bundle.pem', 'is reserved'],
    ['credential-bundle.private-key.pem', 'is reserved'],
    ['credential-bundle.private-key.x509.pem', 'is reserved'],
    ['identity.json', 'is reserved'],
    ['hints.json', 'is reserved'],
    ['example.org.spiffe-trust-bundle.pem', 'is reserved'],
    ['example.org.spiffe-trust-bundle.x509.pem', 'is reserved'],
    ['example.org.jwt-bundle.json', 'is reserved'],
    // Readers take any jwt-svid.<audience>.token for that audience's token.
    ['jwt-svid.vault.token', 'is reserved'],
    ['jwt-svid.a%20b.token', 'is reserved'],
  ];
  for (const attribute of ['svid-file', 'key-file', 'bundle-file', 'jwt-svid-file', 'credential-bundle-file']) {
    for (const [value, problem] of badNames) {
      // The credential bundle may take its own spellings (accepted above).
      if (attribute === 'credential-bundle-file' && value.startsWith('credential-bundle.')) continue;
      const extra: Record<string, string> = attribute === 'jwt-svid-file' ? { 'csi.spire.io/jwt-audiences': 'api' } : {};
      rejected.push([
        `${attribute} ${JSON.stringify(value).slice(0, 40)}`,
        withAttributes({ ...extra, [`csi.spire.io/${attribute}`]: value }),
        [`volume attribute csi.spire.io/${attribute}`, problem, problem === 'is reserved' ? 'choose another name' : 'plain file name'],
      ]);
    }
  }

  it.each(rejected)('%s', (_name, mutate, fragments) => {
    const err = rejection(() => publish(mutate));
    for (const fragment of fragments) expect(err.message).toContain(fragment);
  });

  it('never puts secrets into the message', () => {
    const err = rejection(() =>
      publish((req) => {
        req.secrets = { token: 'TOP-SECRET' };
        req.readonly = false;
      }),
    );
    expect(err.message).not.toContain('TOP-SECRET');
  });

  it('quotes control characters instead of printing them', () => {
    const err = rejection(() => publish(withAttributes({ 'csi.spire.io/svid-file': 'a\nb' })));
    expect(err.message).toContain('"a\\nb"');
    expect(err.message).not.toContain('\n');
  });
});

describe('validateUnpublishRequest', () => {
  it('returns the volume and the normalized target path', () => {
    expect(validateUnpublishRequest({ volume_id: 'v', target_path: `${TARGET}/` }, config)).toEqual({
      volumeId: 'v',
      targetPath: TARGET,
    });
  });

  it.each([
    ['a missing volume_id', { volume_id: '', target_path: TARGET }, 'volume_id is missing'],
    ['a missing target_path', { volume_id: 'v', target_path: '' }, 'target_path is missing'],
    ['a relative target path', { volume_id: 'v', target_path: 'x/mount' }, 'not an absolute path'],
    ['a path outside the kubelet root', { volume_id: 'v', target_path: '/etc/mount' }, 'is not under /var/lib/kubelet/pods'],
    ['a ".." segment', { volume_id: 'v', target_path: `${ROOT}/pods/${UID}/../../../etc/x/y/mount` }, '".."'],
  ])('rejects %s', (_name, req, fragment) => {
    expect(rejection(() => validateUnpublishRequest(req, config)).message).toContain(fragment);
  });
});

describe('parseTargetPath', () => {
  it('splits out the pod UID and volume name', () => {
    expect(parseTargetPath(TARGET, ROOT)).toEqual({ path: TARGET, podUid: UID, volumeName: 'spiffe' });
  });
});
