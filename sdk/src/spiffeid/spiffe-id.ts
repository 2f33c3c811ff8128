/**
 * SPIFFE IDs (SPIFFE-ID.md §2). Parsing is by hand rather than through WHATWG URL because URL
 * normalizes (lowercases hosts, resolves `..`, decodes and re-encodes), and a SPIFFE ID must be
 * compared exactly as written.
 */
import { SpiffeIdError } from './errors.js';
import { TrustDomain, stripScheme, validateTrustDomainName } from './trust-domain.js';

/** SPIFFE-ID.md §2.3: implementations must support, and we accept at most, 2048 bytes. */
export const MAX_SPIFFE_ID_LENGTH = 2048;

const SEGMENT_CHAR = /^[a-zA-Z0-9._-]$/;

/** Throws a SpiffeIdError naming the first rule `path` breaks. `''` (no path) is valid. */
export function validatePath(path: string): void {
  if (path === '') return;
  if (!path.startsWith('/')) throw new SpiffeIdError('path', 'path must start with "/"');
  const segments = path.slice(1).split('/');
  segments.forEach((segment, i) => {
    if (segment === '') {
      throw new SpiffeIdError(
        'path',
        i === segments.length - 1 ? 'path cannot have a trailing slash' : 'path cannot contain empty segments ("//")',
      );
    }
    if (segment === '.' || segment === '..') {
      throw new SpiffeIdError('path', 'path cannot contain dot segments ("." or "..")');
    }
    for (const ch of segment) {
      if (SEGMENT_CHAR.test(ch)) continue;
      if (ch === '%') throw new SpiffeIdError('path', 'path cannot contain percent-encoded characters');
      if (ch === '?') throw new SpiffeIdError('query', 'cannot contain a query');
      if (ch === '#') throw new SpiffeIdError('fragment', 'cannot contain a fragment');
      throw new SpiffeIdError(
        'path',
        `path segment characters are limited to letters, numbers, dots, dashes, and underscores (found ${JSON.stringify(ch)})`,
      );
    }
  });
}

function checkLength(id: string): void {
  if (Buffer.byteLength(id, 'utf8') > MAX_SPIFFE_ID_LENGTH) {
    throw new SpiffeIdError('too-long', `longer than ${MAX_SPIFFE_ID_LENGTH} bytes`);
  }
}

/**
 * A SPIFFE ID (`spiffe://<trust domain>/<path>`), checked against every rule of SPIFFE-ID.md and
 * compared exactly as written. Immutable; build one with {@link SpiffeId.parse} or
 * {@link SpiffeId.fromPath}.
 */
export class SpiffeId {
  private readonly text: string;

  private constructor(
    /** The trust domain the ID belongs to. */
    readonly trustDomain: TrustDomain,
    /** `''` for the trust domain's own ID, otherwise starts with `/`. */
    readonly path: string,
  ) {
    this.text = `${trustDomain.idString()}${path}`;
  }

  /** Parses `spiffe://<trust domain>[/<path>]`; throws a {@link SpiffeIdError} naming the first broken rule. */
  static parse(s: string): SpiffeId {
    if (typeof s !== 'string') throw new SpiffeIdError('type', 'SPIFFE ID must be a string');
    if (s === '') throw new SpiffeIdError('empty', 'cannot be empty');
    checkLength(s);
    const rest = stripScheme(s);
    const end = rest.search(/[/?#]/);
    const name = end === -1 ? rest : rest.slice(0, end);
    const tail = end === -1 ? '' : rest.slice(end);
    if (tail.startsWith('?')) throw new SpiffeIdError('query', 'cannot contain a query');
    if (tail.startsWith('#')) throw new SpiffeIdError('fragment', 'cannot contain a fragment');
    validateTrustDomainName(name);
    validatePath(tail);
    return new SpiffeId(TrustDomain.parse(name), tail);
  }

  /** The ID `path` (`''` or starting with `/`) in `td`; throws a {@link SpiffeIdError} for a malformed path. */
  static fromPath(td: TrustDomain, path: string): SpiffeId {
    validatePath(path);
    checkLength(`${td.idString()}${path}`);
    return new SpiffeId(td, path);
  }

  /** True for `spiffe://<td>` itself, which X509-SVID §5.2 forbids as a workload identity. */
  get isTrustDomainId(): boolean {
    return this.path === '';
  }

  /** The ID as written: `spiffe://<trust domain><path>`. */
  toString(): string {
    return this.text;
  }

  /** The ID string, so JSON logs show it as written. */
  toJSON(): string {
    return this.text;
  }

  /** True when `other` is the same ID, byte for byte. */
  equals(other: SpiffeId): boolean {
    return other instanceof SpiffeId && other.text === this.text;
  }

  /** True when the ID belongs to `td`. */
  memberOf(td: TrustDomain): boolean {
    return this.trustDomain.equals(td);
  }
}
