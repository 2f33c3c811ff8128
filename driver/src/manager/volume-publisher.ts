import type { VolumeSpec } from '../volume/volume-spec.js';

/**
 * What the Node service needs from the volume layer (the VolumeManager implements it). Both calls
 * must be idempotent, as kubelet repeats them. Failures are ManagerError or TargetPathError, with a
 * kind the CSI layer maps to a status code.
 */
export interface VolumePublisher {
  /** The signal aborts when kubelet cancels the call (deadline exceeded or gone). */
  publish(spec: VolumeSpec, signal?: AbortSignal): Promise<void>;
  unpublish(volumeId: string, targetPath: string): Promise<void>;
}
