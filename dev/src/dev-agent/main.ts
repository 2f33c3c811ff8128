import { isAbsolute } from 'node:path';
import { SpiffeId, TrustDomain, type Logger } from '@spire-csi/sdk';
import {
  parseDuration,
  ConfigError,
  formatHelp,
  parseOptions,
  type OptionSpec,
  createLogger,
  type LogLevel,
} from '@spire-csi/driver/internal';
import type { BrokerAuthz } from './broker-service.js';
import { PodListError } from './pods.js';
import { RegistrationError } from './registrations.js';
import { DevAgent } from './server.js';

export const DEV_AGENT_OPTIONS: readonly OptionSpec[] = [
  { flag: 'socket', env: 'SPIRE_CSI_DEV_AGENT_SOCKET', required: true, help: 'absolute path of the admin socket to serve (the driver\'s --admin-socket)' },
  { flag: 'trust-domain', env: 'SPIRE_CSI_DEV_AGENT_TRUST_DOMAIN', required: true, help: 'trust domain of the SVIDs it issues, e.g. example.org' },
  { flag: 'registrations', env: 'SPIRE_CSI_DEV_AGENT_REGISTRATIONS', required: true, help: 'registration JSON file (entries + federatedTrustDomains); SIGHUP reloads it' },
  { flag: 'svid-ttl', env: 'SPIRE_CSI_DEV_AGENT_SVID_TTL', default: '1h', help: 'X509-SVID lifetime; SVIDs are reissued at half-life' },
  { flag: 'jwt-svid-ttl', env: 'SPIRE_CSI_DEV_AGENT_JWT_SVID_TTL', default: '5m', help: 'JWT-SVID lifetime; every FetchJWTSVIDs signs fresh tokens' },
  { flag: 'workload-socket', env: 'SPIRE_CSI_DEV_AGENT_WORKLOAD_SOCKET', help: 'absolute path of a SPIFFE Workload API socket serving the driver\'s own SVID (the driver\'s --workload-api); off when unset' },
  { flag: 'workload-id', env: 'SPIRE_CSI_DEV_AGENT_WORKLOAD_ID', help: 'SPIFFE ID served on --workload-socket (default spiffe://<trust-domain>/ns/spire-csi/sa/spire-csi-driver)' },
  { flag: 'broker-socket', env: 'SPIRE_CSI_DEV_AGENT_BROKER_SOCKET', help: 'absolute path of a SPIFFE Broker endpoint socket, mutual TLS (the driver\'s --broker-endpoint); off when unset' },
  { flag: 'broker-server-id', env: 'SPIRE_CSI_DEV_AGENT_BROKER_SERVER_ID', help: 'SPIFFE ID the broker endpoint presents (default spiffe://<trust-domain>/spire/agent/dev; the driver\'s --broker-id)' },
  { flag: 'brokers', env: 'SPIRE_CSI_DEV_AGENT_BROKERS', help: 'comma-separated SPIFFE IDs allowed to use the broker endpoint (default: the --workload-id)' },
  { flag: 'broker-authz', env: 'SPIRE_CSI_DEV_AGENT_BROKER_AUTHZ', default: 'call', help: 'where a client not in --brokers is refused: "call" (PermissionDenied per call) or "handshake" (connection dropped after the TLS handshake, as SPIRE does)' },
  { flag: 'pods', env: 'SPIRE_CSI_DEV_AGENT_PODS', help: 'JSON array of {namespace, name, uid, serviceAccount}: the pods on this node that broker references resolve to; re-read on change and on SIGHUP' },
  { flag: 'broker-error-info', env: 'SPIRE_CSI_DEV_AGENT_BROKER_ERROR_INFO', default: 'true', help: 'attach google.rpc.ErrorInfo to the broker endpoint\'s reference errors: true or false' },
  { flag: 'node-name', env: 'SPIRE_CSI_DEV_AGENT_NODE_NAME', help: 'node name; adds a k8s:node-name selector to every broker-resolved pod' },
  { flag: 'log-level', env: 'SPIRE_CSI_LOG_LEVEL', default: 'info', help: 'trace, debug, info, warn, error or fatal' },
];

const USAGE =
  'Usage: spire-csi-driver dev-agent --socket PATH --trust-domain example.org --registrations FILE [--svid-ttl 1h] [--jwt-svid-ttl 5m]\n' +
  '         [--workload-socket PATH] [--broker-socket PATH --pods FILE [--brokers ID,...] [--broker-authz call|handshake]]\n\n' +
  'DEVELOPMENT ONLY: a stand-in for a SPIRE agent\'s admin socket that serves the Delegated Identity API\n' +
  'from an in-memory CA. It attests nothing and trusts every caller; never use it in production.\n' +
  'With --workload-socket it also serves the driver\'s own SVID on the SPIFFE Workload API; with\n' +
  '--broker-socket, the SPIFFE Broker API over mutual TLS, resolving pod references against --pods.';

