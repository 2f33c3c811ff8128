export class JwksError extends Error {
  constructor(message: string) {
    super(`jwks: ${message}`);
    this.name = 'JwksError';
  }
}

export interface JwksDocument {
  readonly keys: readonly Readonly<Record<string, unknown>>[];
}

/**
 * Checks that a JWT bundle is a JWKS document (a JSON object with a `keys` array of objects).
 * The driver hands the bytes to pods unchanged, so this is the gate that keeps garbage from the
 * agent out of the volume; the keys themselves are the validator's business (the SDK checks them).
 * Public keys only, but messages still never quote the document.
 */
export function parseJwks(bytes: Buffer | string): JwksDocument {
  let value: unknown;
  try {
    value = JSON.parse(typeof bytes === 'string' ? bytes : bytes.toString('utf8'));
  } catch (error) {
    throw new JwksError(`not valid JSON: ${(error as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new JwksError('not a JSON object');
  const keys = (value as { keys?: unknown }).keys;
  if (!Array.isArray(keys)) throw new JwksError('has no "keys" array');
  keys.forEach((key: unknown, index) => {
    if (typeof key !== 'object' || key === null || Array.isArray(key)) throw new JwksError(`keys[${index}] is not a JSON object`);
  });
  return { keys: keys as Record<string, unknown>[] };
}
