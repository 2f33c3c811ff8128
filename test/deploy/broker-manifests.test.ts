import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, posix } from 'node:path';
import { SpiffeId } from '@spire-csi/sdk';
import type { IDaemonSet } from 'kubernetes-models/apps/v1';
import type { IClusterRole, IClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import type { IPodSpec } from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import { DRIVER_OPTIONS, parseDriverConfig } from '../../driver/src/config/driver-config.js';
import { hclBlock, hclBlocksOf, hclObjectList, hclString } from './hcl-snippet.js';
import {
  asKubeObject,
  containerEnv,
  containerNamed,
  DEPLOY,
  EXAMPLE_TRUST_DOMAIN,
  hostPathOf,
  isRecord,
  kustomize,
  mountOf,
  onlyOf,
  parseDeployFile,
  renderTemplate,
  unknownPodSpecKeys,
  validateObject,
  type KubeObject,
} from './kube-objects.js';

/*
 * Broker mode as deploy/broker installs it: what `kubectl kustomize deploy/broker` renders is
 * schema-valid, differs from the default install only where broker mode needs it, configures the
 * driver through variables its real CLI parser accepts, mounts the sockets where deploy/broker.md
 * tells the SPIRE agent to serve them, and grants `impersonate-via-spire` exactly as SPIRE's k8s
 * workload attestor asks for it (SubjectAccessReview user = the broker's SPIFFE ID, verb
 * impersonate-via-spire, resource pods in the core group) to the ID the driver's
 * ClusterSPIFFEID renders, which is also the ID the documented allowlists name.
 */

const OVERLAY = 'broker';
const KUBERNETES_OBJECT_REFERENCE = 'type.googleapis.com/spiffe.broker.KubernetesObjectReference';
/** Files of deploy/broker that the overlay does not install, and why (mirrors its kustomization). */
const BROKER_APPLIED_SEPARATELY: Readonly<Record<string, string>> = {
  'spire-agent-rbac.yaml': "grants the SPIRE installation's own ServiceAccount; its subject is cluster-specific",
};

const delegated = kustomize('.');
const broker = kustomize(OVERLAY);
const brokerDoc = readFileSync(join(DEPLOY, 'broker.md'), 'utf8');

const brokerSet = onlyOf<IDaemonSet>(broker, 'apps/v1', 'DaemonSet');
const delegatedSet = onlyOf<IDaemonSet>(delegated, 'apps/v1', 'DaemonSet');
const podSpec: IPodSpec = brokerSet.spec!.template.spec!;
const driver = containerNamed(podSpec, 'driver');
const env = containerEnv(driver, 'node-a');

/** The ID deploy/clusterspiffeid-driver.yaml gives the driver pods, in the example trust domain. */
function driverSpiffeId(): string {
  const [doc] = parseDeployFile('clusterspiffeid-driver.yaml');
  const spec = isRecord(doc) && isRecord(doc.spec) ? doc.spec : undefined;
  if (typeof spec?.spiffeIDTemplate !== 'string') throw new Error('clusterspiffeid-driver.yaml has no spec.spiffeIDTemplate');
  return renderTemplate(spec.spiffeIDTemplate, { TrustDomain: EXAMPLE_TRUST_DOMAIN });
}

/** `unix:///abs/path` → `/abs/path`; anything else fails the test that asked. */
function unixPath(endpoint: string | undefined, variable: string): string {
  const match = /^unix:\/\/(\/.+)$/.exec(endpoint ?? '');
  if (!match) throw new Error(`${variable} is "${endpoint}", not unix:///absolute/path`);
  return match[1]!;
}

/** The agent configuration shown in broker.md: the snippet holding both `agent` and `plugins`. */
function agentConfig(): string {
  const blocks = hclBlocksOf(brokerDoc).filter((b) => /^agent\s*\{/m.test(b) && /^plugins\s*\{/m.test(b));
  if (blocks.length !== 1) throw new Error(`broker.md should show one hcl block with agent and plugins, found ${blocks.length}`);
  return blocks[0]!;
}

function agentBroker(): string {
  return hclBlock(hclBlock(hclBlock(agentConfig(), 'agent'), 'experimental'), 'broker');
}

function attestorBroker(): string {
  const k8s = hclBlock(hclBlock(agentConfig(), 'plugins'), 'WorkloadAttestor "k8s"');
  return hclBlock(hclBlock(hclBlock(k8s, 'plugin_data'), 'experimental'), 'broker');
}

/** Objects with their DaemonSet stripped of what broker mode changes, for comparing the modes. */
function withoutBrokerChanges(objects: readonly KubeObject[]): KubeObject[] {
  return objects
    .filter((o) => !o.kind.startsWith('ClusterRole'))
    .map((o) => {
      if (o.kind !== 'DaemonSet') return o;
      const copy = structuredClone(o) as unknown as IDaemonSet;
      const spec = copy.spec!.template.spec!;
      delete spec.volumes;
      for (const c of spec.containers) {
        if (c.name !== 'driver') continue;
        delete c.env;
        delete c.volumeMounts;
      }
      return copy as unknown as KubeObject;
    });
}

describe('kubectl kustomize deploy/broker', () => {
  it('renders the objects of the default install plus the impersonation ClusterRole and binding', () => {
    expect(broker.map((o) => `${o.kind}/${o.metadata?.name}`).sort()).toEqual(
      [
        ...delegated.map((o) => `${o.kind}/${o.metadata?.name}`),
        'ClusterRole/spire-csi-broker-impersonation',
        'ClusterRoleBinding/spire-csi-broker-impersonation',
      ].sort(),
    );
  });

  it.each(broker.map((o) => [`${o.kind} ${o.metadata?.name}`, o] as const))('%s validates and is labelled part-of spire-csi', (_n, obj) => {
    expect(() => validateObject(obj)).not.toThrow();
    expect(obj.metadata?.labels?.['app.kubernetes.io/part-of']).toBe('spire-csi');
  });

  it('uses only fields the API knows in the patched pod spec', () => {
    expect(unknownPodSpecKeys(podSpec, 'broker daemonset')).toEqual([]);
  });

  it("changes nothing but the driver's environment, its mounts and the pod's volumes", () => {
    expect(withoutBrokerChanges(broker)).toEqual(withoutBrokerChanges(delegated));
    const otherContainers = (set: IDaemonSet) => set.spec!.template.spec!.containers.filter((c) => c.name !== 'driver');
    expect(otherContainers(brokerSet)).toEqual(otherContainers(delegatedSet));
  });

  it('keeps every volume and mount of the default install but the admin socket', () => {
    const delegatedSpec = delegatedSet.spec!.template.spec!;
    const names = (spec: IPodSpec) => (spec.volumes ?? []).map((v) => v.name);
    const adminDir = 'spire-agent-admin-socket-dir';
    expect(names(delegatedSpec)).toContain(adminDir);
    expect(names(podSpec)).not.toContain(adminDir);
    for (const volume of delegatedSpec.volumes ?? []) {
      if (volume.name !== adminDir) expect(podSpec.volumes).toContainEqual(volume);
    }
    const delegatedDriver = containerNamed(delegatedSpec, 'driver');
    for (const mount of delegatedDriver.volumeMounts ?? []) {
      if (mount.name !== adminDir) expect(driver.volumeMounts).toContainEqual(mount);
    }
    expect(driver.volumeMounts?.some((m) => m.name === adminDir)).toBe(false);
  });
});

describe('the broker-mode driver', () => {
  it('is configured only through variables its CLI knows, and not with the admin socket', () => {
    const known = new Set(DRIVER_OPTIONS.map((o) => o.env));
    for (const variable of driver.env ?? []) expect(known, variable.name).toContain(variable.name);
    expect(driver.args ?? []).toEqual([]);
    expect(env.SPIRE_CSI_IDENTITY_API).toBe('broker');
    expect(env.SPIRE_CSI_ADMIN_SOCKET).toBeUndefined();
  });

  it("passes the driver's own configuration parser in broker mode", () => {
    const config = parseDriverConfig([], env);
    expect(config).not.toBeNull();
    expect(config).toMatchObject({
      identityApi: 'broker',
      nodeId: 'node-a',
      adminSocketPath: '',
      broker: { endpoint: env.SPIRE_CSI_BROKER_ENDPOINT, workloadApi: env.SPIRE_CSI_WORKLOAD_API },
    });
    expect(config!.broker!.target).toMatch(new RegExp(`^unix:(//)?${unixPath(env.SPIRE_CSI_BROKER_ENDPOINT, 'SPIRE_CSI_BROKER_ENDPOINT')}$`));
    expect(config!.broker!.brokerId).toBeUndefined();
  });

  it('reaches both agent sockets through read-only host directories of their own', () => {
    const sockets = [
      { variable: 'SPIRE_CSI_BROKER_ENDPOINT', volume: 'spire-agent-broker-socket-dir' },
      { variable: 'SPIRE_CSI_WORKLOAD_API', volume: 'spire-agent-socket-dir' },
    ];
    const dirs: string[] = [];
    for (const { variable, volume } of sockets) {
      const dir = posix.dirname(unixPath(env[variable], variable));
      expect(hostPathOf(podSpec, volume), volume).toEqual({ path: dir, type: 'DirectoryOrCreate' });
      expect(mountOf(driver, volume), volume).toMatchObject({ mountPath: dir, readOnly: true });
      expect(mountOf(driver, volume).mountPropagation, volume).toBeUndefined();
      dirs.push(dir);
    }
    // SPIRE refuses a broker socket in or below the Workload API socket's directory.
    const [brokerDir, workloadDir] = dirs as [string, string];
    expect(brokerDir === workloadDir || brokerDir.startsWith(`${workloadDir}/`)).toBe(false);
  });

  it('leaves --broker-id unset: SPIRE agent IDs differ per node', () => {
    expect(env.SPIRE_CSI_BROKER_ID).toBeUndefined();
  });
});

describe('RBAC for impersonate-via-spire', () => {
  const role = onlyOf<IClusterRole>(broker, 'rbac.authorization.k8s.io/v1', 'ClusterRole');
  const binding = onlyOf<IClusterRoleBinding>(broker, 'rbac.authorization.k8s.io/v1', 'ClusterRoleBinding');

  it('lets exactly that verb on pods of the core group, nothing more', () => {
    expect(role.rules).toEqual([{ apiGroups: [''], resources: ['pods'], verbs: ['impersonate-via-spire'] }]);
  });

  it("binds it to the driver's SPIFFE ID as a user, the name the agent's SubjectAccessReview uses", () => {
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata?.name });
    expect(binding.subjects).toEqual([{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: driverSpiffeId() }]);
    expect(SpiffeId.parse(driverSpiffeId()).trustDomain.name).toBe(EXAMPLE_TRUST_DOMAIN);
  });
});

describe('deploy/broker/ files', () => {
  const dir = join(DEPLOY, OVERLAY);
  const [kustomization] = parseDeployFile(`${OVERLAY}/kustomization.yaml`) as [{ resources: string[]; patches: { path: string }[] }];

  it('lists existing files, and every YAML file is a resource, a patch or applied separately', () => {
    const listed = [...kustomization.resources, ...kustomization.patches.map((p) => p.path)];
    for (const file of listed) expect(existsSync(join(dir, file)), file).toBe(true);
    expect(kustomization.resources).toContain('../base');
    const files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml');
    expect(files.sort()).toEqual([...listed.filter((f) => !f.startsWith('..')), ...Object.keys(BROKER_APPLIED_SEPARATELY)].sort());
  });

  it("grants the SPIRE agent's ServiceAccount create on SubjectAccessReviews, in a file applied on its own", () => {
    const objects = parseDeployFile(`${OVERLAY}/spire-agent-rbac.yaml`).map((v, i) => asKubeObject(v, `spire-agent-rbac.yaml ${i}`));
    for (const obj of objects) expect(() => validateObject(obj), obj.kind).not.toThrow();
    const role = onlyOf<IClusterRole>(objects, 'rbac.authorization.k8s.io/v1', 'ClusterRole');
    const binding = onlyOf<IClusterRoleBinding>(objects, 'rbac.authorization.k8s.io/v1', 'ClusterRoleBinding');
    expect(role.rules).toEqual([{ apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] }]);
    expect(binding.roleRef).toMatchObject({ kind: 'ClusterRole', name: role.metadata?.name });
    expect(binding.subjects).toEqual([expect.objectContaining({ kind: 'ServiceAccount', name: expect.any(String), namespace: expect.any(String) })]);
    expect(brokerDoc).toContain('deploy/broker/spire-agent-rbac.yaml');
  });
});

