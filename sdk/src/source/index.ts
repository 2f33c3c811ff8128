export type { X509Material, X509Source, X509UpdateListener } from './x509-source.js';
export { StaticSource } from './static-source.js';
export type { StaticSourceEvents } from './static-source.js';
export { FileSource, DEFAULT_READY_TIMEOUT_MS } from './file-source.js';
export type { FileSourceOptions, FileSourceWarning, FileSourceEvents } from './file-source.js';
export type { FolderReloadOptions } from './folder-reloader.js';
export { FileSourceError } from './errors.js';
export type { FileSourceErrorKind } from './errors.js';
export { locateCredentialFolder, CREDENTIAL_FOLDER_ENV } from './locate.js';
export type { Environment } from './locate.js';
// Layout names: defined once in ../layout, re-exported here for existing imports.
export { CREDENTIAL_BUNDLE_FILES, TRUST_BUNDLE_SUFFIX, DEFAULT_SPLIT_FILES, DATA_LINK } from '../layout/layout.js';
export type { SplitFileNames } from '../layout/layout.js';
export { parseCredentialFiles, selectCredentialFiles, trustDomainOfBundleFile } from './credential-files.js';
export type { CredentialLayout, CredentialFilesOptions, ForeignRoot, ParsedCredentials } from './credential-files.js';
export { readSnapshot } from './snapshot.js';
export type { FolderSnapshot, ReadSnapshotOptions, SnapshotResult } from './snapshot.js';
