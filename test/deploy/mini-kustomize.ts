import { readFileSync, statSync, type Stats } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { isRecord, parseYamlDocuments, type KubeObject } from './kube-yaml.js';

/*
 * A stand-in for `kubectl kustomize`, for machines without kubectl: exactly the kustomization
 * features deploy/ uses, with kustomize v5's semantics for them -
 *   resources  files and directories with their own kustomization, recursively;
 *   patches    `path:` strategic-merge patches of pod-template workloads (containers, env and
 *              volumes merged by name, volumeMounts by mountPath, `$patch: delete` on their items,
 *              other lists replaced), applied first, as kustomize does;
 *   labels     pairs into metadata.labels, with includeTemplates into pod templates, never selectors;
 *   images     name -> newName/newTag;
 *   output     kustomize's default ("legacy") order.
 * Anything else throws naming the feature, so a change to deploy/ fails loudly instead of being
 * rendered wrongly. mini-kustomize.test.ts holds the output to kubectl's (and to fixtures rendered
 * by kubectl, on machines without it).
 */

export type MiniKustomizeErrorKind =
  /** The kustomization uses something this renderer does not implement. */
  | 'unsupported'
  /** The kustomization is wrong in a way kustomize would refuse too. */
  | 'invalid';

export class MiniKustomizeError extends Error {
  readonly kind: MiniKustomizeErrorKind;

  constructor(kind: MiniKustomizeErrorKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'MiniKustomizeError';
    this.kind = kind;
  }
}

function unsupported(feature: string, where: string): MiniKustomizeError {
  return new MiniKustomizeError(
    'unsupported',
    `mini-kustomize does not implement ${feature} (${where}); extend test/deploy/mini-kustomize.ts or install kubectl`,
  );
}

function invalid(message: string): MiniKustomizeError {
  return new MiniKustomizeError('invalid', `mini-kustomize: ${message}`);
}

type Obj = Record<string, unknown>;

/** The objects `kubectl kustomize <dir>` would print, in its order. */
export function renderKustomization(dir: string): KubeObject[] {
  return build(resolve(dir), []).sort(legacyOrder) as KubeObject[];
}

// ---------------------------------------------------------------------------------------------
// Kustomization files and resources

const KUSTOMIZATION_FILES = ['kustomization.yaml', 'kustomization.yml', 'Kustomization'];
const KUSTOMIZATION_FIELDS = new Set(['apiVersion', 'kind', 'resources', 'patches', 'labels', 'images']);

function statOf(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

function readKustomization(dir: string): { file: string; kustomization: Obj } {
  const found = KUSTOMIZATION_FILES.map((name) => join(dir, name)).filter((path) => statOf(path)?.isFile());
  if (found.length === 0) throw invalid(`${dir} has no ${KUSTOMIZATION_FILES.join(' / ')}`);
  if (found.length > 1) throw invalid(`${dir} has more than one kustomization file: ${found.join(', ')}`);
  const file = found[0]!;
  const docs = parseYamlDocuments(readFileSync(file, 'utf8'), file);
  const kustomization = docs[0];
  if (docs.length !== 1 || !isRecord(kustomization)) throw invalid(`${file} must hold one mapping`);
  for (const field of Object.keys(kustomization)) {
    if (!KUSTOMIZATION_FIELDS.has(field)) throw unsupported(`the kustomization field \`${field}\``, file);
  }
  if (kustomization.apiVersion !== undefined && kustomization.apiVersion !== 'kustomize.config.k8s.io/v1beta1') {
    throw unsupported(`apiVersion ${String(kustomization.apiVersion)}`, file);
  }
  if (kustomization.kind !== undefined && kustomization.kind !== 'Kustomization') {
    throw unsupported(`kind ${String(kustomization.kind)}`, file);
  }
  return { file, kustomization };
}

function listField(kustomization: Obj, field: string, file: string): unknown[] {
  const value = kustomization[field];
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalid(`${file}: ${field} must be a list`);
  return value;
}

/** kustomize loads files only from the kustomization's own directory tree (its load restrictor). */
function fileInRoot(dir: string, entry: string, where: string): string {
  const path = resolve(dir, entry);
  const rel = relative(dir, path);
  if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
    throw invalid(`${where}: file ${entry} is not in or below ${dir}, which kustomize refuses`);
  }
  return path;
}

