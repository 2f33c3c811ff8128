/**
 * The security review's findings against the built driver process and the dev agent, as an
 * attacker or an unlucky node would meet them: a tmpfs unmounted under a running volume (#13.2),
 * and a planted state record (#13.3). The JWT and SDK findings have their own tests
 * (test/driver/jwt-*.test.ts, test/sdk/split-federated.test.ts).
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI_PATH, DriverHarness, isRoot, mountsUnder, unmountUnder } from '../helpers/driver-harness.js';
import { KubeletEmulator } from '../helpers/kubelet-emulator.js';
import { waitFor } from '../helpers/wait-for.js';
import { createNodeWideHarness } from './helpers/driver.js';

const ID = 'spiffe://example.org/ns/default/sa/web';
const built = existsSync(CLI_PATH);

describe.skipIf(!isRoot || !built)('security review findings against the running driver', () => {
  let h: DriverHarness;

  beforeEach(async () => {
    h = await createNodeWideHarness(ID, 5_000);
  });

  afterEach(async () => {
    await h.cleanup();
  });

  it('never writes key material to the node disk after the tmpfs is unmounted, before or after a SIGKILL restart', async () => {
    await h.spawnDriver();
    const pod = KubeletEmulator.pod();
    const volume = await h.kubelet.publish(pod);
    expect(await readdir(volume.targetPath)).toContain('svid_key.pem');

    await unmountUnder(volume.targetPath);
    const seen = h.logLines.length;
    await h.agent.rotateNow();
    await waitFor(() => h.logLines.slice(seen).some((l) => l.includes('not writing until it is mounted again')), {
      message: 'the refused write logged',
    });
    expect(await readdir(volume.targetPath)).toEqual([]);

    await h.killDriver();
    await h.spawnDriver();
    await waitFor(async () => (await mountsUnder(volume.targetPath)).length === 1, { message: 'the tmpfs mounted again' });
    await waitFor(() => existsSync(join(volume.targetPath, 'svid_key.pem')), { message: 'the key on the new tmpfs' });
    // Below the new tmpfs, the node's own directory is still empty.
    await h.killDriver();
    await unmountUnder(volume.targetPath);
    expect(await readdir(volume.targetPath)).toEqual([]);
  });

  it('leaves a planted state record alone: nothing mounted or created outside the kubelet root, nothing deleted', async () => {
    const outside = join(h.root, 'host', 'etc-like');
    await mkdir(outside, { recursive: true });
    await writeFile(join(outside, 'keep.conf'), 'precious');
    const volumeId = 'csi-planted';
    const spec = {
      volumeId,
      targetPath: join(outside, 'mount'),
      pod: { name: 'victim', namespace: 'default', uid: 'planted-uid', serviceAccount: 'web' },
      files: { svid: 'svid.pem', key: 'svid_key.pem', bundle: 'bundle.pem' },
      bundleIncludeFederated: false,
      fsGroup: null,
      spiffeId: null,
      jwtAudiences: [],
      jwtSvidFile: 'jwt-svid.token',
      // Fields a record has no business carrying are ignored, never acted on.
      hostPath: '/',
    };
    await mkdir(join(h.stateDir, 'volumes'), { recursive: true });
    const file = join(h.stateDir, 'volumes', `${createHash('sha256').update(volumeId, 'utf8').digest('hex')}.json`);
    await writeFile(file, JSON.stringify({ version: 1, spec, createdAt: new Date().toISOString() }));

    await h.spawnDriver();
    await waitFor(() => h.logLines.some((l) => l.includes('skipping a volume record that fails the publish checks')), {
      message: 'the planted record reported',
    });
    expect(await mountsUnder(outside)).toEqual([]);
    expect(await readdir(outside)).toEqual(['keep.conf']);
    expect(existsSync(file)).toBe(true);
    // The driver still serves real pods.
    const volume = await h.kubelet.publish(KubeletEmulator.pod());
    expect(await readdir(volume.targetPath)).toContain('svid_key.pem');
  });
});
