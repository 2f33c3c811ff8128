import { ConfigError } from './config/options.js';
import { driverHelp, parseDriverConfig } from './config/driver-config.js';
import { DurationError } from './config/duration.js';
import { createLogger } from './logging.js';
import { startDriver } from './main.js';

async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  if (argv[0] === 'dev-agent') {
    const { runDevAgent } = await import('./dev-agent/main.js');
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
    process.stderr.write(`spire-csi-driver: ${error instanceof Error ? error.message : String(error)}\n`);
    if (!expected && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    process.exit(expected ? 2 : 1);
  },
);
