/**
 * The JWT part of the credential folder contract (DESIGN.md §4): when JWT audiences are requested
 * the driver writes the workload's JWT-SVID(s) and one `<trust-domain>.jwt-bundle.json` JWKS per
 * trust domain the pod may talk to, in the same payload as the X.509 files. With one audience the
 * token is in one file (default `jwt-svid.token`); with several, each audience gets its own token,
 * fetched for that audience alone, in `jwt-svid.<encoded audience>.token` (see layout's
 * jwtSvidFileName): a token for several audiences could be replayed by any of them to the others.
 * This is the pure step from file bytes to JWT material.
 */
import {
  DEFAULT_JWT_SVID_FILE,
  JWT_BUNDLE_SUFFIX,
  JWT_SVID_AUDIENCE_FILE_PREFIX,
  JWT_SVID_AUDIENCE_FILE_SUFFIX,
  audienceOfJwtSvidFileName,
} from '../layout/layout.js';
import { TrustDomain } from '../spiffeid/trust-domain.js';
import { messageOf } from '../internal/error-text.js';
import { JwtBundle } from '../jwt/jwt-bundle.js';
import { JwtBundleSet } from '../jwt/jwt-bundle-set.js';
import { JwtSvidToken } from '../jwt/jwt-svid.js';
import { SourceError, type SourceErrorKind } from './errors.js';

/** Every error of this file is JwtSource's. */
function jwtSourceError(kind: SourceErrorKind, message: string, options?: { cause?: unknown }): SourceError {
  return new SourceError('jwtsource', kind, message, options);
}

/** The JWT-SVIDs and JWT bundles of one read of the folder. */
export interface JwtMaterial {
  /**
   * The token of the single token file (default `jwt-svid.token`), whatever its audiences; null
   * when there is none (per-audience files only, or `requireToken: false`).
   */
  readonly svid: JwtSvidToken | null;
  /** Tokens of the per-audience files, by audience; each one's `aud` is exactly that audience. */
  readonly audienceTokens: ReadonlyMap<string, JwtSvidToken>;
  /** The JWT bundles, one per `<trust-domain>.jwt-bundle.json`. */
  readonly bundles: JwtBundleSet;
}

export interface ParsedJwtFiles {
  readonly material: JwtMaterial;
  /** The files the material came from, for logs. */
  readonly sources: readonly string[];
}

/** The token file name comes from users; it must name a file directly inside the folder. */
export function checkTokenFileName(name: unknown): string {
  if (name === undefined) return DEFAULT_JWT_SVID_FILE;
  if (typeof name !== 'string' || name === '' || name.includes('/') || name.includes('\\') || name.startsWith('.')) {
    throw jwtSourceError('config', `tokenFile must be a plain file name (no "/", no leading "."), got ${JSON.stringify(name)}`);
  }
  if (name.endsWith(JWT_BUNDLE_SUFFIX)) throw jwtSourceError('config', `tokenFile must not end in ${JWT_BUNDLE_SUFFIX}`);
  return name;
}

/** The trust domain a `<td>.jwt-bundle.json` file is for, or undefined for other names. */
export function trustDomainOfJwtBundleFile(name: string): TrustDomain | undefined {
  if (!name.endsWith(JWT_BUNDLE_SUFFIX)) return undefined;
  try {
    return TrustDomain.parse(name.slice(0, -JWT_BUNDLE_SUFFIX.length));
  } catch {
    // Not a trust domain name, so not a file of this contract; extra files are ignored.
    return undefined;
  }
}

export function selectJwtFiles(names: readonly string[], tokenFile: string = DEFAULT_JWT_SVID_FILE): string[] {
  return names.filter(
    (name) => name === tokenFile || audienceOfJwtSvidFileName(name) !== undefined || trustDomainOfJwtBundleFile(name) !== undefined,
  );
}

function parseToken(name: string, raw: Buffer): JwtSvidToken {
  try {
    // Writers commonly end the file with a newline; it is not part of the token.
    return JwtSvidToken.parse(raw.toString('utf8').trim());
  } catch (err) {
    throw jwtSourceError('invalid', `${name}: ${messageOf(err)}`, { cause: err });
  }
}

/**
 * JwtMaterial from the bytes of one snapshot. Throws a `jwtsource` SourceError naming the bad file. The
 * tokens' expiry is not checked here: that depends on the clock, not on the files.
 */
export function parseJwtFiles(files: ReadonlyMap<string, Buffer>, tokenFile: string, requireToken = true): ParsedJwtFiles {
  const sources: string[] = [];
  let svid: JwtSvidToken | null = null;
  const raw = files.get(tokenFile);
  if (raw !== undefined) {
    svid = parseToken(tokenFile, raw);
    sources.push(tokenFile);
  }
  const audienceTokens = new Map<string, JwtSvidToken>();
  for (const [name, content] of [...files].sort(([a], [b]) => a.localeCompare(b))) {
    const audience = audienceOfJwtSvidFileName(name);
    if (audience === undefined) continue;
    const token = name === tokenFile && svid !== null ? svid : parseToken(name, content);
    // The file name promises a token nobody but this audience accepts; anything else is refused
    // whole rather than served under that promise.
    if (!token.isOnlyFor(audience)) {
      throw jwtSourceError(
        'invalid',
        `${name}: holds a JWT-SVID for audience ${JSON.stringify(token.audience)}, expected exactly ${JSON.stringify([audience])}`,
      );
    }
    audienceTokens.set(audience, token);
    if (name !== tokenFile) sources.push(name);
  }
  if (requireToken && svid === null && audienceTokens.size === 0) {
    throw jwtSourceError(
      'missing',
      `no JWT-SVID file ${tokenFile} or ${JWT_SVID_AUDIENCE_FILE_PREFIX}<audience>${JWT_SVID_AUDIENCE_FILE_SUFFIX} ` +
        '(the volume needs the csi.spire.io/jwt-audiences attribute)',
    );
  }
  const bundles: JwtBundle[] = [];
  for (const [name, content] of [...files].sort(([a], [b]) => a.localeCompare(b))) {
    const td = trustDomainOfJwtBundleFile(name);
    if (td === undefined) continue;
    try {
      bundles.push(JwtBundle.parse(td, content));
    } catch (err) {
      throw jwtSourceError('invalid', `${name}: ${messageOf(err)}`, { cause: err });
    }
    sources.push(name);
  }
  return { material: { svid, audienceTokens, bundles: new JwtBundleSet(bundles) }, sources };
}
