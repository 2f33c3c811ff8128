/**
 * The driver composed as main.ts composes it, but with each part a volume passes through wrapped
 * in a timer, so a publish can be split into phases without touching driver code. Only the seams
 * the driver already exposes are used: the Node service, the publisher, the store, the mounter,
 * the identity provider and the writer factory.
 */
import { performance } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import type { NodePublishVolumeRequest, NodeUnpublishVolumeRequest } from '../../driver/src/proto/csi-messages.js';
import { IdentityService } from '../../driver/src/csi/identity-service.js';
import { NodeService, type CsiNode } from '../../driver/src/csi/node-service.js';
import { startCsiServer, type CsiServer } from '../../driver/src/csi/server.js';
import type { VolumePublisher } from '../../driver/src/manager/volume-publisher.js';
import { createLogger } from '../../driver/src/logging.js';
import { loadProtos } from '../../driver/src/proto/load.js';
import { DelegatedIdentityClient, type DelegatedIdentityClientOptions } from '../../driver/src/identity/delegated/delegated-identity-client.js';
import type { Subscription, X509SvidHandlers } from '../../driver/src/identity/identity-backend.js';
import type { Selector } from '../../driver/src/identity/delegated/selectors.js';
import { DelegatedBackend } from '../../driver/src/identity/delegated/delegated-backend.js';
import { AtomicWriter, type Ownership, type Payload, type WriteResult } from '../../driver/src/storage/atomic-writer.js';
import { LinuxMounter, type Mounter, type TmpfsOptions } from '../../driver/src/mount/mounter.js';
import { VolumeManager } from '../../driver/src/manager/volume-manager.js';
import type { VolumeSpec } from '../../driver/src/volume/volume-spec.js';
import { VolumeStore, type StagedRecord, type VolumeRecord } from '../../driver/src/metadata/volume-store.js';
import type { DriverConfig } from '../../driver/src/config/driver-config.js';

/** Timestamps (performance.now()) of one publish, by mark name. */
export type Marks = Record<string, number>;

/**
 * Where a volume's marks go. Components that only see a target path or a pod UID are mapped back
 * to the volume through `byTarget` / `byPodUid`, which the bench fills before it publishes.
 */
export class MarkBook {
  readonly marks = new Map<string, Marks>();
  readonly byTarget = new Map<string, string>();
  readonly byPodUid = new Map<string, string>();

  expect(volumeId: string, targetPath: string, podUid: string): void {
    this.marks.set(volumeId, {});
    this.byTarget.set(targetPath, volumeId);
    this.byPodUid.set(podUid, volumeId);
  }

  /** Records the first occurrence only: later calls (rotations, retries) are not part of the publish. */
  mark(volumeId: string | undefined, name: string): void {
    if (volumeId === undefined) return;
    const marks = this.marks.get(volumeId);
    if (marks !== undefined && marks[name] === undefined) marks[name] = performance.now();
  }

  markTarget(target: string, name: string): void {
    this.mark(this.byTarget.get(target), name);
  }
}

class TimedNode implements CsiNode {
  constructor(
    private readonly inner: NodeService,
    private readonly book: MarkBook,
  ) {}
  getInfo = () => this.inner.getInfo();
  getCapabilities = () => this.inner.getCapabilities();
  async publishVolume(request: NodePublishVolumeRequest, signal?: AbortSignal) {
    this.book.mark(request.volume_id, 'nodeEnter');
    try {
      return await this.inner.publishVolume(request, signal);
    } finally {
      this.book.mark(request.volume_id, 'nodeExit');
    }
  }
  unpublishVolume(request: NodeUnpublishVolumeRequest) {
    return this.inner.unpublishVolume(request);
  }
}

class TimedPublisher implements VolumePublisher {
  constructor(
    private readonly inner: VolumeManager,
    private readonly book: MarkBook,
  ) {}
  async publish(spec: VolumeSpec, signal?: AbortSignal): Promise<void> {
    this.book.mark(spec.volumeId, 'publishEnter');
    await this.inner.publish(spec, signal);
    this.book.mark(spec.volumeId, 'publishExit');
  }
  unpublish(volumeId: string, targetPath: string): Promise<void> {
    return this.inner.unpublish(volumeId, targetPath);
  }
}

class TimedStore extends VolumeStore {
  constructor(
    stateDir: string,
    private readonly book: MarkBook,
  ) {
    super(stateDir);
  }
  override async get(volumeId: string): Promise<VolumeRecord | undefined> {
    this.book.mark(volumeId, 'recordReadStart');
    const record = await super.get(volumeId);
    this.book.mark(volumeId, 'recordReadEnd');
    return record;
  }
  // The manager stages the record (data fsynced, renamed into place) before mounting, and the
  // directory fsync (commit) runs alongside the mount; only the staging is on the critical path.
  override async stage(spec: VolumeSpec, createdAt?: Date): Promise<StagedRecord> {
    this.book.mark(spec.volumeId, 'recordWriteStart');
    const staged = await super.stage(spec, createdAt);
    this.book.mark(spec.volumeId, 'recordWriteEnd');
    return staged;
  }
}

