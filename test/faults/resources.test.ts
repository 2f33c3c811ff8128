/**
 * Resource faults: a volume's tmpfs filled up from outside, a read-only state folder, and a driver
 * process starved of file descriptors. The driver must fail cleanly (a gRPC status that says why),
 * keep the last good files in every running volume, and recover once the resource is back.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { open, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { status } from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI_PATH, DriverHarness, isRoot, mountsUnder } from '../helpers/driver-harness.js';
import { KubeletEmulator, type EmulatedPod, type PublishedVolume } from '../helpers/kubelet-emulator.js';
import { waitFor } from '../helpers/wait-for.js';
import { createNodeWideHarness, startInProcessDriver, type InProcessDriver } from './helpers/driver.js';
import { checkFolder, checkLayout } from './helpers/folder-check.js';
import { diffState, expectedState, nodeState, recordFileOf } from './helpers/node-state.js';
import { rngFor } from './helpers/prng.js';
import { reportFaults } from './helpers/report.js';
import { grpcCode, retryLikeKubelet } from './helpers/retry.js';
import { scaled, testTimeout } from './helpers/soak.js';

const run = promisify(execFile);
const ID = 'spiffe://example.org/ns/default/sa/web';
const built = existsSync(CLI_PATH);
if (!isRoot) console.warn('[faults] resource fault tests skipped: they mount tmpfs and need root');
else if (!built) console.warn(`[faults] the fd-pressure test is skipped: ${CLI_PATH} is missing; run \`npm run build\` first`);

/** A clean failure is a real gRPC status that explains itself; UNKNOWN means something escaped unmapped. */
function cleanFailure(err: unknown): string | undefined {
  const code = grpcCode(err);
  const details = (err as { details?: unknown }).details;
  if (code === undefined) return `not a gRPC error: ${String(err)}`;
  if (code === status.UNKNOWN || code === status.OK) return `status ${status[code]}: ${String(details)}`;
  if (typeof details !== 'string' || details.length < 10) return `status ${status[code]} without an explanation`;
  return undefined;
}

/** Statuses after which kubelet treats a publish as possibly in progress and calls again. */
const NON_FINAL = new Set<number>([status.CANCELLED, status.DEADLINE_EXCEEDED, status.UNAVAILABLE, status.RESOURCE_EXHAUSTED, status.ABORTED]);

const dataOf = (v: PublishedVolume): Promise<string> => readlink(join(v.targetPath, '..data'));

