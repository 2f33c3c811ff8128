import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { type DriverConfig, startDriver, type Mounter } from '@spire-csi/driver/internal';
import type { Logger as PinoLogger } from 'pino';
import { validateRegistrations } from '../dev-agent/registrations.js';
import { DevAgent } from '../dev-agent/server.js';
import type { CleanupStack } from './cleanup.js';
import { DemoError, messageOf } from './errors.js';
import { KubeletClient, type KubeletPod, type PublishedVolume } from './kubelet-client.js';
import type { DemoLayout } from './layout.js';
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
}

/**
 * One Kubernetes node without Kubernetes: the development agent on its admin socket, the driver
 * on its CSI socket, and a kubelet client. Every part registers its own teardown.
 */
export async function startNode(params: NodeParams): Promise<KubeletClient> {
  const { layout, logger, cleanup } = params;
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
  await mkdir(dirname(layout.adminSocket), { recursive: true, mode: 0o700 });
  await mkdir(`${layout.kubeletRoot}/pods`, { recursive: true, mode: 0o750 });

  const agent = new DevAgent({
    socketPath: layout.adminSocket,
    trustDomain: params.trustDomain,
    registrations,
    svidTtlMs: params.svidTtlMs,
    logger: logger.child({ component: 'dev-agent' }),
  });
  cleanup.push('stopping the dev agent', () => agent.stop());
  try {
    await agent.start();
  } catch (error) {
    throw new DemoError(`starting the dev agent failed: ${messageOf(error)}`, `look at ${layout.logFile}`, { cause: error });
  }

  const config: DriverConfig = {
    csiSocketPath: layout.csiSocket,
    nodeId: NODE_NAME,
    adminSocketPath: layout.adminSocket,
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
  return kubelet;
}

/** NodePublishVolume as kubelet sends it when the pod starts; unpublished again at cleanup. */
export async function publishPod(
  kubelet: KubeletClient,
  { role, pod }: DemoPod,
  cleanup: CleanupStack,
  logFile: string,
): Promise<PublishedVolume> {
  const volume = kubelet.volumeFor(pod);
  // Registered first: a publish that failed halfway may still have left a mount to remove.
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