class TimedMounter implements Mounter {
  constructor(
    private readonly inner: Mounter,
    private readonly book: MarkBook,
  ) {}
  async mountTmpfs(target: string, options: TmpfsOptions): Promise<void> {
    this.book.markTarget(target, 'mountStart');
    await this.inner.mountTmpfs(target, options);
    this.book.markTarget(target, 'mountEnd');
  }
  unmount(target: string): Promise<void> {
    return this.inner.unmount(target);
  }
  async isMountPoint(path: string): Promise<boolean> {
    this.book.markTarget(path, 'mountCheckStart');
    const result = await this.inner.isMountPoint(path);
    this.book.markTarget(path, 'mountCheckEnd');
    return result;
  }
}

/** A subclass, so the provider interface can grow without this wrapper falling behind. */
class TimedIdentityClient extends DelegatedIdentityClient {
  constructor(
    options: DelegatedIdentityClientOptions,
    private readonly book: MarkBook,
  ) {
    super(options);
  }
  override watchX509Svids(selectors: readonly Selector[], handlers: X509SvidHandlers): Subscription {
    const uid = selectors.find((s) => s.type === 'k8s' && s.value.startsWith('pod-uid:'))?.value.slice('pod-uid:'.length);
    const volumeId = uid === undefined ? undefined : this.book.byPodUid.get(uid);
    this.book.mark(volumeId, 'subscribe');
    return super.watchX509Svids(selectors, {
      onUpdate: (update) => {
        this.book.mark(volumeId, 'svidReceived');
        handlers.onUpdate(update);
      },
      onError: handlers.onError?.bind(handlers),
    });
  }
}

class TimedWriter extends AtomicWriter {
  constructor(
    targetDir: string,
    private readonly book: MarkBook,
  ) {
    super(targetDir);
  }
  override async write(payload: Payload, ownership?: Ownership): Promise<WriteResult> {
    this.book.markTarget(this.targetDir, 'writeStart');
    const result = await super.write(payload, ownership);
    this.book.markTarget(this.targetDir, 'writeEnd');
    return result;
  }
}

export interface InstrumentedDriver {
  readonly book: MarkBook;
  readonly manager: VolumeManager;
  stop(): Promise<void>;
}

/** main.ts's startDriver with timers at every seam; logs at info into nothing (as the spawned driver would to a pipe). */
export async function startInstrumentedDriver(config: DriverConfig): Promise<InstrumentedDriver> {
  const book = new MarkBook();
  const logger = createLogger('info', new Writable({ write: (_chunk, _encoding, done) => done() }));
  const protos = loadProtos();
  const identity = new DelegatedBackend(
    new TimedIdentityClient({ socketPath: config.adminSocketPath, logger: logger.child({ component: 'agent' }) }, book),
    { nodeName: config.nodeId, adminSocket: config.adminSocketPath },
  );
  const store = new TimedStore(config.stateDir, book);
  await store.init();
  const manager = new VolumeManager({
    store,
    mounter: new TimedMounter(new LinuxMounter(), book),
    identity,
    logger,
    publishTimeoutMs: config.publishTimeoutMs,
    writerFactory: (dir) => new TimedWriter(dir, book),
  });
  identity.start();
  await manager.resumeAll();
  const node = new NodeService({ nodeId: config.nodeId, kubeletRoot: config.kubeletRoot, publisher: new TimedPublisher(manager, book) });
  const server: CsiServer = await startCsiServer({
    endpoint: `unix://${config.csiSocketPath}`,
    protos,
    logger: logger.child({ component: 'csi' }),
    identity: new IdentityService({ name: config.pluginName, isReady: () => identity.connected }),
    node: new TimedNode(node, book),
  });
  return {
    book,
    manager,
    async stop() {
      await server.stop();
      await manager.shutdown();
      await identity.close();
    },
  };
}

/** Phase name → [from mark, to mark]; consecutive, so they add up to the client-observed latency. */
export const PHASES: readonly (readonly [string, string, string])[] = [
  ['grpc in (client → handler)', 'clientStart', 'nodeEnter'],
  ['validation (request + target path on disk)', 'nodeEnter', 'publishEnter'],
  ['lock + record read', 'publishEnter', 'recordReadEnd'],
  ['mount check (statx)', 'recordReadEnd', 'mountCheckEnd'],
  ['record staged (data fsync + rename)', 'mountCheckEnd', 'recordWriteEnd'],
  ['mkdir + mount tmpfs (mount(2))', 'recordWriteEnd', 'mountEnd'],
  ['agent (subscribe → first SVID)', 'mountEnd', 'svidReceived'],
  ['validate SVID + build payload', 'svidReceived', 'writeStart'],
  ['write files (atomic writer)', 'writeStart', 'writeEnd'],
  ['ready → handler returns', 'writeEnd', 'nodeExit'],
  ['grpc out (handler → client)', 'nodeExit', 'clientEnd'],
];
