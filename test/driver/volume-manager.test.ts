import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManagerError } from '../../driver/src/manager/errors.js';
import { AgentError } from '../../driver/src/identity/identity-backend.js';
import type { PublishedEvent, VolumeErrorEvent } from '../../driver/src/volume/volume-events.js';
import { waitFor } from '../helpers/wait-for.js';
import { DelegatedBackend } from '../../driver/src/identity/delegated/delegated-backend.js';
import { dataDir, isRoot, modeOf, NODE, present, VolumeHarness } from './volume-harness.js';

if (!isRoot) console.log('volume-manager.test.ts: skipping: publishing mounts real tmpfs, which needs root (uid 0)');

describe.skipIf(!isRoot)('VolumeManager publish', () => {
  let h: VolumeHarness;

  beforeEach(async () => {
    h = await VolumeHarness.create();
  });

  afterEach(async () => {
    await h.cleanup();
  });

  it('publishes files with fsGroup ownership and modes, after writing the record', async () => {
    await h.serve();
    const manager = h.manager();
    const published: PublishedEvent[] = [];
    manager.events.on('published', (e) => published.push(e));
    const spec = await h.spec({ fsGroup: 2000 });
    await manager.publish(spec);

    expect(await h.mountIds(spec.targetPath)).toHaveLength(1);
    expect(await modeOf(spec.targetPath)).toEqual({ mode: 0o750, uid: 0, gid: 2000 });
    for (const key of ['credential-bundle.private-key.x509.pem', 'svid_key.pem']) {
      expect(await modeOf(join(spec.targetPath, key))).toEqual({ mode: 0o440, uid: 0, gid: 2000 });
    }
    for (const pub of ['svid.pem', 'bundle.pem', 'example.org.spiffe-trust-bundle.x509.pem', 'identity.json']) {
      expect((await modeOf(join(spec.targetPath, pub))).mode).toBe(0o444);
    }
    const identity = JSON.parse(await readFile(join(spec.targetPath, 'identity.json'), 'utf8'));
    expect(identity.spiffeId).toBe('spiffe://example.org/web');
    expect((await h.store.get(spec.volumeId))?.spec).toEqual(spec);
    expect(manager.volumeCount).toBe(1);
    expect(manager.get(spec.volumeId)).toEqual(spec);
    expect(manager.earliestExpiry()?.toISOString()).toBe(identity.notAfter);
    expect(published).toEqual([{ volumeId: spec.volumeId, durationMs: expect.any(Number) }]);
    expect(h.identity.openStreams[0]?.selectors.map((s) => `${s.type}:${s.value}`)).toEqual([
      'k8s:ns:default',
      'k8s:sa:web-sa',
      `k8s:pod-uid:${spec.pod.uid}`,
      'k8s:pod-name:web',
      'k8s:node-name:node-1',
    ]);
    const volumeLog = h.logs.find((l) => l.msg === 'identity published');
    expect(volumeLog?.obj).toMatchObject({ volumeId: spec.volumeId, pod: 'web', namespace: 'default' });
  });

  it('keeps keys owner-only and the tmpfs root open without fsGroup', async () => {
    await h.serve();
    const spec = await h.spec();
    await h.manager().publish(spec);
    expect((await modeOf(spec.targetPath)).mode).toBe(0o755);
    expect(await modeOf(join(spec.targetPath, 'svid_key.pem'))).toEqual({ mode: 0o400, uid: 0, gid: 0 });
  });

  it('treats a re-publish of the same spec as a no-op without remounting', async () => {
    await h.serve();
    const manager = h.manager();
    const spec = await h.spec();
    await manager.publish(spec);
    const mounts = await h.mountIds(spec.targetPath);
    const dir = await dataDir(spec.targetPath);
    await Promise.all([manager.publish({ ...spec }), manager.publish({ ...spec })]);
    expect(await h.mountIds(spec.targetPath)).toEqual(mounts);
    expect(await dataDir(spec.targetPath)).toBe(dir);
    expect(h.identity.openStreams).toHaveLength(1);
  });

  it('rejects a re-publish with different parameters as ALREADY_EXISTS and changes nothing', async () => {
    await h.serve();
    const manager = h.manager();
    const spec = await h.spec();
    await manager.publish(spec);
    const dir = await dataDir(spec.targetPath);
    const err = await manager.publish({ ...spec, fsGroup: 3000, files: { ...spec.files, key: 'tls.key' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ManagerError);
    expect(err).toMatchObject({ kind: 'conflict' });
    expect((err as Error).message).toMatch(/key-file: "svid_key.pem" → "tls.key"; fs-group: null → 3000/);
    expect(await dataDir(spec.targetPath)).toBe(dir);
    expect((await h.store.get(spec.volumeId))?.spec).toEqual(spec);
    expect(await h.mountIds(spec.targetPath)).toHaveLength(1);
  });

  it('times out cleanly when no SVID matches, naming the selectors', async () => {
    h.identity.respond = () => ({ svids: [], federatesWith: [] });
    const manager = h.manager({ publishTimeoutMs: 300 });
    const spec = await h.spec();
    const err = await manager.publish(spec).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'not-ready' });
    expect((err as Error).message).toContain(`k8s:pod-uid:${spec.pod.uid}`);
    expect((err as Error).message).toMatch(/no registration entry matches/);
    expect(await present(spec.targetPath)).toBe(false);
    expect(await h.mountIds(spec.targetPath)).toEqual([]);
    expect(await h.store.get(spec.volumeId)).toBeUndefined();
    expect(h.identity.openStreams).toHaveLength(0);
    expect(manager.volumeCount).toBe(0);
  });

  it('says when the agent refuses the driver as a delegate', async () => {
    const manager = h.manager({ publishTimeoutMs: 300 });
    const spec = await h.spec();
    const publishing = manager.publish(spec).catch((e: unknown) => e);
    await waitFor(() => h.identity.openStreams.length === 1);
    h.identity.fail(new AgentError(status.PERMISSION_DENIED, 'permission-denied', 'caller not authorized'));
    const err = await publishing;
    expect(err).toMatchObject({ kind: 'not-ready' });
    expect((err as Error).message).toMatch(/PERMISSION_DENIED.*authorized delegate.*authorized_delegates/);
    expect(await present(spec.targetPath)).toBe(false);
  });

  it('says when the agent is unavailable at its socket', async () => {
    h.identity.connected = false;
    const errors: VolumeErrorEvent[] = [];
    const manager = h.manager({
      publishTimeoutMs: 300,
      identity: new DelegatedBackend(h.identity, { nodeName: NODE, adminSocket: '/run/spire/admin.sock' }),
    });
    manager.events.on('error', (e) => errors.push(e));
    const spec = await h.spec();
    const err = await manager.publish(spec).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/agent is unavailable at its socket \/run\/spire\/admin.sock/);
    expect(errors).toContainEqual({ kind: 'publish-failed', volumeId: spec.volumeId });
    expect(await h.store.get(spec.volumeId)).toBeUndefined();
  });

  it('cleans up when the caller aborts', async () => {
    const manager = h.manager();
    const spec = await h.spec();
    const controller = new AbortController();
    const publishing = manager.publish(spec, controller.signal).catch((e: unknown) => e);
    await waitFor(() => h.identity.openStreams.length === 1);
    controller.abort();
    expect(await publishing).toMatchObject({ kind: 'not-ready', message: expect.stringMatching(/cancelled/) });
    expect(await present(spec.targetPath)).toBe(false);
    expect(await h.mountIds(spec.targetPath)).toEqual([]);
  });

  it('waits for the own trust bundle before publishing', async () => {
    h.identity.setBundles(new Map());
    await h.serve();
    const manager = h.manager();
    const spec = await h.spec();
    const publishing = manager.publish(spec);
    await waitFor(() => h.identity.openStreams.length === 1);
    expect(await present(join(spec.targetPath, '..data'))).toBe(false);
    h.identity.setBundles(new Map([['example.org', h.ca.rootDer]]));
    await publishing;
    expect(await present(join(spec.targetPath, 'credential-bundle.private-key.x509.pem'))).toBe(true);
  });

  it('fails with FAILED_PRECONDITION when kubelet has not created the parent directory', async () => {
    await h.serve();
    const spec = await h.spec();
    const err = await h
      .manager()
      .publish({ ...spec, targetPath: join(spec.targetPath, '..', 'missing', 'mount') })
      .catch((e: unknown) => e);
    // TargetPathError `precondition`: the CSI layer answers FAILED_PRECONDITION.
    expect(err).toMatchObject({ name: 'TargetPathError', kind: 'precondition' });
    expect(await h.store.get(spec.volumeId)).toBeUndefined();
  });

  it('serializes per volume but publishes different volumes concurrently', async () => {
    await h.serve();
    const manager = h.manager();
    const specs = await Promise.all(Array.from({ length: 8 }, () => h.spec()));
    await Promise.all(specs.map((s) => manager.publish(s)));
    expect(manager.volumeCount).toBe(8);
    for (const s of specs) expect((await stat(join(s.targetPath, 'svid.pem'))).isFile()).toBe(true);
  });
});
