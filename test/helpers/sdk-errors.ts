import { expect } from 'vitest';

/**
 * Matches an SDK error by class and kind, for `toThrow`, `rejects.toThrow` and `toEqual`:
 * `expect(run).toThrow(sdkError(X509Error, 'verification'))`. Every SDK module has one error class
 * whose `kind` says what went wrong; the class alone no longer does.
 */
export function sdkError<T extends Error & { readonly kind: string }>(
  type: abstract new (...args: never[]) => T,
  kind: T['kind'],
): ReturnType<typeof expect.objectContaining> {
  return expect.objectContaining({ constructor: type, kind });
}
