import { isAbsolute } from 'node:path';
import { SpiffeId } from '@spire-csi/sdk/spiffeid';
import { parseEndpointUri } from '@spire-csi/sdk/workload-api';
import { parseCsiEndpoint } from '../csi/server.js';
import { parseDuration } from './duration.js';
import { parseSelinuxSetting, SelinuxSettingError, type SelinuxSetting } from '../mount/selinux.js';
import { ConfigError, envNames, formatHelp, parseOptions, type OptionSpec } from './options.js';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

/** Where identities come from: SPIRE's Delegated Identity API (admin socket) or the SPIFFE Broker API. */
export type IdentityApi = 'delegated' | 'broker';
const IDENTITY_APIS: readonly IdentityApi[] = ['delegated', 'broker'];

/** Broker mode's endpoints, checked at start-up. */
export interface BrokerSettings {
  /** The Broker endpoint URI as given: `unix:///abs/path` or `tcp://host:port` (DNS names allowed). */
  readonly endpoint: string;
  /** The same endpoint as a @grpc/grpc-js target. */
  readonly target: string;
  /** The Workload API URI the driver gets its own SVID from: `unix:///abs/path` or `tcp://IP:port`. */
  readonly workloadApi: string;
  /** The SPIFFE ID the broker endpoint must present; absent: any ID of the driver's own trust domain. */
  readonly brokerId?: string;
}

export interface DriverConfig {
  /** Absolute path of the CSI unix socket (from `unix:///path`). */
  readonly csiSocketPath: string;
  readonly nodeId: string;
  /** Default `delegated`. */
  readonly identityApi?: IdentityApi;
  /** The SPIRE agent's admin socket (delegated mode; empty in broker mode). */
  readonly adminSocketPath: string;
  /** Set in broker mode. */
  readonly broker?: BrokerSettings;
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
  {
    flag: 'identity-api',
    env: 'SPIRE_CSI_IDENTITY_API',
    default: 'delegated',
    help: 'where identities come from: delegated (SPIRE Delegated Identity API on --admin-socket) or broker (SPIFFE Broker API on --broker-endpoint)',
  },
  { flag: 'admin-socket', env: 'SPIRE_CSI_ADMIN_SOCKET', help: 'SPIRE agent admin socket serving the Delegated Identity API (required for delegated)' },
  {
    flag: 'broker-endpoint',
    env: 'SPIRE_CSI_BROKER_ENDPOINT',
    fallbackEnv: 'SPIFFE_BROKER_SOCKET',
    help: 'SPIFFE Broker endpoint of the SPIRE agent, unix:///abs/path or tcp://host:port (required for broker)',
  },
  {
    flag: 'workload-api',
    env: 'SPIRE_CSI_WORKLOAD_API',
    fallbackEnv: 'SPIFFE_ENDPOINT_SOCKET',
    help: "Workload API the driver gets its own SVID from, unix:///abs/path or tcp://IP:port (required for broker)",
  },
  {
    flag: 'broker-id',
    env: 'SPIRE_CSI_BROKER_ID',
    help: "SPIFFE ID the broker endpoint must present, spiffe://TD/PATH (broker; default: any ID of the driver's own trust domain)",
  },
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
  '       spire-csi-driver --csi-endpoint unix:///PATH/csi.sock --node-id NODE --identity-api broker \\\n' +
  '         --broker-endpoint unix:///PATH/broker.sock --workload-api unix:///PATH/api.sock [--broker-id spiffe://TD/PATH] [flags]\n' +
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
  const identityApi = get('identity-api') as IdentityApi;
  if (!IDENTITY_APIS.includes(identityApi)) {
    throw new ConfigError(`--identity-api "${identityApi}" is not one of ${IDENTITY_APIS.join(', ')}`);
  }
  if (identityApi === 'delegated') requireFlag(values, 'admin-socket', 'delegated');
  const absolute = identityApi === 'delegated' ? ['admin-socket', 'kubelet-root', 'state-dir'] : ['kubelet-root', 'state-dir'];
  for (const flag of absolute) {
    if (!isAbsolute(get(flag))) throw new ConfigError(`--${flag} must be an absolute path, got "${get(flag)}"`);
  }
  const broker = identityApi === 'broker' ? parseBrokerSettings(values) : undefined;
  const metrics = get('metrics-address');
  if (metrics !== '' && !/^[^\s:]*:\d{1,5}$/.test(metrics) && !/^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(metrics)) {
    throw new ConfigError(`--metrics-address "${metrics}" must be host:port, e.g. 0.0.0.0:9809`);
  }
  return {
    csiSocketPath: parseUnixEndpoint(get('csi-endpoint')),
    nodeId: get('node-id'),
    identityApi,
    adminSocketPath: identityApi === 'delegated' ? get('admin-socket') : '',
    ...(broker === undefined ? {} : { broker }),
    kubeletRoot: get('kubelet-root').replace(/\/+$/, '') || '/',
    stateDir: get('state-dir'),
    pluginName: get('plugin-name'),
    publishTimeoutMs: parseDuration(get('publish-timeout'), '--publish-timeout'),
    logLevel,
    metricsAddress: metrics === '' ? null : metrics,
    selinuxContext: parseSelinuxContext(get('selinux-context')),
  };
}

function requireFlag(values: ReadonlyMap<string, string>, flag: string, mode: IdentityApi): string {
  const value = values.get(flag);
  const spec = DRIVER_OPTIONS.find((option) => option.flag === flag)!;
  if (value === undefined || value === '') {
    throw new ConfigError(`--${flag} (or ${envNames(spec)}) is required with --identity-api ${mode}: ${spec.help}`);
  }
  return value;
}

function parseBrokerSettings(values: ReadonlyMap<string, string>): BrokerSettings {
  const endpoint = requireFlag(values, 'broker-endpoint', 'broker');
  const workloadApi = requireFlag(values, 'workload-api', 'broker');
  // The Broker endpoint is authenticated with mTLS, so it may be a DNS name (Broker Endpoint §4);
  // the Workload API is local and unauthenticated, so an IP only (Workload Endpoint §4).
  const target = endpointUri(endpoint, '--broker-endpoint', true).grpcTarget;
  endpointUri(workloadApi, '--workload-api', false);
  const brokerIdText = values.get('broker-id');
  if (brokerIdText === undefined || brokerIdText === '') return { endpoint, target, workloadApi };
  let brokerId: SpiffeId;
  try {
    brokerId = SpiffeId.parse(brokerIdText);
  } catch (error) {
    throw new ConfigError(`--broker-id "${brokerIdText}" is not a SPIFFE ID (${(error as Error).message}); use spiffe://<trust domain>/<path>, e.g. spiffe://example.org/spire/agent/k8s_psat/cluster/node-1`);
  }
  return { endpoint, target, workloadApi, brokerId: brokerId.toString() };
}

function endpointUri(value: string, what: string, allowDnsNames: boolean): ReturnType<typeof parseEndpointUri> {
  try {
    return parseEndpointUri(value, { what, allowDnsNames });
  } catch (error) {
    throw new ConfigError((error as Error).message.replace(/^workloadapi: /, ''));
  }
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