function build(dir: string, stack: readonly string[]): Obj[] {
  if (stack.includes(dir)) throw invalid(`kustomizations include each other: ${[...stack, dir].join(' -> ')}`);
  const { file, kustomization } = readKustomization(dir);
  const objects: Obj[] = [];
  const ids = new Set<string>();
  listField(kustomization, 'resources', file).forEach((entry, i) => {
    const where = `${file} resources[${i}]`;
    if (typeof entry !== 'string' || entry === '') throw invalid(`${where} must be a path`);
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(entry) || entry.startsWith('github.com/') || entry.includes('?ref=')) {
      throw unsupported('remote resources', where);
    }
    const stat = statOf(resolve(dir, entry));
    if (stat === undefined) throw invalid(`${where}: ${entry} does not exist`);
    const loaded = stat.isDirectory() ? build(resolve(dir, entry), [...stack, dir]) : loadFile(fileInRoot(dir, entry, where));
    for (const obj of loaded) {
      const id = idOf(obj);
      if (ids.has(id)) throw invalid(`${where}: ${id} is already a resource of ${file}`);
      ids.add(id);
      objects.push(obj);
    }
  });
  // kustomize's transformer order: patches, then labels, then images.
  listField(kustomization, 'patches', file).forEach((entry, i) => applyPatch(objects, dir, entry, `${file} patches[${i}]`));
  listField(kustomization, 'labels', file).forEach((entry, i) => applyLabels(objects, entry, `${file} labels[${i}]`));
  listField(kustomization, 'images', file).forEach((entry, i) => applyImage(objects, entry, `${file} images[${i}]`));
  return objects;
}

function loadFile(path: string): Obj[] {
  return parseYamlDocuments(readFileSync(path, 'utf8'), path).map((doc, i) => {
    const where = `${path} document ${i}`;
    if (!isRecord(doc) || typeof doc.apiVersion !== 'string' || typeof doc.kind !== 'string') {
      throw invalid(`${where} is not an object with apiVersion and kind`);
    }
    if (doc.kind === 'List' || (doc.kind.endsWith('List') && Array.isArray(doc.items))) throw unsupported(`${doc.kind} objects`, where);
    if (!isRecord(doc.metadata) || typeof doc.metadata.name !== 'string' || doc.metadata.name === '') {
      throw invalid(`${where} has no metadata.name`);
    }
    return doc;
  });
}

function metadataOf(obj: Obj): { name?: unknown; namespace?: unknown } {
  return isRecord(obj.metadata) ? obj.metadata : {};
}

function idOf(obj: Obj): string {
  const { name, namespace } = metadataOf(obj);
  return `${String(obj.apiVersion)} ${String(obj.kind)} ${namespace === undefined ? '' : `${String(namespace)}/`}${String(name)}`;
}

// ---------------------------------------------------------------------------------------------
// patches: strategic merge

/** Pod-template workloads: the only objects whose strategic-merge keys this file knows. */
const PATCHABLE = new Set(['apps/v1 DaemonSet', 'apps/v1 Deployment', 'apps/v1 StatefulSet', 'apps/v1 ReplicaSet', 'batch/v1 Job']);
const MERGE_KEYS: Readonly<Record<string, string>> = { containers: 'name', env: 'name', volumes: 'name', volumeMounts: 'mountPath' };
/** Lists of these objects that Kubernetes also merges by a key; replacing them would be wrong. */
const MERGED_BY_KUBERNETES = new Set([
  'finalizers', 'ownerReferences', 'initContainers', 'ephemeralContainers', 'imagePullSecrets', 'hostAliases',
  'topologySpreadConstraints', 'resourceClaims', 'schedulingGates', 'ports', 'volumeDevices', 'claims', 'conditions',
]);

