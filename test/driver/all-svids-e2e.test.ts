/**
 * Issue #15 end to end: the dev agent (real Delegated Identity API), the driver in-process on real
 * tmpfs mounts, a CSI client acting as kubelet. A pod matched by two registration entries with
 * hints gets every SVID with csi.spire.io/all-svids, numbered, with hints.json; layout-names
 * 2026-02 keeps the earlier names; kubelet's SELinux context reaches mount(2).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { status } from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileSource } from '@spire-csi/sdk';
import { X509Svid } from '../../sdk/src/x509/svid.js';
import { mountsAt, parseMountInfo } from '../../driver/src/mount/mountinfo.js';
import { DriverHarness, isRoot, mountsUnder } from '../helpers/driver-harness.js';
import { KubeletEmulator } from '../helpers/kubelet-emulator.js';
import { entry } from '../helpers/registration-entry.js';
import { waitFor } from '../helpers/wait-for.js';

const run = promisify(execFile);
const WEB_ID = 'spiffe://example.org/ns/default/sa/web';
const ADMIN_ID = 'spiffe://example.org/ns/default/sa/web/admin';
const CREDENTIAL = 'credential-bundle.private-key.x509.pem';

interface HintsEntry {
  file: string;
  spiffeId: string;
  hint: string;
  leafSha256: string;
}

async function credential(target: string, name: string): Promise<X509Svid> {
  return X509Svid.parseCredentialBundle(await readFile(join(target, name)));
}

async function hintsOf(target: string): Promise<HintsEntry[]> {
  return (JSON.parse(await readFile(join(target, 'hints.json'), 'utf8')) as { credentialBundles: HintsEntry[] }).credentialBundles;
}

const leafSha256 = (svid: X509Svid): string => createHash('sha256').update(svid.certificates[0]!.raw).digest('hex');

describe.skipIf(!isRoot)('every SVID of a pod, with hints (dev agent, real tmpfs)', () => {
  let h: DriverHarness;

  beforeEach(async () => {
    h = await DriverHarness.create({
      registrations: {
        // Both entries match the same pod; the agent sends their SVIDs in this order.
        entries: [
          entry(WEB_ID, ['k8s:ns:default', 'k8s:sa:web'], ['partner.org'], 'internal'),
          entry(ADMIN_ID, ['k8s:ns:default', 'k8s:sa:web'], [], 'external'),
        ],
        federatedTrustDomains: ['partner.org'],
      },
      publishTimeoutMs: 3_000,
    });
    await h.startDriver();
  });

  afterEach(async () => {
    await h.cleanup();
  });

  it('writes the chosen SVID under the standard name, the other as 1.<name>, and hints.json', async () => {
    const pod = KubeletEmulator.pod({ serviceAccount: 'web', fsGroup: 3000 });
    const volume = await h.kubelet.publish(pod, 'spiffe', { 'csi.spire.io/all-svids': 'true', 'csi.spire.io/hint': 'external' });
    const target = volume.targetPath;

    const names = (await readdir(target)).filter((name) => !name.startsWith('..')).sort();
    expect(names).toEqual([
      `1.${CREDENTIAL}`,
      'bundle.pem',
      CREDENTIAL,
      'example.org.spiffe-trust-bundle.x509.pem',
      'hints.json',
      'identity.json',
      'partner.org.spiffe-trust-bundle.x509.pem',
      'svid.pem',
      'svid_key.pem',
    ]);
    for (const name of names) expect((await lstat(join(target, name))).isSymbolicLink(), name).toBe(true);

    // The hint chose the second entry's SVID; the first is the extra one.
    const chosen = await credential(target, CREDENTIAL);
    const extra = await credential(target, `1.${CREDENTIAL}`);
    expect(chosen.id.toString()).toBe(ADMIN_ID);
    expect(extra.id.toString()).toBe(WEB_ID);
    expect(await hintsOf(target)).toEqual([
      { file: CREDENTIAL, spiffeId: ADMIN_ID, hint: 'external', leafSha256: leafSha256(chosen) },
      { file: `1.${CREDENTIAL}`, spiffeId: WEB_ID, hint: 'internal', leafSha256: leafSha256(extra) },
    ]);
    const identity = JSON.parse(await readFile(join(target, 'identity.json'), 'utf8')) as Record<string, unknown>;
    expect(identity).toMatchObject({ spiffeId: ADMIN_ID, hint: 'external' });
    // Key material of every SVID is group-readable by the pod's fsGroup only.
    for (const name of [CREDENTIAL, `1.${CREDENTIAL}`]) expect((await lstat(join(target, '..data', name))).mode & 0o777).toBe(0o440);

    // What the issue asks to see of a real publish.
    const { stdout: listing } = await run('ls', ['-la', target]);
    console.log(`ls -la ${target}\n${listing}\ncat hints.json\n${await readFile(join(target, 'hints.json'), 'utf8')}`);

    // The SDK: the primary file without a choice, the hinted one with it.
    const primary = new FileSource(target);
    const internal = new FileSource(target, { hint: 'internal' });
    try {
      expect((await primary.ready(5_000)).svid.id.toString()).toBe(ADMIN_ID);
      expect((await internal.ready(5_000)).svid.id.toString()).toBe(WEB_ID);
      // A rotation reaches both files in one generation.
      const before = { chosen: chosen.serialNumber, extra: extra.serialNumber };
      await h.agent.rotateNow();
      await waitFor(() => internal.getX509Svid().serialNumber !== before.extra && primary.getX509Svid().serialNumber !== before.chosen, {
        message: 'both SVIDs rotated',
      });
      const rotated = await hintsOf(target);
      expect(rotated[0]!.leafSha256).toBe(leafSha256(await credential(target, CREDENTIAL)));
      expect(rotated[1]!.leafSha256).toBe(leafSha256(await credential(target, `1.${CREDENTIAL}`)));
    } finally {
      await primary.close();
      await internal.close();
    }
  });

  it('without all-svids writes only the chosen SVID, and no hints.json', async () => {
    const volume = await h.kubelet.publish(KubeletEmulator.pod({ serviceAccount: 'web' }), 'spiffe', { 'csi.spire.io/hint': 'internal' });
    expect((await credential(volume.targetPath, CREDENTIAL)).id.toString()).toBe(WEB_ID);
    expect(existsSync(join(volume.targetPath, `1.${CREDENTIAL}`))).toBe(false);
    expect(existsSync(join(volume.targetPath, 'hints.json'))).toBe(false);
    const identity = JSON.parse(await readFile(join(volume.targetPath, 'identity.json'), 'utf8')) as Record<string, unknown>;
    expect(identity.hint).toBe('internal');
  });

  it('keeps the earlier names with layout-names 2026-02, the number in front of them', async () => {
    const volume = await h.kubelet.publish(KubeletEmulator.pod({ serviceAccount: 'web' }), 'spiffe', {
      'csi.spire.io/all-svids': 'true',
      'csi.spire.io/layout-names': '2026-02',
    });
    const names = (await readdir(volume.targetPath)).filter((name) => !name.startsWith('..')).sort();
    expect(names).toEqual([
      '1.credential-bundle.pem',
      'bundle.pem',
      'credential-bundle.pem',
      'example.org.spiffe-trust-bundle.pem',
      'hints.json',
      'identity.json',
      'partner.org.spiffe-trust-bundle.pem',
      'svid.pem',
      'svid_key.pem',
    ]);
    // No hint asked for: the agent's first SVID is the chosen one.
    expect((await credential(volume.targetPath, 'credential-bundle.pem')).id.toString()).toBe(WEB_ID);
    expect((await hintsOf(volume.targetPath)).map((e) => [e.file, e.hint])).toEqual([
      ['credential-bundle.pem', 'internal'],
      ['1.credential-bundle.pem', 'external'],
    ]);
  });

  it('names the hint that matched nothing when the publish times out', async () => {
    const error = await h.kubelet
      .publish(KubeletEmulator.pod({ serviceAccount: 'web' }), 'spiffe', { 'csi.spire.io/hint': 'nope' })
      .then(() => null, (e: unknown) => e as { code: number; details: string });
    expect(error?.code).toBe(status.DEADLINE_EXCEEDED);
    expect(error?.details).toContain('none of the SVIDs the agent returned is hint "nope"');
    expect(error?.details).toContain(`${WEB_ID} (hint "internal")`);
  });

  it.skipIf(existsSync('/sys/fs/selinux'))('mounts without a context on this kernel, and hands kubelet\'s context to mount(2)', async () => {
    // --selinux-context auto (the default) on a kernel without SELinux: no label.
    const plain = await h.kubelet.publish(KubeletEmulator.pod({ serviceAccount: 'web' }));
    const [mount] = mountsAt(parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8')), plain.targetPath);
    expect(`${mount?.mountOptions},${mount?.superOptions}`).not.toContain('context');
    // kubelet's label goes to mount(2), which this kernel refuses: the publish fails saying why, leaving nothing.
    const pod = KubeletEmulator.pod({ serviceAccount: 'web' });
    const { targetPath } = h.kubelet.volumeFor(pod);
    await import('node:fs/promises').then((fs) => fs.mkdir(join(targetPath, '..'), { recursive: true }));
    const request = h.kubelet.publishRequest(pod);
    const capability = request.volume_capability as { mount: { mount_flags: string[] } };
    capability.mount.mount_flags = ['context="system_u:object_r:container_file_t:s0:c1,c2"'];
    await expect(h.kubelet.publishRaw(request)).rejects.toMatchObject({
      details: expect.stringMatching(/SELinux context "system_u:object_r:container_file_t:s0:c1,c2"/),
    });
    expect(await mountsUnder(targetPath)).toEqual([]);
  });

  it('labels volumes without a context when the SELinux probe says yes (auto)', async () => {
    await h.stopDriver();
    await h.startDriver({ selinuxProbe: async () => true });
    // The last start's line: beforeEach started the driver once already.
    const chosen = h.logLines.map((line) => JSON.parse(line) as Record<string, unknown>).findLast((l) => l.msg === 'tmpfs mount backend chosen');
    expect(chosen).toMatchObject({ selinuxContext: 'auto', defaultMountContext: 'system_u:object_r:container_file_t:s0' });
    const publish = h.kubelet.publish(KubeletEmulator.pod({ serviceAccount: 'web' }));
    if (chosen?.mountBackend === 'syscalls' && !existsSync('/sys/fs/selinux')) {
      // This kernel has no SELinux, so mount(2) refuses the label: proof that it was passed.
      await expect(publish).rejects.toMatchObject({ details: expect.stringMatching(/SELinux context "system_u:object_r:container_file_t:s0"/) });
    } else {
      await publish;
    }
  });
});
