import { loadProtos } from './proto/load.js';
import { startCsiServer, type CsiServer } from './csi/server.js';
import { IdentityService } from './csi/identity-service.js';
import { checkRecordedSpec } from './csi/record-check.js';
import { NodeService } from './csi/node-service.js';
import type { BrokerSettings, DriverConfig } from './config/driver-config.js';
import { childLogger, type DriverLogger } from './logging.js';
import { bindMetrics } from './metrics/bind-metrics.js';
import { DriverMetrics } from './metrics/driver-metrics.js';
import { startMetricsServer, type MetricsServer } from './metrics/http-server.js';
import { instrumentNode } from './metrics/instrumented-node.js';
import { driverReadiness } from './metrics/readiness.js';
import type { Clock } from '@spire-csi/sdk/clock';
import type { BrokerBackend } from './identity/broker/broker-backend.js';
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
  /** Defaults to the API `config.identityApi` names: Delegated Identity (admin socket) or Broker (broker endpoint). */
  readonly identity?: IdentityBackend;
  /** Time for the volumes (validity, publish timeouts, retries, refreshes) and the broker streams; the wall clock by default. */
  readonly clock?: Clock;
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
  // Built last among the parts: the Workload API source starts its stream at once.
  const identity = deps.identity ?? (await buildIdentity(config, logger, deps.clock));
  const manager = new VolumeManager({
    store,
    mounter,
    identity,
    logger,
    clock: deps.clock,
    publishTimeoutMs: config.publishTimeoutMs,
    checkRecord: (spec) => checkRecordedSpec(spec, { kubeletRoot: config.kubeletRoot }),
    targetsOnTmpfs: deps.targetsOnTmpfs ?? deps.mounter === undefined,
  });

  // Bound before resume, so errors while resuming are counted.
  const ownSvidExpiry = identity.ownSvidExpiry?.bind(identity);
  const ownSvid = ownSvidExpiry === undefined ? undefined : { ownSvidExpiry };
  const metrics = config.metricsAddress === null ? null : new DriverMetrics({ volumes: manager, ownSvid });
  const unbindMetrics = metrics === null ? () => {} : bindMetrics(metrics, { events: manager.events, agent: identity });

  // Connect now (the shared bundle stream, or the broker channel): Probe reports agent connectivity
  // even before any volume exists.
  identity.start();

  const resume = await manager.beginResume();
  // The manager logs the summary when the last record is handled.
  const resumed = resume.done;

  const node = new NodeService({ nodeId: config.nodeId, kubeletRoot: config.kubeletRoot, publisher: manager });
  const server = await startCsiServer({
    endpoint: `unix://${config.csiSocketPath}`,
    protos,
    logger: childLogger(logger, { component: 'csi' }),
    identity: new IdentityService({ name: config.pluginName, isReady: () => identity.connectionProblem() === undefined && !manager.resuming }),
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
    try {
      metricsServer = await startMetricsServer({
        address: config.metricsAddress,
        registry: metrics.registry,
        isReady: () => {
          const agentProblem = identity.connectionProblem();
          return driverReadiness({ csiSocket, agentConnected: agentProblem === undefined, agentProblem, resuming: manager.resuming });
        },
        logger: childLogger(logger, { component: 'metrics' }),
      });
    } catch (err) {
      // A bad or busy address is a configuration error: fail the start rather than run unobserved.
      await stop();
      throw err;
    }
  }
  const source =
    config.broker === undefined
      ? { identityApi: 'delegated', adminSocket: config.adminSocketPath }
      : { identityApi: 'broker', brokerEndpoint: config.broker.endpoint, workloadApi: config.broker.workloadApi, brokerId: config.broker.brokerId ?? null };
  logger.info({ csiSocket: server.socketPath, nodeId: config.nodeId, pluginName: config.pluginName, ...source }, 'spire-csi driver serving');

  return { manager, identity, server, resumed, metricsAddress: metricsServer?.address ?? null, stop };
}

async function buildIdentity(config: DriverConfig, logger: DriverLogger, clock: Clock | undefined): Promise<IdentityBackend> {
  if (config.identityApi === 'broker') {
    if (config.broker === undefined) throw new Error('main: --identity-api broker without its broker settings');
    return await buildBrokerBackend(config.broker, logger, clock);
  }
  return new DelegatedBackend(
    new DelegatedIdentityClient({ socketPath: config.adminSocketPath, logger: childLogger(logger, { component: 'agent' }), clock }),
    { nodeName: config.nodeId, adminSocket: config.adminSocketPath },
  );
}

/**
 * Broker mode: the driver's own SVID from the Workload API, presented over mutual TLS to the
 * agent's broker endpoint, which must present `--broker-id` (or an ID of the driver's own trust
 * domain). A rotation of the driver's SVID is used by new connections; open streams keep going.
 */
async function buildBrokerBackend(settings: BrokerSettings, logger: DriverLogger, clock: Clock | undefined): Promise<BrokerBackend> {
  // Imported here, not above: gRPC credentials, the Workload API client and the Broker API's
  // definitions add ~0.1 s to every start, which a delegated-mode driver should not pay (it
  // counts against serving the CSI socket again after a restart).
  const [{ spiffeChannelCredentials }, { WorkloadApiSource }, { BrokerBackend }, { BrokerClient }, { brokerServerAuthorizer, ownSvidOf }] =
    await Promise.all([
      import('@spire-csi/sdk/grpc'),
      import('@spire-csi/sdk/workload-api'),
      import('./identity/broker/broker-backend.js'),
      import('./identity/broker/broker-client.js'),
      import('./identity/broker/own-identity.js'),
    ]);
  const ownIdentity = new WorkloadApiSource({ endpoint: settings.workloadApi, logger: childLogger(logger, { component: 'workload-api' }), clock });
  const credentials = spiffeChannelCredentials(ownIdentity, {
    authorize: brokerServerAuthorizer(ownIdentity, settings.brokerId),
    logger: childLogger(logger, { component: 'broker-tls' }),
  });
  const brokerLogger = childLogger(logger, { component: 'broker' });
  const api = new BrokerClient({
    target: settings.target,
    endpoint: settings.endpoint,
    credentials,
    driverId: () => ownSvidOf(ownIdentity)?.id.toString(),
    brokerId: settings.brokerId,
    logger: brokerLogger,
    clock,
  });
  return new BrokerBackend({
    api,
    ownIdentity,
    brokerEndpoint: settings.endpoint,
    workloadApi: settings.workloadApi,
    brokerId: settings.brokerId,
    logger: brokerLogger,
  });
}