function applyPatch(objects: Obj[], dir: string, entry: unknown, where: string): void {
  if (!isRecord(entry)) throw invalid(`${where} must be a mapping`);
  for (const field of Object.keys(entry)) {
    if (field === 'target') throw unsupported('patches with a target', where);
    if (field === 'patch') throw unsupported('inline patches (patches[].patch)', where);
    if (field !== 'path') throw unsupported(`patches[].${field}`, where);
  }
  if (typeof entry.path !== 'string') throw invalid(`${where}.path must be a file path`);
  const file = fileInRoot(dir, entry.path, where);
  const docs = parseYamlDocuments(readFileSync(file, 'utf8'), file);
  if (docs.length !== 1) throw unsupported(`a patch file with ${docs.length} documents`, file);
  const patch = docs[0];
  if (Array.isArray(patch)) throw unsupported('JSON 6902 patches', file);
  if (!isRecord(patch) || typeof patch.apiVersion !== 'string' || typeof patch.kind !== 'string') {
    throw invalid(`${file}: a strategic-merge patch needs apiVersion and kind`);
  }
  const type = `${patch.apiVersion} ${patch.kind}`;
  if (!PATCHABLE.has(type)) throw unsupported(`strategic-merge patches of ${type} (only ${[...PATCHABLE].join(', ')})`, file);
  const { name, namespace } = metadataOf(patch);
  if (typeof name !== 'string') throw invalid(`${file}: the patch needs metadata.name to find its target`);
  // kustomize treats an absent namespace as "default" when matching.
  const matches = objects.filter((o) => {
    const meta = metadataOf(o);
    return o.apiVersion === patch.apiVersion && o.kind === patch.kind && meta.name === name && (meta.namespace ?? 'default') === (namespace ?? 'default');
  });
  if (matches.length !== 1) throw invalid(`${file}: the patch of ${idOf(patch)} matches ${matches.length} resources, not one`);
  mergeMap(matches[0]!, patch, file);
}

function kindOfValue(value: unknown): string {
  return Array.isArray(value) ? 'a list' : isRecord(value) ? 'a mapping' : 'a scalar';
}

function mergeMap(dest: Obj, patch: Obj, path: string): Obj {
  for (const [field, value] of Object.entries(patch)) {
    const here = `${path}.${field}`;
    if (field.startsWith('$')) throw unsupported(`the strategic-merge directive ${field}`, here);
    if (value === null) throw unsupported('deleting a field with null', here);
    const current = dest[field];
    if (current !== undefined && current !== null && kindOfValue(current) !== kindOfValue(value)) {
      throw invalid(`${here} is ${kindOfValue(value)} in the patch but ${kindOfValue(current)} in the resource`);
    }
    if (Array.isArray(value)) {
      dest[field] = mergeList(field, Array.isArray(current) ? current : [], value, here);
    } else if (isRecord(value)) {
      if (Object.keys(value).length === 0) throw unsupported('an empty mapping in a patch', here);
      dest[field] = mergeMap(isRecord(current) ? current : {}, value, here);
    } else {
      dest[field] = value;
    }
  }
  return dest;
}

