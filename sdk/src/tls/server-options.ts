/**
 * The complete option set for a SPIFFE mTLS server context. Complete on purpose: setSecureContext
 * resets whatever it is not given, so every rotation must restate client-certificate
 * requirements, the CA filter and the version floor, not just the new certificate.
 */
import { randomBytes } from 'node:crypto';
import type { SecureContextOptions } from 'node:tls';
import type { X509Material } from '../source/x509-source.js';
import { tlsCredentials } from './credentials.js';
import { minVersionOf, type TlsSettings } from './tls-settings.js';

export interface ServerSecureContextOptions extends SecureContextOptions {
  cert: string;
  key: string;
  ca: string[];
  requestCert: true;
  rejectUnauthorized: true;
  ticketKeys: Buffer;
}

export function serverSecureContextOptions(material: X509Material, settings: TlsSettings = {}): ServerSecureContextOptions {
  const { cert, key, ca } = tlsCredentials(material.svid, material.bundles);
  return {
    ...settings,
    minVersion: minVersionOf(settings.minVersion),
    cert,
    key,
    ca,
    requestCert: true,
    rejectUnauthorized: true,
    // Fresh ticket keys with every generation: a ticket issued under the old trust cannot resume.
    ticketKeys: randomBytes(48),
  };
}
