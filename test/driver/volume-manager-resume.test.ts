import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { VolumeSpec } from '../../driver/src/volume/volume-spec.js';
import { waitFor } from '../helpers/wait-for.js';
import { dataDir, isRoot, present, VolumeHarness } from './volume-harness.js';

if (!isRoot) console.log('volume-manager-resume.test.ts: skipping: needs root (uid 0) for real tmpfs mounts');

describe.skipIf(!isRoot)('VolumeManager restart', () => {
  let h: VolumeHarness;

  beforeEach(async () => {
    h = await VolumeHarness.create();
    await h.serve();
  });

  afterEach(async () => {
    await h.cleanup();
  });

  async function publishedThenStopped(count = 1): Promise<VolumeSpec[]> {
    const first = h.manager();
    const specs = await Promise.all(Array.from({ length: count }, () => h.spec()));
    for (const spec of specs) await first.publish(spec);
    await first.shutdown();
    return specs;
  }

  it('shutdown closes the streams but leaves mounts, files and records', async () => {
    const [spec] = (await publishedThenStopped()) as [VolumeSpec];
    expect(h.identity.openStreams).toHaveLength(0);
    expect(h.identity.bundleListenerCount).toBe(0);
    expect(await h.mountIds(spec.targetPath)).toHaveLength(1);
    expect(await present(join(spec.targetPath, 'credential-bundle.private-key.x509.pem'))).toBe(true);
    expect(await h.store.get(spec.volumeId)).toBeDefined();
  });

  it('serves requests while resuming: an unpublish of a volume still to resume waits for that resume alone, never racing it', async () => {
    const specs = await publishedThenStopped(3);
    const second = h.manager({ resumeConcurrency: 1 });
    const resume = await second.beginResume();
    // The lock of every recorded volume is claimed before beginResume returns.
    expect(second.resuming).toBe(true);
    const last = specs[2]!;
    // The last volume is still queued behind the others; its unpublish moves it to the front and
    // runs after it, so the resume cannot bring the volume back afterwards.
    await second.unpublish(last.volumeId, last.targetPath);
    expect(await h.store.get(last.volumeId)).toBeUndefined();
    expect(await present(last.targetPath)).toBe(false);
    const summary = await resume.done;
    expect(second.resuming).toBe(false);
    expect(summary).toMatchObject({ failed: 0, corrupt: 0 });
    expect(summary.resumed + summary.removed).toBe(3);
    expect(second.volumeCount).toBe(2);
    expect(await present(last.targetPath)).toBe(false);
    expect(await h.mountIds(last.targetPath)).toEqual([]);
  });

  it('a shutdown during the resume skips what has not started and leaves no session running', async () => {
    await publishedThenStopped(3);
    const second = h.manager({ resumeConcurrency: 1 });
    const resume = await second.beginResume();
    await second.shutdown();
    await resume.done;
    expect(second.resuming).toBe(false);
    expect(second.volumeCount).toBe(0);
    expect(h.identity.openStreams).toHaveLength(0);
  });

  it('refuses new publishes after shutdown', async () => {
    const manager = h.manager();
    await manager.shutdown();
    await expect(manager.publish(await h.spec())).rejects.toMatchObject({ kind: 'shutting-down' });
  });

  it('keeps serving the old files after a restart until new data arrives, then resubscribes', async () => {
    const [spec] = (await publishedThenStopped()) as [VolumeSpec];
    const oldDir = await dataDir(spec.targetPath);
    const oldMounts = await h.mountIds(spec.targetPath);
    h.identity.respond = undefined;
    const second = h.manager();
    expect(await second.resumeAll()).toEqual({ resumed: 1, removed: 0, failed: 0, corrupt: 0 });
    expect(second.volumeCount).toBe(1);
    expect(await dataDir(spec.targetPath)).toBe(oldDir);
    expect(await h.mountIds(spec.targetPath)).toEqual(oldMounts);
    // kubelet's reconcile re-publishes; the old files count as published.
    await second.publish(spec);
    const next = await h.update();
    h.identity.push(next);
    await waitFor(async () => (await dataDir(spec.targetPath)) !== oldDir, { message: 'rewrite after resume' });
    expect(h.identity.openStreams).toHaveLength(1);
  });

  it('rewrites nothing after a restart when the agent sends the same SVID and bundles', async () => {
    const [spec] = (await publishedThenStopped()) as [VolumeSpec];
    const oldDir = await dataDir(spec.targetPath);
    const identityBefore = await readFile(join(spec.targetPath, 'identity.json'), 'utf8');
    const second = h.manager();
    await second.resumeAll();
    await waitFor(() => second.earliestExpiry() !== undefined, { message: 'the resumed session to deliver' });
    expect(await dataDir(spec.targetPath)).toBe(oldDir);
    expect(await readFile(join(spec.targetPath, 'identity.json'), 'utf8')).toBe(identityBefore);
  });

  it('drops the volumes of pods that are gone', async () => {
    const [gone, kept] = (await publishedThenStopped(2)) as [VolumeSpec, VolumeSpec];
    await h.mounter.unmount(gone.targetPath);
    await rm(join(h.kubeletRoot, 'pods', gone.pod.uid), { recursive: true });
    const second = h.manager();
    expect(await second.resumeAll()).toEqual({ resumed: 1, removed: 1, failed: 0, corrupt: 0 });
    expect(await h.store.get(gone.volumeId)).toBeUndefined();
    expect(await h.store.get(kept.volumeId)).toBeDefined();
    expect(second.get(gone.volumeId)).toBeUndefined();
  });

  it('remounts a volume whose tmpfs is gone and rewrites it when data arrives', async () => {
    const [spec] = (await publishedThenStopped()) as [VolumeSpec];
    await h.mounter.unmount(spec.targetPath);
    const second = h.manager();
    await second.resumeAll();
    expect(await h.mountIds(spec.targetPath)).toHaveLength(1);
    // Visible links appear one by one after the ..data swap; wait for the last one we read.
    await waitFor(async () => (await present(join(spec.targetPath, 'credential-bundle.private-key.x509.pem'))) && present(join(spec.targetPath, 'identity.json')), {
      message: 'files after remount',
    });
    expect(JSON.parse(await readFile(join(spec.targetPath, 'identity.json'), 'utf8')).spiffeId).toBe('spiffe://example.org/web');
  });

  it('a re-publish of a remounted volume waits for data without tearing it down on timeout', async () => {
    const [spec] = (await publishedThenStopped()) as [VolumeSpec];
    await h.mounter.unmount(spec.targetPath);
    h.identity.respond = undefined;
    const second = h.manager({ publishTimeoutMs: 200 });
    await second.resumeAll();
    await expect(second.publish(spec)).rejects.toMatchObject({ kind: 'not-ready' });
    expect(await h.store.get(spec.volumeId)).toBeDefined();
    expect(await h.mountIds(spec.targetPath)).toHaveLength(1);
    h.identity.push(await h.update());
    await second.publish(spec);
    expect(await present(join(spec.targetPath, 'svid.pem'))).toBe(true);
  });

  it('resumes many volumes and reports corrupt records without failing', async () => {
    const specs = await publishedThenStopped(40);
    await mkdir(h.store.dir, { recursive: true });
    await (await import('node:fs/promises')).writeFile(join(h.store.dir, `${'a'.repeat(64)}.json`), 'garbage');
    const errors: string[] = [];
    const second = h.manager({ resumeConcurrency: 8 });
    second.events.on('error', (e) => errors.push(e.kind));
    expect(await second.resumeAll()).toEqual({ resumed: 40, removed: 0, failed: 0, corrupt: 1 });
    expect(errors).toEqual(['corrupt-record']);
    expect(second.volumeCount).toBe(specs.length);
    await waitFor(() => second.earliestExpiry() !== undefined);
  });
});
