import { ConfigError, DurationError } from '@spire-csi/driver/internal';
import { runDevAgent } from './main.js';

// `spire-csi-dev-agent ...`: the same command as `spire-csi-driver dev-agent ...`, for when only
// the dev package is at hand. Exit codes match the driver CLI: 2 for a bad command line.
runDevAgent(process.argv.slice(2), process.env).then(
  (code) => {
    process.exitCode = code;
    // gRPC keeps handles open briefly after shutdown; nothing is left to flush.
    setTimeout(() => process.exit(code), 200).unref();
  },
  (error: unknown) => {
    const expected = error instanceof ConfigError || error instanceof DurationError;
    process.stderr.write(`spire-csi-dev-agent: ${error instanceof Error ? error.message : String(error)}\n`);
    if (!expected && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    process.exit(expected ? 2 : 1);
  },
);
