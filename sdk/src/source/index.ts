/**
 * Sources: where SVIDs, tokens and bundles come from. {@link FileSource} and {@link JwtSource}
 * keep a mounted credential folder's material current; {@link StaticSource} holds material set by
 * code. TLS servers, clients and dispatchers take any {@link X509Source}.
 *
 * @packageDocumentation
 */
export type { X509Material, X509Source, X509UpdateListener } from './x509-source.js';
export { FileSource, type FileSourceOptions, type FileSourceEvents, type FileSourceWarning } from './file-source.js';
export type { CredentialLayout } from './credential-files.js';
export type { FolderReloadOptions } from './folder-reloader.js';
export { JwtSource, type JwtSourceOptions, type JwtSourceEvents } from './jwt-source.js';
export type { JwtMaterial } from './jwt-files.js';
export { StaticSource, type StaticSourceEvents } from './static-source.js';
export { SourceError, type SourceErrorKind, type SourceOrigin } from './errors.js';
