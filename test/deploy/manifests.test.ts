import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { SpiffeId } from '@spire-csi/sdk';
import type { IDaemonSet } from 'kubernetes-models/apps/v1';
import type { ICSIDriver } from 'kubernetes-models/storage.k8s.io/v1';
import type { IContainer, INamespace, IPod, IPodSpec, IServiceAccount } from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import { DRIVER_OPTIONS, parseDriverConfig, type DriverConfig } from '../../driver/src/config/driver-config.js';
import {
  EPHEMERAL_KEY,
  POD_INFO_KEYS,
  SPIRE_ATTRIBUTE_PREFIX,
  SPIRE_ATTRIBUTES,
  validatePublishRequest,
} from '../../driver/src/csi/validation.js';
import {
  asKubeObject,
  containerEnv,
  containerNamed,
  CSI_DRIVER_SPEC_KEYS,
  DEPLOY,
  EXAMPLE_TRUST_DOMAIN,
  hostPathOf as hostPathIn,
  kustomize,
  mountOf,
  parseDeployFile,
  REPO,
  renderTemplate,
  unknownKeys,
  unknownPodSpecKeys,
  VALIDATORS,
  validateObject,
  type KubeObject,
} from './kube-objects.js';

/*
 * Static checks of deploy/ and its default (delegated) install: every manifest parses and passes
 * the Kubernetes OpenAPI schema (kubernetes-models), and the settings the driver depends on agree
 * with each other and with the driver's own configuration parser. No cluster, no network.
 * Broker mode (deploy/broker) is checked in broker-manifests.test.ts.
 */

/** The driver's objects, shared by both install modes. */
const BASE = 'base';

/** Manifests deliberately left out of the install, and why (mirrors deploy/kustomization.yaml). */
const APPLIED_SEPARATELY: Readonly<Record<string, string>> = {
  'clusterspiffeid-driver.yaml': 'needs the spire-controller-manager CRD',
  'clusterspiffeid-workloads.yaml': 'needs the spire-controller-manager CRD; cluster-specific',
  'example-pod.yaml': 'a demo workload',
};

// ---------------------------------------------------------------------------------------------
// Loading

interface Loaded {
  /** Relative to deploy/. */
  readonly file: string;
  readonly index: number;
  readonly obj: KubeObject;
}

/** The YAML files of deploy/ and deploy/base/ (deploy/broker/ holds patches: its own test). */
function yamlFiles(): string[] {
  const inDir = (dir: string) =>
    readdirSync(join(DEPLOY, dir))
      .filter((name) => /\.ya?ml$/.test(name))
      .map((name) => (dir === '.' ? name : `${dir}/${name}`));
  return [...inDir('.'), ...inDir(BASE)].sort();
}

function loadAll(): Loaded[] {
  const loaded: Loaded[] = [];
  for (const file of yamlFiles()) {
    parseDeployFile(file).forEach((value, index) => loaded.push({ file, index, obj: asKubeObject(value, `${file} document ${index}`) }));
  }
  return loaded;
}

const ALL = loadAll();
const K8S_OBJECTS = ALL.filter((l) => l.obj.kind !== 'Kustomization');

function only<T>(apiVersion: string, kind: string, file?: string): T {
  const found = ALL.filter((l) => l.obj.apiVersion === apiVersion && l.obj.kind === kind && (file === undefined || l.file === file));
  if (found.length !== 1) throw new Error(`expected one ${apiVersion} ${kind}${file ? ` in ${file}` : ''}, found ${found.length}`);
  return found[0]!.obj as unknown as T;
}

// ---------------------------------------------------------------------------------------------
// Helpers over the typed objects

