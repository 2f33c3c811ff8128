import { existsSync } from 'node:fs';
import { ConfigError } from './config/options.js';
import { driverHelp, parseDriverConfig } from './config/driver-config.js';
import { DurationError } from './config/duration.js';
import { createLogger } from './logging.js';
import { startDriver } from './main.js';

/** The dev agent lives in the @spire-csi/dev workspace, installed in a clone of the repository only. */
const DEV_AGENT_MODULE = '@spire-csi/dev/dev-agent';
type DevAgentModule = typeof import('@spire-csi/dev/dev-agent');

/** A missing development tool: the message says what to do, so no stack is printed. */
class DevToolError extends Error {
  override readonly name = 'DevToolError';
}

async function loadDevAgent(): Promise<DevAgentModule> {
  let url: string;
  try {
    url = import.meta.resolve(DEV_AGENT_MODULE);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw error;
    if (!/Cannot find package '@spire-csi\/dev'/.test((error as Error).message)) throw devAgentNotBuilt();
    throw new DevToolError(
      'dev-agent is a development tool from the @spire-csi/dev workspace, which is not installed here ' +
        '(the driver image and package leave it out); run it from a clone of the repository after `npm ci && npm run build`',
    );
  }
  // import.meta.resolve maps the package's exports without checking that the file was built.
  if (url.startsWith('file:') && !existsSync(new URL(url))) throw devAgentNotBuilt();
  return (await import(url)) as DevAgentModule;
}

function devAgentNotBuilt(): DevToolError {
  return new DevToolError('dev-agent: @spire-csi/dev is installed but not built; run `npm run build` at the repository root first');
}

async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  if (argv[0] === 'dev-agent') {
    const { runDevAgent } = await loadDevAgent();
    return runDevAgent(argv.slice(1), env);
  }
  const config = parseDriverConfig(argv, env);
  if (config === null) {
    process.stdout.write(driverHelp());
    return 0;
  }
  const logger = createLogger(config.logLevel);
  const driver = await startDriver(config, { logger });
  return new Promise<number>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      logger.info({ signal }, 'shutting down');
      driver.stop().then(
        () => resolve(0),
        (error: unknown) => {
          logger.error({ err: error }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
}

main(process.argv.slice(2), process.env).then(
  (code) => {
    process.exitCode = code;
    // gRPC keeps handles open briefly after shutdown; the driver has nothing left to flush.
    setTimeout(() => process.exit(code), 200).unref();
  },
  (error: unknown) => {
    const expected = error instanceof ConfigError || error instanceof DurationError;
    const told = expected || error instanceof DevToolError;
    process.stderr.write(`spire-csi-driver: ${error instanceof Error ? error.message : String(error)}\n`);
    if (!told && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    process.exit(expected ? 2 : 1);
  },
);
