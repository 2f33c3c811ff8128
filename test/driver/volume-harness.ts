import { randomUUID } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '@spire-csi/sdk';
import type { AgentX509Svid, X509SvidUpdate } from '../../driver/src/identity/identity-backend.js';
import { mountsAt, parseMountInfo } from '../../driver/src/mount/mountinfo.js';
import { LinuxMounter } from '../../driver/src/mount/mounter.js';
import { VolumeManager, type VolumeManagerOptions } from '../../driver/src/manager/volume-manager.js';
import { DEFAULT_LAYOUT_OPTIONS, DEFAULT_FILES, type VolumeSpec } from '../../driver/src/volume/volume-spec.js';
import { VolumeStore } from '../../driver/src/metadata/volume-store.js';
import { TestCa, type MintOptions } from '../helpers/test-ca.js';
import { DelegatedBackend } from '../../driver/src/identity/delegated/delegated-backend.js';
import { FakeIdentityProvider } from './fake-identity-provider.js';

export const isRoot = process.getuid?.() === 0;
export const NODE = 'node-1';

export interface LogLine {
  level: string;
  obj: object;
  msg: string | undefined;
}

/** A fake kubelet root in a temp dir, a real mounter and store, and a fake agent. */
export class VolumeHarness {
  readonly logs: LogLine[] = [];
  readonly mounter = new LinuxMounter();
  /** The fake agent, addressed by selectors as the Delegated Identity API is. */
  readonly identity = new FakeIdentityProvider();
  /** What the managers use: the fake agent behind the real Delegated Identity backend. */
  readonly backend = new DelegatedBackend(this.identity, { nodeName: NODE });
  private readonly managers: VolumeManager[] = [];
  private readonly targets = new Set<string>();

  private constructor(
    readonly base: string,
    readonly store: VolumeStore,
    readonly ca: TestCa,
  ) {}

  static async create(): Promise<VolumeHarness> {
    const base = await mkdtemp(join(tmpdir(), 'volume-manager-'));
    const store = new VolumeStore(join(base, 'state'));
    await store.init();
    const harness = new VolumeHarness(base, store, await TestCa.create('example.org'));
    harness.identity.setBundles(new Map([['example.org', harness.ca.rootDer]]));
    return harness;
  }

  get kubeletRoot(): string {
    return join(this.base, 'kubelet');
  }

  readonly logger: Logger & { child(bindings: Record<string, unknown>): Logger } = (() => {
    const make = (bindings: Record<string, unknown>): Logger & { child(b: Record<string, unknown>): Logger } => {
      const log = (level: string) => (obj: object, msg?: string) => this.logs.push({ level, obj: { ...bindings, ...obj }, msg });
      return { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error'), child: (b) => make({ ...bindings, ...b }) };
    };
    return make({});
  })();

  manager(options: Partial<VolumeManagerOptions> = {}): VolumeManager {
    const manager = new VolumeManager({
      store: this.store,
      mounter: this.mounter,
      identity: this.backend,
      logger: this.logger,
      publishTimeoutMs: 5000,
      ...options,
    });
    this.managers.push(manager);
    return manager;
  }

  /** A spec for a new pod; kubelet's parent directory of the target is created like kubelet does. */
  async spec(overrides: Partial<VolumeSpec> = {}): Promise<VolumeSpec> {
    const uid = randomUUID();
    const targetPath = join(this.kubeletRoot, 'pods', uid, 'volumes', 'kubernetes.io~csi', 'spiffe', 'mount');
    await mkdir(join(targetPath, '..'), { recursive: true });
    this.targets.add(targetPath);
    return {
      volumeId: `csi-${uid}`,
      targetPath,
      pod: { name: 'web', namespace: 'default', uid, serviceAccount: 'web-sa' },
      files: DEFAULT_FILES,
      bundleIncludeFederated: false,
      fsGroup: null,
      spiffeId: null,
      jwtAudiences: [],
      jwtSvidFile: 'jwt-svid.token',
      ...DEFAULT_LAYOUT_OPTIONS,
      ...overrides,
    };
  }

  async svid(id = 'spiffe://example.org/web', options: MintOptions = {}): Promise<AgentX509Svid> {
    const minted = await this.ca.mint(id, options);
    return { spiffeId: id, chainDer: minted.chainDer, keyDer: minted.keyDer, hint: '' };
  }

  async update(id?: string, federatesWith: string[] = []): Promise<X509SvidUpdate> {
    return { svids: [await this.svid(id)], federatesWith };
  }

  /** Every subscription immediately gets one fresh SVID for `id`. */
  async serve(id = 'spiffe://example.org/web'): Promise<X509SvidUpdate> {
    const update = await this.update(id);
    this.identity.respond = () => update;
    return update;
  }

  async mountIds(target: string): Promise<number[]> {
    return mountsAt(parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8')), target).map((e) => e.mountId);
  }

  async cleanup(): Promise<void> {
    await Promise.all(this.managers.map((m) => m.shutdown()));
    for (const target of this.targets) await this.mounter.unmount(target).catch(() => undefined);
    await rm(this.base, { recursive: true, force: true });
  }
}

export async function dataDir(target: string): Promise<string> {
  return readlink(join(target, '..data'));
}

export async function modeOf(path: string): Promise<{ mode: number; uid: number; gid: number }> {
  const info = await stat(path);
  return { mode: info.mode & 0o7777, uid: info.uid, gid: info.gid };
}

export async function present(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}