function mergeList(field: string, dest: unknown[], patch: unknown[], path: string): unknown[] {
  const key = MERGE_KEYS[field];
  if (key === undefined) {
    if (MERGED_BY_KUBERNETES.has(field)) throw unsupported(`merging the list ${field} by its key`, path);
    rejectDirectives(patch, path);
    return patch;
  }
  const keyOf = (item: unknown, where: string): string => {
    if (!isRecord(item) || typeof item[key] !== 'string') throw invalid(`${where} needs a string ${key}, the list's merge key`);
    return item[key];
  };
  const destKeys = dest.map((item, i) => keyOf(item, `${path}[${i}] of the resource`));
  if (new Set(destKeys).size !== destKeys.length) throw invalid(`${path}: the resource repeats a ${key}`);
  // kustomize's patches put the patch's items first, in patch order, then the resource's others.
  const merged: unknown[] = [];
  const patched = new Set<string>();
  patch.forEach((item, i) => {
    const where = `${path}[${i}]`;
    const itemKey = keyOf(item, where);
    if (patched.has(itemKey)) throw invalid(`${where}: ${key} ${itemKey} appears twice in the patch`);
    patched.add(itemKey);
    const { $patch: directive, ...fields } = item as Obj;
    if (directive !== undefined) {
      if (directive !== 'delete') throw unsupported(`$patch: ${String(directive)}`, where);
      return;
    }
    const existing = dest[destKeys.indexOf(itemKey)];
    merged.push(mergeMap(isRecord(existing) ? existing : {}, fields, where));
  });
  dest.forEach((item, i) => {
    if (!patched.has(destKeys[i]!)) merged.push(item);
  });
  if (merged.length === 0) throw unsupported('a patch that empties a list', path);
  return merged;
}

function rejectDirectives(value: unknown, path: string): void {
  if (Array.isArray(value)) value.forEach((item, i) => rejectDirectives(item, `${path}[${i}]`));
  if (!isRecord(value)) return;
  for (const [field, inner] of Object.entries(value)) {
    if (field.startsWith('$')) throw unsupported(`the strategic-merge directive ${field} in a replaced list`, `${path}.${field}`);
    rejectDirectives(inner, `${path}.${field}`);
  }
}

// ---------------------------------------------------------------------------------------------
// labels

const LABEL_FIELDS = new Set(['pairs', 'includeSelectors', 'includeTemplates']);

/** kustomize's template label paths: a field left out matches any value. */
const TEMPLATE_LABEL_PATHS: readonly { group?: string; version?: string; kind: string; path: readonly string[] }[] = [
  { version: 'v1', kind: 'ReplicationController', path: ['spec', 'template', 'metadata', 'labels'] },
  { kind: 'Deployment', path: ['spec', 'template', 'metadata', 'labels'] },
  { kind: 'ReplicaSet', path: ['spec', 'template', 'metadata', 'labels'] },
  { kind: 'DaemonSet', path: ['spec', 'template', 'metadata', 'labels'] },
  { group: 'apps', kind: 'StatefulSet', path: ['spec', 'template', 'metadata', 'labels'] },
  { group: 'batch', kind: 'Job', path: ['spec', 'template', 'metadata', 'labels'] },
  { group: 'batch', kind: 'CronJob', path: ['spec', 'jobTemplate', 'metadata', 'labels'] },
  { group: 'batch', kind: 'CronJob', path: ['spec', 'jobTemplate', 'spec', 'template', 'metadata', 'labels'] },
];

function applyLabels(objects: Obj[], entry: unknown, where: string): void {
  if (!isRecord(entry)) throw invalid(`${where} must be a mapping`);
  for (const field of Object.keys(entry)) {
    if (!LABEL_FIELDS.has(field)) throw unsupported(`labels[].${field}`, where);
  }
  if (entry.includeSelectors === true) throw unsupported('labels with includeSelectors: true', where);
  for (const flag of ['includeSelectors', 'includeTemplates'] as const) {
    if (entry[flag] !== undefined && typeof entry[flag] !== 'boolean') throw invalid(`${where}.${flag} must be true or false`);
  }
  const pairs = entry.pairs;
  if (!isRecord(pairs) || !Object.values(pairs).every((v) => typeof v === 'string')) {
    throw invalid(`${where}.pairs must map label names to strings (quote numbers and booleans)`);
  }
  for (const obj of objects) {
    addLabels(obj, ['metadata', 'labels'], pairs, where);
    if (entry.includeTemplates !== true) continue;
    const { group, version } = splitApiVersion(String(obj.apiVersion));
    for (const spec of TEMPLATE_LABEL_PATHS) {
      const selected = spec.kind === obj.kind && (spec.group ?? group) === group && (spec.version ?? version) === version;
      if (selected) addLabels(obj, spec.path, pairs, where);
    }
  }
}

