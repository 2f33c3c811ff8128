/** Helpers every module uses to wrap lower-level errors; not part of the public API. */

/** The message of an unknown thrown value, for wrapping a lower-level error with context. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The errno code of a Node fs error, if any. */
export function errnoOf(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}
