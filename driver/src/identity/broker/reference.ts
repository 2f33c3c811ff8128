import type protobuf from 'protobufjs';
import type { PodReference } from '../pod-reference.js';
import { ownConcat } from '@spire-csi/sdk/internal';

/** The Any type URL of the Broker API's Kubernetes object reference (what SPIRE's `allowed_reference_types` lists). */
export const KUBERNETES_OBJECT_REFERENCE_TYPE_URL = 'type.googleapis.com/spiffe.broker.KubernetesObjectReference';

/** `spiffe.broker.WorkloadReference` as @grpc/proto-loader hands it over (bytes as Buffer). */
export interface WireWorkloadReference {
  reference: { type_url: string; value: Buffer } | null;
}

/** The fields of a KubernetesObjectReference naming a pod. */
export interface KubernetesObjectReferenceFields {
  readonly type: { readonly plural: string; readonly group: string };
  readonly key: { readonly namespace: string; readonly name: string } | null;
  readonly uid: string;
}

/**
 * The reference the driver sends for a pod: `pods` in the `core` group, by namespace and name and
 * pinned to the UID kubelet gave, so the agent refuses a pod of the same name that replaced it.
 */
export function podReferenceToWire(pod: PodReference, type: protobuf.Type): WireWorkloadReference {
  const fields: KubernetesObjectReferenceFields = {
    type: { plural: 'pods', group: 'core' },
    key: { namespace: pod.namespace, name: pod.name },
    uid: pod.uid,
  };
  // Kept by the volume's stream for its whole life: a block of its own, not a pooled slice.
  const value = ownConcat([type.encode(type.fromObject(fields)).finish()]);
  return { reference: { type_url: KUBERNETES_OBJECT_REFERENCE_TYPE_URL, value } };
}

/** Reads a reference back (the dev agent's side); undefined when it is not a KubernetesObjectReference. */
export function kubernetesObjectReferenceFromWire(
  reference: WireWorkloadReference | null | undefined,
  type: protobuf.Type,
): KubernetesObjectReferenceFields | undefined {
  const any = reference?.reference;
  if (any === null || any === undefined || any.type_url !== KUBERNETES_OBJECT_REFERENCE_TYPE_URL) return undefined;
  const decoded = type.toObject(type.decode(any.value), { defaults: true }) as {
    type?: { plural?: string; group?: string } | null;
    key?: { namespace?: string; name?: string } | null;
    uid?: string;
  };
  return {
    type: { plural: decoded.type?.plural ?? '', group: decoded.type?.group ?? '' },
    key: decoded.key === null || decoded.key === undefined ? null : { namespace: decoded.key.namespace ?? '', name: decoded.key.name ?? '' },
    uid: decoded.uid ?? '',
  };
}

/** `pod reference default/web-1 (uid 1234…)`: how the Broker API asks for a pod, in messages. */
export function describePodReference(pod: PodReference): string {
  return `pod reference ${pod.namespace}/${pod.name} (uid ${pod.uid})`;
}
