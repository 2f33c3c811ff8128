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
export {
  CREDENTIAL_BUNDLE_FILES,
  TRUST_BUNDLE_SUFFIX,
  DEFAULT_SPLIT_FILES,
  parseCredentialFiles,
  selectCredentialFiles,
  trustDomainOfBundleFile,
} from './credential-files.js';
export type { CredentialLayout, CredentialFilesOptions, ParsedCredentials, SplitFileNames } from './credential-files.js';
export { readSnapshot, DATA_LINK } from './snapshot.js';
export type { FolderSnapshot, ReadSnapshotOptions, SnapshotResult } from './snapshot.js';
