/**
 * Crash consistency: SIGKILL the driver process at seeded random moments while volumes are being
 * published, rotated and unpublished. After each restart, kubelet retries what was interrupted
 * (as it does), and then the node must be exactly as kubelet believes: every published pod's
 * folder valid, no mount and no record more or less than the published volumes.
 */
import { existsSync } from 'node:fs';
import { readlink, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI_PATH, DriverHarness, isRoot, mountsUnder } from '../helpers/driver-harness.js';
import { KubeletEmulator, type EmulatedPod, type PublishedVolume } from '../helpers/kubelet-emulator.js';
import { waitFor } from '../helpers/wait-for.js';
import { createNodeWideHarness } from './helpers/driver.js';
import { checkFolder, checkLayout } from './helpers/folder-check.js';
import { diffState, expectedState, nodeState } from './helpers/node-state.js';
import { rngFor } from './helpers/prng.js';
import { reportFaults } from './helpers/report.js';
import { retryLikeKubelet, sleep } from './helpers/retry.js';
import { scaled, testTimeout } from './helpers/soak.js';

const ID = 'spiffe://example.org/ns/default/sa/web';
const built = existsSync(CLI_PATH);
if (isRoot && !built) console.warn(`[faults] crash tests skipped: ${CLI_PATH} is missing; run \`npm run build\` first`);
if (!isRoot) console.warn('[faults] crash tests skipped: they mount tmpfs and need root');

interface Tracked {
  readonly pod: EmulatedPod;
  readonly volume: PublishedVolume;
}

describe.skipIf(!isRoot || !built)('crash consistency: SIGKILL during publish, rotation and unpublish', () => {
  let h: DriverHarness;
  const archivedLogs: string[] = [];

  beforeEach(async () => {
    h = await createNodeWideHarness(ID, 5_000);
  });

  afterEach(async () => {
    await h.cleanup();
  });

  /** spawnDriver waits for a "serving" log line; old runs' lines must not satisfy it. */
  async function restart(): Promise<void> {
    archivedLogs.push(...h.logLines.splice(0));
    await h.spawnDriver();
  }

  it(
    'loses no volume and leaks no mount or record across seeded SIGKILLs',
    async () => {
      const rng = rngFor('crash/sigkill');
      const cycles = scaled(8, 150);
      const published = new Map<string, Tracked>();
      const unpublishing = new Map<string, Tracked>();
      const kinds = { publish: 0, unpublish: 0, rotate: 0 };
      let losses = 0;
      let opsInterrupted = 0;
      let checkedFolders = 0;
      const problems: string[] = [];

      await h.spawnDriver();
      // Calibrate the kill window on this machine: how long a publish takes end to end.
      const started = performance.now();
      for (let i = 0; i < 2; i++) {
        const pod = KubeletEmulator.pod();
        published.set(pod.uid, { pod, volume: await h.kubelet.publish(pod) });
      }
      // Kills land anywhere within about one publish time of the ops starting.
      const window = Math.max(50, Math.round((performance.now() - started) / 2));

      for (let cycle = 0; cycle < cycles; cycle++) {
        // Settled at once: a call cut off by the kill must not surface as an unhandled rejection.
        const inFlight: Promise<boolean>[] = [];
        const track = (op: Promise<unknown>): number => inFlight.push(op.then(() => true, () => false));
        const opCount = rng.between(1, 3);
        for (let k = 0; k < opCount; k++) {
          const roll = rng.next();
          if ((roll < 0.45 && published.size < 8) || published.size < 2) {
            const pod = KubeletEmulator.pod();
            const tracked = { pod, volume: h.kubelet.volumeFor(pod) };
            // Kubelet regards the volume as wanted from the first attempt: it retries until success.
            published.set(pod.uid, tracked);
            track(h.kubelet.publish(pod));
            kinds.publish++;
          } else if (roll < 0.75) {
            const victim = rng.pick([...published.values()]);
            published.delete(victim.pod.uid);
            unpublishing.set(victim.pod.uid, victim);
            track(h.kubelet.unpublish(victim.volume));
            kinds.unpublish++;
          } else {
            track(h.agent.rotateNow());
            kinds.rotate++;
          }
        }
        await sleep(rng.int(window));
        await h.killDriver('SIGKILL');
        opsInterrupted += (await Promise.all(inFlight)).filter((ok) => !ok).length;

        await restart();
        // Kubelet's retries of whatever did not finish (idempotent when it did).
        for (const t of published.values()) {
          await retryLikeKubelet(`publish ${t.pod.uid}`, () => h.kubelet.publish(t.pod));
        }
        for (const [uid, t] of unpublishing) {
          await retryLikeKubelet(`unpublish ${uid}`, () => h.kubelet.unpublish(t.volume));
          // Kubelet deletes the pod folder only when nothing is mounted in it any more.
          const podDir = join(h.kubeletRoot, 'pods', uid);
          const left = await mountsUnder(podDir);
          if (left.length > 0) problems.push(`cycle ${cycle}: ${left.join(', ')} still mounted after unpublish`);
          else await rm(podDir, { recursive: true, force: true });
          unpublishing.delete(uid);
        }

        const diff = diffState(await nodeState(h.root, h.stateDir), expectedState([...published.values()].map((t) => t.volume)));
        if (diff.length > 0) {
          losses += diff.length;
          problems.push(`cycle ${cycle}: ${diff.join('; ')}`);
        }
        for (const t of published.values()) {
          try {
            await checkFolder(t.volume.targetPath, { spiffeId: ID });
            // A restarted session rewrites its folder, which also clears payloads a kill left half-written.
            await waitFor(() => checkLayout(t.volume.targetPath).then(() => true), { timeoutMs: 5_000, message: 'a settled layout' });
            checkedFolders++;
          } catch (err) {
            losses++;
            problems.push(`cycle ${cycle}: ${t.volume.targetPath}: ${(err as Error).message}`);
          }
        }
        if (problems.length > 0) break;
      }

      // Every stream came back: one more rotation reaches every surviving volume.
      if (problems.length === 0) {
        const before = await Promise.all([...published.values()].map((t) => readlink(join(t.volume.targetPath, '..data'))));
        await h.agent.rotateNow();
        await waitFor(
          async () =>
            (await Promise.all([...published.values()].map((t) => readlink(join(t.volume.targetPath, '..data'))))).every(
              (d, i) => d !== before[i],
            ),
          { message: 'a rotation after the last restart to reach every volume' },
        );
      }

      reportFaults('crash/sigkill', {
        seed: rng.seed,
        cases: kinds.publish + kinds.unpublish + kinds.rotate,
        faults: cycles,
        losses,
        notes: { ...kinds, opsInterrupted, foldersChecked: checkedFolders, killWindowMs: window },
      });
      if (problems.length > 0) console.error(`[faults] crash problems:\n${problems.join('\n')}\nlast driver log:\n${h.logLines.slice(-40).join('\n')}`);
      expect(problems).toEqual([]);
    },
    testTimeout(150_000, 3_600_000),
  );
});
