import { decodeJwt, decodeProtectedHeader } from 'jose';
import { SpiffeId } from '@spire-csi/sdk/spiffeid';
import type { AgentJwtSvid } from '../identity/identity-backend.js';

/** JWT-SVID.md §2.1: the only algorithms a JWT-SVID may carry. */
const ALLOWED_ALGS = new Set(['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512']);

export class AgentJwtError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`agent-jwt: ${message}`, options);
    this.name = 'AgentJwtError';
  }
}

/** A JWT-SVID the driver may publish, with the facts read from the token itself. */
export interface CheckedJwtSvid {
  readonly svid: AgentJwtSvid;
  readonly spiffeId: SpiffeId;
  /** The token's `exp`: what validators enforce, so what refresh is scheduled against. */
  readonly expiresAt: Date;
}

/**
 * The JWT-SVID a volume publishes: the first with the requested SPIFFE ID and hint (each only when
 * asked for), as for the X.509-SVID, so both name the same registration entry.
 */
export function chooseJwtSvid(svids: readonly AgentJwtSvid[], spiffeId: string | null, hint: string | null = null): AgentJwtSvid | undefined {
  return svids.find((svid) => (spiffeId === null || svid.spiffeId === spiffeId) && (hint === null || svid.hint === hint));
}

/**
 * Structural checks before a token reaches a pod (the signature is the validator's job, against
 * the JWT bundle in the same payload): JWS compact form, an allowed `alg`, `sub` equal to the ID
 * the agent claims, `aud` exactly the one audience it was fetched for, and an `exp` still in the
 * future. Messages name claims, never the token.
 */
export function checkAgentJwtSvid(svid: AgentJwtSvid, audience: string, now: Date): CheckedJwtSvid {
  let claimed: SpiffeId;
  try {
    claimed = SpiffeId.parse(svid.spiffeId);
  } catch (error) {
    throw new AgentJwtError(`agent sent a JWT-SVID with a malformed SPIFFE ID ${JSON.stringify(svid.spiffeId)}: ${(error as Error).message}`);
  }
  const what = `the JWT-SVID for ${claimed}`;
  if (svid.token.split('.').length !== 3) throw new AgentJwtError(`${what} is not a JWS in compact serialization`);
  let alg: unknown;
  let claims: ReturnType<typeof decodeJwt>;
  try {
    alg = decodeProtectedHeader(svid.token).alg;
    claims = decodeJwt(svid.token);
  } catch (error) {
    // jose's messages describe the structure only; they never echo the input.
    throw new AgentJwtError(`${what} cannot be decoded: ${(error as Error).message}`);
  }
  if (typeof alg !== 'string' || !ALLOWED_ALGS.has(alg)) {
    throw new AgentJwtError(`${what} uses alg ${JSON.stringify(alg)}, which JWT-SVIDs may not use`);
  }
  if (claims.sub !== claimed.toString()) {
    throw new AgentJwtError(`${what} has sub ${JSON.stringify(claims.sub)}, not the SPIFFE ID the agent labelled it with`);
  }
  // Exactly the one audience: a token naming others too could be replayed by any of them to the
  // rest, which is what fetching one token per audience prevents.
  const aud = typeof claims.aud === 'string' ? [claims.aud] : (claims.aud ?? []);
  if (aud.length !== 1 || aud[0] !== audience) {
    throw new AgentJwtError(
      `${what} has aud ${JSON.stringify(aud).slice(0, 512)}, but it was fetched for exactly ${JSON.stringify([audience])}; ` +
        'a token for other or more audiences is not written',
    );
  }
  if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) throw new AgentJwtError(`${what} has no exp claim`);
  const expiresAt = new Date(claims.exp * 1000);
  if (expiresAt.getTime() <= now.getTime()) throw new AgentJwtError(`${what} expired at ${expiresAt.toISOString()}`);
  return { svid, spiffeId: claimed, expiresAt };
}
