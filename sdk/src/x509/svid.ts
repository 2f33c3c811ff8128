/**
 * An X509-SVID we hold: certificate chain (leaf first) plus the matching private key. Parsing
 * enforces X509-SVID.md so an invalid credential is refused at load time rather than producing
 * handshakes that every peer rejects.
 */
import { createPrivateKey, type KeyObject, type X509Certificate } from 'node:crypto';
import type { SpiffeId } from '../spiffeid/spiffe-id.js';
import { parseCertificateDer } from './certificate.js';
import { splitDer } from './der.js';
import { messageOf } from '../internal/error-text.js';
import { ownConcat } from '../internal/own-bytes.js';
import { X509Error } from './errors.js';
import { decodePem, encodeCertificatesPem, encodePem, type PemBlock } from './pem.js';
import { checkPrivateKey } from './private-key.js';
import { checkLeaf, checkSigningCert, describeCert, isSignedBy } from './svid-rules.js';
import { isWithinValidity, validityOf } from './validity.js';

const fail = (message: string, cause?: unknown): Error => new X509Error('svid', message, { cause });

function toText(input: string | Buffer): string {
  return typeof input === 'string' ? input : input.toString('utf8');
}

function decode(input: string | Buffer, what: string): PemBlock[] {
  try {
    return decodePem(toText(input));
  } catch (err) {
    throw fail(`${what}: ${messageOf(err)}`, err);
  }
}

function certificateFromDer(der: Uint8Array, index: number): X509Certificate {
  try {
    return parseCertificateDer(der);
  } catch (err) {
    throw fail(`certificate ${index} is not a valid DER certificate: ${messageOf(err)}`, err);
  }
}

function privateKeyFromPem(blocks: readonly PemBlock[]): Uint8Array {
  if (blocks.length === 0) throw fail('no private key found');
  if (blocks.length > 1) throw fail(`expected one private key block, found ${blocks.length} blocks`);
  const block = blocks[0]!;
  if (block.label !== 'PRIVATE KEY') {
    throw fail(`private key must be an unencrypted PKCS#8 "PRIVATE KEY" block, found "${block.label}"`);
  }
  return block.der;
}


/**
 * An X509-SVID this workload holds: the certificate chain (leaf first) and its private key, checked
 * against X509-SVID.md when parsed. Immutable. `toJSON()` leaves the key out, so logging it is safe.
 */
export class X509Svid {
  /** The chain, leaf first, then the intermediates that sign it. */
  readonly certificates: readonly X509Certificate[];
  /** PKCS#8 DER, already checked against the leaf. */
  readonly #keyDer: Buffer;
  #privateKey: KeyObject | undefined;

  private constructor(
    /** The SPIFFE ID of the leaf's URI SAN. */
    readonly id: SpiffeId,
    certificates: readonly X509Certificate[],
    keyDer: Buffer,
  ) {
    this.certificates = Object.freeze([...certificates]);
    this.#keyDer = keyDer;
  }

  /**
   * The leaf's private key. Handle with care: this is the secret. Imported on first use: a reader
   * that only checks and forwards the key (the driver, for every pod on every rotation) never
   * pays for OpenSSL's import.
   */
  get privateKey(): KeyObject {
    this.#privateKey ??= createPrivateKey({ key: this.#keyDer, format: 'der', type: 'pkcs8' });
    return this.#privateKey;
  }

  /**
   * `chainPem`: CERTIFICATE blocks, leaf first. `keyPem`: one PKCS#8 PRIVATE KEY block. Throws an
   * {@link X509Error} (`svid`) naming the broken rule.
   */
  static parse(chainPem: string | Buffer, keyPem: string | Buffer): X509Svid {
    const certBlocks = decode(chainPem, 'certificate chain');
    const keyDer = privateKeyFromPem(decode(keyPem, 'private key'));
    return X509Svid.build(X509Svid.certificatesFromPem(certBlocks), keyDer);
  }

