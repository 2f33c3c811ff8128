import { randomBytes } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';

export const JWT_SVID_ALG = 'ES256';

export interface IssuedJwtSvid {
  /** Compact JWS. A bearer credential: the dev agent never logs it either. */
  readonly token: string;
  readonly issuedAt: Date;
  readonly expiresAt: Date;
}

/** A public key as published in a JWT bundle (JWT-SVID.md §6.1: `use` and `kid` are set). */
export type JwtAuthorityJwk = JWK & { readonly kid: string; readonly use: 'jwt-svid' };

/**
 * One ES256 signing key of a trust domain's JWT authority. Development only: the private key
 * lives in memory, is not extractable and is never persisted.
 */
export class JwtAuthority {
  private constructor(
    readonly trustDomain: string,
    readonly kid: string,
    private readonly privateKey: CryptoKey,
    readonly publicJwk: JwtAuthorityJwk,
  ) {}

  static async create(trustDomain: string): Promise<JwtAuthority> {
    const { privateKey, publicKey } = await generateKeyPair(JWT_SVID_ALG, { extractable: false });
    // Random like SPIRE's key IDs; they only need to be unique within the bundle.
    const kid = randomBytes(16).toString('base64url');
    const jwk = await exportJWK(publicKey);
    const publicJwk: JwtAuthorityJwk = { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, kid, use: 'jwt-svid' };
    return new JwtAuthority(trustDomain, kid, privateKey, publicJwk);
  }

  /** A JWT-SVID for `spiffeId` and `audiences`, with the `kid` header pointing at this key. */
  async issue(spiffeId: string, audiences: readonly string[], ttlMs: number, nowMs: number): Promise<IssuedJwtSvid> {
    // JWT times are whole seconds; rounding both the same way keeps exp - iat equal to the TTL.
    const iat = Math.floor(nowMs / 1000);
    const exp = iat + Math.max(1, Math.round(ttlMs / 1000));
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: JWT_SVID_ALG, kid: this.kid, typ: 'JWT' })
      .setSubject(spiffeId)
      .setAudience([...audiences])
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .sign(this.privateKey);
    return { token, issuedAt: new Date(iat * 1000), expiresAt: new Date(exp * 1000) };
  }
}
