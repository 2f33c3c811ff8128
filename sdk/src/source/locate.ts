/**
 * Where the credential folder is. The SPIFFE Filesystem Delivery draft puts an application setting
 * first, then SPIFFE_CREDENTIAL_FOLDER, and deliberately has no default folder: guessing a path
 * could load credentials that were never meant for this process.
 */
import { resolve } from 'node:path';
import { SourceError, type SourceOrigin } from './errors.js';

export const CREDENTIAL_FOLDER_ENV = 'SPIFFE_CREDENTIAL_FOLDER';

export type Environment = Readonly<Record<string, string | undefined>>;

/**
 * The absolute credential folder: `folder` when given, else `$SPIFFE_CREDENTIAL_FOLDER`. Throws a
 * `config` SourceError of `origin`, the source asking.
 */
export function locateCredentialFolder(folder: string | undefined, env: Environment, origin: SourceOrigin): string {
  if (folder !== undefined) {
    if (typeof folder !== 'string' || folder.trim() === '') {
      throw new SourceError(origin, 'config', 'the credential folder must be a non-empty path');
    }
    return resolve(folder);
  }
  const fromEnv = env[CREDENTIAL_FOLDER_ENV];
  if (fromEnv !== undefined && fromEnv.trim() !== '') return resolve(fromEnv);
  throw new SourceError(
    origin,
    'config',
    `no credential folder: pass one explicitly or set ${CREDENTIAL_FOLDER_ENV} (there is no default folder)`,
  );
}