/** Creates the path when absent, as kustomize's label field specs (create: true) do. */
function addLabels(obj: Obj, path: readonly string[], pairs: Obj, where: string): void {
  let node = obj;
  for (const field of path) {
    const next = node[field] ?? {};
    if (!isRecord(next)) throw invalid(`${where}: ${idOf(obj)} ${path.join('.')} is not a mapping`);
    node[field] = next;
    node = next;
  }
  Object.assign(node, pairs);
}

// ---------------------------------------------------------------------------------------------
// images

const IMAGE_FIELDS = new Set(['name', 'newName', 'newTag']);

interface ImageRule {
  readonly pattern: RegExp;
  readonly newName?: string;
  readonly newTag?: string;
}

function applyImage(objects: Obj[], entry: unknown, where: string): void {
  if (!isRecord(entry)) throw invalid(`${where} must be a mapping`);
  for (const field of Object.keys(entry)) {
    if (!IMAGE_FIELDS.has(field)) throw unsupported(`images[].${field}`, where);
  }
  for (const field of IMAGE_FIELDS) {
    if (entry[field] !== undefined && typeof entry[field] !== 'string') throw invalid(`${where}.${field} must be a string (quote it)`);
  }
  const name = entry.name;
  if (typeof name !== 'string' || name === '') throw invalid(`${where}.name is required`);
  // kustomize puts the name into a regular expression as is; only its `.` (any character) is
  // reproduced here.
  if (/[\\^$*+?()[\]{}|]/.test(name)) throw unsupported('image names with regular-expression characters', where);
  const rule: ImageRule = {
    pattern: new RegExp(`^${name}(:[a-zA-Z0-9_.{}-]*)?(@[a-zA-Z0-9]+([.+_-][a-zA-Z0-9]+)*:[a-zA-Z0-9_.{}-]*)?$`),
    newName: entry.newName as string | undefined,
    newTag: entry.newTag as string | undefined,
  };
  for (const obj of objects) {
    // Every `containers` / `initContainers` list anywhere in the object (kustomize skips CRDs)...
    if (obj.kind !== 'CustomResourceDefinition') retagContainerLists(obj, rule, `${where} ${idOf(obj)}`);
    // ...and image volumes of pods and pod templates.
    for (const spec of [at(obj, ['spec']), at(obj, ['spec', 'template', 'spec'])]) {
      for (const volume of isRecord(spec) && Array.isArray(spec.volumes) ? spec.volumes : []) {
        const source = isRecord(volume) ? volume.image : undefined;
        if (isRecord(source)) retag(source, 'reference', rule, where);
      }
    }
  }
}

function at(obj: Obj, path: readonly string[]): unknown {
  let node: unknown = obj;
  for (const field of path) node = isRecord(node) ? node[field] : undefined;
  return node;
}

function retagContainerLists(node: unknown, rule: ImageRule, where: string): void {
  if (Array.isArray(node)) node.forEach((item) => retagContainerLists(item, rule, where));
  if (!isRecord(node)) return;
  for (const [field, value] of Object.entries(node)) {
    retagContainerLists(value, rule, where);
    if ((field === 'containers' || field === 'initContainers') && Array.isArray(value)) {
      for (const container of value) if (isRecord(container)) retag(container, 'image', rule, where);
    }
  }
}

