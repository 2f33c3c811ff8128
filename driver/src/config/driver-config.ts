import { isAbsolute } from 'node:path';
import { parseCsiEndpoint } from '../csi/server.js';
import { parseDuration } from './duration.js';
import { parseSelinuxSetting, SelinuxSettingError, type SelinuxSetting } from '../mount/selinux.js';
import { ConfigError, formatHelp, parseOptions, type OptionSpec } from './options.js';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

export interface DriverConfig {
  /** Absolute path of the CSI unix socket (from `unix:///path`). */
  readonly csiSocketPath: string;
  readonly nodeId: string;
  readonly adminSocketPath: string;
  readonly kubeletRoot: string;
  readonly stateDir: string;
  readonly pluginName: string;
  readonly publishTimeoutMs: number;
  readonly logLevel: LogLevel;
  /** `host:port` for /metrics, /healthz and /readyz; null disables the listener. */
  readonly metricsAddress: string | null;
  /** The SELinux label of tmpfs mounts kubelet sent no `context=` for; `auto` when absent. */
  readonly selinuxContext?: SelinuxSetting;
}

export const DRIVER_OPTIONS: readonly OptionSpec[] = [
  { flag: 'csi-endpoint', env: 'SPIRE_CSI_ENDPOINT', required: true, help: 'CSI socket kubelet connects to, unix:///abs/path/csi.sock' },
  { flag: 'node-id', env: 'SPIRE_CSI_NODE_ID', required: true, help: 'this node\'s name; sent as NodeGetInfo node_id and the k8s:node-name selector' },
  { flag: 'admin-socket', env: 'SPIRE_CSI_ADMIN_SOCKET', required: true, help: 'SPIRE agent admin socket serving the Delegated Identity API' },
  { flag: 'kubelet-root', env: 'SPIRE_CSI_KUBELET_ROOT', default: '/var/lib/kubelet', help: 'kubelet root directory; target paths must lie under <root>/pods' },
  { flag: 'state-dir', env: 'SPIRE_CSI_STATE_DIR', default: '/var/lib/spire-csi', help: 'where per-volume metadata records live (no secrets)' },
  { flag: 'plugin-name', env: 'SPIRE_CSI_PLUGIN_NAME', default: 'csi.spire.io', help: 'CSI driver name reported by GetPluginInfo' },
  { flag: 'publish-timeout', env: 'SPIRE_CSI_PUBLISH_TIMEOUT', default: '30s', help: 'how long NodePublishVolume waits for the first SVID and bundle' },
  { flag: 'log-level', env: 'SPIRE_CSI_LOG_LEVEL', default: 'info', help: `one of ${LOG_LEVELS.join(', ')}` },
  { flag: 'metrics-address', env: 'SPIRE_CSI_METRICS_ADDRESS', default: '', help: 'host:port for /metrics, /healthz, /readyz (empty: off)' },
  {
    flag: 'selinux-context',
    env: 'SPIRE_CSI_SELINUX_CONTEXT',
    default: 'auto',
    help: 'SELinux label of volumes kubelet sends no context= for: auto (container_file_t:s0 when /sys/fs/selinux is mounted), none, or a label',
  },
];

export const DRIVER_USAGE =
  'Usage: spire-csi-driver --csi-endpoint unix:///PATH/csi.sock --node-id NODE --admin-socket /PATH/admin.sock [flags]\n' +
  '       spire-csi-driver dev-agent --help';

export function driverHelp(): string {
  return formatHelp(DRIVER_USAGE, DRIVER_OPTIONS);
}

/** Returns null when `--help` was asked for. */
export function parseDriverConfig(argv: readonly string[], env: NodeJS.ProcessEnv): DriverConfig | null {
  const { values, help } = parseOptions(DRIVER_OPTIONS, argv, env);
  if (help) return null;
  const get = (flag: string): string => values.get(flag) ?? '';
  const logLevel = get('log-level') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(`--log-level "${logLevel}" is not one of ${LOG_LEVELS.join(', ')}`);
  }
  for (const flag of ['admin-socket', 'kubelet-root', 'state-dir']) {
    if (!isAbsolute(get(flag))) throw new ConfigError(`--${flag} must be an absolute path, got "${get(flag)}"`);
  }
  const metrics = get('metrics-address');
  if (metrics !== '' && !/^[^\s:]*:\d{1,5}$/.test(metrics) && !/^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(metrics)) {
    throw new ConfigError(`--metrics-address "${metrics}" must be host:port, e.g. 0.0.0.0:9809`);
  }
  return {
    csiSocketPath: parseUnixEndpoint(get('csi-endpoint')),
    nodeId: get('node-id'),
    adminSocketPath: get('admin-socket'),
    kubeletRoot: get('kubelet-root').replace(/\/+$/, '') || '/',
    stateDir: get('state-dir'),
    pluginName: get('plugin-name'),
    publishTimeoutMs: parseDuration(get('publish-timeout'), '--publish-timeout'),
    logLevel,
    metricsAddress: metrics === '' ? null : metrics,
    selinuxContext: parseSelinuxContext(get('selinux-context')),
  };
}

function parseSelinuxContext(value: string): SelinuxSetting {
  try {
    return parseSelinuxSetting(value);
  } catch (error) {
    if (error instanceof SelinuxSettingError) throw new ConfigError(error.message);
    throw error;
  }
}

/** The CSI server's own endpoint rule, reported as a command-line error. */
export function parseUnixEndpoint(endpoint: string): string {
  try {
    return parseCsiEndpoint(endpoint);
  } catch (error) {
    throw new ConfigError(`--csi-endpoint ${(error as Error).message.replace(/^csi: endpoint /, '')}`);
  }
}
