/**
 * JWT-SVID test fixtures: issuers with real jose-generated keys, bundles, and tokens (valid ones
 * signed with SignJWT, hostile ones assembled by hand).
 */
import { SignJWT, base64url, exportJWK, generateKeyPair, generateSecret, type JWK, type JWTPayload } from 'jose';
import { JwtBundle } from '../../sdk/src/jwt/jwt-bundle.js';

export interface Issuer {
  readonly trustDomain: string;
  readonly kid: string;
  readonly alg: string;
  readonly privateKey: CryptoKeyLike;
  readonly publicJwk: JWK & { kid: string };
}

type CryptoKeyLike = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

export async function createIssuer(trustDomain: string, kid: string, alg = 'ES256'): Promise<Issuer> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, use: 'jwt-svid' };
  return { trustDomain, kid, alg, privateKey, publicJwk };
}

export function bundleOf(trustDomain: string, ...issuers: Issuer[]): JwtBundle {
  return new JwtBundle(trustDomain, issuers.map((issuer) => issuer.publicJwk));
}

export function jwksOf(...issuers: Issuer[]): string {
  return JSON.stringify({ keys: issuers.map((issuer) => issuer.publicJwk) });
}

export interface MintOptions {
  sub?: string | null;
  aud?: string | string[] | null;
  /** Expiry, unix seconds; null omits the claim. Default: an hour from now. */
  exp?: number | null;
  nbf?: number;
  /** Header members to add or override (kid: null removes it). */
  header?: Record<string, unknown>;
  extra?: JWTPayload;
}

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

export async function mintJwtSvid(issuer: Issuer, options: MintOptions = {}): Promise<string> {
  const payload: JWTPayload = { ...options.extra };
  const sub = options.sub === undefined ? `spiffe://${issuer.trustDomain}/workload` : options.sub;
  if (sub !== null) payload.sub = sub;
  const aud = options.aud === undefined ? 'api' : options.aud;
  if (aud !== null) payload.aud = aud;
  const exp = options.exp === undefined ? nowSeconds() + 3600 : options.exp;
  if (exp !== null) payload.exp = exp;
  if (options.nbf !== undefined) payload.nbf = options.nbf;
  payload.iat = nowSeconds();
  const header: Record<string, unknown> = { alg: issuer.alg, kid: issuer.kid, typ: 'JWT', ...options.header };
  for (const [name, value] of Object.entries(header)) if (value === null) delete header[name];
  return new SignJWT(payload).setProtectedHeader(header as { alg: string }).sign(issuer.privateKey);
}

/** A token with an HS256 signature made with `secret` (a confused-deputy attempt). */
export async function mintHs256(sub: string, kid: string, secret?: Uint8Array): Promise<string> {
  const key = secret ?? ((await generateSecret('HS256', { extractable: true })) as Uint8Array | CryptoKeyLike);
  return new SignJWT({ sub, aud: 'api', exp: nowSeconds() + 3600 }).setProtectedHeader({ alg: 'HS256', kid, typ: 'JWT' }).sign(key);
}

/** Assembles a compact JWS from parts without signing (alg none and similar). */
export function assemble(header: Record<string, unknown>, payload: Record<string, unknown>, signature = ''): string {
  const part = (value: unknown): string => base64url.encode(JSON.stringify(value));
  return `${part(header)}.${part(payload)}.${signature}`;
}
