/**
 * Everything the Workload API source reports. One class with a `kind`, so a caller can tell "fix
 * the configuration" from "the agent is not there yet" without parsing messages; `code` carries
 * the gRPC status when the answer came from the server.
 */

/**
 * What went wrong.
 *
 * - `config`: no endpoint (no option, no SPIFFE_ENDPOINT_SOCKET), a malformed endpoint URI or
 *   invalid options. Thrown by the constructor.
 * - `unavailable`: the endpoint could not be reached or the stream ended (gRPC Unavailable, a
 *   refused connection, any unexpected status). Retried with backoff.
 * - `rejected`: the server answered InvalidArgument (the request is wrong: the spec says never
 *   retry) or Unimplemented. Not retried; the source stops.
 * - `permission-denied`: the server has no identity for this workload (yet). Retried with backoff.
 * - `invalid-response`: a message arrived but does not hold a usable SVID (no SVIDs, a broken chain,
 *   a key that does not match, a chain that does not verify against its own trust domain's
 *   bundle, ...). The previous material stays current.
 * - `timeout`: ready() found nothing valid before its deadline.
 * - `not-ready`: material was asked for before the first valid message.
 * - `closed`: the source was closed.
 */
export type WorkloadApiErrorKind =
  | 'config'
  | 'unavailable'
  | 'rejected'
  | 'permission-denied'
  | 'invalid-response'
  | 'timeout'
  | 'not-ready'
  | 'closed';

/** Every error of `@spire-csi/sdk/workload-api`; the message starts with `workloadapi: `. */
export class WorkloadApiError extends Error {
  /** What went wrong. */
  readonly kind: WorkloadApiErrorKind;
  /** The gRPC status code, when the server (or gRPC itself) answered with one. */
  readonly code?: number;

  /** `message` says what was wrong; it gets the `workloadapi: ` prefix here. */
  constructor(kind: WorkloadApiErrorKind, message: string, options?: { readonly cause?: unknown; readonly code?: number }) {
    super(`workloadapi: ${message}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'WorkloadApiError';
    this.kind = kind;
    if (options?.code !== undefined) this.code = options.code;
  }
}
