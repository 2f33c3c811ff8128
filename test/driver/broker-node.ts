/**
 * One node in broker mode, all real parts: the dev agent's Workload API and Broker endpoint (mutual
 * TLS over unix sockets), the driver started by startDriver() with `--identity-api broker`, real
 * tmpfs mounts, and the kubelet emulator on the CSI socket. For the broker-*.test.ts files.
 */
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { Clock } from '@spire-csi/sdk/clock';
import type { DriverConfig } from '../../driver/src/config/driver-config.js';
import { createLogger } from '../../driver/src/logging.js';
import { startDriver, type RunningDriver } from '../../driver/src/main.js';
import type { DevAgentOptions } from '../../dev/src/dev-agent/server.js';
import { startBrokerAgent, type BrokerAgentFixture } from '../helpers/broker-harness.js';
import { unmountUnder } from '../helpers/driver-harness.js';
import { KubeletEmulator, type EmulatedPod } from '../helpers/kubelet-emulator.js';
import { entry } from '../helpers/registration-entry.js';

export const WEB_ID = 'spiffe://example.org/ns/default/sa/web';
export const DB_ID = 'spiffe://example.org/ns/default/sa/db';

export interface BrokerNodeOptions {
  readonly agent?: Partial<DevAgentOptions>;
  readonly publishTimeoutMs?: number;
  readonly brokerId?: string;
  /** Injected into the driver (volumes and broker streams); the agent keeps real time. */
  readonly clock?: Clock;
  readonly metricsAddress?: string;
  /** Overrides the fixture's Workload API endpoint (e.g. one where nothing listens). */
  readonly workloadApi?: string;
}

/** Entries for service accounts `web` (federated with partner.org) and `db`, as in the delegated e2e tests. */
export function defaultRegistrations(): NonNullable<DevAgentOptions['registrations']> {
  return {
    entries: [entry(WEB_ID, ['k8s:ns:default', 'k8s:sa:web'], ['partner.org']), entry(DB_ID, ['k8s:ns:default', 'k8s:sa:db'])],
    federatedTrustDomains: ['partner.org'],
  };
}

export class BrokerNode {
  readonly logLines: string[] = [];
  driver: RunningDriver | undefined;
  private kubeletClient: KubeletEmulator | undefined;

  private constructor(
    readonly fixture: BrokerAgentFixture,
    readonly root: string,
    private readonly options: BrokerNodeOptions,
  ) {}

  static async create(options: BrokerNodeOptions = {}): Promise<BrokerNode> {
    const fixture = await startBrokerAgent({ registrations: defaultRegistrations(), ...options.agent });
    const root = await mkdtemp(join(tmpdir(), 'spire-csi-broker-node-'));
    await mkdir(join(root, 'kubelet', 'pods'), { recursive: true });
    return new BrokerNode(fixture, root, options);
  }

  get agent(): BrokerAgentFixture['agent'] {
    return this.fixture.agent;
  }

  get kubeletRoot(): string {
    return join(this.root, 'kubelet');
  }

  get stateDir(): string {
    return join(this.root, 'state');
  }

  get config(): DriverConfig {
    return {
      csiSocketPath: join(this.root, 'plugin', 'csi.sock'),
      nodeId: 'node-1',
      identityApi: 'broker',
      adminSocketPath: '',
      broker: {
        endpoint: this.fixture.brokerEndpoint,
        target: this.fixture.brokerEndpoint,
        workloadApi: this.options.workloadApi ?? this.fixture.workloadEndpoint,
        ...(this.options.brokerId === undefined ? {} : { brokerId: this.options.brokerId }),
      },
      kubeletRoot: this.kubeletRoot,
      stateDir: this.stateDir,
      pluginName: 'csi.spire.io',
      publishTimeoutMs: this.options.publishTimeoutMs ?? 10_000,
      logLevel: 'debug',
      metricsAddress: this.options.metricsAddress ?? null,
    };
  }

  get kubelet(): KubeletEmulator {
    this.kubeletClient ??= new KubeletEmulator(this.kubeletRoot, this.config.csiSocketPath);
    return this.kubeletClient;
  }

  async startDriver(): Promise<RunningDriver> {
    const sink = new Writable({
      write: (chunk: Buffer, _encoding, done) => {
        this.logLines.push(...chunk.toString('utf8').split('\n').filter((line) => line !== ''));
        done();
      },
    });
    this.driver = await startDriver(this.config, { logger: createLogger('debug', sink), ...(this.options.clock ? { clock: this.options.clock } : {}) });
    return this.driver;
  }

  async stopDriver(): Promise<void> {
    this.kubeletClient?.close();
    this.kubeletClient = undefined;
    await this.driver?.stop();
    this.driver = undefined;
  }

  /** The pods the agent sees on its node; each needs to be listed before its volume can be published. */
  async addPods(...pods: EmulatedPod[]): Promise<void> {
    const known = this.agent.pods.filter((p) => !pods.some((q) => q.uid === p.uid));
    await this.agent.setPods([...known, ...pods.map(({ namespace, name, uid, serviceAccount }) => ({ namespace, name, uid, serviceAccount }))]);
  }

  async removePods(...pods: EmulatedPod[]): Promise<void> {
    await this.agent.setPods(this.agent.pods.filter((p) => !pods.some((q) => q.uid === p.uid)));
  }

  /** A pod the agent knows, for service account `sa`. */
  async pod(serviceAccount = 'web'): Promise<EmulatedPod> {
    const pod = KubeletEmulator.pod({ serviceAccount });
    await this.addPods(pod);
    return pod;
  }

  logs(): string {
    return this.logLines.join('\n');
  }

  async cleanup(): Promise<void> {
    await this.stopDriver().catch(() => undefined);
    await this.fixture.cleanup().catch(() => undefined);
    await unmountUnder(this.root);
    await rm(this.root, { recursive: true, force: true });
  }
}

export async function serialOf(target: string): Promise<string> {
  return new X509Certificate(await readFile(join(target, 'svid.pem'))).serialNumber;
}

export async function spiffeIdOf(target: string): Promise<string> {
  return new X509Certificate(await readFile(join(target, 'svid.pem'))).subjectAltName!.replace(/^URI:/, '');
}
