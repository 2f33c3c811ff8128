import { parseArgs } from 'node:util';

/**
 * A table-driven command line: every flag has one environment variable and an optional default,
 * so `--help`, parsing and the README stay in step.
 */
export interface OptionSpec {
  readonly flag: string;
  readonly env: string;
  /** A standard variable read when `env` is unset (e.g. SPIFFE_ENDPOINT_SOCKET). */
  readonly fallbackEnv?: string;
  readonly help: string;
  readonly default?: string;
  readonly required?: boolean;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface ParsedOptions {
  readonly values: ReadonlyMap<string, string>;
  readonly help: boolean;
}

export function parseOptions(
  specs: readonly OptionSpec[],
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
): ParsedOptions {
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' } };
  for (const spec of specs) options[spec.flag] = { type: 'string' };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false });
  } catch (error) {
    throw new ConfigError(`${(error as Error).message}; run with --help for the list of flags`);
  }
  const values = new Map<string, string>();
  if (parsed.values.help === true) return { values, help: true };
  for (const spec of specs) {
    const fromFlag = parsed.values[spec.flag];
    const fromEnv = env[spec.env] ?? (spec.fallbackEnv === undefined ? undefined : env[spec.fallbackEnv]);
    const value = typeof fromFlag === 'string' ? fromFlag : (fromEnv ?? spec.default);
    if (value === undefined || value === '') {
      if (spec.required) throw new ConfigError(`--${spec.flag} (or ${envNames(spec)}) is required: ${spec.help}`);
      continue;
    }
    values.set(spec.flag, value);
  }
  return { values, help: false };
}

/** `SPIRE_CSI_X` or `SPIRE_CSI_X, else SPIFFE_Y`. */
export function envNames(spec: OptionSpec): string {
  return spec.fallbackEnv === undefined ? spec.env : `${spec.env}, else ${spec.fallbackEnv}`;
}

export function formatHelp(usage: string, specs: readonly OptionSpec[]): string {
  const rows = specs.map((spec) => {
    const left = `  --${spec.flag} <value>`;
    const def = spec.default !== undefined ? ` (default ${spec.default})` : spec.required ? ' (required)' : '';
    return `${left.padEnd(30)} ${spec.help}${def}\n${''.padEnd(31)} env ${envNames(spec)}`;
  });
  return `${usage}\n\nFlags (each also read from the environment variable shown; the flag wins):\n${rows.join('\n')}\n  --help                       show this help\n`;
}
