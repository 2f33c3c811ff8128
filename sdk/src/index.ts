export type { Logger } from './logger.js';
export { silentLogger } from './logger.js';
export { DerError, readDer, derChildren, derContent, derBytes, derOid, splitDer, DerTag } from './x509/der.js';
export type { DerNode } from './x509/der.js';
export { PemError, decodePem, encodePem, encodeCertificatesPem } from './x509/pem.js';
export type { PemBlock } from './x509/pem.js';
