/**
 * Torn reads: workloads read their credential folder at any moment, including mid-rotation. Every
 * snapshot a reader takes (sdk readSnapshot + parseCredentialFiles in reader threads racing the
 * writer, or a FileSource in the test's own thread) must hold one
 * generation: key matching certificate, every bundle anchoring that certificate, identity.json
 * describing it.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileSource, type X509Material } from '@spire-csi/sdk/source';
import { verifyX509Svid } from '@spire-csi/sdk/x509';
import { AtomicWriter } from '../../driver/src/storage/atomic-writer.js';
import { buildPayload } from '../../driver/src/storage/payload.js';
import { DEFAULT_LAYOUT_OPTIONS, DEFAULT_FILES, DEFAULT_JWT_SVID_FILE, type VolumeSpec } from '../../driver/src/volume/volume-spec.js';
import { DriverHarness, isRoot } from '../helpers/driver-harness.js';
import { KubeletEmulator, type PublishedVolume } from '../helpers/kubelet-emulator.js';
import { TestCa } from '../helpers/test-ca.js';
import { waitFor } from '../helpers/wait-for.js';
import { createNodeWideHarness, startInProcessDriver, type InProcessDriver } from './helpers/driver.js';
import { checkLayout } from './helpers/folder-check.js';
import { rngFor } from './helpers/prng.js';
import { emptyTally, type ReadTally } from './helpers/reader-tally.js';
import { ReaderThreads } from './helpers/reader-threads.js';
import { reportFaults } from './helpers/report.js';
import { scaled, testTimeout } from './helpers/soak.js';

const TD = 'example.org';
const ID = `spiffe://${TD}/ns/default/sa/web`;

/** A FileSource's updates must each verify on their own: chain anchored in the bundles delivered with it. */
function watchSource(source: FileSource, tally: ReadTally): void {
  source.on('update', (material: X509Material) => {
    tally.reads++;
    try {
      verifyX509Svid(material.svid.certificates, material.bundles);
    } catch (err) {
      tally.tornCount++;
      tally.torn.push(`FileSource update: ${(err as Error).message}`);
    }
  });
}

