import { createHash, randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { credentials, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadProtos } from '@spire-csi/driver/internal';

export interface KubeletPod {
  readonly name: string;
  readonly namespace: string;
  readonly uid: string;
  readonly serviceAccount: string;
  /** The pod's securityContext.fsGroup; sent as volume_mount_group. */
  readonly fsGroup?: number;
}

export interface PublishedVolume {
  readonly volumeId: string;
  readonly targetPath: string;
}

type Unary = (request: object, callback: (error: ServiceError | null, response: unknown) => void) => void;

/**
 * Drives a CSI node plugin the way kubelet does for an ephemeral inline volume: it lays out
 * `<root>/pods/<uid>/volumes/kubernetes.io~csi/<name>/`, derives the volume handle from the pod UID
 * and volume name, and sends the pod-info volume_context keys of a CSIDriver with podInfoOnMount.
 * The demo uses it as its kubelet; the tests use it as their kubelet emulator.
 */
export class KubeletClient {
  readonly kubeletRoot: string;
  private readonly node: Client & Record<string, Unary>;
  private readonly identity: Client & Record<string, Unary>;

  constructor(kubeletRoot: string, csiSocketPath: string) {
    this.kubeletRoot = kubeletRoot;
    const protos = loadProtos();
    const target = `unix:${csiSocketPath}`;
    this.node = new protos.csi.Node(target, credentials.createInsecure()) as Client & Record<string, Unary>;
    this.identity = new protos.csi.Identity(target, credentials.createInsecure()) as Client & Record<string, Unary>;
  }

  static pod(overrides: Partial<KubeletPod> = {}): KubeletPod {
    const uid = overrides.uid ?? randomUUID();
    return { name: `web-${uid.slice(0, 5)}`, namespace: 'default', serviceAccount: 'web', ...overrides, uid };
  }

  /** What kubelet names things: volume handle `csi-<sha256(uid + volume name)>`, target `.../mount`. */
  volumeFor(pod: KubeletPod, volumeName = 'spiffe'): PublishedVolume {
    const volumeId = `csi-${createHash('sha256').update(pod.uid + volumeName).digest('hex')}`;
    const targetPath = join(this.kubeletRoot, 'pods', pod.uid, 'volumes', 'kubernetes.io~csi', volumeName, 'mount');
    return { volumeId, targetPath };
  }

  publishRequest(pod: KubeletPod, volumeName = 'spiffe', attributes: Record<string, string> = {}): Record<string, unknown> {
    const { volumeId, targetPath } = this.volumeFor(pod, volumeName);
    return {
      volume_id: volumeId,
      target_path: targetPath,
      volume_capability: {
        mount: { fs_type: '', mount_flags: [], volume_mount_group: pod.fsGroup === undefined ? '' : String(pod.fsGroup) },
        access_mode: { mode: 'SINGLE_NODE_WRITER' },
      },
      readonly: true,
      volume_context: {
        'csi.storage.k8s.io/pod.name': pod.name,
        'csi.storage.k8s.io/pod.namespace': pod.namespace,
        'csi.storage.k8s.io/pod.uid': pod.uid,
        'csi.storage.k8s.io/serviceAccount.name': pod.serviceAccount,
        'csi.storage.k8s.io/ephemeral': 'true',
        ...attributes,
      },
    };
  }

  /** Kubelet creates the volume folder (the parent of the target) before calling the driver. */
  async publish(pod: KubeletPod, volumeName = 'spiffe', attributes: Record<string, string> = {}): Promise<PublishedVolume> {
    const volume = this.volumeFor(pod, volumeName);
    await mkdir(join(volume.targetPath, '..'), { recursive: true, mode: 0o750 });
    await this.call('NodePublishVolume', this.publishRequest(pod, volumeName, attributes));
    return volume;
  }

  async publishRaw(request: Record<string, unknown>): Promise<void> {
    await this.call('NodePublishVolume', request);
  }

  async unpublish(volume: PublishedVolume): Promise<void> {
    await this.call('NodeUnpublishVolume', { volume_id: volume.volumeId, target_path: volume.targetPath });
  }

  async probe(): Promise<boolean> {
    const response = (await this.callIdentity('Probe', {})) as { ready?: { value?: boolean } | null };
    return response.ready?.value === true;
  }

  call(method: string, request: object): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.node[method]!.call(this.node, request, (error, response) => (error ? reject(error) : resolve(response)));
    });
  }

  callIdentity(method: string, request: object): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.identity[method]!.call(this.identity, request, (error, response) => (error ? reject(error) : resolve(response)));
    });
  }

  close(): void {
    this.node.close();
    this.identity.close();
  }
}
