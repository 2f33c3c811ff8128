import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { TrustDomain } from '@spire-csi/sdk';
import { DurationError, parseDuration } from '@spire-csi/driver/internal';
import { DemoUsageError } from './errors.js';

/** How the driver gets the pods' identities from the (development) agent. */
export type DemoIdentityApi = 'delegated' | 'broker';
export const DEMO_IDENTITY_APIS: readonly DemoIdentityApi[] = ['delegated', 'broker'];

export interface DemoOptions {
  /** How often SVIDs rotate; the dev agent issues them with twice this TTL and reissues at half-life. */
  readonly rotationMs: number;
  readonly trustDomain: string;
  /** The parent of the demo folder (the demo creates and removes its own folder inside it). */
  readonly parentFolder: string | null;
  /** Stop by itself after this long; null runs until a signal. */
  readonly durationMs: number | null;
  /** Stop after the client has seen this many rotations; null means no limit. */
  readonly rotations: number | null;
  readonly plain: boolean;
  readonly keepLogs: boolean;
  /** `delegated`: the Delegated Identity API on the admin socket; `broker`: the SPIFFE Broker API over mTLS. */
  readonly identityApi: DemoIdentityApi;
}

export const DEFAULT_ROTATION = '10s';
export const DEFAULT_TRUST_DOMAIN = 'example.org';
/**
 * Certificate times are whole seconds, so an SVID may expire up to a second before its TTL says;
 * below this, that second is most of the time left after rotation.
 */
const MIN_ROTATION_MS = 2_000;

export const DEMO_HELP = `Usage: npm run demo -- [options]
       npx spire-csi-demo [options]

Runs the whole product on this machine, no cluster needed: a development SPIRE agent, the
spire-csi driver, two pods' volumes published through the CSI socket exactly as kubelet would,
and an mTLS server and client that use @spire-csi/sdk on those folders while the SVIDs rotate.

Options:
  --rotation <duration>      how often SVIDs rotate (at least 2s); the SVID TTL is twice this
                             (default ${DEFAULT_ROTATION})
  --trust-domain <name>      trust domain of the demo SPIFFE IDs (default ${DEFAULT_TRUST_DOMAIN})
  --folder <dir>             where the demo creates its own folder (default: the system temp folder)
  --duration <duration>      stop by itself after this long (default: run until Ctrl-C)
  --rotations <n>            stop after the client has seen n rotations (default: no limit)
  --identity-api <api>       how the driver asks the agent: delegated (the Delegated Identity
                             API, default) or broker (the SPIFFE Broker API over mutual TLS,
                             with the driver's own SVID from the Workload API)
  --plain                    plain log lines instead of the live display
                             (automatic when stdout is not a terminal)
  --keep-logs                keep the log file when the demo folder is removed
  --help                     show this help

Durations are a number with a unit: 500ms, 2s, 1m30s, 1h.
Ctrl-C or SIGTERM unpublishes the volumes, unmounts them and removes the demo folder, then exits 0.
As root the volumes are real tmpfs mounts; otherwise they are plain folders (the demo says so).
`;

/** Returns null when `--help` was asked for. Throws DemoUsageError naming the bad option. */
export function parseDemoArgs(argv: readonly string[]): DemoOptions | null {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: 'boolean', short: 'h' },
        rotation: { type: 'string' },
        'trust-domain': { type: 'string' },
        folder: { type: 'string' },
        duration: { type: 'string' },
        rotations: { type: 'string' },
        'identity-api': { type: 'string' },
        plain: { type: 'boolean' },
        'keep-logs': { type: 'boolean' },
      },
    }));
  } catch (error) {
    throw new DemoUsageError(`${(error as Error).message}; run with --help for the options`);
  }
  if (values.help === true) return null;
  const text = (name: string): string | undefined => {
    const value = values[name];
    return typeof value === 'string' ? value : undefined;
  };

  const rotationMs = duration(text('rotation') ?? DEFAULT_ROTATION, '--rotation');
  if (rotationMs < MIN_ROTATION_MS) {
    throw new DemoUsageError(`--rotation must be at least 2s, got "${text('rotation')}"`);
  }
  let trustDomain: string;
  try {
    trustDomain = TrustDomain.parse(text('trust-domain') ?? DEFAULT_TRUST_DOMAIN).name;
  } catch (error) {
    throw new DemoUsageError(`--trust-domain: ${(error as Error).message}`);
  }
  const durationText = text('duration');
  const rotationsText = text('rotations');
  let rotations: number | null = null;
  if (rotationsText !== undefined) {
    if (!/^\d+$/.test(rotationsText) || Number(rotationsText) < 1) {
      throw new DemoUsageError(`--rotations must be a whole number of at least 1, got "${rotationsText}"`);
    }
    rotations = Number(rotationsText);
  }
  const folder = text('folder');
  if (folder === '') throw new DemoUsageError('--folder must not be empty');
  const identityApi = text('identity-api') ?? 'delegated';
  if (!isIdentityApi(identityApi)) {
    throw new DemoUsageError(`--identity-api must be one of ${DEMO_IDENTITY_APIS.join(', ')}, got "${identityApi}"`);
  }
  return {
    rotationMs,
    trustDomain,
    parentFolder: folder === undefined ? null : resolve(folder),
    durationMs: durationText === undefined ? null : duration(durationText, '--duration'),
    rotations,
    plain: values.plain === true,
    keepLogs: values['keep-logs'] === true,
    identityApi,
  };
}

function isIdentityApi(value: string): value is DemoIdentityApi {
  return (DEMO_IDENTITY_APIS as readonly string[]).includes(value);
}

function duration(text: string, flag: string): number {
  try {
    return parseDuration(text, flag);
  } catch (error) {
    if (error instanceof DurationError) throw new DemoUsageError(error.message);
    throw error;
  }
}
