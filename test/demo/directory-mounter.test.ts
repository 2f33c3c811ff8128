import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DirectoryMounter } from '../../dev/src/demo/directory-mounter.js';

describe('the demo DirectoryMounter (volumes without root)', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'spire-csi-dirmount-'));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('"mounts" by creating the folder with the requested mode and remembers it until unmounted', async () => {
    const mounter = new DirectoryMounter();
    const target = join(root, 'pods', 'uid', 'mount');
    expect(await mounter.isMountPoint(target)).toBe(false);
    await mounter.mountTmpfs(target, { sizeBytes: 1024 * 1024, mode: 0o750 });
    expect((await stat(target)).mode & 0o777).toBe(0o750);
    expect(await mounter.isMountPoint(`${target}/`)).toBe(true);
    await mounter.unmount(target);
    expect(await mounter.isMountPoint(target)).toBe(false);
    await mounter.unmount(target);
  });
});