export interface DevAgentSettings {
  readonly socketPath: string;
  readonly trustDomain: string;
  readonly registrationsFile: string;
  readonly svidTtlMs: number;
  readonly jwtSvidTtlMs: number;
  readonly logLevel: LogLevel;
  readonly workloadSocketPath?: string;
  readonly workloadId?: string;
  readonly brokerSocketPath?: string;
  readonly brokerServerId?: string;
  readonly brokers?: readonly string[];
  readonly brokerAuthz: BrokerAuthz;
  readonly podsFile?: string;
  readonly errorInfo: boolean;
  readonly nodeName?: string;
}

const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];
const MIN_TTL_MS = 1_000;

/** Returns null when `--help` was asked for. Throws ConfigError naming the bad flag. */
export function parseDevAgentArgs(argv: readonly string[], env: NodeJS.ProcessEnv): DevAgentSettings | null {
  const { values, help } = parseOptions(DEV_AGENT_OPTIONS, argv, env);
  if (help) return null;
  const get = (flag: string): string => values.get(flag) ?? '';
  if (!isAbsolute(get('socket'))) throw new ConfigError(`--socket must be an absolute path, got "${get('socket')}"`);
  let trustDomain: string;
  try {
    trustDomain = TrustDomain.parse(get('trust-domain')).name;
  } catch (error) {
    throw new ConfigError(`--trust-domain: ${(error as Error).message}`);
  }
  const svidTtlMs = parseDuration(get('svid-ttl'), '--svid-ttl');
  if (svidTtlMs < MIN_TTL_MS) throw new ConfigError(`--svid-ttl must be at least 1s, got "${get('svid-ttl')}"`);
  const jwtSvidTtlMs = parseDuration(get('jwt-svid-ttl'), '--jwt-svid-ttl');
  if (jwtSvidTtlMs < MIN_TTL_MS) throw new ConfigError(`--jwt-svid-ttl must be at least 1s, got "${get('jwt-svid-ttl')}"`);
  const logLevel = get('log-level') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError(`--log-level "${logLevel}" is not one of ${LOG_LEVELS.join(', ')}`);
  return {
    socketPath: get('socket'),
    trustDomain,
    registrationsFile: get('registrations'),
    svidTtlMs,
    jwtSvidTtlMs,
    logLevel,
    ...parseSpiffeEndpointArgs(values, trustDomain),
  };
}

type SpiffeEndpointSettings = Pick<
  DevAgentSettings,
  'workloadSocketPath' | 'workloadId' | 'brokerSocketPath' | 'brokerServerId' | 'brokers' | 'brokerAuthz' | 'podsFile' | 'errorInfo' | 'nodeName'
>;

/** The Workload API and Broker endpoint flags; only the ones given appear in the result. */
function parseSpiffeEndpointArgs(values: ReadonlyMap<string, string>, trustDomain: string): SpiffeEndpointSettings {
  const out: { -readonly [K in keyof SpiffeEndpointSettings]: SpiffeEndpointSettings[K] } = { brokerAuthz: 'call', errorInfo: true };
  for (const [flag, key] of [['workload-socket', 'workloadSocketPath'], ['broker-socket', 'brokerSocketPath']] as const) {
    const path = values.get(flag);
    if (path === undefined) continue;
    if (!isAbsolute(path)) throw new ConfigError(`--${flag} must be an absolute path, got "${path}"`);
    out[key] = path;
  }
  for (const [flag, key] of [['workload-id', 'workloadId'], ['broker-server-id', 'brokerServerId']] as const) {
    const text = values.get(flag);
    if (text === undefined) continue;
    const id = parseId(text, `--${flag}`);
    if (id.trustDomain.name !== trustDomain) {
      throw new ConfigError(`--${flag} "${text}" must be in --trust-domain "${trustDomain}": the agent's CA issues it`);
    }
    out[key] = id.toString();
  }
  const brokers = values.get('brokers');
  if (brokers !== undefined) {
    out.brokers = brokers.split(',').map((item, i) => {
      if (item.trim() === '') throw new ConfigError(`--brokers item ${i + 1} is empty; give comma-separated SPIFFE IDs`);
      return parseId(item.trim(), `--brokers item ${i + 1}`).toString();
    });
  }
  const authz = values.get('broker-authz') ?? 'call';
  if (authz !== 'call' && authz !== 'handshake') throw new ConfigError(`--broker-authz must be "call" or "handshake", got "${authz}"`);
  out.brokerAuthz = authz;
  const errorInfo = values.get('broker-error-info') ?? 'true';
  if (errorInfo !== 'true' && errorInfo !== 'false') throw new ConfigError(`--broker-error-info must be "true" or "false", got "${errorInfo}"`);
  out.errorInfo = errorInfo === 'true';
  const pods = values.get('pods');
  if (pods !== undefined) out.podsFile = pods;
  const nodeName = values.get('node-name');
  if (nodeName !== undefined) out.nodeName = nodeName;
  if (out.brokerSocketPath === undefined) {
    for (const flag of ['pods', 'brokers', 'broker-server-id'] as const) {
      if (values.has(flag)) throw new ConfigError(`--${flag} configures the broker endpoint; add --broker-socket PATH to serve it`);
    }
  }
  return out;
}

