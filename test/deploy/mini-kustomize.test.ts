import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ICronJob } from 'kubernetes-models/batch/v1';
import type { IDaemonSet } from 'kubernetes-models/apps/v1';
import type { IContainer } from 'kubernetes-models/v1';
import { afterEach, describe, expect, it } from 'vitest';
import { asKubeObject, containerNamed, DEPLOY, onlyOf, parseYamlDocuments, type KubeObject } from './kube-objects.js';
import { findKubectl, kubectlKustomize, NO_KUBECTL_ENV } from './kubectl.js';
import { MiniKustomizeError, renderKustomization, type MiniKustomizeErrorKind } from './mini-kustomize.js';

/*
 * mini-kustomize stands in for `kubectl kustomize` where kubectl is missing (CI machines), so it
 * must render deploy/ exactly as kubectl does. Without kubectl it is compared with renderings
 * kubectl made and that are committed in fixtures/; with kubectl, kubectl's live output must still
 * equal those fixtures (so they cannot go stale unnoticed) and mini-kustomize's. After a change
 * to deploy/, regenerate them on a machine with kubectl:
 *   kubectl kustomize deploy > test/deploy/fixtures/kustomize-deploy.yaml
 *   kubectl kustomize deploy/broker > test/deploy/fixtures/kustomize-broker.yaml
 */

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const KUBECTL = findKubectl();
const PART_OF = 'app.kubernetes.io/part-of';

function readFixture(file: string): KubeObject[] {
  return parseYamlDocuments(readFileSync(join(FIXTURES, file), 'utf8'), file).map((v, i) => asKubeObject(v, `${file} document ${i}`));
}

const INSTALLS = [
  { label: 'deploy/', dir: '.', fixture: 'kustomize-deploy.yaml', source: 'deploy' },
  { label: 'deploy/broker', dir: 'broker', fixture: 'kustomize-broker.yaml', source: 'deploy/broker' },
];

describe.each(INSTALLS)('$label', ({ label, dir, fixture, source }) => {
  const regenerate = `kubectl kustomize ${source} > test/deploy/fixtures/${fixture}`;
  const against = KUBECTL
    ? `kubectl kustomize and the committed kubectl rendering (${fixture})`
    : `the committed kubectl rendering (${fixture}); kubectl is not installed to re-check it`;

  it(`mini-kustomize renders it as ${against}`, () => {
    const expected = readFixture(fixture);
    const mini = renderKustomization(join(DEPLOY, dir));
    if (KUBECTL) {
      const live = kubectlKustomize(KUBECTL, join(DEPLOY, dir), label);
      expect(live, `fixtures/${fixture} is stale; regenerate it: ${regenerate}`).toStrictEqual(expected);
      expect(mini, `mini-kustomize renders ${label} unlike kubectl: fix test/deploy/mini-kustomize.ts`).toStrictEqual(live);
    }
    expect(
      mini,
      `mini-kustomize's ${label} differs from fixtures/${fixture}: if deploy/ changed, regenerate it with kubectl (${regenerate}); otherwise fix mini-kustomize.ts`,
    ).toStrictEqual(expected);
  });
});

