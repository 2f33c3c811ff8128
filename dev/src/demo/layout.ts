import { join } from 'node:path';
import { DemoError } from './errors.js';

/** Where everything of one demo run lives; all of it is inside `root`, which the demo removes. */
export interface DemoLayout {
  readonly root: string;
  readonly kubeletRoot: string;
  readonly stateDir: string;
  readonly csiSocket: string;
  readonly adminSocket: string;
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
    logFile: join(root, 'demo.log'),
  };
  for (const socket of [layout.csiSocket, layout.adminSocket]) {
    if (Buffer.byteLength(socket) > MAX_SOCKET_PATH_BYTES) {
      throw new DemoError(
        `the socket path ${socket} is longer than the ${MAX_SOCKET_PATH_BYTES} bytes a unix socket allows`,
        'pass a shorter --folder, e.g. --folder /tmp',
      );
    }
  }
  return layout;
}