  /** A single PEM document: the PRIVATE KEY block first, then the certificates leaf first. */
  static parseCredentialBundle(pem: string | Buffer): X509Svid {
    const blocks = decode(pem, 'credential bundle');
    const [first, ...rest] = blocks;
    if (!first) throw fail('credential bundle is empty');
    if (first.label !== 'PRIVATE KEY') {
      throw fail(`credential bundle must start with a PKCS#8 "PRIVATE KEY" block, found "${first.label}"`);
    }
    return X509Svid.build(X509Svid.certificatesFromPem(rest), first.der);
  }

  /** `chainDer`: concatenated DER certificates (as SPIRE sends them) or one buffer per certificate. */
  static fromDer(chainDer: Uint8Array | readonly Uint8Array[], keyDer: Uint8Array): X509Svid {
    let ders: readonly Uint8Array[];
    if (chainDer instanceof Uint8Array) {
      try {
        ders = splitDer(chainDer);
      } catch (err) {
        throw fail(`certificate chain is not concatenated DER: ${messageOf(err)}`, err);
      }
    } else {
      ders = chainDer;
    }
    return X509Svid.build(
      ders.map((der, i) => certificateFromDer(der, i)),
      keyDer,
    );
  }

  private static certificatesFromPem(blocks: readonly PemBlock[]): X509Certificate[] {
    return blocks.map((block, i) => {
      if (block.label !== 'CERTIFICATE') throw fail(`expected only CERTIFICATE blocks, found "${block.label}"`);
      return certificateFromDer(block.der, i);
    });
  }

  private static build(certificates: readonly X509Certificate[], keyDer: Uint8Array): X509Svid {
    const [leaf, ...signers] = certificates;
    if (!leaf) throw fail('certificate chain is empty');
    const id = checkLeaf(leaf, fail);
    signers.forEach((cert, i) => checkSigningCert(cert, `signing certificate ${i + 1}`, fail));
    for (let i = 0; i + 1 < certificates.length; i++) {
      const cert = certificates[i]!;
      if (!isSignedBy(cert, certificates[i + 1]!)) {
        throw fail(`certificate ${i} ${describeCert(cert)} is not signed by certificate ${i + 1}`);
      }
    }
    // A copy (the caller's buffer may be reused or zeroed), in a block of its own (see ownConcat).
    const key = ownConcat([keyDer]);
    const match = checkPrivateKey(key, leaf.publicKey);
    // Deliberately no cause: nothing derived from key material goes into an error.
    if (match === 'unusable') throw fail('private key is not a valid unencrypted PKCS#8 key');
    if (match === 'mismatch') throw fail('private key does not match the leaf certificate public key');
    try {
      for (const cert of certificates) validityOf(cert);
    } catch (err) {
      throw fail(`certificate validity is malformed: ${messageOf(err)}`, err);
    }
    return new X509Svid(id, certificates, key);
  }

  /** The leaf certificate. */
  get leaf(): X509Certificate {
    return this.certificates[0]!;
  }

  /** Start of the leaf's validity. */
  get notBefore(): Date {
    return validityOf(this.leaf).notBefore;
  }

  /** End of the leaf's validity (inclusive). */
  get notAfter(): Date {
    return validityOf(this.leaf).notAfter;
  }

  /** Hex, exactly as Node reports it. */
  get serialNumber(): string {
    return this.leaf.serialNumber;
  }

  /** True when every certificate in the chain is within its validity period at `now`. */
  isValidAt(now: Date): boolean {
    return this.certificates.every((cert) => isWithinValidity(cert, now));
  }

  /** The chain as PEM CERTIFICATE blocks, leaf first. */
  chainPem(): string {
    return encodeCertificatesPem(this.certificates.map((cert) => cert.raw));
  }

  /** The chain as one DER buffer per certificate, leaf first. */
  chainDer(): Buffer[] {
    return this.certificates.map((cert) => Buffer.from(cert.raw));
  }

  /** PKCS#8 PEM. Handle with care: this is the secret. */
  privateKeyPem(): string {
    // The very bytes that were checked against the leaf, without an import and export round trip.
    return encodePem('PRIVATE KEY', this.#keyDer);
  }

  /** Keeps the key out of logs and error reports that serialize objects. */
  toJSON(): { id: string; serialNumber: string; notAfter: string } {
    return { id: this.id.toString(), serialNumber: this.serialNumber, notAfter: this.notAfter.toISOString() };
  }
}