describe("mini-kustomize's rendering of deploy/", () => {
  const delegated = renderKustomization(DEPLOY);
  const broker = renderKustomization(join(DEPLOY, 'broker'));
  const brokerSet = onlyOf<IDaemonSet>(broker, 'apps/v1', 'DaemonSet');
  const brokerPod = brokerSet.spec!.template.spec!;
  const brokerDriver = containerNamed(brokerPod, 'driver');
  const envOf = (c: IContainer): Record<string, string | undefined> =>
    Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom?.fieldRef?.fieldPath]));

  it('keeps the admin socket in the default install', () => {
    const pod = onlyOf<IDaemonSet>(delegated, 'apps/v1', 'DaemonSet').spec!.template.spec!;
    expect(envOf(containerNamed(pod, 'driver')).SPIRE_CSI_ADMIN_SOCKET).toBe('/run/spire/admin-sockets/admin.sock');
    expect(pod.volumes?.map((v) => v.name)).toContain('spire-agent-admin-socket-dir');
  });

  it('drops the admin socket from the broker DaemonSet: variable, mount and volume', () => {
    expect(Object.keys(envOf(brokerDriver))).not.toContain('SPIRE_CSI_ADMIN_SOCKET');
    expect(brokerDriver.volumeMounts?.map((m) => m.mountPath)).not.toContain('/run/spire/admin-sockets');
    expect(brokerPod.volumes?.map((v) => v.name)).not.toContain('spire-agent-admin-socket-dir');
  });

  it('adds the broker variables and sockets, and keeps the rest of the driver', () => {
    const env = envOf(brokerDriver);
    expect(env).toMatchObject({
      SPIRE_CSI_IDENTITY_API: 'broker',
      SPIRE_CSI_BROKER_ENDPOINT: 'unix:///run/spire/broker-sockets/broker.sock',
      SPIRE_CSI_WORKLOAD_API: 'unix:///run/spire/agent-sockets/api.sock',
      SPIRE_CSI_NODE_ID: 'spec.nodeName',
      SPIRE_CSI_ENDPOINT: 'unix:///csi/csi.sock',
    });
    expect(brokerDriver.volumeMounts?.map((m) => m.mountPath)).toEqual(expect.arrayContaining(['/run/spire/broker-sockets', '/run/spire/agent-sockets', '/csi']));
    expect(brokerPod.volumes?.map((v) => v.name)).toEqual(expect.arrayContaining(['spire-agent-broker-socket-dir', 'spire-agent-socket-dir', 'plugin-dir']));
    expect(brokerDriver.image).toBe('spire-csi-driver:0.1.0');
  });

  it('labels every object and the pod template, never the selector', () => {
    for (const obj of broker) expect(obj.metadata?.labels?.[PART_OF], `${obj.kind} ${obj.metadata?.name}`).toBe('spire-csi');
    expect(brokerSet.spec!.template.metadata?.labels?.[PART_OF]).toBe('spire-csi');
    expect(brokerSet.spec!.selector.matchLabels).toStrictEqual({ 'app.kubernetes.io/name': 'spire-csi-driver' });
  });
});

// ---------------------------------------------------------------------------------------------
// The renderer on small trees of its own

