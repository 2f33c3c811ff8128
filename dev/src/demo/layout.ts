import { join } from 'node:path';
import { DemoError } from './errors.js';

/** Where everything of one demo run lives; all of it is inside `root`, which the demo removes. */
export interface DemoLayout {
  readonly root: string;
  readonly kubeletRoot: string;
  readonly stateDir: string;
  readonly csiSocket: string;
  readonly adminSocket: string;
  /** The dev agent's Workload API (broker mode: the driver's own SVID). */
  readonly workloadSocket: string;
  /** The dev agent's Broker endpoint, in a folder apart from the Workload API's as SPIRE requires. */
  readonly brokerSocket: string;
  /** The pods the dev agent sees on its node (broker mode), kept in sync by the demo. */
  readonly podsFile: string;
  readonly logFile: string;
}

/** sockaddr_un holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

export function demoLayout(root: string): DemoLayout {
  const layout: DemoLayout = {
    root,
    kubeletRoot: join(root, 'kubelet'),
    stateDir: join(root, 'state'),
    csiSocket: join(root, 'plugin', 'csi.sock'),
    adminSocket: join(root, 'agent', 'admin.sock'),
    workloadSocket: join(root, 'agent-sockets', 'api.sock'),
    brokerSocket: join(root, 'broker-sockets', 'broker.sock'),
    podsFile: join(root, 'agent', 'pods.json'),
    logFile: join(root, 'demo.log'),
  };
  for (const socket of [layout.csiSocket, layout.adminSocket, layout.workloadSocket, layout.brokerSocket]) {
    if (Buffer.byteLength(socket) > MAX_SOCKET_PATH_BYTES) {
      throw new DemoError(
        `the socket path ${socket} is longer than the ${MAX_SOCKET_PATH_BYTES} bytes a unix socket allows`,
        'pass a shorter --folder, e.g. --folder /tmp',
      );
    }
  }
  return layout;
}
