/**
 * A test-time SPIFFE CA. Every knob exists so a test can mint exactly the malformed certificate a
 * rule is about (CA leaf, two URI SANs, missing key usage, wrong signer, expired, ...). Nothing is
 * cached globally: each TestCa owns fresh keys, so tests stay independent.
 */
// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import { webcrypto, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto);

export type KeyType = 'ec' | 'rsa';
export type KeyUsageName =
  | 'digitalSignature'
  | 'nonRepudiation'
  | 'keyEncipherment'
  | 'dataEncipherment'
  | 'keyAgreement'
  | 'keyCertSign'
  | 'cRLSign'
  | 'encipherOnly'
  | 'decipherOnly';
export type ExtKeyUsageName = 'serverAuth' | 'clientAuth' | 'codeSigning';

interface CommonCertOptions {
  notBefore?: Date;
  notAfter?: Date;
  keyType?: KeyType;
  /** Hex serial; random when omitted. */
  serial?: string;
  /** `null` omits the key usage extension entirely. */
  keyUsages?: readonly KeyUsageName[] | null;
  /** Defaults to true (the spec requires critical); false lets tests check leniency. */
  keyUsageCritical?: boolean;
  /** Basic constraints cA. `null` omits the basic constraints extension. */
  isCa?: boolean | null;
  subject?: string;
  /** Sign with this CA's key instead (issuer name and AKI still claim the real issuer). */
  signWith?: TestCa;
  /** Arbitrary extra extensions (e.g. an unknown critical one). */
  extraExtensions?: readonly RawExtension[];
}

export interface RawExtension {
  oid: string;
  critical: boolean;
  /** DER of the extension value (the content of extnValue). */
  valueDer: Uint8Array;
}

export interface NameSubtrees {
  uri?: readonly string[];
  dns?: readonly string[];
  /** CIDR, IPv4 only (e.g. `10.0.0.0/8`). */
  ip?: readonly string[];
}

export interface TestCaOptions extends CommonCertOptions {
  /** URI SANs of the CA certificate; defaults to `[spiffe://<td>]`. */
  uris?: readonly string[];
  pathLength?: number;
  nameConstraints?: { permitted?: NameSubtrees; excluded?: NameSubtrees };
}

export interface MintOptions extends CommonCertOptions {
  /** URIs appended after the SPIFFE ID (e.g. a second SPIFFE ID). */
  extraUris?: readonly string[];
  /** `null` omits the extended key usage extension; default serverAuth + clientAuth. */
  extendedKeyUsages?: readonly ExtKeyUsageName[] | null;
  dnsNames?: readonly string[];
}

export interface MintedSvid {
  certDer: Buffer;
  /** PKCS#8 DER. */
  keyDer: Buffer;
  certPem: string;
  /** PKCS#8 PEM (`PRIVATE KEY`). */
  keyPem: string;
  /** Leaf first, then the issuing intermediates; never the root. */
  chainDer: Buffer[];
  chainPem: string;
  cert: X509Certificate;
}

function keyAlgorithm(type: KeyType): webcrypto.RsaHashedKeyGenParams | webcrypto.EcKeyGenParams {
  return type === 'rsa'
    ? { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 }
    : { name: 'ECDSA', namedCurve: 'P-256' };
}

function signingAlgorithm(type: KeyType): webcrypto.Algorithm | webcrypto.EcdsaParams {
  return type === 'rsa' ? { name: 'RSASSA-PKCS1-v1_5' } : { name: 'ECDSA', hash: 'SHA-256' };
}

async function generateKeys(type: KeyType): Promise<webcrypto.CryptoKeyPair> {
  return webcrypto.subtle.generateKey(keyAlgorithm(type), true, ['sign', 'verify']) as Promise<webcrypto.CryptoKeyPair>;
}

function keyUsageExtension(usages: readonly KeyUsageName[], critical: boolean): x509.Extension {
  // Zero flags cannot be encoded as a meaningful KeyUsage; an empty list means "extension, no bits".
  const flags = usages.reduce<number>((acc, name) => acc | x509.KeyUsageFlags[name], 0);
  return new x509.KeyUsagesExtension(flags, critical);
}

function tlv(tag: number, content: Uint8Array): Buffer {
  const len = content.length;
  const header = len < 0x80 ? [tag, len] : len < 0x100 ? [tag, 0x81, len] : [tag, 0x82, len >> 8, len & 0xff];
  return Buffer.concat([Buffer.from(header), content]);
}

