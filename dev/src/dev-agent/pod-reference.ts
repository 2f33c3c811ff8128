import { status } from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import type { Pod } from './pods.js';
import type { RequestProblem } from './responses.js';

/** The only reference type the dev agent (like a SPIRE agent's k8s attestor for pods) accepts. */
export const KUBERNETES_OBJECT_REFERENCE_TYPE_URL = 'type.googleapis.com/spiffe.broker.KubernetesObjectReference';

/** The google.rpc.ErrorInfo reasons of the SPIFFE Broker API (section 4.8), domain "spiffe.io". */
export type BrokerReason = 'WORKLOAD_REFERENCE_INVALID' | 'WORKLOAD_NOT_FOUND' | 'WORKLOAD_NOT_ENTITLED';

/** A refusal: the gRPC status and, for reference errors, the ErrorInfo reason and context. */
export interface BrokerProblem extends RequestProblem {
  readonly reason?: string;
  readonly metadata?: Readonly<Record<string, string>>;
}

/** google.protobuf.Any as grpc-js delivers it (the payload stays encoded). */
export interface WireAny {
  readonly type_url: string;
  readonly value: Buffer;
}

export interface WireWorkloadReference {
  readonly reference?: WireAny | null;
}

/** A decoded pod reference: `name` is '' when only the UID was given, `uid` '' when only the key was. */
export interface PodReference {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
}

interface DecodedObjectReference {
  type?: { plural?: string; group?: string } | null;
  key?: { namespace?: string; name?: string } | null;
  uid?: string;
}

export function isProblem<T extends object>(value: T | BrokerProblem): value is BrokerProblem {
  return 'code' in value && 'details' in value;
}

const invalid = (details: string): BrokerProblem => ({ code: status.INVALID_ARGUMENT, details, reason: 'WORKLOAD_REFERENCE_INVALID' });

/**
 * Unpacks and checks a KubernetesObjectReference as SPIRE's k8s workload attestor does (same
 * checks, same order, same messages), then narrows it to pods, the one kind the dev agent knows.
 */
export function decodePodReference(any: WireAny, type: protobuf.Type): PodReference | BrokerProblem {
  let decoded: DecodedObjectReference;
  try {
    decoded = type.decode(any.value) as unknown as DecodedObjectReference;
  } catch (error) {
    return invalid(`unable to unmarshal object reference: ${(error as Error).message}`);
  }
  const objectType = decoded.type;
  if (!objectType) return invalid('object reference is missing type');
  if (!objectType.plural) return invalid('object reference type is missing plural');
  if (!objectType.group) return invalid('object reference type is missing group');
  const key = decoded.key;
  const uid = decoded.uid ?? '';
  if (!key && uid === '') return invalid('object reference is missing key and UID');
  if (key && !key.name) return invalid('object reference key is missing name');
  if (objectType.plural !== 'pods' || objectType.group !== 'core') {
    return invalid(
      `dev-agent: only pods can be referenced (type {plural: "pods", group: "core"}), got {plural: "${objectType.plural}", group: "${objectType.group}"}`,
    );
  }
  const name = key?.name ?? '';
  const namespace = key?.namespace ?? '';
  if (name !== '' && namespace === '') return invalid('namespace is required when name is set for a namespaced resource');
  return { namespace, name, uid };
}

/**
 * Finds the referenced pod in the agent's pod list: by namespace/name when given (then the UID,
 * when also given, must match: a pod re-created under the same name is another workload), else by
 * UID. Messages as SPIRE's agent-node pod lookup words them.
 */
export function resolvePod(reference: PodReference, pods: readonly Pod[]): Pod | BrokerProblem {
  const { namespace, name, uid } = reference;
  const notFound = (details: string): BrokerProblem => ({
    code: status.NOT_FOUND,
    details,
    reason: 'WORKLOAD_NOT_FOUND',
    metadata: referenceMetadata(reference),
  });
  if (name !== '') {
    const pod = pods.find((p) => p.namespace === namespace && p.name === name);
    if (!pod) return notFound(`pod ${namespace}/${name} not found on agent node`);
    if (uid !== '' && pod.uid !== uid) return notFound(`pod ${namespace}/${name} has UID ${pod.uid}, expected ${uid}`);
    return pod;
  }
  return pods.find((p) => p.uid === uid) ?? notFound(`pod with UID ${uid} not found on agent node`);
}

/** What the reference named, for ErrorInfo metadata (only the parts that were given). */
export function referenceMetadata(reference: PodReference): Record<string, string> {
  const out: Record<string, string> = {};
  if (reference.namespace) out.namespace = reference.namespace;
  if (reference.name) out.name = reference.name;
  if (reference.uid) out.uid = reference.uid;
  return out;
}
