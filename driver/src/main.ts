import { loadProtos } from './proto/load.js';
import { startCsiServer, type CsiServer } from './csi/server.js';
import { IdentityService } from './csi/identity-service.js';
import { checkRecordedSpec } from './csi/record-check.js';
import { NodeService } from './csi/node-service.js';
import type { DriverConfig } from './config/driver-config.js';
import { childLogger, type DriverLogger } from './logging.js';
import { bindMetrics } from './metrics/bind-metrics.js';
import { DriverMetrics } from './metrics/driver-metrics.js';
import { startMetricsServer, type MetricsServer } from './metrics/http-server.js';
import { instrumentNode } from './metrics/instrumented-node.js';
import { driverReadiness } from './metrics/readiness.js';
import { DelegatedBackend } from './identity/delegated/delegated-backend.js';
import { DelegatedIdentityClient } from './identity/delegated/delegated-identity-client.js';
import type { IdentityBackend } from './identity/identity-backend.js';
import { LinuxMounter, type Mounter } from './mount/mounter.js';
import { defaultSelinuxContext, selinuxfsProbe, type SelinuxProbe } from './mount/selinux.js';
import { VolumeManager, type ResumeSummary } from './manager/volume-manager.js';
import { VolumeStore } from './metadata/volume-store.js';

export interface DriverDependencies {
  readonly logger: DriverLogger;
  /** Defaults to the real `mount`/`umount`; injected where a test needs another. */
  readonly mounter?: Mounter;
  /** Defaults to the Delegated Identity API on the configured admin socket. */
  readonly identity?: IdentityBackend;
  /**
   * Whether the mounter puts a tmpfs at each target (then files skip fsync). Defaults to true for
   * the real mounter and false for an injected one, which may only make directories.
   */
  readonly targetsOnTmpfs?: boolean;
  /** Whether SELinux is enabled, for `--selinux-context auto`; defaults to a selinuxfs at /sys/fs/selinux. */
  readonly selinuxProbe?: SelinuxProbe;
}

export interface RunningDriver {
  readonly manager: VolumeManager;
  readonly identity: IdentityBackend;
  readonly server: CsiServer;
  /** Resolves when every recorded volume has been resumed (the socket serves before that). */
  readonly resumed: Promise<ResumeSummary>;
  /** The bound host:port of /metrics, /healthz and /readyz; null when disabled. */
  readonly metricsAddress: string | null;
  /** SIGTERM semantics: stop serving, close agent streams, leave mounts and files for running pods. */
  stop(): Promise<void>;
}

/**
 * Wires the components in the order a restart needs: the records are listed and every recorded
 * volume's lock is claimed for its resume before kubelet can reach the CSI socket, then the socket
 * serves while the resumes run. A publish or unpublish of a volume still to resume waits for that
 * volume's resume alone (never racing it); Probe and /readyz say "resuming" until all are done.
 */
export async function startDriver(config: DriverConfig, deps: DriverDependencies): Promise<RunningDriver> {
  const { logger } = deps;
  const protos = loadProtos();
  const identity =
    deps.identity ??
    new DelegatedBackend(
      new DelegatedIdentityClient({ socketPath: config.adminSocketPath, logger: childLogger(logger, { component: 'agent' }) }),
      { nodeName: config.nodeId, adminSocket: config.adminSocketPath },
    );
  const store = new VolumeStore(config.stateDir);
  // Creates the state folder and drops temp files a crash may have left mid-write.
  await store.init();
  let mounter = deps.mounter;
  if (mounter === undefined) {
    // Decided once: whether SELinux is enabled does not change while the node runs.
    const selinux = config.selinuxContext ?? { mode: 'auto' };
    const defaultContext = await defaultSelinuxContext(selinux, deps.selinuxProbe ?? selinuxfsProbe());
    const linux = new LinuxMounter(defaultContext === undefined ? {} : { defaultContext });
    // Operators should see when the exec fallback (one mount(8) process per volume) is in use.
    const backend = await linux.backend();
    logger.info(
      { mountBackend: backend.kind, reason: backend.reason, selinuxContext: selinux.mode, defaultMountContext: defaultContext ?? null },
      'tmpfs mount backend chosen',
    );
    mounter = linux;
  }
  const manager = new VolumeManager({
    store,
    mounter,
    identity,
    logger,
    publishTimeoutMs: config.publishTimeoutMs,
    checkRecord: (spec) => checkRecordedSpec(spec, { kubeletRoot: config.kubeletRoot }),
    targetsOnTmpfs: deps.targetsOnTmpfs ?? deps.mounter === undefined,
  });

  // Bound before resume, so errors while resuming are counted.
  const metrics = config.metricsAddress === null ? null : new DriverMetrics({ volumes: manager });
  const unbindMetrics = metrics === null ? () => {} : bindMetrics(metrics, { events: manager.events, agent: identity });

  // Open the shared bundle stream now: Probe reports agent connectivity even before any volume exists.
  identity.start();

  const resume = await manager.beginResume();
  // The manager logs the summary when the last record is handled.
  const resumed = resume.done;

  const node = new NodeService({ nodeId: config.nodeId, kubeletRoot: config.kubeletRoot, publisher: manager });
  const server = await startCsiServer({
    endpoint: `unix://${config.csiSocketPath}`,
    protos,
    logger: childLogger(logger, { component: 'csi' }),
    identity: new IdentityService({ name: config.pluginName, isReady: () => identity.connected && !manager.resuming }),
    node: metrics === null ? node : instrumentNode(node, metrics),
  });
  let csiSocket: string | null = server.socketPath;

  let metricsServer: MetricsServer | null = null;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      csiSocket = null;
      await metricsServer?.close();
      unbindMetrics();
      await server.stop();
      await manager.shutdown();
      await identity.close();
      logger.info({}, 'driver stopped; mounts and files left in place for running pods');
    })();
    return stopping;
  };

  if (metrics !== null && config.metricsAddress !== null) {
    const adminSocket = config.adminSocketPath;
    try {
      metricsServer = await startMetricsServer({
        address: config.metricsAddress,
        registry: metrics.registry,
        isReady: () =>
          driverReadiness({ csiSocket, agentConnected: identity.connected, adminSocket, resuming: manager.resuming }),
        logger: childLogger(logger, { component: 'metrics' }),
      });
    } catch (err) {
      // A bad or busy address is a configuration error: fail the start rather than run unobserved.
      await stop();
      throw err;
    }
  }
  logger.info(
    { csiSocket: server.socketPath, nodeId: config.nodeId, pluginName: config.pluginName, adminSocket: config.adminSocketPath },
    'spire-csi driver serving',
  );

  return { manager, identity, server, resumed, metricsAddress: metricsServer?.address ?? null, stop };
}
