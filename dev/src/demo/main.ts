import { DemoUsageError, messageOf } from './errors.js';
import { DEMO_HELP, parseDemoArgs } from './options.js';

/** `npm run demo -- [options]`: exit 0 after a clean run and cleanup, 1 on a failure, 2 on a bad command line. */
async function main(argv: readonly string[]): Promise<number> {
  let options;
  try {
    options = parseDemoArgs(argv);
  } catch (error) {
    if (error instanceof DemoUsageError) {
      process.stderr.write(`${error.message}\n`);
      return 2;
    }
    throw error;
  }
  if (options === null) {
    process.stdout.write(DEMO_HELP);
    return 0;
  }
  // Loaded only now: --help and a bad command line should not wait for gRPC, pino and the SDK.
  const { runDemo } = await import('./run.js');
  return runDemo(options, {
    stdout: process.stdout,
    stderr: process.stderr,
    signals: process,
    env: process.env,
    abandon: (code) => process.exit(code),
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // gRPC and undici may keep handles open briefly after everything was closed; nothing is left to flush.
    setTimeout(() => process.exit(code), 500).unref();
  },
  (error: unknown) => {
    process.stderr.write(`demo: unexpected failure: ${messageOf(error)}\n`);
    if (error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    process.stderr.write('what to do: run it again; if it repeats, report this output\n');
    process.exit(1);
  },
);
