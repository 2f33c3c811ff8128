import { mkdir, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_TMPFS_SIZE_BYTES, LinuxMounter, type Mounter } from '@spire-csi/driver/internal';
import { DirectoryMounter } from './directory-mounter.js';
import { messageOf } from './errors.js';

export interface MounterChoice {
  readonly mounter: Mounter;
  readonly kind: 'tmpfs' | 'folder';
  /** Why the volumes are what they are, for the terminal. */
  readonly note: string;
}

/**
 * Real tmpfs when this process can mount, which is checked by mounting one (being root is not
 * enough inside an unprivileged container); plain folders otherwise, so the demo still runs.
 */
export async function chooseMounter(root: string, uid: number | undefined = process.getuid?.()): Promise<MounterChoice> {
  if (uid !== 0) {
    return {
      mounter: new DirectoryMounter(),
      kind: 'folder',
      note:
        'not running as root, so the volumes are plain folders instead of tmpfs mounts (keys are written to disk ' +
        'under the demo folder and removed at exit); run as root to see real tmpfs volumes',
    };
  }
  const linux = new LinuxMounter({ commandTimeoutMs: 10_000 });
  const probe = join(root, 'mount-probe');
  try {
    await mkdir(probe, { mode: 0o700 });
    await linux.mountTmpfs(probe, { sizeBytes: DEFAULT_TMPFS_SIZE_BYTES, mode: 0o700 });
    await linux.unmount(probe);
    await rmdir(probe);
    return { mounter: linux, kind: 'tmpfs', note: 'running as root: every volume is a real tmpfs mount' };
  } catch (error) {
    await linux.unmount(probe).catch(() => undefined);
    await rmdir(probe).catch(() => undefined);
    return {
      mounter: new DirectoryMounter(),
      kind: 'folder',
      note:
        `running as root but mounting a tmpfs failed (${messageOf(error)}), e.g. in a container without ` +
        'CAP_SYS_ADMIN; the volumes are plain folders instead (removed at exit)',
    };
  }
}
