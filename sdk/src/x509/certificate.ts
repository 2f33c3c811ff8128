/**
 * One DER certificate into Node's X509Certificate. Node ignores bytes after the certificate, so
 * the DER length is checked first: a buffer that is "a certificate plus something" is not one.
 */
import { X509Certificate } from 'node:crypto';
import { readDer } from './der.js';
import { X509Error } from './errors.js';

/** Throws an X509Error of kind `der`; callers add their own context. */
export function parseCertificateDer(der: Uint8Array): X509Certificate {
  if (readDer(der).end !== der.length) throw new X509Error('der', 'trailing data after the certificate');
  try {
    return new X509Certificate(Buffer.from(der.buffer, der.byteOffset, der.byteLength));
  } catch (err) {
    // OpenSSL's own text would be a PEM "no start line" (Node tries PEM last), which misleads.
    throw new X509Error('der', 'well-formed DER, but not an X.509 certificate', { cause: err });
  }
}