describe('deploy/broker.md', () => {
  it('tells the agent to serve the Workload API and the Broker endpoint where the driver looks', () => {
    const agent = hclBlock(agentConfig(), 'agent');
    expect(hclString(agent, 'socket_path')).toBe(unixPath(env.SPIRE_CSI_WORKLOAD_API, 'SPIRE_CSI_WORKLOAD_API'));
    expect(hclString(agentBroker(), 'socket_path')).toBe(unixPath(env.SPIRE_CSI_BROKER_ENDPOINT, 'SPIRE_CSI_BROKER_ENDPOINT'));
    for (const volume of ['spire-agent-broker-socket-dir', 'spire-agent-socket-dir']) {
      expect(brokerDoc).toContain(`path: ${hostPathOf(podSpec, volume).path}`);
      expect(brokerDoc).toContain(`mountPath: ${mountOf(driver, volume).mountPath}`);
    }
  });

  it("allows the driver's SPIFFE ID, and it only, as a broker using KubernetesObjectReference", () => {
    const entries = hclObjectList(agentBroker(), 'brokers');
    expect(entries.map((e) => hclString(e, 'id'))).toEqual([driverSpiffeId()]);
    const types = hclObjectList(entries[0]!, 'allowed_reference_types');
    expect(types.map((t) => hclString(t, 'type_url'))).toEqual([KUBERNETES_OBJECT_REFERENCE]);
    // A unix socket only: the driver talks to the agent of its own node.
    expect(types.map((t) => /allow_over_tcp/.test(t))).toEqual([false]);
    expect(hclString(agentBroker(), 'bind_address')).toBeUndefined();
  });

  it("names the same ID in the k8s attestor's broker block, with an access policy SPIRE accepts", () => {
    const attestor = attestorBroker();
    expect(['enforced', 'permissive']).toContain(hclString(attestor, 'access_policy'));
    const entries = hclObjectList(attestor, 'brokers');
    expect(entries.map((e) => hclString(e, 'id'))).toEqual([driverSpiffeId()]);
    // agent_node (the default) keeps the lookup to the agent's own kubelet.
    for (const entry of entries) expect(hclString(entry, 'pod_reference_scope') ?? 'agent_node').toBe('agent_node');
  });

  it('states the SPIRE version, the RBAC and where the setting names come from', () => {
    expect(brokerDoc).toMatch(/1\.15\.2 or newer/);
    expect(brokerDoc).toContain('impersonate-via-spire');
    expect(brokerDoc).toContain('kubectl apply -k deploy/broker');
    for (const source of [
      'cmd/spire-agent/cli/run/run.go',
      'pkg/agent/plugin/workloadattestor/k8s/k8s.go',
      'test/integration/suites/broker-api-k8s/conf/agent/spire-agent.yaml',
    ]) {
      expect(brokerDoc).toContain(source);
    }
  });

  it('reads these snippets the way SPIRE would: a misplaced setting is not found', () => {
    // The parser must not pick the Workload API socket_path up as the broker's, or vice versa.
    const swapped = 'agent {\n  experimental {\n    broker {\n      brokers = []\n    }\n  }\n  socket_path = "/x/api.sock"\n}\n';
    expect(hclString(hclBlock(swapped, 'agent'), 'socket_path')).toBe('/x/api.sock');
    expect(hclString(hclBlock(hclBlock(hclBlock(swapped, 'agent'), 'experimental'), 'broker'), 'socket_path')).toBeUndefined();
    expect(() => hclBlock(swapped, 'plugins')).toThrow(/no top-level block/);
  });
});
