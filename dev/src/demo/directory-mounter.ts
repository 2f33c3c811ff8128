import { chmod, mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Mounter, TmpfsOptions } from '@spire-csi/driver/internal';

/**
 * Stands in for tmpfs when the demo cannot mount (not root, or a container without
 * CAP_SYS_ADMIN): a "mount" is the folder itself. Keys then live on whatever disk holds the demo
 * folder, which is why only the demo uses it and says so; the driver proper always mounts.
 */
export class DirectoryMounter implements Mounter {
  private readonly mounted = new Set<string>();

  async mountTmpfs(target: string, options: TmpfsOptions): Promise<void> {
    const path = resolve(target);
    await mkdir(path, { recursive: true, mode: options.mode });
    // The tmpfs root mode the driver asked for; the group is skipped: changing it needs root.
    await chmod(path, options.mode);
    this.mounted.add(path);
  }

  async unmount(target: string): Promise<void> {
    this.mounted.delete(resolve(target));
  }

  async isMountPoint(path: string): Promise<boolean> {
    return this.mounted.has(resolve(path));
  }
}
