// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import { randomBytes, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

type CryptoKeyPair = webcrypto.CryptoKeyPair;
/** Node's WebCrypto, typed as the DOM `Crypto` @peculiar/x509 declares. */
const crypto = webcrypto as unknown as Parameters<typeof x509.X509CertificateGenerator.create>[1] & typeof webcrypto;
const EC_KEY: webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGNING: webcrypto.EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };
/** Certificates start slightly in the past so a peer whose clock lags still accepts them (SPIRE does the same). */
const BACKDATE_MS = 10_000;
const DEFAULT_CA_TTL_MS = 365 * 24 * 3_600_000;

export interface IssuedSvid {
  /** Leaf first; the root is not included (it travels in the bundle). */
  readonly chainDer: Buffer[];
  /** PKCS#8 DER. */
  readonly keyDer: Buffer;
  readonly issuedAt: Date;
  readonly expiresAt: Date;
  /** Hex, as in the certificate. */
  readonly serial: string;
}

export interface CertificateAuthorityOptions {
  readonly ttlMs?: number;
  readonly now?: () => number;
}

/**
 * A self-signed ECDSA P-256 root for one trust domain that signs X509-SVIDs directly. Development
 * only: the key lives in memory and is never persisted.
 */
export class CertificateAuthority {
  private static generation = 0;

  private constructor(
    readonly trustDomain: string,
    readonly root: x509.X509Certificate,
    private readonly keys: CryptoKeyPair,
    private readonly now: () => number,
  ) {}

  static async create(trustDomain: string, options: CertificateAuthorityOptions = {}): Promise<CertificateAuthority> {
    const now = options.now ?? Date.now;
    const keys = (await crypto.subtle.generateKey(EC_KEY, false, ['sign', 'verify'])) as CryptoKeyPair;
    const start = now();
    CertificateAuthority.generation++;
    const root = await x509.X509CertificateGenerator.createSelfSigned(
      {
        // A distinct name per CA keeps chain building unambiguous while old and new roots overlap.
        name: `O=spire-csi dev-agent, CN=${trustDomain} root ${CertificateAuthority.generation}-${randomBytes(4).toString('hex')}`,
        serialNumber: randomSerial(),
        notBefore: new Date(start - BACKDATE_MS),
        notAfter: new Date(start + (options.ttlMs ?? DEFAULT_CA_TTL_MS)),
        signingAlgorithm: SIGNING,
        keys,
        extensions: [
          new x509.BasicConstraintsExtension(true, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
          new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${trustDomain}` }]),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
        ],
      },
      crypto,
    );
    return new CertificateAuthority(trustDomain, root, keys, now);
  }

  get rootDer(): Buffer {
    return Buffer.from(this.root.rawData);
  }

  get notAfter(): Date {
    return this.root.notAfter;
  }

  /** Issues a leaf for `spiffeId`, valid for `ttlMs` but never past the root. */
  async issueSvid(spiffeId: string, ttlMs: number): Promise<IssuedSvid> {
    const keys = (await crypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify'])) as CryptoKeyPair;
    const issuedAt = new Date(this.now());
    const expiresAt = new Date(Math.min(issuedAt.getTime() + ttlMs, this.root.notAfter.getTime()));
    const serial = randomSerial();
    const leaf = await x509.X509CertificateGenerator.create(
      {
        subject: 'O=spire-csi dev-agent',
        issuer: this.root.subject,
        serialNumber: serial,
        notBefore: new Date(issuedAt.getTime() - BACKDATE_MS),
        notAfter: expiresAt,
        signingAlgorithm: SIGNING,
        publicKey: keys.publicKey,
        signingKey: this.keys.privateKey,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(
            x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
            true,
          ),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
          new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }]),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
          await x509.AuthorityKeyIdentifierExtension.create(this.keys.publicKey, false, crypto),
        ],
      },
      crypto,
    );
    const keyDer = Buffer.from(await crypto.subtle.exportKey('pkcs8', keys.privateKey));
    return { chainDer: [Buffer.from(leaf.rawData)], keyDer, issuedAt, expiresAt, serial };
  }
}

/** 128 random bits, positive and without a leading zero octet, as RFC 5280 serials should be. */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString('hex');
}