const csiDriver = only<ICSIDriver>('storage.k8s.io/v1', 'CSIDriver');
const daemonSet = only<IDaemonSet>('apps/v1', 'DaemonSet');
const namespace = only<INamespace>('v1', 'Namespace');
const serviceAccount = only<IServiceAccount>('v1', 'ServiceAccount');
const examplePod = only<IPod>('v1', 'Pod', 'example-pod.yaml');
const podSpec: IPodSpec = daemonSet.spec!.template.spec!;
const agentDoc = readFileSync(join(DEPLOY, 'spire-agent.md'), 'utf8');

function hostPathOf(volume: string): { path: string; type?: string } {
  return hostPathIn(podSpec, volume);
}

/** `--flag=value` arguments as a map (the sidecars take no positional arguments). */
function flagsOf(container: IContainer): Map<string, string> {
  const flags = new Map<string, string>();
  for (const arg of container.args ?? []) {
    const match = /^--([^=]+)=(.*)$/.exec(arg);
    if (!match) throw new Error(`${container.name}: argument "${arg}" is not --flag=value`);
    flags.set(match[1]!, match[2]!);
  }
  return flags;
}

function probesOf(container: IContainer) {
  return [container.livenessProbe, container.startupProbe, container.readinessProbe];
}

const driver = containerNamed(podSpec, 'driver');
const registrar = containerNamed(podSpec, 'node-driver-registrar');

/** The driver's configuration exactly as its CLI parser reads it from the DaemonSet's env. */
function driverConfigFromManifest(nodeName: string): DriverConfig {
  const config = parseDriverConfig([], containerEnv(driver, nodeName));
  if (config === null) throw new Error('driver config asked for --help');
  return config;
}

let parsedConfig: DriverConfig | undefined;
/** Parsed on first use, so a broken env fails the tests that need it rather than the whole file. */
function driverConfig(): DriverConfig {
  parsedConfig ??= driverConfigFromManifest('node-a');
  return parsedConfig;
}

function authorizedDelegates(): string[] {
  const block = /authorized_delegates\s*=\s*\[([^\]]*)\]/.exec(agentDoc);
  if (!block) throw new Error('spire-agent.md has no authorized_delegates = [...]');
  return [...block[1]!.matchAll(/"([^"]+)"/g)].map((m) => m[1]!);
}

function clusterSpiffeId(file: string): { spec: Record<string, unknown> } {
  return only<{ spec: Record<string, unknown> }>('spire.spiffe.io/v1alpha1', 'ClusterSPIFFEID', file);
}

// ---------------------------------------------------------------------------------------------

describe('deploy/ manifests parse and match the Kubernetes schema', () => {
  it('finds the manifests', () => {
    expect(yamlFiles()).toEqual(
      expect.arrayContaining([
        'base/csidriver.yaml',
        'base/daemonset.yaml',
        'base/kustomization.yaml',
        'base/namespace.yaml',
        'base/serviceaccount.yaml',
        'kustomization.yaml',
      ]),
    );
  });

  it.each(K8S_OBJECTS.map((l) => [`${l.file}#${l.index} ${l.obj.kind} ${l.obj.metadata?.name ?? ''}`, l] as const))(
    '%s validates',
    (_name, loaded) => {
      expect(() => validateObject(loaded.obj)).not.toThrow();
    },
  );

  it('rejects what the schema does: a wrong type and a missing required field', () => {
    const broken = structuredClone(daemonSet) as unknown as { spec: { template: { spec: { containers: object[] } } } };
    broken.spec.template.spec.containers[0] = { image: 'x' };
    expect(() => VALIDATORS['apps/v1/DaemonSet']!(broken as unknown as KubeObject)).toThrow(/name/);
    const wrongType = { ...csiDriver, spec: { ...csiDriver.spec, attachRequired: 'no' } };
    expect(() => VALIDATORS['storage.k8s.io/v1/CSIDriver']!(wrongType as unknown as KubeObject)).toThrow(/boolean/);
  });

  it('uses only fields the API knows in pod specs, containers, mounts and the CSIDriver spec', () => {
    expect(unknownPodSpecKeys(podSpec, 'daemonset')).toEqual([]);
    expect(unknownPodSpecKeys(examplePod.spec!, 'example-pod')).toEqual([]);
    expect(unknownKeys(csiDriver.spec, CSI_DRIVER_SPEC_KEYS)).toEqual([]);
  });

  it('puts namespaced objects in the driver namespace and cluster-scoped ones in none', () => {
    for (const { obj, file } of K8S_OBJECTS) {
      const clusterScoped = ['Namespace', 'CSIDriver', 'ClusterSPIFFEID'].includes(obj.kind);
      if (clusterScoped) expect(obj.metadata?.namespace, `${file} ${obj.kind}`).toBeUndefined();
      else if (file !== 'example-pod.yaml') expect(obj.metadata?.namespace, `${file} ${obj.kind}`).toBe(namespace.metadata?.name);
    }
  });
});

