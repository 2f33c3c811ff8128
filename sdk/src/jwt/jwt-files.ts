/**
 * The JWT part of the credential folder contract (DESIGN.md §4): when JWT audiences are requested
 * the driver writes one token file (default `jwt-svid.token`, one compact JWS) and one
 * `<trust-domain>.jwt-bundle.json` JWKS per trust domain the pod may talk to, in the same payload
 * as the X.509 files. This is the pure step from file bytes to JWT material.
 */
import { TrustDomain } from '../spiffe-id/trust-domain.js';
import { JwtSourceError, messageOf } from './errors.js';
import { JwtBundle } from './jwt-bundle.js';
import { JwtBundleSet } from './jwt-bundle-set.js';
import { JwtSvidToken } from './jwt-svid.js';

export const DEFAULT_JWT_SVID_FILE = 'jwt-svid.token';
export const JWT_BUNDLE_SUFFIX = '.jwt-bundle.json';

export interface JwtMaterial {
  /** The workload's own JWT-SVID; null only for a source opened with `requireToken: false`. */
  readonly svid: JwtSvidToken | null;
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
    throw new JwtSourceError('config', `tokenFile must be a plain file name (no "/", no leading "."), got ${JSON.stringify(name)}`);
  }
  if (name.endsWith(JWT_BUNDLE_SUFFIX)) throw new JwtSourceError('config', `tokenFile must not end in ${JWT_BUNDLE_SUFFIX}`);
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
  return names.filter((name) => name === tokenFile || trustDomainOfJwtBundleFile(name) !== undefined);
}

/**
 * JwtMaterial from the bytes of one snapshot. Throws JwtSourceError naming the bad file. The
 * token's expiry is not checked here: that depends on the clock, not on the files.
 */
export function parseJwtFiles(files: ReadonlyMap<string, Buffer>, tokenFile: string, requireToken = true): ParsedJwtFiles {
  const sources: string[] = [];
  let svid: JwtSvidToken | null = null;
  const raw = files.get(tokenFile);
  if (raw === undefined) {
    if (requireToken) throw new JwtSourceError('missing', `no JWT-SVID file ${tokenFile} (the volume needs the csi.spire.io/jwt-audiences attribute)`);
  } else {
    try {
      // Writers commonly end the file with a newline; it is not part of the token.
      svid = JwtSvidToken.parse(raw.toString('utf8').trim());
    } catch (err) {
      throw new JwtSourceError('invalid', `${tokenFile}: ${messageOf(err)}`, { cause: err });
    }
    sources.push(tokenFile);
  }
  const bundles: JwtBundle[] = [];
  for (const [name, content] of [...files].sort(([a], [b]) => a.localeCompare(b))) {
    const td = trustDomainOfJwtBundleFile(name);
    if (td === undefined) continue;
    try {
      bundles.push(JwtBundle.parse(td, content));
    } catch (err) {
      throw new JwtSourceError('invalid', `${name}: ${messageOf(err)}`, { cause: err });
    }
    sources.push(name);
  }
  return { material: { svid, bundles: new JwtBundleSet(bundles) }, sources };
}
