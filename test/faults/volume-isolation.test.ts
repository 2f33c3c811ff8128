/**
 * Deterministic reproductions of what the fuzz and fd-pressure tests found: requests that name one
 * volume must never act on another volume's target, and a publish that fails and cannot clean up
 * after itself must tell kubelet to come back (a non-final status), or the leftovers stay forever.
 */
import { existsSync } from 'node:fs';
import { readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CsiError, toCsiError } from '../../driver/src/csi/errors.js';
import { MountError, type Mounter } from '../../driver/src/mount/mounter.js';
import { VolumeHarness } from '../driver/volume-harness.js';
import { DriverHarness, isRoot, mountsUnder } from '../helpers/driver-harness.js';
import { KubeletEmulator } from '../helpers/kubelet-emulator.js';
import { createNodeWideHarness, startInProcessDriver, type InProcessDriver } from './helpers/driver.js';
import { checkFolder } from './helpers/folder-check.js';
import { recordFiles, recordFileOf } from './helpers/node-state.js';
import { grpcCode } from './helpers/retry.js';

const ID = 'spiffe://example.org/ns/default/sa/web';

/** Statuses after which kubelet treats the operation as possibly in progress and calls again. */
const NON_FINAL = new Set<number>([status.CANCELLED, status.DEADLINE_EXCEEDED, status.UNAVAILABLE, status.RESOURCE_EXHAUSTED, status.ABORTED]);

describe.skipIf(!isRoot)('volume isolation: a request never acts on another volume', () => {
  let h: DriverHarness;
  let driver: InProcessDriver | undefined;

  beforeEach(async () => {
    h = await createNodeWideHarness(ID, 1_000);
    driver = await startInProcessDriver(h.config);
  });

  afterEach(async () => {
    await driver?.stop();
    driver = undefined;
    await h.cleanup();
  });

  it('NodeUnpublishVolume with an unknown volume_id leaves the volume published at that target alone', async () => {
    const pod = KubeletEmulator.pod();
    const victim = await h.kubelet.publish(pod);
    const data = await readlink(join(victim.targetPath, '..data'));
    await h.kubelet
      .call('NodeUnpublishVolume', { volume_id: 'csi-not-the-volume-at-this-path', target_path: victim.targetPath })
      .catch((err: unknown) => expect(grpcCode(err)).toBe(status.FAILED_PRECONDITION));
    expect(await mountsUnder(victim.targetPath)).toEqual([victim.targetPath]);
    expect(await recordFiles(h.stateDir)).toContain(recordFileOf(victim.volumeId));
    expect(await readlink(join(victim.targetPath, '..data'))).toBe(data);
    await checkFolder(victim.targetPath, { spiffeId: ID });
  });

  it('NodePublishVolume of another volume_id at a target already published is refused and changes nothing', async () => {
    const pod = KubeletEmulator.pod();
    const victim = await h.kubelet.publish(pod);
    const data = await readlink(join(victim.targetPath, '..data'));
    const request = { ...h.kubelet.publishRequest(pod), volume_id: 'csi-another-volume' };
    const error = await h.kubelet.publishRaw(request).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error, 'a second volume was published into the first one\'s tmpfs').toBeDefined();
    expect([status.ALREADY_EXISTS, status.FAILED_PRECONDITION]).toContain(grpcCode(error));
    expect(await recordFiles(h.stateDir)).toEqual([recordFileOf(victim.volumeId)]);
    expect(await mountsUnder(victim.targetPath)).toEqual([victim.targetPath]);
    expect(await readlink(join(victim.targetPath, '..data'))).toBe(data);
  });
});

describe('a failed publish whose cleanup fails too', () => {
  let v: VolumeHarness;

  beforeEach(async () => {
    v = await VolumeHarness.create();
  });

  afterEach(async () => {
    await v.cleanup();
  });

  it('either leaves nothing behind or answers with a status kubelet retries (not a final one)', async () => {
    await v.serve();
    // Out of file descriptors: mount cannot start, and the cleanup's unmount check cannot either.
    const emfile = (what: string): MountError =>
      new MountError(`${what} failed: spawn EMFILE`, { cause: Object.assign(new Error('spawn EMFILE'), { code: 'EMFILE' }) });
    const mounter: Mounter = {
      mountTmpfs: async (target) => {
        throw emfile(`mounting tmpfs at ${target}`);
      },
      unmount: async (target) => {
        throw emfile(`unmounting ${target}`);
      },
      isMountPoint: async () => false,
    };
    const manager = v.manager({ mounter });
    const spec = await v.spec();
    const error = await manager.publish(spec).then(
      () => undefined,
      (err: unknown) => err,
    );
    // What kubelet would receive: the manager's domain error as the CSI layer maps it.
    const answer = toCsiError(error);
    expect(answer).toBeInstanceOf(CsiError);
    const leftRecord = (await v.store.get(spec.volumeId)) !== undefined;
    const leftDir = existsSync(spec.targetPath);
    if (leftRecord || leftDir) {
      // Kubelet forgets a volume after a final error (and removes only its own folder), so nothing
      // would ever unpublish these leftovers: the status must say "uncertain, call again".
      expect(NON_FINAL.has((answer as CsiError).code), `left record=${leftRecord} dir=${leftDir} but answered ${status[(answer as CsiError).code]}`).toBe(true);
    }
  });
});
