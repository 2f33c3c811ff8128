/**
 * Bad input fuzz (seeded): NodePublishVolume and NodeUnpublishVolume requests with every field
 * mutated: hostile strings, unicode, huge values, missing keys, wrong types, path tricks, symlinks
 * on disk, damaged protobuf. Each case either succeeds or fails with a clean gRPC status, and
 * leaves no side effect: no new path under kubelet's root, no mount, no record, and a bystander
 * pod's volume untouched.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, readlink, rm, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DriverHarness, isRoot, mountsUnder } from '../helpers/driver-harness.js';
import { KubeletEmulator, type EmulatedPod, type PublishedVolume } from '../helpers/kubelet-emulator.js';
import { createNodeWideHarness, startInProcessDriver, type InProcessDriver } from './helpers/driver.js';
import { checkFolder } from './helpers/folder-check.js';
import { asciiWord, hostileString, mutateBytes, mutateString, wrongType } from './helpers/fuzz-values.js';
import { nodeState, recordFileOf, treeOf, type NodeState } from './helpers/node-state.js';
import type { Rng } from './helpers/prng.js';
import { rngFor } from './helpers/prng.js';
import { RawCsiClient } from './helpers/raw-csi-client.js';
import { reportFaults } from './helpers/report.js';
import { grpcCode } from './helpers/retry.js';
import { scaled, testTimeout } from './helpers/soak.js';

const ID = 'spiffe://example.org/ns/default/sa/web';
if (!isRoot) console.warn('[faults] fuzz tests skipped: accepted requests mount tmpfs, which needs root');

/** Statuses that say "your request is wrong" (or, for a valid one, "not now"). */
const CLEAN = new Set<number>([
  status.INVALID_ARGUMENT,
  status.ALREADY_EXISTS,
  status.FAILED_PRECONDITION,
  status.NOT_FOUND,
  status.OUT_OF_RANGE,
  status.DEADLINE_EXCEEDED,
  status.RESOURCE_EXHAUSTED,
]);

type Request = Record<string, unknown> & { volume_context?: Record<string, unknown> | null };

interface Outcome {
  readonly ok: boolean;
  readonly code?: number;
  readonly details?: string;
  /** The client refused to encode the request: it never reached the driver. */
  readonly clientSide?: boolean;
}

function outcomeOf(err: unknown): Outcome {
  const details = String((err as { details?: unknown }).details ?? (err as Error).message);
  return { ok: false, code: grpcCode(err), details, clientSide: /serialization failure/i.test(details) };
}

function isClean(outcome: Outcome, rawWire: boolean): boolean {
  if (outcome.ok || outcome.clientSide) return true;
  if (outcome.code === undefined) return false;
  // grpc-js answers INTERNAL itself for bytes that do not decode; the driver never saw them.
  if (rawWire && outcome.code === status.INTERNAL && /^Error deserializing request/.test(outcome.details ?? '')) return true;
  return CLEAN.has(outcome.code);
}

interface World {
  readonly h: DriverHarness;
  readonly bystander: PublishedVolume;
  readonly bystanderPod: EmulatedPod;
  readonly outside: string;
}

interface Snapshot {
  readonly tree: string[];
  readonly state: NodeState;
}

async function snapshot(w: World): Promise<Snapshot> {
  return {
    tree: await treeOf(w.h.kubeletRoot, new Set([w.bystander.targetPath])),
    state: await nodeState(w.h.root, w.h.stateDir),
  };
}

function describeDiff(before: Snapshot, after: Snapshot): string[] {
  const out: string[] = [];
  const added = after.tree.filter((p) => !before.tree.includes(p));
  const removed = before.tree.filter((p) => !after.tree.includes(p));
  if (added.length > 0) out.push(`created ${added.slice(0, 5).join(', ')}`);
  if (removed.length > 0) out.push(`removed ${removed.slice(0, 5).join(', ')}`);
  if (JSON.stringify(after.state.mounts) !== JSON.stringify(before.state.mounts)) {
    out.push(`mounts ${JSON.stringify(before.state.mounts)} -> ${JSON.stringify(after.state.mounts)}`);
  }
  if (JSON.stringify(after.state.records) !== JSON.stringify(before.state.records)) {
    out.push(`records ${before.state.records.length} -> ${after.state.records.length}`);
  }
  return out;
}

