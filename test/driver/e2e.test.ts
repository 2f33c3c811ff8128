import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, readFile, readdir, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileSource, SpiffeId } from '@spire-csi/sdk';
import { X509Svid } from '@spire-csi/sdk/x509';
import { DriverHarness, isRoot, mountsUnder } from '../helpers/driver-harness.js';
import { KubeletEmulator, type EmulatedPod, type PublishedVolume } from '../helpers/kubelet-emulator.js';
import { entry } from '../helpers/registration-entry.js';
import { waitFor } from '../helpers/wait-for.js';

const WEB_ID = 'spiffe://example.org/ns/default/sa/web';
const DB_ID = 'spiffe://example.org/ns/default/sa/db';

async function readCredential(target: string): Promise<X509Svid> {
  return X509Svid.parseCredentialBundle(await readFile(join(target, 'credential-bundle.private-key.x509.pem')));
}

async function serialOf(target: string): Promise<string> {
  return new X509Certificate(await readFile(join(target, 'svid.pem'))).serialNumber;
}

async function recordCount(stateDir: string): Promise<number> {
  const dir = join(stateDir, 'volumes');
  if (!existsSync(dir)) return 0;
  return (await readdir(dir)).filter((name) => name.endsWith('.json')).length;
}

describe.skipIf(!isRoot)('driver end to end (kubelet emulator, dev agent, real tmpfs)', () => {
  let h: DriverHarness;

  beforeEach(async () => {
    h = await DriverHarness.create({
      registrations: {
        entries: [
          entry(WEB_ID, ['k8s:ns:default', 'k8s:sa:web'], ['partner.org']),
          entry(DB_ID, ['k8s:ns:default', 'k8s:sa:db']),
        ],
        federatedTrustDomains: ['partner.org'],
      },
      publishTimeoutMs: 3_000,
    });
  });

  afterEach(async () => {
    await h.cleanup();
  });

  it('publishes, rotates and unpublishes a volume with the contract files', async () => {
    await h.startDriver();
    const pod = KubeletEmulator.pod({ fsGroup: 2000 });
    const volume = await h.kubelet.publish(pod);
    const target = volume.targetPath;

    expect(await mountsUnder(target)).toEqual([target]);
    const svid = await readCredential(target);
    expect(svid.id.toString()).toBe(WEB_ID);
    const split = X509Svid.parse(await readFile(join(target, 'svid.pem')), await readFile(join(target, 'svid_key.pem')));
    expect(split.serialNumber).toBe(svid.serialNumber);
    expect((await readdir(target)).sort()).toEqual(
      expect.arrayContaining(['..data', 'credential-bundle.private-key.x509.pem', 'example.org.spiffe-trust-bundle.x509.pem', 'partner.org.spiffe-trust-bundle.x509.pem', 'svid.pem', 'svid_key.pem', 'bundle.pem', 'identity.json']),
    );
    const data = await readlink(join(target, '..data'));
    expect(data).toMatch(/^\.\./);
    const keyStat = await stat(join(target, 'svid_key.pem'));
    expect(keyStat.mode & 0o777).toBe(0o440);
    expect(keyStat.gid).toBe(2000);
    expect((await stat(join(target, 'credential-bundle.private-key.x509.pem'))).mode & 0o777).toBe(0o440);
    expect((await stat(join(target, 'svid.pem'))).mode & 0o777).toBe(0o444);
    expect((await lstat(join(target, 'svid.pem'))).isSymbolicLink()).toBe(true);
    const identity = JSON.parse(await readFile(join(target, 'identity.json'), 'utf8')) as Record<string, unknown>;
    expect(identity).toMatchObject({ spiffeId: WEB_ID });
    expect(JSON.stringify(identity)).not.toContain('PRIVATE KEY');

    const before = svid.serialNumber;
    await h.agent.rotateNow();
    await waitFor(async () => (await serialOf(target)) !== before, { message: 'a rotated SVID on disk' });
    const rotated = await readCredential(target);
    expect(rotated.serialNumber).not.toBe(before);
    expect((await stat(join(target, 'svid_key.pem'))).gid).toBe(2000);
    expect(await readlink(join(target, '..data'))).not.toBe(data);
    // Only the current payload directory remains after a swap.
    // The old payload directory is removed right after the swap; only the current one remains.
    await waitFor(async () => (await readdir(target)).filter((name) => name.startsWith('..') && name !== '..data').length === 1, {
      message: 'the previous payload directory to be removed',
    });

    await h.kubelet.unpublish(volume);
    expect(existsSync(target)).toBe(false);
    expect(await mountsUnder(target)).toEqual([]);
    expect(await recordCount(h.stateDir)).toBe(0);
    // Unpublish is idempotent: again, and for a volume that was never there.
    await h.kubelet.unpublish(volume);
    await h.kubelet.unpublish(h.kubelet.volumeFor(KubeletEmulator.pod()));

    const keyPem = rotated.privateKeyPem();
    const keyBody = keyPem.split('\n')[1]!;
    expect(h.logLines.join('\n')).not.toContain(keyBody);
    expect(h.logLines.some((line) => line.includes('"volumeId"') && line.includes(pod.uid))).toBe(true);
  });

  it('gives two pods their own identities and never mixes them', async () => {
    await h.startDriver();
    const web = await h.kubelet.publish(KubeletEmulator.pod({ serviceAccount: 'web' }));
    const db = await h.kubelet.publish(KubeletEmulator.pod({ serviceAccount: 'db' }));
    for (let i = 0; i < 3; i++) {
      await h.agent.rotateNow();
      expect((await readCredential(web.targetPath)).id.toString()).toBe(WEB_ID);
      expect((await readCredential(db.targetPath)).id.toString()).toBe(DB_ID);
    }
    expect(existsSync(join(db.targetPath, 'partner.org.spiffe-trust-bundle.x509.pem'))).toBe(false);
  });

  it('adds and removes per-domain bundle files as federation changes', async () => {
    await h.startDriver();
    const volume = await h.kubelet.publish(KubeletEmulator.pod({ serviceAccount: 'web' }));
    const partner = join(volume.targetPath, 'partner.org.spiffe-trust-bundle.x509.pem');
    expect(existsSync(partner)).toBe(true);
    await h.agent.setRegistrations([entry(WEB_ID, ['k8s:ns:default', 'k8s:sa:web'])]);
    await waitFor(() => !existsSync(partner), { message: 'the partner.org bundle file to go away' });
    expect(existsSync(join(volume.targetPath, 'example.org.spiffe-trust-bundle.x509.pem'))).toBe(true);
    await h.agent.setRegistrations([entry(WEB_ID, ['k8s:ns:default', 'k8s:sa:web'], ['partner.org'])]);
    await waitFor(() => existsSync(partner), { message: 'the partner.org bundle file to come back' });
  });

  it('puts federated roots into bundle.pem only on opt-in', async () => {
    await h.startDriver();
    const countCerts = async (v: PublishedVolume) => ((await readFile(join(v.targetPath, 'bundle.pem'), 'utf8')).match(/BEGIN CERTIFICATE/g) ?? []).length;
    const plain = await h.kubelet.publish(KubeletEmulator.pod({ serviceAccount: 'web' }));
    const merged = await h.kubelet.publish(KubeletEmulator.pod({ serviceAccount: 'web' }), 'spiffe', {
      'csi.spire.io/bundle-include-federated': 'true',
      'csi.spire.io/svid-file': 'tls.crt',
      'csi.spire.io/key-file': 'tls.key',
      'csi.spire.io/bundle-file': 'ca.crt',
    });
    expect(await countCerts(plain)).toBe(1);
    expect(existsSync(join(merged.targetPath, 'tls.crt'))).toBe(true);
    expect(((await readFile(join(merged.targetPath, 'ca.crt'), 'utf8')).match(/BEGIN CERTIFICATE/g) ?? []).length).toBe(2);
    expect((await stat(join(merged.targetPath, 'tls.key'))).mode & 0o777).toBe(0o400);
  });

  it('re-publish with the same parameters is OK, with different ones ALREADY_EXISTS', async () => {
    await h.startDriver();
    const pod = KubeletEmulator.pod({ serviceAccount: 'web' });
    const volume = await h.kubelet.publish(pod);
    const data = await readlink(join(volume.targetPath, '..data'));
    await h.kubelet.publish(pod);
    expect(await readlink(join(volume.targetPath, '..data'))).toBe(data);
    expect(await mountsUnder(volume.targetPath)).toEqual([volume.targetPath]);
    await expect(h.kubelet.publish(pod, 'spiffe', { 'csi.spire.io/svid-file': 'other.pem' })).rejects.toMatchObject({
      code: status.ALREADY_EXISTS,
    });
    expect(await readCredential(volume.targetPath)).toBeDefined();
  });

  it.each([
    ['readonly false', (r: Record<string, unknown>) => ({ ...r, readonly: false }), /readonly/i],
    ['not ephemeral', (r: Record<string, unknown>) => ({ ...r, volume_context: { ...(r.volume_context as object), 'csi.storage.k8s.io/ephemeral': 'false' } }), /ephemeral/],
    ['unknown attribute', (r: Record<string, unknown>) => ({ ...r, volume_context: { ...(r.volume_context as object), 'csi.spire.io/svid-fil': 'x' } }), /csi\.spire\.io\/svid-fil/],
    ['bad file name', (r: Record<string, unknown>) => ({ ...r, volume_context: { ...(r.volume_context as object), 'csi.spire.io/key-file': '../key' } }), /key-file/],
    ['bad fs group', (r: Record<string, unknown>) => ({ ...r, volume_context: { ...(r.volume_context as object), 'csi.spire.io/fs-group': 'wheel' } }), /fs-group/],
  ])('rejects %s with INVALID_ARGUMENT and leaves nothing behind', async (_name, mutate, message) => {
    await h.startDriver();
    const pod = KubeletEmulator.pod({ serviceAccount: 'web' });
    const { targetPath } = h.kubelet.volumeFor(pod);
    await readdir(h.kubeletRoot);
    await import('node:fs/promises').then((fs) => fs.mkdir(join(targetPath, '..'), { recursive: true }));
    await expect(h.kubelet.publishRaw(mutate(h.kubelet.publishRequest(pod)))).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringMatching(message),
    });
    expect(existsSync(targetPath)).toBe(false);
    expect(await mountsUnder(h.root)).toEqual([]);
    expect(await recordCount(h.stateDir)).toBe(0);
  });

  it('times out cleanly with DEADLINE_EXCEEDED naming the selectors when no entry matches', async () => {
    await h.startDriver();
    const pod: EmulatedPod = KubeletEmulator.pod({ serviceAccount: 'nobody' });
    const error = await h.kubelet.publish(pod).then(() => null, (e: unknown) => e as { code: number; details: string });
    expect(error?.code).toBe(status.DEADLINE_EXCEEDED);
    expect(error?.details).toContain('k8s:sa:nobody');
    expect(error?.details).toContain(`k8s:pod-uid:${pod.uid}`);
    const { targetPath } = h.kubelet.volumeFor(pod);
    expect(existsSync(targetPath)).toBe(false);
    expect(await mountsUnder(h.root)).toEqual([]);
    expect(await recordCount(h.stateDir)).toBe(0);
  });

  it('times out cleanly when the agent is down during publish, and keeps files when it goes down later', async () => {
    await h.startDriver();
    const running = await h.kubelet.publish(KubeletEmulator.pod({ serviceAccount: 'web' }));
    const before = await readFile(join(running.targetPath, 'credential-bundle.private-key.x509.pem'), 'utf8');
    await h.agent.setAnswering(false);
    await waitFor(async () => !(await h.kubelet.probe()), { message: 'Probe to report the agent down' });

    const pod = KubeletEmulator.pod({ serviceAccount: 'web' });
    await expect(h.kubelet.publish(pod)).rejects.toMatchObject({ code: status.DEADLINE_EXCEEDED });
    expect(existsSync(h.kubelet.volumeFor(pod).targetPath)).toBe(false);
    expect(await readFile(join(running.targetPath, 'credential-bundle.private-key.x509.pem'), 'utf8')).toBe(before);
    expect(await mountsUnder(h.root)).toEqual([running.targetPath]);

    await h.agent.setAnswering(true);
    await waitFor(() => h.kubelet.probe(), { message: 'Probe to report the agent back' });
    await h.agent.rotateNow();
    await waitFor(async () => (await readFile(join(running.targetPath, 'credential-bundle.private-key.x509.pem'), 'utf8')) !== before, {
      message: 'the stream to resume and deliver a rotation',
    });
  });

  it('feeds the SDK FileSource end to end across rotations', async () => {
    await h.startDriver();
    const volume = await h.kubelet.publish(KubeletEmulator.pod({ serviceAccount: 'web' }));
    const source = new FileSource(volume.targetPath);
    try {
      const first = await source.ready(5_000);
      expect(first.svid.id.equals(SpiffeId.parse(WEB_ID))).toBe(true);
      expect(first.bundles.trustDomains().map(String).sort()).toEqual(['example.org', 'partner.org']);
      await h.agent.rotateNow();
      await waitFor(() => source.getX509Svid().serialNumber !== first.svid.serialNumber, {
        message: 'FileSource to load the rotated SVID',
      });
    } finally {
      await source.close();
    }
  });
});

