import { parseAllDocuments } from 'yaml';

/*
 * Parsing Kubernetes YAML into plain objects: shared by the manifest tests (kube-objects.ts),
 * kubectl's rendering (kubectl.ts) and the stand-in renderer (mini-kustomize.ts).
 */

export interface KubeObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata?: { readonly name?: string; readonly namespace?: string; readonly labels?: Record<string, string> };
  readonly [key: string]: unknown;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Every non-empty document of a YAML stream; `where` names it in errors. Warnings count as errors. */
export function parseYamlDocuments(text: string, where: string): unknown[] {
  const docs = parseAllDocuments(text, { prettyErrors: true });
  const values: unknown[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`${where}: ${doc.errors.map((e) => e.message).join('; ')}`);
    if (doc.warnings.length > 0) throw new Error(`${where}: ${doc.warnings.map((w) => w.message).join('; ')}`);
    const value: unknown = doc.toJS();
    if (value !== null && value !== undefined) values.push(value);
  }
  return values;
}

export function asKubeObject(value: unknown, where: string): KubeObject {
  if (!isRecord(value) || typeof value.apiVersion !== 'string' || typeof value.kind !== 'string') {
    throw new Error(`${where}: not an object with apiVersion and kind`);
  }
  return value as KubeObject;
}