const temporary: string[] = [];
afterEach(() => {
  for (const dir of temporary.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A temporary directory holding `files` (relative path -> content). */
function tree(files: Readonly<Record<string, string>>): string {
  const root = mkdtempSync(join(tmpdir(), 'mini-kustomize-'));
  temporary.push(root);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

const DAEMONSET = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ds, namespace: n}
spec:
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec:
      initContainers:
        - {name: init, image: "tool@sha256:0123abcd"}
      containers:
        - name: main
          image: localhost:5000/app:1
          args: [x, y]
          env: [{name: A, value: a}, {name: B, value: b}, {name: C, value: c}]
          volumeMounts: [{name: va, mountPath: /a}, {name: vb, mountPath: /b}]
      tolerations: [{key: k, operator: Equal, value: v}]
      volumes: [{name: va, emptyDir: {}}, {name: vb, emptyDir: {}}]
`;
const CRONJOB = `apiVersion: batch/v1
kind: CronJob
metadata: {name: cj, namespace: n}
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: c, image: "tool:1"}]
`;
const OTHERS = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: cr}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: sa, namespace: n}
---
apiVersion: v1
kind: Namespace
metadata: {name: n}
`;
const BASE: Readonly<Record<string, string>> = {
  'base/kustomization.yaml': `resources: [workloads.yaml, others.yaml]
labels:
  - pairs: {team: a}
    includeTemplates: true
images:
  - {name: localhost:5000/app, newTag: "2"}
  - {name: tool, newName: registry.example/tool}
`,
  'base/workloads.yaml': `${DAEMONSET}---\n${CRONJOB}`,
  'base/others.yaml': OTHERS,
};
const OVERLAY: Readonly<Record<string, string>> = {
  'overlay/kustomization.yaml': `resources: [../base, extra.yaml]
patches:
  - path: patch.yaml
labels:
  - pairs: {mode: overlay}
`,
  'overlay/extra.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, namespace: n}\ndata: {k: v}\n',
  'overlay/patch.yaml': `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ds, namespace: n}
spec:
  template:
    spec:
      containers:
        - {name: side, image: localhost:5000/app}
        - name: main
          args: [z]
          env: [{name: B, $patch: delete}, {name: D, value: d}, {name: A, value: a2}]
          volumeMounts: [{mountPath: /b, $patch: delete}, {name: vc, mountPath: /c}]
      tolerations: [{operator: Exists}]
      volumes: [{name: vb, $patch: delete}, {name: vc, emptyDir: {medium: Memory}}]
`,
};

describe('renderKustomization', () => {
  const root = (): string => tree({ ...BASE, ...OVERLAY });

  it('applies a base, an overlay patch, labels and images as kustomize does', () => {
    const dir = root();
    const objects = renderKustomization(join(dir, 'overlay'));
    if (KUBECTL) expect(objects).toStrictEqual(kubectlKustomize(KUBECTL, join(dir, 'overlay')));

    expect(objects.map((o) => `${o.kind}/${o.metadata?.name}`)).toEqual(['Namespace/n', 'ServiceAccount/sa', 'ClusterRole/cr', 'ConfigMap/cm', 'CronJob/cj', 'DaemonSet/ds']);
    const ds = onlyOf<IDaemonSet>(objects, 'apps/v1', 'DaemonSet').spec!;
    const pod = ds.template.spec!;
    // The patch's items first, in its order, then the resource's others; deletions gone.
    expect(pod.containers.map((c) => c.name)).toEqual(['side', 'main']);
    const main = containerNamed(pod, 'main');
    expect(main.env).toStrictEqual([{ name: 'D', value: 'd' }, { name: 'A', value: 'a2' }, { name: 'C', value: 'c' }]);
    expect(main.volumeMounts).toStrictEqual([{ name: 'vc', mountPath: '/c' }, { name: 'va', mountPath: '/a' }]);
    expect(pod.volumes).toStrictEqual([{ name: 'vc', emptyDir: { medium: 'Memory' } }, { name: 'va', emptyDir: {} }]);
    // Lists without a merge key are replaced.
    expect(main.args).toEqual(['z']);
    expect(pod.tolerations).toStrictEqual([{ operator: 'Exists' }]);
    // Images: the base's rules reach the base's containers, not what the overlay adds later.
    expect(main.image).toBe('localhost:5000/app:2');
    expect(pod.initContainers?.[0]?.image).toBe('registry.example/tool@sha256:0123abcd');
    expect(containerNamed(pod, 'side').image).toBe('localhost:5000/app');
    const cron = onlyOf<ICronJob>(objects, 'batch/v1', 'CronJob').spec!;
    expect(cron.jobTemplate.spec!.template.spec!.containers[0]!.image).toBe('registry.example/tool:1');
    // Labels: templates only with includeTemplates, selectors never.
    expect(ds.selector.matchLabels).toStrictEqual({ app: 'x' });
    expect(ds.template.metadata?.labels).toStrictEqual({ app: 'x', team: 'a' });
    expect(cron.jobTemplate.metadata?.labels).toStrictEqual({ team: 'a' });
    expect(cron.jobTemplate.spec!.template.metadata?.labels).toStrictEqual({ team: 'a' });
    expect(onlyOf<KubeObject>(objects, 'v1', 'ConfigMap').metadata?.labels).toStrictEqual({ mode: 'overlay' });
    expect(onlyOf<KubeObject>(objects, 'v1', 'Namespace').metadata?.labels).toStrictEqual({ team: 'a', mode: 'overlay' });
  });

  const refusals: readonly { name: string; files: Readonly<Record<string, string>>; kind: MiniKustomizeErrorKind; message: RegExp }[] = [
    { name: 'namePrefix', files: { 'overlay/kustomization.yaml': 'resources: [../base]\nnamePrefix: x-\n' }, kind: 'unsupported', message: /field `namePrefix`/ },
    {
      name: 'configMapGenerator',
      files: { 'overlay/kustomization.yaml': 'resources: [../base]\nconfigMapGenerator: [{name: c, literals: [a=b]}]\n' },
      kind: 'unsupported',
      message: /field `configMapGenerator`/,
    },
    {
      name: 'patchesJson6902',
      files: { 'overlay/kustomization.yaml': 'resources: [../base]\npatchesJson6902: [{path: p.yaml, target: {kind: DaemonSet, name: ds}}]\n' },
      kind: 'unsupported',
      message: /field `patchesJson6902`/,
    },
    { name: 'an unknown top-level key', files: { 'overlay/kustomization.yaml': 'resources: [../base]\nmadeUp: 1\n' }, kind: 'unsupported', message: /field `madeUp`/ },
    { name: 'a Component', files: { 'overlay/kustomization.yaml': 'kind: Component\nresources: [../base]\n' }, kind: 'unsupported', message: /kind Component/ },
    {
      name: 'a patch with a target',
      files: { 'overlay/kustomization.yaml': 'resources: [../base]\npatches: [{path: patch.yaml, target: {kind: DaemonSet}}]\n' },
      kind: 'unsupported',
      message: /patches with a target/,
    },
    {
      name: 'an inline patch',
      files: { 'overlay/kustomization.yaml': 'resources: [../base]\npatches: [{patch: "kind: DaemonSet"}]\n' },
      kind: 'unsupported',
      message: /inline patches/,
    },
    {
      name: 'a JSON 6902 patch file',
      files: { 'overlay/patch.yaml': '- {op: remove, path: /spec/template}\n' },
      kind: 'unsupported',
      message: /JSON 6902 patches/,
    },
    {
      name: '$patch: replace',
      files: { 'overlay/patch.yaml': 'apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: ds, namespace: n}\nspec: {template: {spec: {volumes: [{name: va, $patch: replace}]}}}\n' },
      kind: 'unsupported',
      message: /\$patch: replace/,
    },
    {
      name: 'a $setElementOrder directive',
      files: { 'overlay/patch.yaml': 'apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: ds, namespace: n}\nspec: {template: {spec: {$setElementOrder/volumes: [{name: va}]}}}\n' },
      kind: 'unsupported',
      message: /directive \$setElementOrder\/volumes/,
    },
    {
      name: 'deleting a field with null',
      files: { 'overlay/patch.yaml': 'apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: ds, namespace: n}\nspec: {updateStrategy: null}\n' },
      kind: 'unsupported',
      message: /deleting a field with null/,
    },
    {
      name: 'merging ports (a list Kubernetes merges by key)',
      files: { 'overlay/patch.yaml': 'apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: ds, namespace: n}\nspec: {template: {spec: {containers: [{name: main, ports: [{containerPort: 1}]}]}}}\n' },
      kind: 'unsupported',
      message: /merging the list ports/,
    },
    {
      name: 'a patch of a kind whose merge keys it does not know',
      files: { 'overlay/patch.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, namespace: n}\ndata: {k: w}\n' },
      kind: 'unsupported',
      message: /strategic-merge patches of v1 ConfigMap/,
    },
    {
      name: 'an image digest',
      files: { 'overlay/kustomization.yaml': 'resources: [../base]\nimages: [{name: tool, digest: "sha256:00"}]\n' },
      kind: 'unsupported',
      message: /images\[\]\.digest/,
    },
    {
      name: 'labels on selectors',
      files: { 'overlay/kustomization.yaml': 'resources: [../base]\nlabels: [{pairs: {a: b}, includeSelectors: true}]\n' },
      kind: 'unsupported',
      message: /includeSelectors: true/,
    },
    { name: 'a remote resource', files: { 'overlay/kustomization.yaml': 'resources: [https://example.org/x.yaml]\n' }, kind: 'unsupported', message: /remote resources/ },
    {
      name: 'a file outside the kustomization',
      files: { 'overlay/kustomization.yaml': 'resources: [../base/others.yaml]\n' },
      kind: 'invalid',
      message: /not in or below/,
    },
    {
      name: 'a patch that matches nothing',
      files: { 'overlay/patch.yaml': 'apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: other, namespace: n}\nspec: {minReadySeconds: 1}\n' },
      kind: 'invalid',
      message: /matches 0 resources/,
    },
    { name: 'a resource listed twice', files: { 'overlay/kustomization.yaml': 'resources: [../base, again]\n', 'overlay/again/kustomization.yaml': 'resources: [../../base]\n' }, kind: 'invalid', message: /already a resource/ },
  ];

  it.each(refusals)('refuses $name, naming it', ({ files, kind, message }) => {
    const dir = tree({ ...BASE, ...OVERLAY, ...files });
    let caught: unknown;
    try {
      renderKustomization(join(dir, 'overlay'));
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(MiniKustomizeError);
    expect((caught as MiniKustomizeError).kind).toBe(kind);
    expect((caught as MiniKustomizeError).message).toMatch(message);
    if (kind === 'unsupported') expect((caught as MiniKustomizeError).message).toMatch(/^mini-kustomize does not implement .*; extend .* or install kubectl$/);
  });
});

describe('findKubectl', () => {
  it('finds an executable kubectl on PATH, and none when told there is none', () => {
    const bin = tree({ 'bin/kubectl': '#!/bin/sh\n', 'empty/README': '' });
    chmodSync(join(bin, 'bin/kubectl'), 0o755);
    expect(findKubectl({ PATH: `${join(bin, 'empty')}:${join(bin, 'bin')}` })).toBe(join(bin, 'bin/kubectl'));
    expect(findKubectl({ PATH: join(bin, 'empty') })).toBeUndefined();
    expect(findKubectl({ PATH: join(bin, 'bin'), [NO_KUBECTL_ENV]: '1' })).toBeUndefined();
  });

  it('skips a kubectl that is not executable', () => {
    const bin = tree({ 'bin/kubectl': 'not a program' });
    chmodSync(join(bin, 'bin/kubectl'), 0o644);
    // Root may read anything but X_OK still needs an execute bit.
    expect(findKubectl({ PATH: join(bin, 'bin') })).toBeUndefined();
  });
});