function subtrees(tag: number, names: NameSubtrees): Buffer {
  const items: Buffer[] = [];
  for (const dns of names.dns ?? []) items.push(tlv(0x30, tlv(0x82, Buffer.from(dns, 'ascii'))));
  for (const uri of names.uri ?? []) items.push(tlv(0x30, tlv(0x86, Buffer.from(uri, 'ascii'))));
  for (const cidr of names.ip ?? []) {
    const [addr = '', bits = '32'] = cidr.split('/');
    const mask = (0xffffffff << (32 - Number(bits))) >>> 0;
    const bytes = [...addr.split('.').map(Number), mask >>> 24, (mask >>> 16) & 0xff, (mask >>> 8) & 0xff, mask & 0xff];
    items.push(tlv(0x30, tlv(0x87, Buffer.from(bytes))));
  }
  return tlv(tag, Buffer.concat(items));
}

function nameConstraintsExtension(nc: NonNullable<TestCaOptions['nameConstraints']>): x509.Extension {
  const parts: Buffer[] = [];
  if (nc.permitted) parts.push(subtrees(0xa0, nc.permitted));
  if (nc.excluded) parts.push(subtrees(0xa1, nc.excluded));
  return new x509.Extension('2.5.29.30', true, tlv(0x30, Buffer.concat(parts)));
}

function rawExtensions(options: CommonCertOptions): x509.Extension[] {
  return (options.extraExtensions ?? []).map((e) => new x509.Extension(e.oid, e.critical, e.valueDer));
}

function defaultValidity(options: CommonCertOptions): { notBefore: Date; notAfter: Date } {
  // Backdated a minute so clock granularity never makes a fresh cert "not yet valid".
  const notBefore = options.notBefore ?? new Date(Date.now() - 60_000);
  const notAfter = options.notAfter ?? new Date(Date.now() + 3_600_000);
  return { notBefore, notAfter };
}

