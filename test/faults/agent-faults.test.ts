/**
 * Agent outages: the SPIRE agent stops answering and comes back, repeatedly, while 200 volumes are
 * published. No valid credential may disappear while it is down, every SVID stream must resume
 * (a rotation after recovery lands in every volume), and Probe and /readyz must follow the agent.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DriverHarness, isRoot } from '../helpers/driver-harness.js';
import { KubeletEmulator, type PublishedVolume } from '../helpers/kubelet-emulator.js';
import { waitFor } from '../helpers/wait-for.js';
import { createNodeWideHarness, startInProcessDriver, type InProcessDriver } from './helpers/driver.js';
import { checkFolder } from './helpers/folder-check.js';
import { diffState, expectedState, nodeState } from './helpers/node-state.js';
import { rngFor } from './helpers/prng.js';
import { reportFaults } from './helpers/report.js';
import { sleep } from './helpers/retry.js';
import { unmountAllUnder } from './helpers/unmount.js';
import { scaled, testTimeout } from './helpers/soak.js';

const ID = 'spiffe://example.org/ns/default/sa/web';
if (!isRoot) console.warn('[faults] agent fault tests skipped: they mount tmpfs and need root');

describe.skipIf(!isRoot)('agent faults: repeated agent outages under 200 volumes', () => {
  let h: DriverHarness;
  let driver: InProcessDriver | undefined;
  let stateDir: string | undefined;

  beforeEach(async () => {
    h = await createNodeWideHarness(ID, 20_000);
  });

  afterEach(async () => {
    await driver?.stop();
    driver = undefined;
    await unmountAllUnder(h.root);
    await h.cleanup();
    if (stateDir) await rm(stateDir, { recursive: true, force: true });
  });

  it(
    'keeps every credential through outages, resumes every stream, and reports readiness truthfully',
    async () => {
      const rng = rngFor('agent/outages');
      const volumeCount = 200;
      const outages = scaled(2, 20);
      // Records on tmpfs: this test is about the agent, and 200 record fsyncs on a disk-backed tmp would dominate it.
      stateDir = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'spire-csi-state-'));
      driver = await startInProcessDriver({ ...h.config, stateDir, metricsAddress: '127.0.0.1:0' });
      const base = `http://${driver.running.metricsAddress}`;
      const readyz = async (): Promise<number> => (await fetch(`${base}/readyz`)).status;
      const probe = (): Promise<boolean> => h.kubelet.probe();
      await waitFor(async () => (await probe()) && (await readyz()) === 200, { message: 'the driver to be ready' });

      const volumes: PublishedVolume[] = [];
      for (let i = 0; i < volumeCount; i += 25) {
        const batch = Array.from({ length: Math.min(25, volumeCount - i) }, () => h.kubelet.publish(KubeletEmulator.pod()));
        volumes.push(...(await Promise.all(batch)));
      }
      const dataOf = (): Promise<string[]> => Promise.all(volumes.map((v) => readlink(join(v.targetPath, '..data'))));
      const credentialsOf = (): Promise<Buffer[]> => Promise.all(volumes.map((v) => readFile(join(v.targetPath, 'credential-bundle.private-key.x509.pem'))));

      let samples = 0;
      let lost = 0;
      let rotationsLanded = 0;
      const problems: string[] = [];
      for (let outage = 0; outage < outages; outage++) {
        const held = await credentialsOf();
        await h.agent.setAnswering(false);
        await waitFor(async () => !(await probe()) && (await readyz()) === 503, {
          message: `Probe and /readyz to report outage ${outage}`,
        });
        // Sample the files for a while: streams fail and retry underneath, nothing may be removed.
        const outageMs = rng.between(300, 1_500);
        const until = Date.now() + outageMs;
        do {
          const now = await credentialsOf().catch((err: unknown) => {
            problems.push(`outage ${outage}: reading credentials failed: ${(err as Error).message}`);
            return [];
          });
          for (let i = 0; i < now.length; i++) {
            samples++;
            if (!now[i]!.equals(held[i]!)) {
              lost++;
              problems.push(`outage ${outage}: ${volumes[i]!.targetPath} changed while the agent was down`);
            }
          }
          for (const v of rng.shuffle(volumes).slice(0, 5)) {
            await checkFolder(v.targetPath, { spiffeId: ID }).catch((err: unknown) => {
              lost++;
              problems.push(`outage ${outage}: ${(err as Error).message}`);
            });
          }
          await sleep(rng.between(50, 400));
        } while (Date.now() < until);
        if (await probe()) problems.push(`outage ${outage}: Probe said ready while the agent was down`);
        if ((await readyz()) !== 503) problems.push(`outage ${outage}: /readyz said ready while the agent was down`);

        const before = await dataOf();
        await h.agent.setAnswering(true);
        await waitFor(async () => (await probe()) && (await readyz()) === 200, {
          timeoutMs: 60_000,
          message: `Probe and /readyz to recover after outage ${outage}`,
        });
        await h.agent.rotateNow();
        await waitFor(async () => (await dataOf()).every((d, i) => d !== before[i]), {
          timeoutMs: 60_000,
          intervalMs: 100,
          message: `the rotation after outage ${outage} to land in all ${volumeCount} volumes`,
        });
        rotationsLanded += volumeCount;
        if (problems.length > 0) break;
      }

      for (const v of volumes) await checkFolder(v.targetPath, { spiffeId: ID });
      const diff = diffState(await nodeState(h.root, stateDir), expectedState(volumes));
      reportFaults('agent/outages', {
        seed: rng.seed,
        cases: samples,
        faults: outages,
        losses: lost + diff.length,
        notes: { volumes: volumeCount, rotationsLanded },
      });
      expect(problems).toEqual([]);
      expect(diff).toEqual([]);
    },
    testTimeout(180_000, 3_600_000),
  );
});
