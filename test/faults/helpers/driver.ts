/**
 * Fault tests need drivers the harness does not start: with a metrics listener, another agent
 * socket, or a faster reconnect schedule. This starts one in-process with its log lines captured.
 */
import { Writable } from 'node:stream';
import { DriverHarness } from '../../helpers/driver-harness.js';
import { entry } from '../../helpers/registration-entry.js';
import type { DriverConfig } from '../../../driver/src/config/driver-config.js';
import { createLogger } from '../../../driver/src/logging.js';
import { startDriver, type DriverDependencies, type RunningDriver } from '../../../driver/src/main.js';
import { DelegatedBackend } from '../../../driver/src/identity/delegated/delegated-backend.js';
import { DelegatedIdentityClient } from '../../../driver/src/identity/delegated/delegated-identity-client.js';
import type { BackoffOptions } from '../../../driver/src/retry/backoff.js';

export interface InProcessDriver {
  readonly running: RunningDriver;
  readonly logLines: string[];
  /** Log lines (JSON) whose text matches. */
  logsMatching(pattern: RegExp): string[];
  stop(): Promise<void>;
}

export interface InProcessOptions {
  /** Reconnect schedule of the agent client (production default: 500 ms up to 30 s). */
  readonly backoff?: BackoffOptions;
  readonly deps?: Partial<DriverDependencies>;
}

export async function startInProcessDriver(config: DriverConfig, options: InProcessOptions = {}): Promise<InProcessDriver> {
  const logLines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logLines.push(...chunk.toString('utf8').split('\n').filter((line) => line !== ''));
      done();
    },
  });
  const logger = createLogger('debug', sink);
  const identity =
    options.backoff === undefined
      ? undefined
      : new DelegatedBackend(
          new DelegatedIdentityClient({ socketPath: config.adminSocketPath, logger: logger.child({ component: 'agent' }), backoff: options.backoff }),
          { nodeName: config.nodeId, adminSocket: config.adminSocketPath },
        );
  const running = await startDriver(config, { logger, ...(identity ? { identity } : {}), ...options.deps });
  let stopped: Promise<void> | undefined;
  return {
    running,
    logLines,
    logsMatching: (pattern) => logLines.filter((line) => pattern.test(line)),
    stop: () => (stopped ??= running.stop()),
  };
}

/** The harness's node is `node-1`: an entry on that selector matches every pod. */
export const NODE_SELECTOR = 'k8s:node-name:node-1';

/** The harness most fault tests start from: one registration entry, for `spiffeId`, matching every pod of the node. */
export function createNodeWideHarness(spiffeId: string, publishTimeoutMs: number): Promise<DriverHarness> {
  return DriverHarness.create({
    registrations: { entries: [entry(spiffeId, [NODE_SELECTOR])], federatedTrustDomains: [] },
    publishTimeoutMs,
  });
}
