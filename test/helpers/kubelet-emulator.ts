/**
 * The tests' kubelet is the demo's kubelet client, so the product and the tests drive the CSI
 * socket with one implementation.
 */
export { KubeletClient as KubeletEmulator } from '../../dev/src/demo/kubelet-client.js';
export type { KubeletPod as EmulatedPod, PublishedVolume } from '../../dev/src/demo/kubelet-client.js';
