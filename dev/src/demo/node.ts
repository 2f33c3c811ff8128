import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { type DriverConfig, startDriver, type Mounter } from '@spire-csi/driver/internal';
import { parseEndpointUri } from '@spire-csi/sdk/workload-api';
import type { Logger as PinoLogger } from 'pino';
import { validateRegistrations } from '../dev-agent/registrations.js';
import { DevAgent } from '../dev-agent/server.js';
import type { CleanupStack } from './cleanup.js';
import { DemoError, messageOf } from './errors.js';
import { KubeletClient, type KubeletPod, type PublishedVolume } from './kubelet-client.js';
import type { DemoLayout } from './layout.js';
import { NO_POD_LIST, PodsFile, type NodePods } from './node-pods.js';
import type { DemoIdentityApi } from './options.js';
import type { PodRole } from './state.js';

export interface DemoPod {
  readonly role: PodRole;
  readonly pod: KubeletPod;
  readonly spiffeId: string;
}

export const DEMO_NAMESPACE = 'demo';
const NODE_NAME = 'demo-node';
const PUBLISH_TIMEOUT_MS = 15_000;

/** Two pods in one namespace, told apart by service account, as a SPIRE registration would. */
export function demoPods(trustDomain: string): Record<PodRole, DemoPod> {
  const make = (role: PodRole): DemoPod => {
    const uid = randomUUID();
    return {
      role,
      pod: { name: `${role}-${uid.slice(0, 5)}`, namespace: DEMO_NAMESPACE, uid, serviceAccount: role },
      spiffeId: `spiffe://${trustDomain}/ns/${DEMO_NAMESPACE}/sa/${role}`,
    };
  };
  return { server: make('server'), client: make('client') };
}

export interface NodeParams {
  readonly layout: DemoLayout;
  readonly trustDomain: string;
  readonly svidTtlMs: number;
  readonly pods: readonly DemoPod[];
  readonly mounter: Mounter;
  /** pino's (createLogger): its `child` tags the agent's and the driver's lines. */
  readonly logger: PinoLogger;
  readonly cleanup: CleanupStack;
  readonly identityApi: DemoIdentityApi;
}

export interface DemoNode {
  readonly kubelet: KubeletClient;
  /** What the agent knows runs on the node; publishPod keeps it in step with the pods. */
  readonly pods: NodePods;
  /** How the driver reaches the agent, for the demo's notes. */
  readonly description: readonly string[];
}

/** The driver's SPIFFE ID in broker mode: the one deploy/clusterspiffeid-driver.yaml gives it. */
export function demoDriverId(trustDomain: string): string {
  return `spiffe://${trustDomain}/spire-csi/driver`;
}

/**
 * One Kubernetes node without Kubernetes: the development agent, the driver on its CSI socket, and
 * a kubelet client. Delegated mode: the agent serves its admin socket and the driver sends each
 * pod's selectors. Broker mode: the agent also serves the Workload API (the driver's own SVID) and
 * a Broker endpoint (mutual TLS, refusing any other client in the handshake as SPIRE does) that
 * resolves pods from the pods file. Every part registers its own teardown.
 */
