import { readFile } from 'node:fs/promises';
import type { Selector } from '@spire-csi/driver/internal';

/**
 * The pods the dev agent "sees on its node", standing in for the kubelet pod list a SPIRE agent's
 * k8s workload attestor reads. The Broker endpoint resolves references against it.
 *
 * ```json
 * [
 *   { "namespace": "default", "name": "web-0", "uid": "0b6e…", "serviceAccount": "web" }
 * ]
 * ```
 *
 * Every field is a required non-empty string; unknown fields are errors (a typo must not silently
 * drop a selector). UIDs are unique, and so is each namespace/name pair, as on one node.
 */
export interface Pod {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly serviceAccount: string;
}

/** `json`: not JSON; `invalid`: JSON of the wrong shape; `read`: the file could not be read. */
export type PodListErrorKind = 'json' | 'invalid' | 'read';

export class PodListError extends Error {
  constructor(
    readonly kind: PodListErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`pods: ${message}`, options);
    this.name = 'PodListError';
  }
}

const FIELDS = ['namespace', 'name', 'uid', 'serviceAccount'] as const;

/** Reads and checks a pods file; every failure is a PodListError naming the problem. */
export async function readPodsFile(file: string): Promise<Pod[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new PodListError('read', `cannot read ${file}: ${(error as Error).message}`, { cause: error });
  }
  return parsePods(text);
}

export function parsePods(text: string): Pod[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new PodListError('json', `not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  return validatePods(value);
}

export function validatePods(value: unknown): Pod[] {
  if (!Array.isArray(value)) {
    throw new PodListError('invalid', 'the file must be a JSON array of {namespace, name, uid, serviceAccount} objects');
  }
  const uids = new Set<string>();
  const keys = new Set<string>();
  return value.map((raw: unknown, index) => {
    const where = `[${index}]`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new PodListError('invalid', `${where} must be a JSON object`);
    const record = raw as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      if (!(FIELDS as readonly string[]).includes(key)) {
        throw new PodListError('invalid', `${where}: unknown field "${key}"; valid fields are ${FIELDS.join(', ')}`);
      }
    }
    for (const field of FIELDS) {
      const fieldValue = record[field];
      if (typeof fieldValue !== 'string' || fieldValue === '') {
        throw new PodListError('invalid', `${where}.${field} must be a non-empty string`);
      }
    }
    const pod: Pod = {
      namespace: record.namespace as string,
      name: record.name as string,
      uid: record.uid as string,
      serviceAccount: record.serviceAccount as string,
    };
    if (uids.has(pod.uid)) throw new PodListError('invalid', `${where}.uid "${pod.uid}" is listed twice; UIDs are unique`);
    const key = `${pod.namespace}/${pod.name}`;
    if (keys.has(key)) throw new PodListError('invalid', `${where}: pod ${key} is listed twice`);
    uids.add(pod.uid);
    keys.add(key);
    return pod;
  });
}

/**
 * The selectors SPIRE's k8s workload attestor derives from a pod that the dev agent can know:
 * namespace, service account, UID, name and (when the agent was given one) the node name.
 */
export function podSelectors(pod: Pod, nodeName?: string): Selector[] {
  const values = [`ns:${pod.namespace}`, `sa:${pod.serviceAccount}`, `pod-uid:${pod.uid}`, `pod-name:${pod.name}`];
  if (nodeName) values.push(`node-name:${nodeName}`);
  return values.map((value) => ({ type: 'k8s', value }));
}
