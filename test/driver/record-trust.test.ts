/**
 * Security review #13 finding 3: records in --state-dir are read back on restart. Each must pass
 * the same checks as a NodePublishVolume before anything is mounted, subscribed or removed.
 */
import { mkdir, readdir, readFile, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseMountInfo } from '../../driver/src/mount/mountinfo.js';
import { checkRecordedSpec } from '../../driver/src/csi/record-check.js';
import type { VolumeManager } from '../../driver/src/manager/volume-manager.js';
import type { VolumeErrorEvent } from '../../driver/src/volume/volume-events.js';
import type { VolumeSpec } from '../../driver/src/volume/volume-spec.js';
import { isRoot, present, VolumeHarness } from './volume-harness.js';

if (!isRoot) console.log('record-trust.test.ts: skipping: needs root (uid 0) for real tmpfs mounts');

describe.skipIf(!isRoot)('records read back on restart', () => {
  let h: VolumeHarness;
  const errors: VolumeErrorEvent[] = [];

  beforeEach(async () => {
    h = await VolumeHarness.create();
    await h.serve();
    errors.length = 0;
  });

  afterEach(async () => {
    // Should a check ever let a tampered record through, its mount must not outlive the test.
    const mounts = parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8'));
    for (const m of mounts.filter((m) => m.mountPoint.startsWith(`${h.base}/`)).reverse()) await h.mounter.unmount(m.mountPoint);
    await h.cleanup();
  });

  const restarted = (): VolumeManager => {
    const manager = h.manager({ checkRecord: (spec) => checkRecordedSpec(spec, { kubeletRoot: h.kubeletRoot }) });
    manager.events.on('error', (e) => errors.push(e));
    return manager;
  };
  const record = async (spec: VolumeSpec): Promise<void> => {
    const staged = await h.store.stage(spec, new Date());
    await staged.commit();
  };

  it.each<[string, (good: VolumeSpec) => Promise<VolumeSpec>]>([
    ['a target outside the kubelet root', async (good) => ({ ...good, targetPath: join(h.base, 'elsewhere', 'mount') })],
    ['a target in another pod\'s folder than the record\'s pod', async (good) => ({ ...good, pod: { ...good.pod, uid: 'another-uid' } })],
    ['a file name that leaves the folder', async (good) => ({ ...good, files: { ...good.files, key: '../../../escaped.pem' } })],
    ['a reserved file name', async (good) => ({ ...good, files: { ...good.files, svid: 'identity.json' } })],
    ['a target reached through a symlink', async (good) => {
      const real = join(h.base, 'real-pod');
      await mkdir(join(real, 'volumes', 'kubernetes.io~csi', 'spiffe'), { recursive: true });
      const linked = join(h.kubeletRoot, 'pods', 'linked-uid');
      await symlink(real, linked);
      return { ...good, targetPath: join(linked, 'volumes', 'kubernetes.io~csi', 'spiffe', 'mount'), pod: { ...good.pod, uid: 'linked-uid' } };
    }],
  ])('leaves a record with %s alone as corrupt: no mount, no subscribe, no teardown', async (_what, tamper) => {
    const good = await h.spec();
    const bad = await tamper(await h.spec());
    await record(good);
    await record(bad);
    const summary = await restarted().resumeAll();
    expect(summary).toMatchObject({ resumed: 1, corrupt: 1, failed: 0, removed: 0 });
    expect(errors).toContainEqual({ kind: 'corrupt-record', volumeId: bad.volumeId });
    // Nothing happened at the tampered target, and the record is still there for an operator.
    expect(await h.mountIds(bad.targetPath)).toEqual([]);
    expect(await present(bad.targetPath)).toBe(false);
    expect(h.identity.openStreams.some((s) => s.selectors.some((sel) => sel.value === `pod-uid:${bad.pod.uid}`))).toBe(false);
    expect(await h.store.get(bad.volumeId)).toBeDefined();
    expect(await present(join(h.base, 'escaped.pem'))).toBe(false);
    // The honest record resumed as usual.
    expect(await h.mountIds(good.targetPath)).toHaveLength(1);
  });

  it('still trusts a record written before per-audience JWT files, whose jwt-svid-file is now ignored', async () => {
    const spec = await h.spec({ jwtAudiences: ['api', 'vault'], jwtSvidFile: 'token' });
    await expect(checkRecordedSpec(spec, { kubeletRoot: h.kubeletRoot })).resolves.toBeUndefined();
  });

  it('trusts records with every issue #15 field, and ones written before them', async () => {
    const check = (spec: VolumeSpec): Promise<void> => checkRecordedSpec(spec, { kubeletRoot: h.kubeletRoot });
    await expect(check(await h.spec({ layoutNames: '2026-02', credentialBundleFile: 'credential-bundle.pem' }))).resolves.toBeUndefined();
    await expect(
      check(await h.spec({ credentialBundleFile: 'creds.pem', hint: 'internal', allSvids: true, mountContext: 'system_u:object_r:container_file_t:s0:c1,c2' })),
    ).resolves.toBeUndefined();
    // A record without the fields parses to 2026-02 names (see volume-store.test.ts): that passes too.
    await expect(check(await h.spec({ layoutNames: '2026-02', credentialBundleFile: 'credential-bundle.pem', hint: null }))).resolves.toBeUndefined();
  });

  it.each<[string, Partial<VolumeSpec>]>([
    ['an unknown layout-names version', { layoutNames: '2099-01' as VolumeSpec['layoutNames'] }],
    ['an empty hint', { hint: '' }],
    ['a credential bundle named like hints.json', { credentialBundleFile: 'hints.json' }],
    ['a mount context that is not an SELinux label', { mountContext: 'x,ro' }],
  ])('refuses a record with %s', async (_what, fields) => {
    await expect(checkRecordedSpec(await h.spec(fields), { kubeletRoot: h.kubeletRoot })).rejects.toThrow(/the record/);
  });

  it('does not tear down anything for an untrusted record whose "pod" is gone', async () => {
    const outside = join(h.base, 'precious');
    await mkdir(join(outside, 'data'), { recursive: true });
    const good = await h.spec();
    await record({ ...good, targetPath: join(outside, 'data') });
    const summary = await restarted().resumeAll();
    expect(summary).toMatchObject({ resumed: 0, removed: 0, corrupt: 1 });
    expect(await readdir(outside)).toEqual(['data']);
    expect(await h.store.get(good.volumeId)).toBeDefined();
  });
});