export async function startNode(params: NodeParams): Promise<DemoNode> {
  const { layout, logger, cleanup } = params;
  const broker = params.identityApi === 'broker';
  const registrations = validateRegistrations(
    {
      entries: params.pods.map(({ role, pod, spiffeId }) => ({
        spiffeId,
        selectors: [`k8s:ns:${pod.namespace}`, `k8s:sa:${pod.serviceAccount}`],
        hint: role,
      })),
    },
    params.trustDomain,
  );
  const socketDirs = broker ? [layout.adminSocket, layout.workloadSocket, layout.brokerSocket] : [layout.adminSocket];
  for (const socket of socketDirs) await mkdir(dirname(socket), { recursive: true, mode: 0o700 });
  await mkdir(`${layout.kubeletRoot}/pods`, { recursive: true, mode: 0o750 });

  // Once the agent runs, it reads the file at once after each change (it also watches it): a
  // publish must find its pod. The first, empty list is written before the agent starts.
  let reloadPods = async (): Promise<void> => {};
  const podsFile = new PodsFile(layout.podsFile, () => reloadPods());
  if (broker) await podsFile.save();

  const agent = new DevAgent({
    socketPath: layout.adminSocket,
    trustDomain: params.trustDomain,
    registrations,
    svidTtlMs: params.svidTtlMs,
    logger: logger.child({ component: 'dev-agent' }),
    ...(broker
      ? {
          workloadSocketPath: layout.workloadSocket,
          workloadId: demoDriverId(params.trustDomain),
          brokerSocketPath: layout.brokerSocket,
          brokerAuthz: 'handshake' as const,
          podsFile: layout.podsFile,
          nodeName: NODE_NAME,
        }
      : {}),
  });
  cleanup.push('stopping the dev agent', () => agent.stop());
  try {
    await agent.start();
    reloadPods = () => agent.reloadPods();
  } catch (error) {
    throw new DemoError(`starting the dev agent failed: ${messageOf(error)}`, `look at ${layout.logFile}`, { cause: error });
  }

  const config: DriverConfig = {
    csiSocketPath: layout.csiSocket,
    nodeId: NODE_NAME,
    identityApi: params.identityApi,
    adminSocketPath: broker ? '' : layout.adminSocket,
    ...(broker ? { broker: brokerSettings(layout) } : {}),
    kubeletRoot: layout.kubeletRoot,
    stateDir: layout.stateDir,
    pluginName: 'csi.spire.io',
    publishTimeoutMs: PUBLISH_TIMEOUT_MS,
    logLevel: 'info',
    metricsAddress: null,
  };
  try {
    const driver = await startDriver(config, { logger, mounter: params.mounter });
    cleanup.push('stopping the driver', () => driver.stop());
  } catch (error) {
    throw new DemoError(`starting the driver failed: ${messageOf(error)}`, `look at ${layout.logFile}`, { cause: error });
  }

  const kubelet = new KubeletClient(layout.kubeletRoot, layout.csiSocket);
  cleanup.push('closing the kubelet client', () => kubelet.close());
  const description = broker
    ? [
        `dev agent serving the Workload API on ${layout.workloadSocket} (the driver's own SVID: ${agent.workloadId})`,
        `dev agent serving the SPIFFE Broker API on ${layout.brokerSocket} (mutual TLS; brokers allowed: ${agent.brokers.join(', ')})`,
        `dev agent resolving pod references from ${layout.podsFile}`,
        `driver serving CSI on ${layout.csiSocket}, identities through the Broker API`,
      ]
    : [`dev agent serving the Delegated Identity API on ${layout.adminSocket}`, `driver serving CSI on ${layout.csiSocket}`];
  return { kubelet, pods: broker ? podsFile : NO_POD_LIST, description };
}

/** What `--broker-endpoint unix://… --workload-api unix://…` parse to. */
function brokerSettings(layout: DemoLayout): NonNullable<DriverConfig['broker']> {
  const endpoint = `unix://${layout.brokerSocket}`;
  return {
    endpoint,
    target: parseEndpointUri(endpoint, { what: '--broker-endpoint', allowDnsNames: true }).grpcTarget,
    workloadApi: `unix://${layout.workloadSocket}`,
  };
}

/**
 * The pod starts on the node, then NodePublishVolume as kubelet sends it; at cleanup the volume is
 * unpublished, then the pod leaves the node.
 */
export async function publishPod(node: DemoNode, { role, pod }: DemoPod, cleanup: CleanupStack, logFile: string): Promise<PublishedVolume> {
  const { kubelet } = node;
  const volume = kubelet.volumeFor(pod);
  // Cleanup runs last-in first-out: the pod is deleted after its volume is unpublished.
  cleanup.push(`deleting the ${role} pod from the node`, () => node.pods.deleted(pod));
  try {
    await node.pods.created(pod);
  } catch (error) {
    throw new DemoError(`adding the ${role} pod to the node's pod list failed: ${messageOf(error)}`, `look at ${logFile}`, { cause: error });
  }
  // Registered before the publish: a publish that failed halfway may still have left a mount to remove.
  cleanup.push(`unpublishing the ${role} pod's volume`, () => kubelet.unpublish(volume));
  try {
    return await kubelet.publish(pod);
  } catch (error) {
    throw new DemoError(
      `publishing the ${role} pod's volume through the CSI socket failed: ${messageOf(error)}`,
      `look at ${logFile}`,
      { cause: error },
    );
  }
}
