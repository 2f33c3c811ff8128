import { isAbsolute } from 'node:path';
import { TrustDomain, type Logger } from '@spire-csi/sdk';
import {
  parseDuration,
  ConfigError,
  formatHelp,
  parseOptions,
  type OptionSpec,
  createLogger,
  type LogLevel,
} from '@spire-csi/driver/internal';
import { RegistrationError } from './registrations.js';
import { DevAgent } from './server.js';

export const DEV_AGENT_OPTIONS: readonly OptionSpec[] = [
  { flag: 'socket', env: 'SPIRE_CSI_DEV_AGENT_SOCKET', required: true, help: 'absolute path of the admin socket to serve (the driver\'s --admin-socket)' },
  { flag: 'trust-domain', env: 'SPIRE_CSI_DEV_AGENT_TRUST_DOMAIN', required: true, help: 'trust domain of the SVIDs it issues, e.g. example.org' },
  { flag: 'registrations', env: 'SPIRE_CSI_DEV_AGENT_REGISTRATIONS', required: true, help: 'registration JSON file (entries + federatedTrustDomains); SIGHUP reloads it' },
  { flag: 'svid-ttl', env: 'SPIRE_CSI_DEV_AGENT_SVID_TTL', default: '1h', help: 'X509-SVID lifetime; SVIDs are reissued at half-life' },
  { flag: 'jwt-svid-ttl', env: 'SPIRE_CSI_DEV_AGENT_JWT_SVID_TTL', default: '5m', help: 'JWT-SVID lifetime; every FetchJWTSVIDs signs fresh tokens' },
  { flag: 'log-level', env: 'SPIRE_CSI_LOG_LEVEL', default: 'info', help: 'trace, debug, info, warn, error or fatal' },
];

const USAGE =
  'Usage: spire-csi-driver dev-agent --socket PATH --trust-domain example.org --registrations FILE [--svid-ttl 1h] [--jwt-svid-ttl 5m]\n\n' +
  'DEVELOPMENT ONLY: a stand-in for a SPIRE agent\'s admin socket that serves the Delegated Identity API\n' +
  'from an in-memory CA. It attests nothing and trusts every caller; never use it in production.';

export interface DevAgentSettings {
  readonly socketPath: string;
  readonly trustDomain: string;
  readonly registrationsFile: string;
  readonly svidTtlMs: number;
  readonly jwtSvidTtlMs: number;
  readonly logLevel: LogLevel;
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
  return { socketPath: get('socket'), trustDomain, registrationsFile: get('registrations'), svidTtlMs, jwtSvidTtlMs, logLevel };
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
 * resolves 0); SIGHUP re-reads the registration file, keeping the old one if the new one is bad.
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
  });
  try {
    await agent.start();
  } catch (error) {
    await agent.stop().catch(() => {});
    if (error instanceof RegistrationError) throw new ConfigError(`${settings.registrationsFile}: ${error.message}`);
    throw error;
  }
  return new Promise<number>((resolve) => {
    const reload = () => {
      agent.reloadRegistrations().catch((error: unknown) => {
        logger.error({ file: settings.registrationsFile }, `dev-agent: reload failed, keeping the previous registrations: ${(error as Error).message}`);
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
