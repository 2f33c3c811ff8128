/**
 * The pod a volume belongs to, as kubelet names it in volume_context (CSIDriver `podInfoOnMount`).
 * Backends turn it into what their agent API asks for: selectors (Delegated Identity API) or a
 * Kubernetes object reference (Broker API).
 */
export interface PodReference {
  readonly name: string;
  readonly namespace: string;
  readonly uid: string;
  readonly serviceAccount: string;
}
