import { rename, writeFile } from 'node:fs/promises';
import type { KubeletPod } from './kubelet-client.js';

/**
 * The pods "running on the node", as the agent must see them. In broker mode the agent resolves
 * each reference the driver sends against this list (a SPIRE agent reads its kubelet's), so a
 * pod is added before kubelet publishes its volume and removed after the volume is unpublished,
 * as Kubernetes orders a pod's start and deletion. In delegated mode the driver sends selectors
 * and the agent needs no list.
 */
export interface NodePods {
  created(pod: KubeletPod): Promise<void>;
  deleted(pod: KubeletPod): Promise<void>;
}

export const NO_POD_LIST: NodePods = {
  created: async () => {},
  deleted: async () => {},
};

/** The dev agent's `--pods FILE`: a JSON array of {namespace, name, uid, serviceAccount}. */
export class PodsFile implements NodePods {
  private readonly pods = new Map<string, KubeletPod>();
  private writes: Promise<void> = Promise.resolve();

  /** `loaded` runs after each write, so the caller can make the agent read the file at once. */
  constructor(
    readonly path: string,
    private readonly loaded: () => Promise<void> = async () => {},
  ) {}

  /** Writes the current (possibly empty) list, creating the file. */
  async save(): Promise<void> {
    const pods = [...this.pods.values()].map(({ namespace, name, uid, serviceAccount }) => ({ namespace, name, uid, serviceAccount }));
    // One write at a time, each whole: the agent re-reads the file on change and must never see half of it.
    const previous = this.writes.catch(() => {}); // a failed write was reported to its own caller
    this.writes = previous.then(async () => {
      const temporary = `${this.path}.tmp`;
      await writeFile(temporary, `${JSON.stringify(pods, null, 2)}\n`, { mode: 0o600 });
      await rename(temporary, this.path);
      await this.loaded();
    });
    return this.writes;
  }

  async created(pod: KubeletPod): Promise<void> {
    this.pods.set(pod.uid, pod);
    await this.save();
  }

  async deleted(pod: KubeletPod): Promise<void> {
    if (!this.pods.delete(pod.uid)) return;
    await this.save();
  }
}