describe.skipIf(!isRoot)('resource faults', () => {
  let h: DriverHarness;
  let driver: InProcessDriver | undefined;
  const bindMounts: string[] = [];

  beforeEach(async () => {
    h = await createNodeWideHarness(ID, 5_000);
  });

  afterEach(async () => {
    await driver?.stop();
    driver = undefined;
    for (const point of bindMounts.splice(0)) await run('umount', ['-l', point]).catch(() => undefined);
    await h.cleanup();
  });

  it(
    'keeps the last good files when the tmpfs is full, says why, and recovers when space returns',
    async () => {
      const rng = rngFor('resources/tmpfs-full');
      const rounds = scaled(2, 25);
      driver = await startInProcessDriver(h.config);
      const volume = await h.kubelet.publish(KubeletEmulator.pod());
      let faults = 0;
      let losses = 0;
      for (let round = 0; round < rounds; round++) {
        const good = await checkFolder(volume.targetPath, { spiffeId: ID });
        const goodData = await dataOf(volume);
        // Fill the pod's tmpfs from outside, as a process in the pod could: big chunks, then small ones.
        const filler = join(volume.targetPath, `.filler-${round}`);
        const handle = await open(filler, 'w');
        try {
          for (const chunk of [1 << 16, 4096, rng.between(1, 512)]) {
            const block = Buffer.alloc(chunk, 0x5a);
            for (;;) {
              try {
                await handle.write(block);
              } catch (err) {
                if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
                throw err;
              }
            }
          }
        } finally {
          await handle.close();
        }
        const failuresBefore = driver.logsMatching(/delivering the identity failed/).length;
        const rotations = rng.between(1, 3);
        for (let r = 0; r < rotations; r++) {
          await h.agent.rotateNow();
          faults++;
        }
        await waitFor(() => driver!.logsMatching(/delivering the identity failed/).length > failuresBefore, {
          message: 'the driver to report the failed write',
        });
        const failure = driver.logsMatching(/delivering the identity failed/).at(-1)!;
        expect(failure).toMatch(/ENOSPC|no space/i);
        // The pod still reads the last good generation, whole.
        const kept = await checkFolder(volume.targetPath, { spiffeId: ID });
        if (kept.serial !== good.serial || (await dataOf(volume)) !== goodData) losses++;
        // No half-written payload left behind to eat the space further. A later rotation (or the
        // driver's retry) may be mid-attempt right now, so wait for the attempt to be discarded.
        const payloads = async (): Promise<string[]> => (await readdir(volume.targetPath)).filter((n) => n.startsWith('..') && n !== '..data');
        await waitFor(async () => JSON.stringify(await payloads()) === JSON.stringify([goodData]), {
          timeoutMs: 5_000,
          message: `only the good payload ${goodData} to remain (a failed attempt must be discarded)`,
        });

        await rm(filler);
        // The driver retries on its own (backoff); no new rotation is needed to recover.
        await waitFor(async () => (await checkFolder(volume.targetPath, { spiffeId: ID })).serial !== good.serial, {
          timeoutMs: 40_000,
          intervalMs: 100,
          message: 'the driver to write the pending rotation once space is back',
        });
        await waitFor(() => checkLayout(volume.targetPath).then(() => true), { timeoutMs: 5_000, message: 'the old payload to go' });
      }
      reportFaults('resources/tmpfs-full', { seed: rng.seed, cases: rounds, faults, losses });
      expect(losses).toBe(0);
    },
    testTimeout(90_000, 1_800_000),
  );

  it(
    'fails publishes cleanly with a read-only state folder and leaves nothing behind',
    async () => {
      const rng = rngFor('resources/state-read-only');
      driver = await startInProcessDriver(h.config);
      const running = await h.kubelet.publish(KubeletEmulator.pod());
      const runningData = await dataOf(running);

      // The state folder becomes read-only under the running driver.
      await run('mount', ['--bind', h.stateDir, h.stateDir]);
      bindMounts.push(h.stateDir);
      await run('mount', ['-o', 'remount,bind,ro', h.stateDir]);

      const attempts = scaled(rng.between(3, 6), 60);
      const unclean: string[] = [];
      for (let i = 0; i < attempts; i++) {
        const pod = KubeletEmulator.pod();
        const error = await h.kubelet.publish(pod).then(
          () => undefined,
          (err: unknown) => err,
        );
        if (error === undefined) {
          unclean.push(`publish of ${pod.uid} succeeded without a writable state folder`);
          continue;
        }
        const problem = cleanFailure(error);
        if (problem) unclean.push(problem);
        expect((error as { details: string }).details).toMatch(/read-only/);
        const volume = h.kubelet.volumeFor(pod);
        if (existsSync(volume.targetPath)) unclean.push(`${volume.targetPath} was left behind`);
      }
      expect(unclean).toEqual([]);
      // Nothing but the running volume is mounted or recorded; it keeps its files and rotations.
      expect(diffState(await nodeState(h.kubeletRoot, h.stateDir), expectedState([running]))).toEqual([]);
      await h.agent.rotateNow();
      await waitFor(async () => (await dataOf(running)) !== runningData, { message: 'a rotation to reach the running volume' });
      await checkFolder(running.targetPath, { spiffeId: ID });

      // Unpublish cannot drop the record: it must say so, and succeed when kubelet retries later.
      const unpublishError = await h.kubelet.unpublish(running).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(unpublishError, 'unpublish should report that the record could not be removed').toBeDefined();
      expect(cleanFailure(unpublishError)).toBeUndefined();
      await run('umount', [h.stateDir]);
      bindMounts.splice(0);
      await retryLikeKubelet('unpublish after the state folder is writable', () => h.kubelet.unpublish(running));
      expect(diffState(await nodeState(h.root, h.stateDir), expectedState([]))).toEqual([]);
      reportFaults('resources/state-read-only', { seed: rng.seed, cases: attempts + 1, faults: attempts + 1, losses: 0 });
    },
    testTimeout(60_000, 600_000),
  );

  it.skipIf(!built)(
    'survives file-descriptor exhaustion with clean errors, intact volumes and full recovery',
    async () => {
      const rng = rngFor('resources/fd-pressure');
      const child = await h.spawnDriver();
      const pid = child.pid!;
      const existing: { pod: EmulatedPod; volume: PublishedVolume }[] = [];
      for (let i = 0; i < 3; i++) {
        const pod = KubeletEmulator.pod();
        existing.push({ pod, volume: await h.kubelet.publish(pod) });
      }
      // Warm the CSI connection so the squeeze hits the driver's own work, not kubelet's dial.
      await h.kubelet.probe();
      const limits = await readFile(`/proc/${pid}/limits`, 'utf8');
      const original = /Max open files\s+(\d+)\s+(\d+)/.exec(limits)!;
      const rounds = scaled(2, 30);
      let attempts = 0;
      let failures = 0;
      const unclean: string[] = [];
      const wanted = new Map(existing.map((e) => [e.pod.uid, e]));
      const published = new Set(existing.map((e) => e.volume));
      let leftovers = 0;
      for (let round = 0; round < rounds; round++) {
        const open = (await readdir(`/proc/${pid}/fd`)).length;
        const limit = open + rng.between(0, 40);
        // Only the soft limit: raising a lowered hard limit again needs CAP_SYS_RESOURCE.
        await run('prlimit', ['--pid', String(pid), `--nofile=${limit}:${original[2]}`]);
        const burst = rng.between(8, 16);
        const pods = Array.from({ length: burst }, () => KubeletEmulator.pod());
        for (const pod of pods) wanted.set(pod.uid, { pod, volume: h.kubelet.volumeFor(pod) });
        const outcomes = await Promise.all(
          pods.map((pod) =>
            h.kubelet.publish(pod).then(
              () => undefined,
              (err: unknown) => err,
            ),
          ),
        );
        // Rotations under pressure too: a failed write must keep the old files.
        await h.agent.rotateNow();
        attempts += burst;
        const state = await nodeState(h.root, h.stateDir);
        for (const [i, outcome] of outcomes.entries()) {
          const volume = h.kubelet.volumeFor(pods[i]!);
          if (outcome === undefined) {
            published.add(volume);
            continue;
          }
          failures++;
          const problem = cleanFailure(outcome);
          if (problem) unclean.push(problem);
          // Kubelet forgets a volume after a final status, so a failed publish must either clean up
          // after itself or answer with a status after which kubelet calls again.
          const left = [
            state.mounts.includes(volume.targetPath) ? 'mount' : '',
            state.records.includes(recordFileOf(volume.volumeId)) ? 'record' : '',
            existsSync(volume.targetPath) ? 'folder' : '',
          ].filter(Boolean);
          if (left.length > 0) {
            leftovers++;
            const code = grpcCode(outcome) ?? status.UNKNOWN;
            if (!NON_FINAL.has(code)) {
              unclean.push(`round ${round}: a failed publish left ${left.join('+')} but answered ${status[code]} (final): ${String((outcome as { details?: string }).details)}`);
            }
          }
        }
        const lost = diffState(state, expectedState(published)).filter((d) => d.includes('lost'));
        if (lost.length > 0) unclean.push(`round ${round}: ${lost.join('; ')}`);
        expect(child.exitCode, `driver died under fd pressure:\n${h.logLines.slice(-30).join('\n')}`).toBeNull();
        for (const { volume } of existing) await checkFolder(volume.targetPath, { spiffeId: ID });

        await run('prlimit', ['--pid', String(pid), `--nofile=${original[1]}:${original[2]}`]);
        // Kubelet retries every failed publish once the pressure is gone.
        for (const { pod, volume } of wanted.values()) {
          await retryLikeKubelet(`publish ${pod.uid}`, () => h.kubelet.publish(pod));
          published.add(volume);
        }
      }
      const volumes = [...wanted.values()].map((w) => w.volume);
      const before = await Promise.all(volumes.map(dataOf));
      await h.agent.rotateNow();
      await waitFor(async () => (await Promise.all(volumes.map(dataOf))).every((d, i) => d !== before[i]), {
        timeoutMs: 40_000,
        message: 'a rotation to reach every volume after the pressure',
      });
      for (const v of volumes) await checkFolder(v.targetPath, { spiffeId: ID });
      const diff = diffState(await nodeState(h.root, h.stateDir), expectedState(volumes));
      expect(await mountsUnder(h.root)).toHaveLength(volumes.length);
      reportFaults('resources/fd-pressure', {
        seed: rng.seed,
        cases: attempts,
        faults: rounds,
        losses: diff.length,
        notes: { publishFailuresUnderPressure: failures, leftoversAfterFailure: leftovers, unclean: unclean.length },
      });
      expect(unclean).toEqual([]);
      expect(diff).toEqual([]);
    },
    testTimeout(90_000, 1_800_000),
  );
});
