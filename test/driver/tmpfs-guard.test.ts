/**
 * Security review #13 finding 2: keys must never reach the node's disk. After the target's tmpfs
 * is unmounted (shutdown ordering, a cleanup tool, an operator), a rotation must write nothing into
 * the now-plain directory, and a restart must not mount a fresh tmpfs over leftovers.
 */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { VolumeErrorEvent } from '../../driver/src/volume/volume-events.js';
import type { VolumeSpec } from '../../driver/src/volume/volume-spec.js';
import { waitFor } from '../helpers/wait-for.js';
import { isRoot, present, VolumeHarness } from './volume-harness.js';

if (!isRoot) console.log('tmpfs-guard.test.ts: skipping: needs root (uid 0) for real tmpfs mounts');

describe.skipIf(!isRoot)('the tmpfs guard before every write', () => {
  let h: VolumeHarness;
  let spec: VolumeSpec;
  const errors: VolumeErrorEvent[] = [];

  beforeEach(async () => {
    h = await VolumeHarness.create();
    await h.serve();
    errors.length = 0;
    spec = await h.spec({ fsGroup: 1500 });
  });

  afterEach(async () => {
    await h.cleanup();
  });

  it('writes no byte into the plain directory after the tmpfs is unmounted, and a restart remounts over an empty one', async () => {
    const manager = h.manager();
    manager.events.on('error', (e) => errors.push(e));
    await manager.publish(spec);
    expect(await present(join(spec.targetPath, 'svid_key.pem'))).toBe(true);

    await h.mounter.unmount(spec.targetPath);
    expect(await readdir(spec.targetPath)).toEqual([]);
    h.identity.push(await h.update());
    await waitFor(() => errors.some((e) => e.kind === 'target-not-mounted' && e.volumeId === spec.volumeId), {
      message: 'the refused write counted',
    });
    // Nothing at all on the node's disk: no key, no payload directory, no links.
    expect(await readdir(spec.targetPath)).toEqual([]);
    expect(h.logs.some((l) => l.level === 'warn' && (l.obj as { volumeId?: string }).volumeId === spec.volumeId)).toBe(true);
    expect(h.logs.some((l) => l.msg === 'identity updated')).toBe(false);

    // A restart mounts a fresh tmpfs and publishes there; the directory below stayed empty.
    await manager.shutdown();
    const restarted = h.manager();
    expect(await restarted.resumeAll()).toMatchObject({ resumed: 1, failed: 0 });
    expect(await h.mountIds(spec.targetPath)).toHaveLength(1);
    await waitFor(() => present(join(spec.targetPath, 'svid_key.pem')), { message: 'the key on the new tmpfs' });
    await h.mounter.unmount(spec.targetPath);
    expect(await readdir(spec.targetPath)).toEqual([]);
  });

  it('on resume, clears a directory that holds only the driver layout before mounting, and refuses one with foreign files', async () => {
    const manager = h.manager();
    await manager.publish(spec);
    const other = await h.spec();
    await manager.publish(other);
    await manager.shutdown();
    // What an older driver left: its layout written into the plain directory (key included).
    for (const target of [spec.targetPath, other.targetPath]) {
      await h.mounter.unmount(target);
      await mkdir(join(target, '..2026_01_01_00_00_00.abc123'));
      await writeFile(join(target, '..2026_01_01_00_00_00.abc123', 'svid_key.pem'), 'not really a key');
    }
    await writeFile(join(other.targetPath, 'notes.txt'), 'an operator file');

    const restarted = h.manager();
    restarted.events.on('error', (e) => errors.push(e));
    expect(await restarted.resumeAll()).toMatchObject({ resumed: 1, failed: 1 });
    expect(errors).toContainEqual({ kind: 'resume-failed', volumeId: other.volumeId });
    const refusal = h.logs.find((l) => l.msg === 'resuming the volume failed' && (l.obj as { volumeId?: string }).volumeId === other.volumeId);
    expect((refusal?.obj as { reason?: string }).reason).toContain(other.targetPath);
    // The refused one is left alone, mounted over by nothing.
    expect(await h.mountIds(other.targetPath)).toEqual([]);
    expect((await readdir(other.targetPath)).sort()).toEqual(['..2026_01_01_00_00_00.abc123', 'notes.txt']);
    // The other was emptied, then mounted: nothing of the old layout hides below the new tmpfs.
    expect(await h.mountIds(spec.targetPath)).toHaveLength(1);
    await h.mounter.unmount(spec.targetPath);
    expect(await readdir(spec.targetPath)).toEqual([]);
  });
});