function parseId(text: string, field: string): SpiffeId {
  try {
    return SpiffeId.parse(text);
  } catch (error) {
    throw new ConfigError(`${field}: ${(error as Error).message}`);
  }
}

export function devAgentHelp(): string {
  return formatHelp(USAGE, DEV_AGENT_OPTIONS);
}

export interface DevAgentIo {
  /** Where SIGTERM/SIGINT/SIGHUP come from (the process by default). */
  readonly signals: Pick<NodeJS.EventEmitter, 'on' | 'off'>;
  readonly stdout: (text: string) => void;
  readonly logger?: Logger;
}

const processIo: DevAgentIo = { signals: process, stdout: (text) => void process.stdout.write(text) };

/**
 * `spire-csi-driver dev-agent ...`: serves until SIGTERM or SIGINT (then stops cleanly and
 * resolves 0); SIGHUP re-reads the registration file (and the pods file), keeping the old one if
 * the new one is bad.
 */
export async function runDevAgent(argv: readonly string[], env: NodeJS.ProcessEnv, io: DevAgentIo = processIo): Promise<number> {
  const settings = parseDevAgentArgs(argv, env);
  if (settings === null) {
    io.stdout(devAgentHelp());
    return 0;
  }
  const logger = io.logger ?? createLogger(settings.logLevel);
  const agent = new DevAgent({
    socketPath: settings.socketPath,
    trustDomain: settings.trustDomain,
    registrationsFile: settings.registrationsFile,
    svidTtlMs: settings.svidTtlMs,
    jwtSvidTtlMs: settings.jwtSvidTtlMs,
    logger,
    workloadSocketPath: settings.workloadSocketPath,
    workloadId: settings.workloadId,
    brokerSocketPath: settings.brokerSocketPath,
    brokerServerId: settings.brokerServerId,
    brokers: settings.brokers,
    brokerAuthz: settings.brokerAuthz,
    podsFile: settings.podsFile,
    errorInfo: settings.errorInfo,
    nodeName: settings.nodeName,
  });
  try {
    await agent.start();
  } catch (error) {
    await agent.stop().catch(() => {});
    if (error instanceof RegistrationError) throw new ConfigError(`${settings.registrationsFile}: ${error.message}`);
    if (error instanceof PodListError) throw new ConfigError(`${settings.podsFile}: ${error.message}`);
    throw error;
  }
  return new Promise<number>((resolve) => {
    const reload = () => {
      agent.reloadRegistrations().catch((error: unknown) => {
        logger.error({ file: settings.registrationsFile }, `dev-agent: reload failed, keeping the previous registrations: ${(error as Error).message}`);
      });
      if (settings.podsFile === undefined) return;
      agent.reloadPods().catch((error: unknown) => {
        logger.error({ file: settings.podsFile }, `dev-agent: pods reload failed, keeping the previous list: ${(error as Error).message}`);
      });
    };
    const stop = (signal: string) => {
      io.signals.off('SIGHUP', reload);
      io.signals.off('SIGTERM', stop);
      io.signals.off('SIGINT', stop);
      logger.info({ signal }, 'dev-agent: stopping');
      agent.stop().then(
        () => resolve(0),
        (error: unknown) => {
          logger.error({ err: error }, 'dev-agent: stop failed');
          resolve(1);
        },
      );
    };
    io.signals.on('SIGHUP', reload);
    io.signals.on('SIGTERM', stop);
    io.signals.on('SIGINT', stop);
  });
}