/** Removed entirely: no mount, no record, no folder (anything partial is a problem). */
async function bystanderGone(w: World, after: Snapshot): Promise<boolean> {
  return (
    !after.state.mounts.includes(w.bystander.targetPath) &&
    !after.state.records.includes(recordFileOf(w.bystander.volumeId)) &&
    !after.tree.includes(`${w.bystander.targetPath}/`)
  );
}

/** The bystander keeps its mount, its record and valid files whatever another request did. */
async function bystanderProblem(w: World, full: boolean): Promise<string | undefined> {
  const mounts = await mountsUnder(w.bystander.targetPath);
  if (mounts.length !== 1) return `bystander mounts: ${JSON.stringify(mounts)}`;
  const state = await nodeState(w.h.root, w.h.stateDir);
  if (!state.records.includes(recordFileOf(w.bystander.volumeId))) return 'bystander record is gone';
  try {
    if (full) await checkFolder(w.bystander.targetPath, { spiffeId: ID });
    else await readlink(join(w.bystander.targetPath, '..data'));
  } catch (err) {
    return `bystander folder: ${(err as Error).message}`;
  }
  return undefined;
}

/** Mutations of a kubelet-shaped publish request; some also arrange the disk (symlinks). */
type Mutation = (rng: Rng, req: Request, pod: EmulatedPod, w: World, home: PublishedVolume) => Promise<string> | string;

const setContext = (req: Request, key: string, value: unknown): void => {
  req.volume_context = { ...(req.volume_context ?? {}), [key]: value };
};

const SPIRE_KEYS = ['svid-file', 'key-file', 'bundle-file', 'bundle-include-federated', 'fs-group', 'spiffe-id', 'jwt-audiences', 'jwt-svid-file'];
const POD_KEYS = [
  'csi.storage.k8s.io/pod.name',
  'csi.storage.k8s.io/pod.namespace',
  'csi.storage.k8s.io/pod.uid',
  'csi.storage.k8s.io/serviceAccount.name',
  'csi.storage.k8s.io/ephemeral',
];

const volumeDirOf = (targetPath: string): string => dirname(targetPath);

