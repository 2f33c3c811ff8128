export { DerError, readDer, derChildren, derContent, derBytes, derOid, splitDer, DerTag } from './der.js';
export type { DerNode } from './der.js';
export { PemError, decodePem, encodePem, encodeCertificatesPem } from './pem.js';
export type { PemBlock } from './pem.js';
