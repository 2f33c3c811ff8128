import type { VolumeSpec } from '../volume/volume-spec.js';

/**
 * What the Node service needs from the volume layer (the VolumeManager implements it). Both calls
 * must be idempotent, as kubelet repeats them; errors that should reach kubelet with a specific
 * gRPC code are CsiError, anything else becomes INTERNAL.
 */
export interface VolumePublisher {
  /** The signal aborts when kubelet cancels the call (deadline exceeded or gone). */
  publish(spec: VolumeSpec, signal?: AbortSignal): Promise<void>;
  unpublish(volumeId: string, targetPath: string): Promise<void>;
}