function retag(holder: Obj, field: string, rule: ImageRule, where: string): void {
  const image = holder[field];
  if (image === undefined) return;
  if (typeof image !== 'string') throw invalid(`${where}: an ${field} that is not a string`);
  if (!rule.pattern.test(image)) return;
  let { name, tag, digest } = splitImage(image);
  if (rule.newName !== undefined && rule.newName !== '') name = rule.newName;
  if (rule.newTag !== undefined && rule.newTag !== '') {
    tag = rule.newTag;
    digest = '';
  }
  holder[field] = `${name}${tag ? `:${tag}` : ''}${digest ? `@${digest}` : ''}`;
}

/** name[:tag][@digest]; a `:` before the first `/` is a registry port, not a tag. */
function splitImage(image: string): { name: string; tag: string; digest: string } {
  const slash = image.indexOf('/');
  const from = slash > 0 ? slash : 0;
  const at = image.indexOf('@', from);
  const colon = image.indexOf(':', from);
  if (at < 0 && colon < 0) return { name: image, tag: '', digest: '' };
  if (at >= 0 && (colon < 0 || at < colon)) return { name: image.slice(0, at), tag: '', digest: image.slice(at + 1) };
  if (at >= 0) return { name: image.slice(0, colon), tag: image.slice(colon + 1, at), digest: image.slice(at + 1) };
  return { name: image.slice(0, colon), tag: image.slice(colon + 1), digest: '' };
}

// ---------------------------------------------------------------------------------------------
// output order: kustomize's default legacy sort

const ORDER_FIRST = [
  'Namespace', 'ResourceQuota', 'StorageClass', 'CustomResourceDefinition', 'ServiceAccount', 'PodSecurityPolicy',
  'Role', 'ClusterRole', 'RoleBinding', 'ClusterRoleBinding', 'ConfigMap', 'Secret', 'Endpoints', 'Service',
  'LimitRange', 'PriorityClass', 'PersistentVolume', 'PersistentVolumeClaim', 'Deployment', 'StatefulSet', 'CronJob',
  'PodDisruptionBudget',
];
const ORDER_LAST = ['MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration'];

function splitApiVersion(apiVersion: string): { group: string; version: string } {
  const slash = apiVersion.indexOf('/');
  return slash < 0 ? { group: '', version: apiVersion } : { group: apiVersion.slice(0, slash), version: apiVersion.slice(slash + 1) };
}

function typeRank(kind: string): number {
  const first = ORDER_FIRST.indexOf(kind);
  if (first >= 0) return first - ORDER_FIRST.length;
  const last = ORDER_LAST.indexOf(kind);
  return last >= 0 ? last + 1 : 0;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** By kind rank, then group_version_kind, then namespace|name ("~G", "~X"... stand for empty). */
function legacyOrder(a: Obj, b: Obj): number {
  const kindA = String(a.kind);
  const kindB = String(b.kind);
  const gvA = splitApiVersion(String(a.apiVersion));
  const gvB = splitApiVersion(String(b.apiVersion));
  if (gvA.group !== gvB.group || gvA.version !== gvB.version || kindA !== kindB) {
    const rank = typeRank(kindA) - typeRank(kindB);
    if (rank !== 0) return rank;
    const gvk = (gv: { group: string; version: string }, kind: string): string => `${gv.group || '~G'}_${gv.version || '~V'}_${kind || '~K'}`;
    const order = compareStrings(gvk(gvA, kindA), gvk(gvB, kindB));
    // kustomize puts a core Namespace after Namespaces of other groups.
    return kindA === 'Namespace' && kindB === 'Namespace' && (gvA.group === '' || gvB.group === '') ? -order : order;
  }
  const rest = (o: Obj): string => {
    const { name, namespace } = metadataOf(o);
    return `${typeof namespace === 'string' && namespace !== '' ? namespace : '~X'}|${typeof name === 'string' && name !== '' ? name : '~N'}`;
  };
  return compareStrings(rest(a), rest(b));
}