describe.skipIf(!isRoot)('driver process: restart and shutdown', () => {
  let h: DriverHarness;

  beforeEach(async () => {
    h = await DriverHarness.create({
      registrations: { entries: [entry(WEB_ID, ['k8s:ns:default'])], federatedTrustDomains: [] },
      publishTimeoutMs: 5_000,
    });
  });

  afterEach(async () => {
    await h.cleanup();
  });

  it('resumes every volume after SIGKILL, remounts a lost tmpfs, drops gone pods, and exits 0 on SIGTERM', async () => {
    await h.spawnDriver();
    const pods = [KubeletEmulator.pod(), KubeletEmulator.pod(), KubeletEmulator.pod()];
    const volumes: PublishedVolume[] = [];
    for (const pod of pods) volumes.push(await h.kubelet.publish(pod));
    const [kept, lostMount, gonePod] = volumes as [PublishedVolume, PublishedVolume, PublishedVolume];
    const keptSerial = await serialOf(kept.targetPath);

    await h.killDriver('SIGKILL');
    // While the driver is down: one tmpfs vanishes (node reboot-like), one pod is deleted.
    const { execFile } = await import('node:child_process');
    await new Promise((resolve) => execFile('umount', [lostMount.targetPath], resolve));
    await new Promise((resolve) => execFile('umount', [gonePod.targetPath], resolve));
    const { rm } = await import('node:fs/promises');
    await rm(join(h.kubeletRoot, 'pods', pods[2]!.uid), { recursive: true, force: true });
    expect(await serialOf(kept.targetPath)).toBe(keptSerial);

    await h.spawnDriver();
    await waitFor(async () => (await mountsUnder(lostMount.targetPath)).length === 1 && existsSync(join(lostMount.targetPath, 'svid.pem')), {
      message: 'the lost tmpfs to be remounted and rewritten',
    });
    await waitFor(async () => (await recordCount(h.stateDir)) === 2, { message: 'the gone pod record to be dropped' });
    await h.agent.rotateNow();
    for (const v of [kept, lostMount]) {
      await waitFor(async () => (await serialOf(v.targetPath)) !== keptSerial, { message: `rotation to reach ${v.targetPath}` });
    }

    const exitCode = await h.killDriver('SIGTERM');
    expect(exitCode).toBe(0);
    // SIGTERM leaves running pods their mounts and files.
    expect(await mountsUnder(kept.targetPath)).toEqual([kept.targetPath]);
    expect((await readCredential(kept.targetPath)).id.toString()).toBe(WEB_ID);
    expect(await recordCount(h.stateDir)).toBe(2);
  });
});
