import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DaemonSet } from 'kubernetes-models/apps/v1';
import { ClusterRole, ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { CSIDriver, type ICSIDriverSpec } from 'kubernetes-models/storage.k8s.io/v1';
import {
  Namespace,
  Pod,
  ServiceAccount,
  type IContainer,
  type IPodSpec,
  type ISecurityContext,
  type IVolume,
  type IVolumeMount,
} from 'kubernetes-models/v1';
import { findKubectl, kubectlKustomize } from './kubectl.js';
import { isRecord, parseYamlDocuments, type KubeObject } from './kube-yaml.js';
import { renderKustomization } from './mini-kustomize.js';

/*
 * What the deploy/ tests share: reading manifests (files, and kustomize's rendering of the two
 * install modes), schema validation with kubernetes-models, and the key lists that catch fields
 * the schema would silently accept. No cluster, no network.
 */

export { asKubeObject, isRecord, parseYamlDocuments, type KubeObject } from './kube-yaml.js';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const DEPLOY = join(REPO, 'deploy');
export const EXAMPLE_TRUST_DOMAIN = 'example.org';

/** `file` relative to deploy/. */
export function parseDeployFile(file: string): unknown[] {
  return parseYamlDocuments(readFileSync(join(DEPLOY, file), 'utf8'), file);
}

/**
 * What `kubectl apply -k deploy/<dir>` would send, rendered offline: by `kubectl kustomize` when
 * kubectl is on PATH, otherwise by mini-kustomize.ts, which implements exactly what deploy/ uses
 * and is held to kubectl's output (mini-kustomize.test.ts; against committed kubectl renderings
 * in test/deploy/fixtures/ on machines without kubectl). SPIRE_CSI_TEST_NO_KUBECTL=1 makes a
 * machine that has kubectl behave as one without it.
 */
export function kustomize(dir: string): KubeObject[] {
  const kubectl = findKubectl();
  return kubectl === undefined ? renderKustomization(join(DEPLOY, dir)) : kubectlKustomize(kubectl, join(DEPLOY, dir), `deploy/${dir}`);
}

/** The one object of this kind (and name, when given) among `objects`. */
export function onlyOf<T>(objects: readonly KubeObject[], apiVersion: string, kind: string, name?: string): T {
  const found = objects.filter((o) => o.apiVersion === apiVersion && o.kind === kind && (name === undefined || o.metadata?.name === name));
  if (found.length !== 1) throw new Error(`expected one ${apiVersion} ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  return found[0] as unknown as T;
}

// ---------------------------------------------------------------------------------------------
// Schema validation

export type Validator = (obj: KubeObject) => void;

function model<D>(Model: new (data: D) => { validate(): void }): Validator {
  return (obj) => new Model(obj as unknown as D).validate();
}

const CLUSTER_SPIFFEID_SPEC_KEYS = new Set([
  'spiffeIDTemplate',
  'podSelector',
  'namespaceSelector',
  'dnsNameTemplates',
  'workloadSelectorTemplates',
  'ttl',
  'jwtTtl',
  'federatesWith',
  'admin',
  'downstream',
  'autoPopulateDNSNames',
  'fallback',
  'className',
  'hint',
]);

function checkLabelSelector(value: unknown, where: string): void {
  if (!isRecord(value)) throw new Error(`${where} must be a label selector object`);
  for (const key of Object.keys(value)) {
    if (key !== 'matchLabels' && key !== 'matchExpressions') throw new Error(`${where}.${key} is not a label selector field`);
  }
  if (value.matchLabels !== undefined) {
    if (!isRecord(value.matchLabels) || !Object.values(value.matchLabels).every((v) => typeof v === 'string')) {
      throw new Error(`${where}.matchLabels must map strings to strings`);
    }
  }
  if (value.matchExpressions !== undefined) {
    if (!Array.isArray(value.matchExpressions)) throw new Error(`${where}.matchExpressions must be a list`);
    for (const expr of value.matchExpressions) {
      if (!isRecord(expr) || typeof expr.key !== 'string') throw new Error(`${where}.matchExpressions needs a key`);
      if (!['In', 'NotIn', 'Exists', 'DoesNotExist'].includes(String(expr.operator))) {
        throw new Error(`${where}.matchExpressions operator ${String(expr.operator)} is not valid`);
      }
      const needsValues = expr.operator === 'In' || expr.operator === 'NotIn';
      const values = expr.values;
      if (needsValues && !(Array.isArray(values) && values.length > 0 && values.every((v) => typeof v === 'string'))) {
        throw new Error(`${where}.matchExpressions ${expr.operator} needs a non-empty list of string values`);
      }
    }
  }
}

/** There is no model for spire-controller-manager's CRD: check what its schema requires. */
export function validateClusterSpiffeId(obj: KubeObject): void {
  if (obj.apiVersion !== 'spire.spiffe.io/v1alpha1') throw new Error(`ClusterSPIFFEID apiVersion ${obj.apiVersion}`);
  if (typeof obj.metadata?.name !== 'string' || obj.metadata.name === '') throw new Error('ClusterSPIFFEID needs metadata.name');
  if (obj.metadata.namespace !== undefined) throw new Error('ClusterSPIFFEID is cluster-scoped: no metadata.namespace');
  const spec = obj.spec;
  if (!isRecord(spec)) throw new Error('ClusterSPIFFEID needs a spec');
  for (const key of Object.keys(spec)) {
    if (!CLUSTER_SPIFFEID_SPEC_KEYS.has(key)) throw new Error(`ClusterSPIFFEID spec.${key} is not a known field`);
  }
  if (typeof spec.spiffeIDTemplate !== 'string' || !spec.spiffeIDTemplate.startsWith('spiffe://')) {
    throw new Error('ClusterSPIFFEID spec.spiffeIDTemplate is required and must start with spiffe://');
  }
  for (const key of ['podSelector', 'namespaceSelector'] as const) {
    if (spec[key] !== undefined) checkLabelSelector(spec[key], `spec.${key}`);
  }
  for (const key of ['workloadSelectorTemplates', 'dnsNameTemplates', 'federatesWith'] as const) {
    const list = spec[key];
    if (list !== undefined && !(Array.isArray(list) && list.every((v) => typeof v === 'string'))) {
      throw new Error(`ClusterSPIFFEID spec.${key} must be a list of strings`);
    }
  }
  const selectors = (spec.workloadSelectorTemplates ?? []) as string[];
  for (const selector of selectors) {
    if (!/^[a-z0-9_]+:.+$/.test(selector)) throw new Error(`workload selector "${selector}" is not type:value`);
  }
  for (const key of ['admin', 'downstream', 'autoPopulateDNSNames', 'fallback'] as const) {
    if (spec[key] !== undefined && typeof spec[key] !== 'boolean') throw new Error(`ClusterSPIFFEID spec.${key} must be a boolean`);
  }
}

export const VALIDATORS: Readonly<Record<string, Validator>> = {
  'v1/Namespace': model(Namespace),
  'v1/ServiceAccount': model(ServiceAccount),
  'v1/Pod': model(Pod),
  'apps/v1/DaemonSet': model(DaemonSet),
  'storage.k8s.io/v1/CSIDriver': model(CSIDriver),
  'rbac.authorization.k8s.io/v1/ClusterRole': model(ClusterRole),
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': model(ClusterRoleBinding),
  'spire.spiffe.io/v1alpha1/ClusterSPIFFEID': validateClusterSpiffeId,
};

/** Throws what the schema (or this test's stand-in for a CRD schema) rejects. */
export function validateObject(obj: KubeObject): void {
  const validator = VALIDATORS[`${obj.apiVersion}/${obj.kind}`];
  if (validator === undefined) throw new Error(`no validator for ${obj.apiVersion} ${obj.kind}; add one to test/deploy/kube-objects.ts`);
  validator(obj);
}


/*
 * The schema accepts unknown fields (a misspelt `mountPropogation` would pass and be dropped by the
 * API server). For the objects whose fields this driver depends on, compare keys against the
 * model's own interfaces; the mapped types make the compiler keep these lists complete.
 */
type KeySet<T> = { readonly [K in keyof T]-?: true };
export const CONTAINER_KEYS: KeySet<IContainer> = {
  args: true, command: true, env: true, envFrom: true, image: true, imagePullPolicy: true, lifecycle: true,
  livenessProbe: true, name: true, ports: true, readinessProbe: true, resizePolicy: true, resources: true,
  restartPolicy: true, securityContext: true, startupProbe: true, stdin: true, stdinOnce: true,
  terminationMessagePath: true, terminationMessagePolicy: true, tty: true, volumeDevices: true, volumeMounts: true,
  workingDir: true,
};
export const VOLUME_MOUNT_KEYS: KeySet<IVolumeMount> = {
  mountPath: true, mountPropagation: true, name: true, readOnly: true, recursiveReadOnly: true, subPath: true,
  subPathExpr: true,
};
export const SECURITY_CONTEXT_KEYS: KeySet<ISecurityContext> = {
  allowPrivilegeEscalation: true, appArmorProfile: true, capabilities: true, privileged: true, procMount: true,
  readOnlyRootFilesystem: true, runAsGroup: true, runAsNonRoot: true, runAsUser: true, seLinuxOptions: true,
  seccompProfile: true, windowsOptions: true,
};
export const POD_SPEC_KEYS: KeySet<IPodSpec> = {
  activeDeadlineSeconds: true, affinity: true, automountServiceAccountToken: true, containers: true, dnsConfig: true,
  dnsPolicy: true, enableServiceLinks: true, ephemeralContainers: true, hostAliases: true, hostIPC: true,
  hostNetwork: true, hostPID: true, hostUsers: true, hostname: true, imagePullSecrets: true, initContainers: true,
  nodeName: true, nodeSelector: true, os: true, overhead: true, preemptionPolicy: true, priority: true,
  priorityClassName: true, readinessGates: true, resourceClaims: true, resources: true, restartPolicy: true,
  runtimeClassName: true, schedulerName: true, schedulingGates: true, securityContext: true, serviceAccount: true,
  serviceAccountName: true, setHostnameAsFQDN: true, shareProcessNamespace: true, subdomain: true,
  terminationGracePeriodSeconds: true, tolerations: true, topologySpreadConstraints: true, volumes: true,
};
export const CSI_DRIVER_SPEC_KEYS: KeySet<ICSIDriverSpec> = {
  attachRequired: true, fsGroupPolicy: true, nodeAllocatableUpdatePeriodSeconds: true, podInfoOnMount: true,
  requiresRepublish: true, seLinuxMount: true, storageCapacity: true, tokenRequests: true, volumeLifecycleModes: true,
};

export function unknownKeys(value: object | undefined, known: object): string[] {
  if (value === undefined) return [];
  return Object.keys(value).filter((key) => !Object.hasOwn(known, key));
}

export function unknownPodSpecKeys(spec: IPodSpec, where: string): string[] {
  const found = unknownKeys(spec, POD_SPEC_KEYS).map((k) => `${where}.${k}`);
  for (const c of [...spec.containers, ...(spec.initContainers ?? [])]) {
    found.push(...unknownKeys(c, CONTAINER_KEYS).map((k) => `${where} container ${c.name}: ${k}`));
    found.push(...unknownKeys(c.securityContext, SECURITY_CONTEXT_KEYS).map((k) => `${where} ${c.name}.securityContext.${k}`));
    for (const m of c.volumeMounts ?? []) {
      found.push(...unknownKeys(m, VOLUME_MOUNT_KEYS).map((k) => `${where} ${c.name} mount ${m.name}: ${k}`));
    }
  }
  return found;
}

/** Renders the {{ .Field }} references spire-controller-manager templates use here. */
export function renderTemplate(template: string, data: Readonly<Record<string, string>>): string {
  const rendered = template.replace(/\{\{\s*\.([A-Za-z.]+)\s*\}\}/g, (_match, field: string) => {
    const value = data[field];
    if (value === undefined) throw new Error(`template field .${field} is not provided by this test`);
    return value;
  });
  if (rendered.includes('{{') || rendered.includes('}}')) throw new Error(`unrendered template syntax in ${template}`);
  return rendered;
}

/**
 * The driver container's environment as a process would see it, resolving the downward-API
 * node name; any other source fails, so a new one cannot slip past the config checks.
 */
export function containerEnv(container: IContainer, nodeName: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const variable of container.env ?? []) {
    if (variable.value !== undefined) env[variable.name] = variable.value;
    else if (variable.valueFrom?.fieldRef?.fieldPath === 'spec.nodeName') env[variable.name] = nodeName;
    else throw new Error(`${container.name} env ${variable.name} has a source this test cannot resolve`);
  }
  return env;
}

export function containerNamed(spec: IPodSpec, name: string): IContainer {
  const found = spec.containers.find((c) => c.name === name);
  if (!found) throw new Error(`the pod spec has no container ${name}`);
  return found;
}

export function volumeNamed(spec: IPodSpec, name: string): IVolume {
  const found = spec.volumes?.find((v) => v.name === name);
  if (!found) throw new Error(`no volume ${name}`);
  return found;
}

export function mountOf(container: IContainer, volume: string): IVolumeMount {
  const found = container.volumeMounts?.find((m) => m.name === volume);
  if (!found) throw new Error(`container ${container.name} does not mount ${volume}`);
  return found;
}

export function hostPathOf(spec: IPodSpec, volume: string): { path: string; type?: string } {
  const hostPath = volumeNamed(spec, volume).hostPath;
  if (!hostPath) throw new Error(`volume ${volume} is not a hostPath`);
  return hostPath;
}
