/**
 * JWT-SVID fixtures for driver tests that do not run the dev agent: an ES256 signer per trust
 * domain with its JWKS, minting tokens as an agent would send them.
 */
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import type { AgentJwtSvid } from '../../driver/src/identity/identity-backend.js';

export interface MintJwtOptions {
  readonly audiences?: readonly string[];
  /** Default: 5 minutes after `issuedAt`. */
  readonly expiresAt?: Date;
  readonly issuedAt?: Date;
  /** What the agent claims; defaults to `sub`. */
  readonly labelledAs?: string;
}

export class TestJwtIssuer {
  private constructor(
    readonly trustDomain: string,
    readonly kid: string,
    private readonly key: CryptoKey,
    private readonly publicJwk: Record<string, unknown>,
  ) {}

  static async create(trustDomain: string, kid = `${trustDomain}-key`): Promise<TestJwtIssuer> {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const jwk = await exportJWK(publicKey);
    return new TestJwtIssuer(trustDomain, kid, privateKey, { ...jwk, kid, use: 'jwt-svid' });
  }

  /** The JWKS document bytes, as the agent sends them. */
  jwks(): Buffer {
    return Buffer.from(JSON.stringify({ keys: [this.publicJwk] }));
  }

  async mint(sub: string, options: MintJwtOptions = {}): Promise<AgentJwtSvid> {
    const issuedAt = options.issuedAt ?? new Date();
    const expiresAt = options.expiresAt ?? new Date(issuedAt.getTime() + 300_000);
    const iat = Math.floor(issuedAt.getTime() / 1000);
    const exp = Math.floor(expiresAt.getTime() / 1000);
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: this.kid, typ: 'JWT' })
      .setSubject(sub)
      .setAudience([...(options.audiences ?? ['api'])])
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .sign(this.key);
    return { token, spiffeId: options.labelledAs ?? sub, expiresAt: String(exp), issuedAt: String(iat), hint: '' };
  }
}

export { FakeClock } from '../helpers/fake-clock.js';

/** Lets pending promise callbacks (and a few chained ones) run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
