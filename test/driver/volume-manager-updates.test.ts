import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentError } from '../../driver/src/identity/identity-backend.js';
import type { RotatedEvent, VolumeErrorEvent } from '../../driver/src/volume/volume-events.js';
import type { VolumeManager } from '../../driver/src/manager/volume-manager.js';
import type { VolumeSpec } from '../../driver/src/volume/volume-spec.js';
import { TestCa } from '../helpers/test-ca.js';
import { waitFor } from '../helpers/wait-for.js';
import { dataDir, isRoot, modeOf, present, VolumeHarness } from './volume-harness.js';

if (!isRoot) console.log('volume-manager-updates.test.ts: skipping: needs root (uid 0) for real tmpfs mounts');

describe.skipIf(!isRoot)('VolumeManager after publish', () => {
  let h: VolumeHarness;
  let manager: VolumeManager;
  let spec: VolumeSpec;
  const rotated: RotatedEvent[] = [];
  const errors: VolumeErrorEvent[] = [];

  const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  const read = (name: string): Promise<string> => readFile(join(spec.targetPath, name), 'utf8');
  const serial = async (): Promise<string> => JSON.parse(await read('identity.json')).serial;

  beforeEach(async () => {
    h = await VolumeHarness.create();
    await h.serve();
    manager = h.manager();
    rotated.length = 0;
    errors.length = 0;
    manager.events.on('rotated', (e) => rotated.push(e));
    manager.events.on('error', (e) => errors.push(e));
    spec = await h.spec({ fsGroup: 1500 });
    await manager.publish(spec);
  });

  afterEach(async () => {
    await h.cleanup();
  });

  it('rewrites the files on rotation and reapplies modes and ownership', async () => {
    const before = await serial();
    const next = await h.update();
    h.identity.push(next);
    await waitFor(async () => (await serial()) !== before, { message: 'rotated identity.json' });
    // The event follows the write, so it may land just after the files do.
    await waitFor(() => rotated.length === 2, { message: 'rotated event' });
    const leaf = next.svids[0]?.chainDer[0];
    expect((await read('svid.pem')).includes(leaf?.toString('base64').slice(0, 60) ?? 'x')).toBe(true);
    expect(await modeOf(join(spec.targetPath, 'credential-bundle.private-key.x509.pem'))).toEqual({ mode: 0o440, uid: 0, gid: 1500 });
    expect(rotated.map((r) => r.initial)).toEqual([true, false]);
  });

  it('does not rewrite when the same SVID is sent again or an unrelated bundle changes', async () => {
    const dir = await dataDir(spec.targetPath);
    const current = h.identity.respond?.([]);
    if (current !== undefined) h.identity.push(current);
    await settle();
    const other = await TestCa.create('unrelated.test');
    h.identity.setBundles(new Map([['example.org', h.ca.rootDer], ['unrelated.test', other.rootDer]]));
    await settle();
    expect(await dataDir(spec.targetPath)).toBe(dir);
    // A distinct later update proves the earlier ones were processed before we look.
    h.identity.push(await h.update());
    await waitFor(() => rotated.length === 2);
    expect(rotated).toHaveLength(2);
    expect(await dataDir(spec.targetPath)).not.toBe(dir);
    expect(await present(join(spec.targetPath, 'unrelated.test.spiffe-trust-bundle.x509.pem'))).toBe(false);
  });

  it('keeps the last good files when the agent sends a bad SVID, and logs why without the key', async () => {
    const dir = await dataDir(spec.targetPath);
    const good = await h.svid();
    const wrongKey = await h.svid();
    h.identity.push({ svids: [{ ...good, keyDer: wrongKey.keyDer }], federatesWith: [] });
    h.identity.push({ svids: [{ ...good, chainDer: [Buffer.from('not der')] }], federatesWith: [] });
    await waitFor(() => errors.filter((e) => e.kind === 'invalid-svid').length === 2);
    expect(await dataDir(spec.targetPath)).toBe(dir);
    const warnings = h.logs.filter((l) => l.msg?.startsWith('rejected the SVID update'));
    expect(warnings).toHaveLength(2);
    const logged = JSON.stringify(h.logs);
    expect(logged).not.toContain(wrongKey.keyDer.toString('base64').slice(0, 40));
    expect(logged).not.toMatch(/PRIVATE KEY/);
  });

  it('keeps the files when an update carries no SVID', async () => {
    const dir = await dataDir(spec.targetPath);
    h.identity.push({ svids: [], federatesWith: [] });
    await waitFor(() => h.logs.some((l) => l.level === 'warn' && /keeping the last good files/.test(l.msg ?? '')));
    expect(await dataDir(spec.targetPath)).toBe(dir);
    expect(await present(join(spec.targetPath, 'svid_key.pem'))).toBe(true);
  });

  it('keeps the files when the agent becomes unreachable', async () => {
    const dir = await dataDir(spec.targetPath);
    h.identity.setConnected(false);
    h.identity.fail(new AgentError(status.UNAVAILABLE, 'unavailable', 'connect ECONNREFUSED'));
    await waitFor(() => errors.some((e) => e.kind === 'agent-error'));
    expect(await dataDir(spec.targetPath)).toBe(dir);
    expect(await present(join(spec.targetPath, 'credential-bundle.private-key.x509.pem'))).toBe(true);
  });

  it('adds and removes per-domain bundle files as federation changes', async () => {
    const partner = await TestCa.create('partner.test');
    h.identity.setBundles(new Map([['example.org', h.ca.rootDer], ['partner.test', partner.rootDer]]));
    const file = join(spec.targetPath, 'partner.test.spiffe-trust-bundle.x509.pem');
    h.identity.push(await h.update(undefined, ['spiffe://partner.test']));
    await waitFor(() => present(file), { message: 'partner bundle file' });
    expect(JSON.parse(await read('identity.json')).trustDomains).toEqual(['example.org', 'partner.test']);
    expect(await read('bundle.pem')).not.toContain(partner.rootPem.split('\n')[1] ?? 'x');
    h.identity.push(await h.update(undefined, []));
    await waitFor(async () => !(await present(file)), { message: 'partner bundle file removed' });
  });

  it('rewrites the trust bundle when the own domain gains an authority', async () => {
    const extra = await TestCa.create('example.org');
    h.identity.setBundles(new Map([['example.org', Buffer.concat([h.ca.rootDer, extra.rootDer])]]));
    await waitFor(async () => (await read('example.org.spiffe-trust-bundle.x509.pem')).split('BEGIN CERTIFICATE').length === 3);
    expect((await read('bundle.pem')).split('BEGIN CERTIFICATE')).toHaveLength(3);
  });

  it('keeps the files when the own trust bundle arrives empty', async () => {
    const dir = await dataDir(spec.targetPath);
    h.identity.setBundles(new Map([['example.org', Buffer.alloc(0)]]));
    await waitFor(() => errors.some((e) => e.kind === 'invalid-svid'));
    expect(await dataDir(spec.targetPath)).toBe(dir);
  });

  it('unpublishes idempotently: stream closed, unmounted, directory and record gone', async () => {
    await manager.unpublish(spec.volumeId, spec.targetPath);
    expect(h.identity.openStreams).toHaveLength(0);
    expect(await h.mountIds(spec.targetPath)).toEqual([]);
    expect(await present(spec.targetPath)).toBe(false);
    expect(await present(join(spec.targetPath, '..'))).toBe(true);
    expect(await h.store.get(spec.volumeId)).toBeUndefined();
    expect(manager.volumeCount).toBe(0);
    await manager.unpublish(spec.volumeId, spec.targetPath);
    await manager.unpublish('never-published', join(spec.targetPath, '..', 'other', 'mount'));
  });

  it('unpublishes an unknown volume that still has a tmpfs at the target', async () => {
    const orphan = await h.spec();
    await (await import('node:fs/promises')).mkdir(orphan.targetPath);
    await h.mounter.mountTmpfs(orphan.targetPath, { sizeBytes: 65536, mode: 0o755 });
    await manager.unpublish(orphan.volumeId, orphan.targetPath);
    expect(await h.mountIds(orphan.targetPath)).toEqual([]);
    expect(await present(orphan.targetPath)).toBe(false);
  });
});