describe('CSIDriver', () => {
  const spec = csiDriver.spec!;

  it('is named like the driver reports itself', () => {
    expect(csiDriver.metadata?.name).toBe('csi.spire.io');
    expect(driverConfig().pluginName).toBe(csiDriver.metadata?.name);
  });

  it('is a node-only, ephemeral-only driver that gets pod info', () => {
    expect(spec.attachRequired).toBe(false);
    expect(spec.podInfoOnMount).toBe(true);
    expect(spec.volumeLifecycleModes).toEqual(['Ephemeral']);
    expect(spec.requiresRepublish).toBe(false);
    expect(spec.tokenRequests ?? []).toEqual([]);
  });

  it('lets the pod fsGroup reach the driver', () => {
    expect(spec.fsGroupPolicy).toBe('File');
  });

  it('asks kubelet for the SELinux context= mount flag, which the driver accepts and applies', () => {
    expect(spec.seLinuxMount).toBe(true);
    // What kubelet sends with seLinuxMount: true passes the driver's validation into the spec.
    const label = 'system_u:object_r:container_file_t:s0:c123,c456';
    const uid = '3f1f5a0e-9f0a-4c57-8a51-0d7c1f0c2b11';
    const published = validatePublishRequest(
      {
        volume_id: 'csi-0123456789abcdef',
        target_path: `${driverConfig().kubeletRoot}/pods/${uid}/volumes/kubernetes.io~csi/spiffe/mount`,
        volume_capability: {
          access_type: 'mount' as const,
          mount: { fs_type: '', mount_flags: [`context="${label}"`], volume_mount_group: '' },
          access_mode: { mode: 'SINGLE_NODE_WRITER' as const },
        },
        readonly: true,
        volume_context: {
          [POD_INFO_KEYS.name]: 'web',
          [POD_INFO_KEYS.namespace]: 'default',
          [POD_INFO_KEYS.uid]: uid,
          [POD_INFO_KEYS.serviceAccount]: 'default',
          [EPHEMERAL_KEY]: 'true',
        },
      },
      { kubeletRoot: driverConfig().kubeletRoot },
    );
    expect(published.mountContext).toBe(label);
  });

  it('runs the driver with an SELinux default the parser accepts', () => {
    expect(driverConfig().selinuxContext).toEqual({ mode: 'auto' });
  });
});