describe('torn reads against the AtomicWriter (no mounts)', () => {
  let dir: string;

  beforeEach(async () => {
    // tmpfs like the driver's volumes when available: a disk-backed tmp makes every fsync slow.
    dir = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'spire-csi-torn-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it(
    'never shows a reader a mixed generation while generations from different CAs are swapped in',
    async () => {
      const rng = rngFor('torn-reads/atomic-writer');
      const writes = scaled(80, 3_000);
      const readers = 3;
      // Alternating CAs: a chain from one generation never verifies against another's bundle.
      const cas = await Promise.all([0, 1, 2].map(() => TestCa.create(TD)));
      const generations = await Promise.all(
        Array.from({ length: 6 }, async (_, i) => {
          const ca = cas[i % cas.length]!;
          return { ca, svid: await ca.mint(ID) };
        }),
      );
      const target = join(dir, 'mount');
      const spec: VolumeSpec = {
        volumeId: 'csi-torn',
        targetPath: target,
        pod: { name: 'web', namespace: 'default', uid: 'uid-torn', serviceAccount: 'web' },
        files: DEFAULT_FILES,
        bundleIncludeFederated: false,
        fsGroup: null,
        spiffeId: null,
        jwtAudiences: [],
        jwtSvidFile: DEFAULT_JWT_SVID_FILE,
        ...DEFAULT_LAYOUT_OPTIONS,
      };
      const writer = new AtomicWriter(target);
      const write = async (index: number): Promise<void> => {
        const { ca, svid } = generations[index]!;
        const { files } = buildPayload({
          spec,
          svid: { spiffeId: ID, chainDer: svid.chainDer, keyDer: svid.keyDer },
          bundles: new Map([[TD, ca.rootDer]]),
          federatesWith: [],
          now: new Date(),
        });
        await writer.write(files);
      };
      await mkdir(target);
      await write(0);

      const sourceTally = emptyTally();
      const source = new FileSource(target);
      watchSource(source, sourceTally);
      await source.ready(5_000);
      const readerThreads = await ReaderThreads.start(Array.from({ length: readers }, () => target));
      let tally: ReadTally;
      let previous = 0;
      try {
        for (let i = 0; i < writes; i++) {
          // Never the same generation twice in a row, so every write is a real swap.
          let next = rng.int(generations.length - 1);
          if (next >= previous) next++;
          previous = next;
          await write(next);
          if (rng.chance(0.2)) await new Promise((resolve) => setTimeout(resolve, rng.int(3)));
        }
      } finally {
        tally = await readerThreads.stop();
        await source.close();
      }
      await checkLayout(target);
      reportFaults('torn-reads/atomic-writer', {
        seed: rng.seed,
        cases: tally.reads + sourceTally.reads,
        faults: writes,
        losses: tally.tornCount + sourceTally.tornCount,
        notes: { snapshotReads: tally.reads, fileSourceUpdates: sourceTally.reads, readerRetriesExhausted: tally.exhausted },
      });
      expect(tally.torn).toEqual([]);
      expect(sourceTally.torn).toEqual([]);
      expect(tally.reads).toBeGreaterThan(writes / 4);
    },
    testTimeout(60_000, 900_000),
  );
});

describe.skipIf(!isRoot)('torn reads against the running driver (dev agent rotations, real tmpfs)', () => {
  let h: DriverHarness;
  let driver: InProcessDriver | undefined;

  beforeEach(async () => {
    h = await createNodeWideHarness(ID, 5_000);
  });

  afterEach(async () => {
    await driver?.stop();
    driver = undefined;
    await h.cleanup();
  });

  it(
    'gives every reader a whole generation across SVID and CA rotations',
    async () => {
      const rng = rngFor('torn-reads/driver');
      const rotations = scaled(30, 600);
      driver = await startInProcessDriver(h.config);
      const volumes: PublishedVolume[] = [];
      for (let i = 0; i < 3; i++) volumes.push(await h.kubelet.publish(KubeletEmulator.pod()));

      const sourceTally = emptyTally();
      const sources = volumes.map((v) => new FileSource(v.targetPath));
      for (const source of sources) watchSource(source, sourceTally);
      await Promise.all(sources.map((s) => s.ready(5_000)));

      const readerThreads = await ReaderThreads.start(volumes.map((v) => v.targetPath));
      let tally: ReadTally;
      const kinds = { svid: 0, caRotate: 0, caDrop: 0 };
      let caPending = false;
      try {
        for (let i = 0; i < rotations; i++) {
          const before = await Promise.all(volumes.map((v) => readlink(join(v.targetPath, '..data'))));
          const roll = rng.next();
          // A new CA signs new SVIDs while the bundle holds both roots; dropping the old one changes
          // only the bundle: either half mixed with the other generation fails verification.
          if (caPending && roll < 0.3) {
            await h.agent.dropOldCa();
            caPending = false;
            kinds.caDrop++;
          } else if (!caPending && roll < 0.2) {
            await h.agent.rotateCa();
            caPending = true;
            kinds.caRotate++;
          } else {
            await h.agent.rotateNow();
            kinds.svid++;
          }
          // Every kind of change rewrites every volume: wait for each `..data` to move.
          await waitFor(
            async () => (await Promise.all(volumes.map((v) => readlink(join(v.targetPath, '..data'))))).every((d, j) => d !== before[j]),
            { message: `change ${i} to reach every volume` },
          );
        }
      } finally {
        tally = await readerThreads.stop();
        await Promise.all(sources.map((s) => s.close()));
      }
      // The old payload goes right after the swap, so let the last one finish.
      for (const v of volumes) {
        await waitFor(() => checkLayout(v.targetPath).then(() => true), { timeoutMs: 5_000, message: `${v.targetPath} to settle` });
      }
      reportFaults('torn-reads/driver', {
        seed: rng.seed,
        cases: tally.reads + sourceTally.reads,
        faults: rotations,
        losses: tally.tornCount + sourceTally.tornCount,
        notes: { ...kinds, snapshotReads: tally.reads, fileSourceUpdates: sourceTally.reads, readerRetriesExhausted: tally.exhausted },
      });
      expect(tally.torn).toEqual([]);
      expect(sourceTally.torn).toEqual([]);
    },
    testTimeout(90_000, 1_800_000),
  );
});
