/** A demo failure the user can act on: what went wrong, and what to do about it. */
export class DemoError extends Error {
  readonly hint: string;

  constructor(message: string, hint: string, options?: { cause?: unknown }) {
    super(`demo: ${message}`, options);
    this.name = 'DemoError';
    this.hint = hint;
  }
}

/** A bad command line; main exits 2 and points at --help. */
export class DemoUsageError extends Error {
  constructor(message: string) {
    super(`demo: ${message}`);
    this.name = 'DemoUsageError';
  }
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