function toPem(der: Uint8Array, label: string): string {
  const b64 = Buffer.from(der).toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${b64.join('\n')}\n-----END ${label}-----\n`;
}

export function pemToX509(pem: string): X509Certificate {
  return new X509Certificate(pem);
}

export class TestCa {
  readonly rootCert: X509Certificate;
  readonly rootPem: string;
  readonly rootDer: Buffer;

  private constructor(
    readonly trustDomain: string,
    /** This CA's own certificate (the root for `create`, the intermediate for `intermediate`). */
    readonly cert: X509Certificate,
    readonly keys: webcrypto.CryptoKeyPair,
    readonly keyType: KeyType,
    /** This CA's certificate followed by its issuers, excluding the root. Empty for a root. */
    readonly intermediatesDer: readonly Buffer[],
    root: X509Certificate,
    private readonly peculiarCert: x509.X509Certificate,
  ) {
    this.rootCert = root;
    this.rootDer = Buffer.from(root.raw);
    this.rootPem = toPem(this.rootDer, 'CERTIFICATE');
  }

  get certDer(): Buffer {
    return Buffer.from(this.cert.raw);
  }

  get certPem(): string {
    return toPem(this.cert.raw, 'CERTIFICATE');
  }

  async privateKeyDer(): Promise<Buffer> {
    return Buffer.from(await webcrypto.subtle.exportKey('pkcs8', this.keys.privateKey));
  }

  static async create(trustDomain: string, options: TestCaOptions = {}): Promise<TestCa> {
    const keyType = options.keyType ?? 'ec';
    const keys = await generateKeys(keyType);
    const extensions = await TestCa.caExtensions(trustDomain, keys, options);
    const { notBefore, notAfter } = defaultValidity(options);
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      name: options.subject ?? `CN=${trustDomain} root, O=SPIFFE`,
      keys,
      notBefore,
      notAfter,
      serialNumber: options.serial,
      extensions,
      signingAlgorithm: signingAlgorithm(keyType),
    });
    const node = new X509Certificate(Buffer.from(cert.rawData));
    return new TestCa(trustDomain, node, keys, keyType, [], node, cert);
  }

  /** A signing CA below this one, in the same trust domain. */
  async intermediate(options: TestCaOptions = {}): Promise<TestCa> {
    const keyType = options.keyType ?? 'ec';
    const keys = await generateKeys(keyType);
    const extensions = await TestCa.caExtensions(this.trustDomain, keys, options);
    const cert = await this.sign(keys, options, extensions, `CN=${this.trustDomain} intermediate, O=SPIFFE`);
    const node = new X509Certificate(Buffer.from(cert.rawData));
    const chain = [Buffer.from(cert.rawData), ...this.intermediatesDer];
    return new TestCa(this.trustDomain, node, keys, keyType, chain, this.rootCert, cert);
  }

  /** Mints a leaf. `null` as the ID mints one with no URI SAN at all (unless `extraUris`). */
  async mint(spiffeIdOrNull: string | null, options: MintOptions = {}): Promise<MintedSvid> {
    const keyType = options.keyType ?? 'ec';
    const keys = await generateKeys(keyType);
    const extensions: x509.Extension[] = [];
    const isCa = options.isCa === undefined ? false : options.isCa;
    if (isCa !== null) extensions.push(new x509.BasicConstraintsExtension(isCa, undefined, true));
    const usages = options.keyUsages === undefined ? (['digitalSignature'] as const) : options.keyUsages;
    if (usages !== null) extensions.push(keyUsageExtension(usages, options.keyUsageCritical ?? true));
    const ekus = options.extendedKeyUsages === undefined ? (['serverAuth', 'clientAuth'] as const) : options.extendedKeyUsages;
    if (ekus !== null) extensions.push(new x509.ExtendedKeyUsageExtension(ekus.map((e) => x509.ExtendedKeyUsage[e])));
    const names: x509.JsonGeneralName[] = [];
    if (spiffeIdOrNull !== null) names.push({ type: 'url', value: spiffeIdOrNull });
    for (const uri of options.extraUris ?? []) names.push({ type: 'url', value: uri });
    for (const dns of options.dnsNames ?? []) names.push({ type: 'dns', value: dns });
    if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
    extensions.push(await x509.SubjectKeyIdentifierExtension.create(keys.publicKey), ...rawExtensions(options));
    const cert = await this.sign(keys, options, extensions, 'O=SPIRE, C=US');
    const certDer = Buffer.from(cert.rawData);
    const keyDer = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
    const chainDer = [certDer, ...this.intermediatesDer];
    return {
      certDer,
      keyDer,
      certPem: toPem(certDer, 'CERTIFICATE'),
      keyPem: toPem(keyDer, 'PRIVATE KEY'),
      chainDer,
      chainPem: chainDer.map((der) => toPem(der, 'CERTIFICATE')).join(''),
      cert: new X509Certificate(certDer),
    };
  }

  private async sign(
    subjectKeys: webcrypto.CryptoKeyPair,
    options: CommonCertOptions,
    extensions: x509.Extension[],
    defaultSubject: string,
  ): Promise<x509.X509Certificate> {
    const signer = options.signWith ?? this;
    const { notBefore, notAfter } = defaultValidity(options);
    // The AKI always names this CA, so a `signWith` cert still "looks" issued by us and only the
    // signature check can catch it.
    extensions.push(await x509.AuthorityKeyIdentifierExtension.create(this.keys.publicKey));
    return x509.X509CertificateGenerator.create({
      subject: options.subject ?? defaultSubject,
      issuer: this.peculiarCert.subject,
      publicKey: subjectKeys.publicKey,
      signingKey: signer.keys.privateKey,
      notBefore,
      notAfter,
      serialNumber: options.serial,
      extensions,
      signingAlgorithm: signingAlgorithm(signer.keyType),
    });
  }

  private static async caExtensions(td: string, keys: webcrypto.CryptoKeyPair, options: TestCaOptions): Promise<x509.Extension[]> {
    const extensions: x509.Extension[] = [];
    const isCa = options.isCa === undefined ? true : options.isCa;
    if (isCa !== null) extensions.push(new x509.BasicConstraintsExtension(isCa, options.pathLength, true));
    const usages = options.keyUsages === undefined ? (['keyCertSign', 'cRLSign'] as const) : options.keyUsages;
    if (usages !== null) extensions.push(keyUsageExtension(usages, options.keyUsageCritical ?? true));
    const uris = options.uris ?? [`spiffe://${td}`];
    if (uris.length > 0) {
      extensions.push(new x509.SubjectAlternativeNameExtension(uris.map((value) => ({ type: 'url' as const, value }))));
    }
    if (options.nameConstraints) extensions.push(nameConstraintsExtension(options.nameConstraints));
    extensions.push(await x509.SubjectKeyIdentifierExtension.create(keys.publicKey), ...rawExtensions(options));
    return extensions;
  }
}