describe('DaemonSet', () => {
  it('runs in the namespace of namespace.yaml, which allows privileged pods', () => {
    expect(daemonSet.metadata?.namespace).toBe(namespace.metadata?.name);
    expect(namespace.metadata?.labels?.['pod-security.kubernetes.io/enforce']).toBe('privileged');
  });

  it('uses the ServiceAccount of serviceaccount.yaml, without an API token', () => {
    expect(podSpec.serviceAccountName).toBe(serviceAccount.metadata?.name);
    expect(serviceAccount.metadata?.namespace).toBe(daemonSet.metadata?.namespace);
    expect(serviceAccount.automountServiceAccountToken).toBe(false);
    expect(podSpec.automountServiceAccountToken).toBe(false);
  });

  it('selects its own pods', () => {
    const labels = daemonSet.spec!.template.metadata?.labels ?? {};
    const matchLabels = daemonSet.spec!.selector.matchLabels ?? {};
    expect(Object.keys(matchLabels).length).toBeGreaterThan(0);
    expect(labels).toMatchObject(matchLabels);
  });

  it('runs everywhere, critically, one node at a time', () => {
    expect(podSpec.priorityClassName).toBe('system-node-critical');
    expect(podSpec.tolerations).toContainEqual({ operator: 'Exists' });
    expect(podSpec.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux' });
    expect(daemonSet.spec!.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
    expect(podSpec.terminationGracePeriodSeconds).toBeGreaterThan(0);
  });

  it('makes only the driver container privileged', () => {
    expect(driver.securityContext?.privileged).toBe(true);
    const others = [...podSpec.containers, ...(podSpec.initContainers ?? [])].filter((c) => c !== driver);
    expect(others.length).toBeGreaterThan(0);
    for (const c of others) expect(c.securityContext?.privileged, c.name).not.toBe(true);
  });

  it('takes the node id from spec.nodeName', () => {
    const nodeId = driver.env?.find((e) => e.name === 'SPIRE_CSI_NODE_ID');
    expect(nodeId?.value).toBeUndefined();
    expect(nodeId?.valueFrom?.fieldRef?.fieldPath).toBe('spec.nodeName');
    expect(driverConfigFromManifest('worker-7').nodeId).toBe('worker-7');
  });

  it('configures the driver only through variables its CLI knows', () => {
    const known = new Set(DRIVER_OPTIONS.map((o) => o.env));
    for (const variable of driver.env ?? []) expect(known, variable.name).toContain(variable.name);
    expect(driver.args ?? []).toEqual([]);
  });

  it('gives the driver the pods dir at its host path with Bidirectional propagation', () => {
    const podsDir = `${driverConfig().kubeletRoot}/pods`;
    const mount = mountOf(driver, 'pods-dir');
    expect(mount.mountPath).toBe(podsDir);
    expect(mount.mountPropagation).toBe('Bidirectional');
    expect(hostPathOf('pods-dir').path).toBe(podsDir);
    for (const c of podSpec.containers.filter((c) => c !== driver)) {
      for (const m of c.volumeMounts ?? []) expect(m.mountPropagation, `${c.name} ${m.name}`).not.toBe('Bidirectional');
    }
  });

  it('serves the CSI socket where the registrar and kubelet expect it', () => {
    const pluginDir = hostPathOf('plugin-dir').path;
    expect(pluginDir).toBe(`${driverConfig().kubeletRoot}/plugins/${csiDriver.metadata?.name}`);
    expect(driverConfig().csiSocketPath).toBe(`${mountOf(driver, 'plugin-dir').mountPath}/csi.sock`);
    const flags = flagsOf(registrar);
    expect(flags.get('csi-address')).toBe(`${mountOf(registrar, 'plugin-dir').mountPath}/csi.sock`);
    expect(flags.get('kubelet-registration-path')).toBe(`${pluginDir}/csi.sock`);
    expect(registrar.image).toMatch(/^registry\.k8s\.io\/sig-storage\/csi-node-driver-registrar:v2\.\d+\.\d+$/);
  });

  it('registers through kubelet plugins_registry', () => {
    expect(hostPathOf('registration-dir').path).toBe(`${driverConfig().kubeletRoot}/plugins_registry`);
    expect(mountOf(registrar, 'registration-dir').mountPath).toBe('/registration');
  });

  it('keeps the state dir on the host', () => {
    expect(hostPathOf('state-dir')).toEqual({ path: driverConfig().stateDir, type: 'DirectoryOrCreate' });
    expect(mountOf(driver, 'state-dir').mountPath).toBe(driverConfig().stateDir);
  });

  it('reaches the agent admin socket through the host dir spire-agent.md tells the agent to use', () => {
    const socketDir = posix.dirname(driverConfig().adminSocketPath);
    expect(hostPathOf('spire-agent-admin-socket-dir').path).toBe(socketDir);
    expect(mountOf(driver, 'spire-agent-admin-socket-dir').mountPath).toBe(socketDir);
    expect(agentDoc).toContain(`admin_socket_path = "${driverConfig().adminSocketPath}"`);
    expect(agentDoc).toContain(`path: ${socketDir}`);
  });

  it('serves metrics and health on the port named metrics', () => {
    const port = driver.ports?.find((p) => p.name === 'metrics');
    expect(port?.containerPort).toBe(9809);
    expect(driverConfig().metricsAddress?.endsWith(`:${port?.containerPort}`)).toBe(true);
  });

  it('checks liveness on /healthz and readiness on /readyz, both on the driver itself', () => {
    expect(driver.livenessProbe?.httpGet).toMatchObject({ path: '/healthz', port: 'metrics' });
    expect(driver.readinessProbe?.httpGet).toMatchObject({ path: '/readyz', port: 'metrics' });
    if (driver.startupProbe) expect(driver.startupProbe.httpGet?.path).toBe('/healthz');
  });

  it('never restarts a container because the SPIRE agent is unreachable', () => {
    // /readyz and the livenessprobe sidecar (CSI Probe) both fail while the agent is down.
    const agentDependentPorts = new Set<string | number>();
    for (const c of podSpec.containers.filter((c) => /sig-storage\/livenessprobe/.test(c.image ?? ''))) {
      for (const p of c.ports ?? []) {
        agentDependentPorts.add(p.containerPort);
        if (p.name) agentDependentPorts.add(p.name);
      }
    }
    for (const c of podSpec.containers) {
      for (const probe of [c.livenessProbe, c.startupProbe]) {
        const get = probe?.httpGet;
        if (!get) continue;
        expect(get.path, `${c.name} liveness/startup probe`).not.toBe('/readyz');
        expect(agentDependentPorts.has(get.port), `${c.name} probes the livenessprobe sidecar`).toBe(false);
      }
    }
  });

  it('probes every container over HTTP on a declared port', () => {
    for (const c of podSpec.containers) {
      const declared = new Set<string | number>((c.ports ?? []).flatMap((p) => [p.containerPort, ...(p.name ? [p.name] : [])]));
      for (const probe of probesOf(c)) {
        if (probe?.httpGet) expect(declared.has(probe.httpGet.port), `${c.name} probe port ${probe.httpGet.port}`).toBe(true);
      }
      expect(c.livenessProbe, `${c.name} has a liveness probe`).toBeDefined();
    }
  });

  it('sets requests and a memory limit on every container', () => {
    for (const c of podSpec.containers) {
      expect(c.resources?.requests?.cpu, c.name).toBeDefined();
      expect(c.resources?.requests?.memory, c.name).toBeDefined();
      expect(c.resources?.limits?.memory, c.name).toBeDefined();
    }
  });
});

describe('example pod', () => {
  const spec = examplePod.spec!;
  const csiVolumes = (spec.volumes ?? []).filter((v) => v.csi !== undefined);

  it('mounts a read-only csi.spire.io volume with documented attributes only', () => {
    expect(csiVolumes).toHaveLength(1);
    const csi = csiVolumes[0]!.csi!;
    expect(csi.driver).toBe(csiDriver.metadata?.name);
    expect(csi.readOnly).toBe(true);
    const valid = SPIRE_ATTRIBUTES.map((a) => `${SPIRE_ATTRIBUTE_PREFIX}${a}`);
    for (const key of Object.keys(csi.volumeAttributes ?? {})) expect(valid).toContain(key);
  });

  it('points SPIFFE_CREDENTIAL_FOLDER at the read-only mount and sets an fsGroup', () => {
    const volume = csiVolumes[0]!;
    for (const c of spec.containers) {
      const mount = mountOf(c, volume.name);
      expect(mount.readOnly).toBe(true);
      expect(c.env?.find((e) => e.name === 'SPIFFE_CREDENTIAL_FOLDER')?.value).toBe(mount.mountPath);
    }
    expect(typeof spec.securityContext?.fsGroup).toBe('number');
  });

  it('is accepted by the driver as kubelet would send it', () => {
    const volume = csiVolumes[0]!;
    const uid = '3f1f5a0e-9f0a-4c57-8a51-0d7c1f0c2b11';
    const fsGroup = spec.securityContext!.fsGroup!;
    const request = {
      volume_id: 'csi-0123456789abcdef',
      target_path: `${driverConfig().kubeletRoot}/pods/${uid}/volumes/kubernetes.io~csi/${volume.name}/mount`,
      volume_capability: {
        access_type: 'mount' as const,
        mount: { fs_type: '', mount_flags: [], volume_mount_group: String(fsGroup) },
        access_mode: { mode: 'SINGLE_NODE_WRITER' as const },
      },
      readonly: volume.csi!.readOnly,
      volume_context: {
        ...volume.csi!.volumeAttributes,
        [POD_INFO_KEYS.name]: examplePod.metadata!.name!,
        [POD_INFO_KEYS.namespace]: 'default',
        [POD_INFO_KEYS.uid]: uid,
        [POD_INFO_KEYS.serviceAccount]: spec.serviceAccountName ?? 'default',
        [EPHEMERAL_KEY]: 'true',
      },
    };
    const published = validatePublishRequest(request, { kubeletRoot: driverConfig().kubeletRoot });
    expect(published.fsGroup).toBe(fsGroup);
    expect(published.pod.uid).toBe(uid);
  });
});

describe('SPIRE registration', () => {
  const data = {
    TrustDomain: EXAMPLE_TRUST_DOMAIN,
    'PodMeta.Namespace': 'default',
    'PodSpec.ServiceAccountName': 'default',
  };

  it('renders valid SPIFFE IDs in the trust domain', () => {
    for (const file of ['clusterspiffeid-driver.yaml', 'clusterspiffeid-workloads.yaml']) {
      const id = SpiffeId.parse(renderTemplate(String(clusterSpiffeId(file).spec.spiffeIDTemplate), data));
      expect(id.trustDomain.name).toBe(EXAMPLE_TRUST_DOMAIN);
    }
    const workload = renderTemplate(String(clusterSpiffeId('clusterspiffeid-workloads.yaml').spec.spiffeIDTemplate), data);
    expect(workload).toBe('spiffe://example.org/ns/default/sa/default');
  });

  it("gives the driver pods the ID spire-agent.md lists in authorized_delegates", () => {
    const spec = clusterSpiffeId('clusterspiffeid-driver.yaml').spec;
    const driverId = renderTemplate(String(spec.spiffeIDTemplate), data);
    expect(authorizedDelegates()).toEqual([driverId]);
    expect(agentDoc).toMatch(new RegExp(`-spiffeID ${driverId.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\s`));

    const namespaceSelector = spec.namespaceSelector as { matchLabels?: Record<string, string> };
    expect(namespaceSelector.matchLabels?.['kubernetes.io/metadata.name']).toBe(daemonSet.metadata?.namespace);
    const podSelector = spec.podSelector as { matchLabels?: Record<string, string> };
    expect(daemonSet.spec!.template.metadata?.labels).toMatchObject(podSelector.matchLabels ?? {});
    expect(spec.workloadSelectorTemplates).toContain(`k8s:sa:${podSpec.serviceAccountName}`);
    expect(agentDoc).toContain(`-selector k8s:ns:${daemonSet.metadata?.namespace}`);
    expect(agentDoc).toContain(`-selector k8s:sa:${podSpec.serviceAccountName}`);
  });

  it('keeps workload identities off the driver pods', () => {
    const selector = clusterSpiffeId('clusterspiffeid-workloads.yaml').spec.namespaceSelector as {
      matchExpressions?: { key: string; operator: string; values?: string[] }[];
    };
    const excluded = selector.matchExpressions?.find(
      (e) => e.key === 'kubernetes.io/metadata.name' && e.operator === 'NotIn',
    );
    expect(excluded?.values).toContain(daemonSet.metadata?.namespace);
  });
});

describe('kustomizations', () => {
  interface Kustomization {
    readonly resources?: unknown;
    readonly images?: { name: string; newName?: string; newTag?: string }[];
    readonly labels?: { pairs: Record<string, string>; includeSelectors?: boolean }[];
    readonly patches?: unknown;
  }
  const top = only<Kustomization>('kustomize.config.k8s.io/v1beta1', 'Kustomization', 'kustomization.yaml');
  const base = only<Kustomization>('kustomize.config.k8s.io/v1beta1', 'Kustomization', `${BASE}/kustomization.yaml`);
  const baseResources = base.resources as string[];

  it('deploy/ installs base/ as it is: the delegated mode', () => {
    expect(top.resources).toEqual([BASE]);
    expect(top.patches).toBeUndefined();
    expect(Object.keys(top).sort()).toEqual(['apiVersion', 'kind', 'resources']);
  });

  it('base/ lists existing files only, each once', () => {
    expect(Array.isArray(baseResources) && baseResources.every((r) => typeof r === 'string')).toBe(true);
    for (const resource of baseResources) expect(existsSync(join(DEPLOY, BASE, resource)), resource).toBe(true);
    expect(new Set(baseResources).size).toBe(baseResources.length);
  });

  it('base/ lists every manifest in base/, and every manifest outside it is applied separately', () => {
    const manifestFiles = [...new Set(K8S_OBJECTS.map((l) => l.file))].sort();
    const inBase = manifestFiles.filter((f) => f.startsWith(`${BASE}/`));
    expect(baseResources.map((r) => `${BASE}/${r}`).sort()).toEqual(inBase);
    expect(manifestFiles.filter((f) => !f.startsWith(`${BASE}/`))).toEqual(Object.keys(APPLIED_SEPARATELY).sort());
  });

  it('kubectl kustomize deploy/ renders the namespace, service account, CSIDriver and DaemonSet of base/', () => {
    const rendered = kustomize('.');
    expect(rendered.map((o) => o.kind).sort()).toEqual(['CSIDriver', 'DaemonSet', 'Namespace', 'ServiceAccount']);
    for (const obj of rendered) {
      expect(() => validateObject(obj), `${obj.kind} ${obj.metadata?.name}`).not.toThrow();
      expect(obj.metadata?.labels?.['app.kubernetes.io/part-of'], obj.kind).toBe('spire-csi');
    }
    // The rendered DaemonSet is the file's, with the image rewritten and the label added.
    const renderedSet = rendered.find((o) => o.kind === 'DaemonSet') as unknown as IDaemonSet;
    const renderedDriver = containerNamed(renderedSet.spec!.template.spec!, 'driver');
    const entry = base.images!.find((i) => i.name === driver.image!.split(':')[0]);
    expect(renderedDriver.image).toBe(`${entry!.newName ?? entry!.name}:${entry!.newTag}`);
    expect({ ...renderedDriver, image: driver.image }).toEqual(driver);
    expect(renderedSet.spec!.selector).toEqual(daemonSet.spec!.selector);
  });

  it("rewrites the driver's image", () => {
    const [name, tag] = driver.image!.split(':');
    const entry = base.images!.find((i) => i.name === name);
    expect(entry).toBeDefined();
    expect(entry?.newTag).toBe(tag);
  });

  it('keeps the part-of label out of the immutable DaemonSet selector', () => {
    expect(base.labels).toEqual([expect.objectContaining({ pairs: { 'app.kubernetes.io/part-of': 'spire-csi' }, includeSelectors: false })]);
  });
});

describe('Dockerfile', () => {
  interface Instruction {
    readonly keyword: string;
    readonly args: string;
  }

  function parseDockerfile(text: string): Instruction[][] {
    const joined = text.replace(/\\\r?\n/g, ' ');
    const stages: Instruction[][] = [];
    for (const raw of joined.split(/\r?\n/)) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) continue;
      const match = /^(\S+)\s+(.*)$/.exec(line);
      if (!match) throw new Error(`Dockerfile line "${line}" has no arguments`);
      const instruction = { keyword: match[1]!.toUpperCase(), args: match[2]!.trim() };
      if (instruction.keyword === 'FROM') stages.push([]);
      if (stages.length === 0) throw new Error(`Dockerfile: ${instruction.keyword} before the first FROM`);
      stages[stages.length - 1]!.push(instruction);
    }
    return stages;
  }

  const stages = parseDockerfile(readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8'));
  const runtime = stages[stages.length - 1]!;
  const args = (stage: Instruction[], keyword: string) => stage.filter((i) => i.keyword === keyword).map((i) => i.args);

  it('builds in stages, all on node:24-slim', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const stage of stages) expect(stage[0]!.args).toMatch(/^node:24-slim(@sha256:[0-9a-f]{64})?(\s+AS\s+\S+)?$/i);
  });

  it('compiles with all dependencies but ships production dependencies only', () => {
    const build = stages.find((s) => args(s, 'RUN').some((r) => r.includes('npm run build')));
    expect(build).toBeDefined();
    expect(build).not.toBe(runtime);
    expect(args(build!, 'RUN').some((r) => /npm ci(?!.*--omit=dev)/.test(r))).toBe(true);
    const installs = stages.flatMap((s) => args(s, 'RUN')).filter((r) => /npm ci/.test(r) && r.includes('--omit=dev'));
    expect(installs.length).toBeGreaterThan(0);
    expect(installs.every((r) => r.includes('--workspace @spire-csi/driver'))).toBe(true);
    expect(args(runtime, 'RUN').some((r) => /npm (ci|install|run)/.test(r))).toBe(false);
  });

  it('ships mount(8), the built driver with its protos inside, and the SDK build', () => {
    expect(args(runtime, 'RUN').some((r) => /apt-get install[^&]*\bmount\b/.test(r))).toBe(true);
    const copies = args(runtime, 'COPY');
    expect(copies.some((c) => /--from=\S+\s+\S*driver\/dist\s/.test(c))).toBe(true);
    expect(copies.some((c) => /--from=\S+\s+\S*sdk\/dist\s/.test(c))).toBe(true);
    expect(copies.some((c) => /--from=\S+\s+\S*node_modules\s/.test(c))).toBe(true);
  });

  it("runs the driver's bin as root", () => {
    const entrypoint = args(runtime, 'ENTRYPOINT');
    expect(entrypoint).toHaveLength(1);
    const argv = JSON.parse(entrypoint[0]!) as string[];
    const pkg = JSON.parse(readFileSync(join(REPO, 'driver', 'package.json'), 'utf8')) as { bin: Record<string, string> };
    const bin = posix.normalize(pkg.bin['spire-csi-driver']!);
    // The young-generation cap keeps RSS down at 1,000 volumes (BENCHMARKS.md); bench/ reads it from here.
    expect(argv).toEqual(['node', '--max-semi-space-size=2', posix.join('/app/driver', bin)]);
    expect(args(runtime, 'WORKDIR')).toContain('/app');
    for (const user of args(runtime, 'USER')) expect(user).toMatch(/^(root|0)$/);
    expect(dirname(posix.join('/app/driver', bin))).toBe('/app/driver/bin');
  });
});
