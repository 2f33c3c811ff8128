import type {
  NodeGetCapabilitiesResponse,
  NodeGetInfoResponse,
  NodePublishVolumeRequest,
  NodePublishVolumeResponse,
  NodeUnpublishVolumeRequest,
  NodeUnpublishVolumeResponse,
} from '../proto/csi-messages.js';
import { checkTargetPathOnDisk } from '../target-path/target-path.js';
import { toCsiError } from './errors.js';
import { validatePublishRequest, validateUnpublishRequest } from './validation.js';
import type { VolumePublisher } from '../manager/volume-publisher.js';

export interface NodeServiceOptions {
  /** Reported as node_id; the Kubernetes node name. */
  readonly nodeId: string;
  /** kubelet's --root-dir; every target path must lie under `<kubeletRoot>/pods`. */
  readonly kubeletRoot: string;
  readonly publisher: VolumePublisher;
}

/** The csi.v1.Node RPCs this driver implements, transport-free (server.ts adapts them to gRPC). */
export interface CsiNode {
  getInfo(): Promise<NodeGetInfoResponse>;
  getCapabilities(): Promise<NodeGetCapabilitiesResponse>;
  publishVolume(request: NodePublishVolumeRequest, signal?: AbortSignal): Promise<NodePublishVolumeResponse>;
  unpublishVolume(request: NodeUnpublishVolumeRequest): Promise<NodeUnpublishVolumeResponse>;
}

export class NodeService implements CsiNode {
  readonly #options: NodeServiceOptions;

  constructor(options: NodeServiceOptions) {
    if (options.nodeId === '') throw new Error('csi: NodeService needs a non-empty nodeId');
    this.#options = options;
  }

  async getInfo(): Promise<NodeGetInfoResponse> {
    // No topology and no volume limit: an identity volume costs a small tmpfs, not a device slot.
    return { node_id: this.#options.nodeId, max_volumes_per_node: '0' };
  }

  /**
   * Only VOLUME_MOUNT_GROUP: it makes kubelet pass the pod's fsGroup as volume_mount_group and
   * leave ownership to the driver. Without STAGE_UNSTAGE_VOLUME kubelet never calls NodeStage.
   */
  async getCapabilities(): Promise<NodeGetCapabilitiesResponse> {
    return { capabilities: [{ rpc: { type: 'VOLUME_MOUNT_GROUP' } }] };
  }

  async publishVolume(request: NodePublishVolumeRequest, signal?: AbortSignal): Promise<NodePublishVolumeResponse> {
    const { kubeletRoot, publisher } = this.#options;
    const spec = validatePublishRequest(request, { kubeletRoot });
    try {
      await checkTargetPathOnDisk(spec.targetPath, kubeletRoot);
      await publisher.publish(spec, signal);
    } catch (err) {
      throw toCsiError(err);
    }
    return {};
  }

  async unpublishVolume(request: NodeUnpublishVolumeRequest): Promise<NodeUnpublishVolumeResponse> {
    const { kubeletRoot, publisher } = this.#options;
    const { volumeId, targetPath } = validateUnpublishRequest(request, { kubeletRoot });
    try {
      // umount(2) follows symlinks too, so the same on-disk check guards teardown.
      await checkTargetPathOnDisk(targetPath, kubeletRoot);
      await publisher.unpublish(volumeId, targetPath);
    } catch (err) {
      throw toCsiError(err);
    }
    return {};
  }
}
