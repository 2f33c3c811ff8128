import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_LAYOUT_OPTIONS, DEFAULT_FILES, type VolumeSpec } from '../../driver/src/volume/volume-spec.js';
import { VolumeStore, VolumeStoreError } from '../../driver/src/metadata/volume-store.js';
import { LinuxMounter } from '../../driver/src/mount/mounter.js';

function spec(volumeId: string, overrides: Partial<VolumeSpec> = {}): VolumeSpec {
  return {
    volumeId,
    targetPath: `/var/lib/kubelet/pods/uid-${volumeId}/volumes/kubernetes.io~csi/spiffe/mount`,
    pod: { name: 'web', namespace: 'default', uid: `uid-${volumeId}`, serviceAccount: 'web' },
    files: DEFAULT_FILES,
    bundleIncludeFederated: false,
    fsGroup: null,
    spiffeId: null,
    jwtAudiences: [],
    jwtSvidFile: 'jwt-svid.token',
    ...DEFAULT_LAYOUT_OPTIONS,
    ...overrides,
  };
}

describe('VolumeStore', () => {
  let stateDir: string;
  let store: VolumeStore;

  beforeEach(async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'volume-store-'));
    store = new VolumeStore(stateDir);
    await store.init();
  });

  afterEach(async () => {
    await rm(stateDir, { recursive: true, force: true });
  });

  it('writes one JSON record per volume named by the sha256 of its id', async () => {
    const record = await store.put(spec('csi-1', { fsGroup: 2000 }), new Date('2026-01-02T03:04:05Z'));
    const hash = createHash('sha256').update('csi-1').digest('hex');
    expect(store.pathFor('csi-1')).toBe(join(stateDir, 'volumes', `${hash}.json`));
    const onDisk = JSON.parse(await readFile(store.pathFor('csi-1'), 'utf8'));
    expect(onDisk).toEqual({ version: 1, spec: spec('csi-1', { fsGroup: 2000 }), createdAt: '2026-01-02T03:04:05.000Z' });
    expect(await store.get('csi-1')).toEqual(record);
    expect(await readdir(join(stateDir, 'volumes'))).toHaveLength(1);
  });

  it('replaces a record and leaves no temp files', async () => {
    await store.put(spec('csi-1'));
    await store.put(spec('csi-1', { spiffeId: 'spiffe://example.org/web' }));
    expect((await store.get('csi-1'))?.spec.spiffeId).toBe('spiffe://example.org/web');
    expect(await readdir(join(stateDir, 'volumes'))).toHaveLength(1);
  });

  it('returns undefined for unknown volumes and removes idempotently', async () => {
    expect(await store.get('nope')).toBeUndefined();
    await store.put(spec('csi-1'));
    await store.remove('csi-1');
    await store.remove('csi-1');
    expect(await store.get('csi-1')).toBeUndefined();
    expect((await store.list()).records).toEqual([]);
  });

  it('lists good records and reports corrupt ones without throwing', async () => {
    await store.put(spec('a'));
    await store.put(spec('b'));
    const dir = join(stateDir, 'volumes');
    await writeFile(join(dir, `${'0'.repeat(64)}.json`), '{"version": 1, "spec": ');
    await writeFile(join(dir, `${'1'.repeat(64)}.json`), JSON.stringify({ version: 1, spec: spec('c'), createdAt: new Date().toISOString() }));
    await writeFile(join(dir, `${'2'.repeat(64)}.json`), JSON.stringify({ version: 2, spec: spec('d'), createdAt: 'x' }));
    await writeFile(join(dir, 'unrelated.txt'), 'ignored');
    const listing = await store.list();
    expect(listing.records.map((r) => r.spec.volumeId).sort()).toEqual(['a', 'b']);
    expect(listing.corrupt).toHaveLength(3);
    expect(listing.corrupt.map((c) => c.reason).join('\n')).toMatch(/not valid JSON[\s\S]*under another name[\s\S]*unsupported version 2/);
  });

  it('treats a record with a missing field as corrupt', async () => {
    const bad = { ...spec('x'), pod: { name: 'web' } };
    await writeFile(store.pathFor('x'), JSON.stringify({ version: 1, spec: bad, createdAt: new Date().toISOString() }));
    await expect(store.get('x')).rejects.toMatchObject({ kind: 'corrupt', message: expect.stringMatching(/^volume-store: .*spec.pod.namespace/) });
  });

  it('resumes a record written before layout-names with the names it was published with', async () => {
    // Exactly what the previous driver wrote: none of the issue #15 fields.
    const { layoutNames: _l, credentialBundleFile: _c, hint: _h, allSvids: _a, mountContext: _m, ...old } = spec('old');
    await writeFile(store.pathFor('old'), JSON.stringify({ version: 1, spec: old, createdAt: new Date().toISOString() }));
    const record = await store.get('old');
    expect(record?.spec).toEqual({
      ...old,
      layoutNames: '2026-02',
      credentialBundleFile: 'credential-bundle.pem',
      hint: null,
      allSvids: false,
      mountContext: null,
    });
  });

  it('keeps the new fields of a record as written', async () => {
    const full = spec('new', {
      layoutNames: '2026-08',
      credentialBundleFile: 'tls-bundle.pem',
      hint: 'internal',
      allSvids: true,
      mountContext: 'system_u:object_r:container_file_t:s0:c1,c2',
    });
    await store.put(full);
    expect((await store.get('new'))?.spec).toEqual(full);
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    ['a hint that is not a string', { hint: 5 }, /spec\.hint must be null or a string/],
    ['all-svids that is not a boolean', { allSvids: 'true' }, /spec\.allSvids must be a boolean/],
    ['an empty credential bundle name', { credentialBundleFile: '' }, /spec\.credentialBundleFile must be a non-empty string/],
    ['an unknown layout-names version without a credential bundle name', { layoutNames: '2099-01', credentialBundleFile: undefined }, /layout-names/],
  ])('treats a record with %s as corrupt', async (_what, fields, message) => {
    const bad = { ...spec('x'), ...fields };
    await writeFile(store.pathFor('x'), JSON.stringify({ version: 1, spec: bad, createdAt: new Date().toISOString() }));
    await expect(store.get('x')).rejects.toMatchObject({ kind: 'corrupt', message: expect.stringMatching(message) });
  });

  it('removes temp files left by a crash on init', async () => {
    await writeFile(`${store.pathFor('a')}.tmp-abc`, 'partial');
    await store.init();
    expect(await readdir(join(stateDir, 'volumes'))).toEqual([]);
  });

  it('lists nothing when the directory does not exist yet', async () => {
    expect(await new VolumeStore(join(stateDir, 'nowhere')).list()).toEqual({ records: [], corrupt: [] });
  });

  const isRoot = process.getuid?.() === 0;
  it.skipIf(!isRoot)('reports a read-only state directory clearly', async () => {
    const mounter = new LinuxMounter();
    const ro = join(stateDir, 'ro');
    await mkdir(ro);
    await mounter.mountTmpfs(ro, { sizeBytes: 65536, mode: 0o755 });
    try {
      await mkdir(join(ro, 'volumes'));
      const { execFile } = await import('node:child_process');
      await new Promise<void>((resolve, reject) =>
        execFile('mount', ['-o', 'remount,ro', ro], (err) => (err ? reject(err) : resolve())),
      );
      const roStore = new VolumeStore(ro);
      const err = await roStore.put(spec('a')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(VolumeStoreError);
      expect(err).toMatchObject({ kind: 'read-only', message: expect.stringMatching(/^volume-store: .*read-only filesystem/) });
    } finally {
      await mounter.unmount(ro);
    }
  });
});