const PUBLISH_MUTATIONS: Record<string, Mutation> = {
  'volume_id hostile': (rng, req) => {
    req.volume_id = hostileString(rng);
    return 'volume_id';
  },
  'volume_id mutated': (rng, req) => {
    req.volume_id = mutateString(rng, String(req.volume_id));
    return 'volume_id';
  },
  'volume_id wrong type': (rng, req) => {
    req.volume_id = wrongType(rng);
    return 'volume_id';
  },
  'volume_id of the bystander': (_rng, req, _pod, w) => {
    req.volume_id = w.bystander.volumeId;
    return 'volume_id';
  },
  'target_path hostile': (rng, req) => {
    req.target_path = hostileString(rng);
    return 'target_path';
  },
  'target_path mutated': (rng, req) => {
    req.target_path = mutateString(rng, String(req.target_path));
    return 'target_path';
  },
  'target_path of the bystander': (_rng, req, _pod, w) => {
    req.target_path = w.bystander.targetPath;
    return 'target_path';
  },
  'target_path in the bystander pod': (_rng, req, _pod, w) => {
    req.target_path = w.bystander.targetPath.replace('/spiffe/mount', '/other/mount');
    return 'target_path';
  },
  'target_path beside the kubelet root': (_rng, req, _pod, w) => {
    req.target_path = String(req.target_path).replace(w.h.kubeletRoot, `${w.h.kubeletRoot}-evil`);
    return 'target_path';
  },
  'target_path of another volume name': (rng, req) => {
    req.target_path = String(req.target_path).replace('/spiffe/mount', `/${asciiWord(rng, 12)}/mount`);
    return 'target_path';
  },
  'target_path with extra slashes': (_rng, req) => {
    req.target_path = String(req.target_path).replace('/volumes/', '//volumes///') + '/';
    return 'target_path';
  },
  // Disk tricks arrange kubelet's own path for the pod (whatever target_path says by now).
  'volume folder is a symlink out of the root': async (_rng, _req, _pod, w, home) => {
    const dir = volumeDirOf(home.targetPath);
    await rm(dir, { recursive: true, force: true });
    await symlink(w.outside, dir).catch(() => undefined);
    return 'symlink';
  },
  'mount entry is a symlink out of the root': async (_rng, _req, _pod, w, home) => {
    await symlink(w.outside, home.targetPath).catch(() => undefined);
    return 'symlink';
  },
  'mount entry is a symlink to the bystander': async (_rng, _req, _pod, w, home) => {
    await symlink(w.bystander.targetPath, home.targetPath).catch(() => undefined);
    return 'symlink';
  },
  'volume folder is a symlink to the bystander volume': async (_rng, _req, _pod, w, home) => {
    const dir = volumeDirOf(home.targetPath);
    await rm(dir, { recursive: true, force: true });
    await symlink(volumeDirOf(w.bystander.targetPath), dir).catch(() => undefined);
    return 'symlink';
  },
  'pod folder is a symlink to the bystander pod': async (_rng, _req, pod, w) => {
    const podDir = join(w.h.kubeletRoot, 'pods', pod.uid);
    await rm(podDir, { recursive: true, force: true });
    await symlink(join(w.h.kubeletRoot, 'pods', w.bystanderPod.uid), podDir).catch(() => undefined);
    return 'symlink';
  },
  'volume_capability dropped': (rng, req) => {
    req.volume_capability = rng.pick<unknown>([null, undefined, {}]);
    return 'volume_capability';
  },
  'volume_capability block': (_rng, req) => {
    req.volume_capability = { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
    return 'volume_capability';
  },
  'access mode odd': (rng, req) => {
    const cap = (typeof req.volume_capability === 'object' && req.volume_capability !== null ? req.volume_capability : {}) as Record<string, unknown>;
    req.volume_capability = cap;
    cap.access_mode = rng.pick<unknown>([null, {}, { mode: 99 }, { mode: 'MULTI_NODE_MULTI_WRITER' }, { mode: 'UNKNOWN' }, { mode: 0 }]);
    return 'volume_capability';
  },
  'mount fields hostile': (rng, req) => {
    const cap = (typeof req.volume_capability === 'object' && req.volume_capability !== null ? req.volume_capability : {}) as Record<string, unknown>;
    req.volume_capability = cap;
    cap.mount = {
      fs_type: hostileString(rng),
      mount_flags: Array.from({ length: rng.between(0, 4) }, () => rng.pick(['rw', 'exec', 'suid', 'dev', '--bind', 'remount', hostileString(rng)])),
      volume_mount_group: rng.chance(0.5) ? hostileString(rng) : String(rng.pick([-1, 0, 7, 65534, 2 ** 31, 2 ** 32])),
    };
    return 'volume_capability';
  },
  'readonly not true': (rng, req) => {
    req.readonly = rng.pick<unknown>([false, undefined, null, 0, 'true']);
    return 'readonly';
  },
  'volume_context dropped': (rng, req) => {
    req.volume_context = rng.pick<Record<string, unknown> | null | undefined>([null, undefined, {}]);
    return 'volume_context';
  },
  'pod key missing': (rng, req) => {
    const ctx = { ...(req.volume_context ?? {}) };
    delete ctx[rng.pick(POD_KEYS)];
    req.volume_context = ctx;
    return 'volume_context';
  },
  'pod key hostile': (rng, req) => {
    setContext(req, rng.pick(POD_KEYS), hostileString(rng));
    return 'volume_context';
  },
  'pod uid of the bystander': (_rng, req, _pod, w) => {
    setContext(req, 'csi.storage.k8s.io/pod.uid', w.bystanderPod.uid);
    return 'volume_context';
  },
  'spire attribute hostile': (rng, req) => {
    setContext(req, `csi.spire.io/${rng.pick(SPIRE_KEYS)}`, hostileString(rng));
    return 'volume_context';
  },
  'spire file names collide or are reserved': (rng, req) => {
    const name = rng.pick(['svid.pem', 'bundle.pem', 'credential-bundle.pem', 'identity.json', 'x.spiffe-trust-bundle.pem', '..data', 'a'.repeat(256)]);
    setContext(req, `csi.spire.io/${rng.pick(['svid-file', 'key-file', 'bundle-file'])}`, name);
    return 'volume_context';
  },
  'spire attribute benign': (rng, req) => {
    const choice = rng.pick([
      ['svid-file', 'tls.crt'],
      ['key-file', 'tls.key'],
      ['bundle-file', 'ca.crt'],
      ['bundle-include-federated', 'true'],
      ['fs-group', String(rng.between(0, 65534))],
    ] as const);
    setContext(req, `csi.spire.io/${choice[0]}`, choice[1]);
    return 'volume_context';
  },
  'spire attribute unknown': (rng, req) => {
    setContext(req, `csi.spire.io/${asciiWord(rng, 12)}`, hostileString(rng));
    return 'volume_context';
  },
  'foreign context key': (rng, req) => {
    setContext(req, rng.chance(0.5) ? hostileString(rng) || 'k' : `example.com/${asciiWord(rng)}`, hostileString(rng));
    return 'volume_context';
  },
  'context value wrong type': (rng, req) => {
    setContext(req, rng.pick([...POD_KEYS, 'csi.spire.io/fs-group']), wrongType(rng));
    return 'volume_context';
  },
  'spiffe-id another workload': (rng, req) => {
    setContext(req, 'csi.spire.io/spiffe-id', `spiffe://example.org/${asciiWord(rng, 10)}`);
    return 'volume_context';
  },
  'secrets and extras': (rng, req) => {
    req.secrets = { [asciiWord(rng)]: hostileString(rng) };
    req.publish_context = { [asciiWord(rng)]: hostileString(rng) };
    req.staging_target_path = hostileString(rng);
    return 'extras';
  },
};

const DISK_MUTATIONS = new Set([
  'volume folder is a symlink out of the root',
  'mount entry is a symlink out of the root',
  'mount entry is a symlink to the bystander',
  'volume folder is a symlink to the bystander volume',
  'pod folder is a symlink to the bystander pod',
]);

describe.skipIf(!isRoot)('bad input fuzz against the running driver', () => {
  let h: DriverHarness;
  let driver: InProcessDriver | undefined;
  let raw: RawCsiClient | undefined;
  let world: World;

  beforeEach(async () => {
    // Accepted requests naming an SVID nobody has time out: keep that short.
    h = await createNodeWideHarness(ID, 800);
    driver = await startInProcessDriver(h.config);
    const bystanderPod = KubeletEmulator.pod();
    const bystander = await h.kubelet.publish(bystanderPod);
    const outside = join(h.root, 'outside');
    await mkdir(outside);
    world = { h, bystander, bystanderPod, outside };
  });

  afterEach(async () => {
    raw?.close();
    raw = undefined;
    await driver?.stop();
    driver = undefined;
    await h.cleanup();
  });

  /** Removes a case's pod folder (never through a mount) and anything left in the outside folder. */
  async function clearCase(pod: EmulatedPod): Promise<void> {
    const podDir = join(h.kubeletRoot, 'pods', pod.uid);
    if ((await mountsUnder(podDir)).length === 0) await rm(podDir, { recursive: true, force: true });
    await rm(world.outside, { recursive: true, force: true });
    await mkdir(world.outside);
  }

  interface Tally {
    cases: number;
    accepted: number;
    rejected: Record<string, number>;
    clientSide: number;
    bystanderUnpublished: number;
    /** Cases with at least one problem. */
    badCases: number;
    problems: string[];
  }

  const newTally = (): Tally => ({ cases: 0, accepted: 0, rejected: {}, clientSide: 0, bystanderUnpublished: 0, badCases: 0, problems: [] });

  /**
   * Runs one request: records the outcome, undoes an accepted publish the way kubelet would, and
   * checks that nothing else changed.
   */
  async function runCase(
    tally: Tally,
    label: string,
    send: () => Promise<unknown>,
    undo: (() => Promise<unknown>) | undefined,
    rawWire = false,
    /** An unpublish naming the bystander's own volume_id may remove that volume, entirely. */
    namesBystander = false,
  ): Promise<void> {
    const before = await snapshot(world);
    const problemsBefore = tally.problems.length;
    const outcome: Outcome = await send().then(
      () => ({ ok: true }),
      (err: unknown) => outcomeOf(err),
    );
    tally.cases++;
    if (outcome.clientSide) tally.clientSide++;
    else if (outcome.ok) tally.accepted++;
    else {
      const name = status[outcome.code ?? status.UNKNOWN] ?? String(outcome.code);
      tally.rejected[name] = (tally.rejected[name] ?? 0) + 1;
    }
    if (!isClean(outcome, rawWire)) {
      tally.problems.push(`${label}: unclean ${status[outcome.code ?? 2]}: ${outcome.details?.slice(0, 300)}`);
    }
    if (outcome.ok && undo !== undefined) {
      await undo().catch((err: unknown) => tally.problems.push(`${label}: undoing the accepted publish failed: ${(err as Error).message}`));
    }
    const after = await snapshot(world);
    if (namesBystander && outcome.ok && (await bystanderGone(world, after))) {
      // The request named that volume: removing it (entirely) is what unpublish is for.
      tally.bystanderUnpublished++;
      if (tally.problems.length > problemsBefore) tally.badCases++;
      await repairBystander();
      return;
    }
    const diff = describeDiff(before, after);
    if (diff.length > 0) tally.problems.push(`${label} (${outcome.ok ? 'accepted' : `rejected ${status[outcome.code ?? 2]}`}): ${diff.join('; ')}`);
    const bystander = await bystanderProblem(world, tally.cases % 10 === 0);
    if (bystander !== undefined) {
      tally.problems.push(`${label}: ${bystander}`);
      // Later cases must be judged against an intact bystander again.
      await repairBystander();
    }
    if (tally.problems.length > problemsBefore) tally.badCases++;
  }

  async function repairBystander(): Promise<void> {
    await h.kubelet.unpublish(world.bystander).catch(() => undefined);
    await h.kubelet.publish(world.bystanderPod);
  }

  function report(name: string, rng: Rng, tally: Tally, faults: number): void {
    reportFaults(name, {
      seed: rng.seed,
      cases: tally.cases,
      faults,
      losses: tally.badCases,
      notes: { accepted: tally.accepted, clientSide: tally.clientSide, bystanderUnpublished: tally.bystanderUnpublished, ...tally.rejected },
    });
    if (tally.problems.length > 0) console.error(`[faults] ${name} problems:\n${tally.problems.slice(0, 40).join('\n')}`);
  }

  it(
    'answers every mutated NodePublishVolume cleanly and without side effects',
    async () => {
      const rng = rngFor('fuzz/publish');
      const cases = scaled(300, 3_000);
      const names = Object.keys(PUBLISH_MUTATIONS);
      const tally = newTally();
      let faults = 0;
      for (let i = 0; i < cases; i++) {
        const pod = KubeletEmulator.pod({ fsGroup: rng.chance(0.3) ? rng.between(0, 70_000) : undefined });
        const volume = h.kubelet.volumeFor(pod);
        await mkdir(dirname(volume.targetPath), { recursive: true });
        const req = h.kubelet.publishRequest(pod) as Request;
        const applied: string[] = [];
        let diskArranged = false;
        for (let m = rng.between(1, 3); m > 0; m--) {
          // One disk trick per case: a second one would follow the first one's symlink (into the bystander).
          const name = rng.pick(diskArranged ? names.filter((n) => !DISK_MUTATIONS.has(n)) : names);
          diskArranged ||= DISK_MUTATIONS.has(name);
          await PUBLISH_MUTATIONS[name]!(rng, req, pod, world, volume);
          applied.push(name);
          faults++;
        }
        // Kubelet's own retry of exactly this request after it was accepted must be a no-op.
        const undo = async (): Promise<void> => {
          await h.kubelet.publishRaw(req);
          await h.kubelet.call('NodeUnpublishVolume', { volume_id: req.volume_id, target_path: req.target_path });
        };
        await runCase(tally, `#${i} [${applied.join(', ')}]`, () => h.kubelet.publishRaw(req), undo);
        await clearCase(pod);
        if (tally.problems.length >= 40) break;
      }
      report('fuzz/publish', rng, tally, faults);
      expect(tally.problems).toEqual([]);
    },
    testTimeout(150_000, 3_600_000),
  );

  it(
    'answers every mutated NodeUnpublishVolume cleanly and touches no other volume',
    async () => {
      const rng = rngFor('fuzz/unpublish');
      const cases = scaled(100, 1_500);
      const tally = newTally();
      let faults = 0;
      for (let i = 0; i < cases; i++) {
        const pod = KubeletEmulator.pod();
        const volume = h.kubelet.volumeFor(pod);
        await mkdir(dirname(volume.targetPath), { recursive: true });
        const req: Request = { volume_id: volume.volumeId, target_path: volume.targetPath };
        const label: string[] = [];
        const choice = rng.int(8);
        if (choice === 0) {
          req.volume_id = hostileString(rng);
          label.push('volume_id hostile');
        } else if (choice === 1) {
          req.target_path = rng.chance(0.5) ? hostileString(rng) : mutateString(rng, String(req.target_path));
          label.push('target_path hostile');
        } else if (choice === 2) {
          // Another volume's target under a made-up handle: must not tear that volume down.
          req.target_path = world.bystander.targetPath;
          req.volume_id = rng.chance(0.5) ? volume.volumeId : `csi-${randomUUID()}`;
          label.push('bystander target, other id');
        } else if (choice === 3) {
          req.volume_id = world.bystander.volumeId;
          req.target_path = rng.chance(0.5) ? volume.targetPath : mutateString(rng, world.bystander.targetPath);
          label.push('bystander id, other target');
        } else if (choice === 4) {
          await symlink(world.bystander.targetPath, volume.targetPath);
          label.push('target is a symlink to the bystander');
        } else if (choice === 5) {
          req.volume_id = wrongType(rng);
          req.target_path = wrongType(rng);
          label.push('wrong types');
        } else if (choice === 6) {
          req.target_path = String(req.target_path).replace(h.kubeletRoot, `${h.kubeletRoot}/pods/../..`);
          label.push('target_path escapes');
        } else {
          label.push('never published');
        }
        faults++;
        await runCase(
          tally,
          `#${i} [${label.join(', ')}]`,
          () => h.kubelet.call('NodeUnpublishVolume', req),
          undefined,
          false,
          req.volume_id === world.bystander.volumeId,
        );
        await clearCase(pod);
        if (tally.problems.length >= 40) break;
      }
      report('fuzz/unpublish', rng, tally, faults);
      expect(tally.problems).toEqual([]);
    },
    testTimeout(120_000, 3_600_000),
  );

  it(
    'answers damaged protobuf on the wire cleanly and without side effects',
    async () => {
      const rng = rngFor('fuzz/wire');
      const cases = scaled(150, 2_000);
      raw = new RawCsiClient(h.csiSocket);
      const tally = newTally();
      for (let i = 0; i < cases; i++) {
        const pod = KubeletEmulator.pod();
        const volume = h.kubelet.volumeFor(pod);
        await mkdir(dirname(volume.targetPath), { recursive: true });
        const bytes = mutateBytes(rng, raw.encodePublish(h.kubelet.publishRequest(pod)));
        const client = raw;
        const undo = async (): Promise<void> => {
          // What the driver decoded decides what kubelet would unpublish.
          const decoded = client.decodePublish(bytes);
          await h.kubelet.call('NodeUnpublishVolume', { volume_id: decoded.volume_id, target_path: decoded.target_path });
        };
        await runCase(tally, `#${i} [${bytes.length} bytes]`, () => client.call('NodePublishVolume', bytes), undo, true);
        await clearCase(pod);
        if (tally.problems.length >= 40) break;
      }
      report('fuzz/wire', rng, tally, cases);
      expect(tally.problems).toEqual([]);
    },
    testTimeout(90_000, 3_600_000),
  );
});
