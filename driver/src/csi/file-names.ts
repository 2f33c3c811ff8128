import {
  audienceOfJwtSvidFileName,
  CREDENTIAL_BUNDLE_FILES,
  isExtraCredentialBundleFileName,
  JWT_SVID_AUDIENCE_FILE_PREFIX,
  JWT_SVID_AUDIENCE_FILE_SUFFIX,
  RESERVED_FILE_NAMES,
  RESERVED_FILE_SUFFIXES,
} from '@spire-csi/sdk/layout';
import { attr, invalid, q, type SpireAttribute, type SpireAttributes } from './attributes.js';

/*
 * The rules for the file names a volume's attributes choose: plain names, none the driver writes
 * itself (credential bundles, per-trust-domain bundles, per-audience tokens), no two alike.
 */

const MAX_FILE_NAME_BYTES = 255;

/** With all-svids, `<n>.<credential bundle>` names the extra SVIDs' files: no other file may take one. */
export function checkExtraCredentialNames(named: readonly [SpireAttribute, string][], credentialBundleFile: string): void {
  for (const [name, value] of named) {
    if (name !== 'credential-bundle-file' && isExtraCredentialBundleFileName(value, credentialBundleFile)) {
      throw invalid(
        `volume attribute ${attr(name)} ${q(value)} has the form <n>.${credentialBundleFile}, which ${attr('all-svids')} ` +
          'uses for the extra SVIDs; choose another name',
      );
    }
  }
}

export function fileName(name: SpireAttribute, attributes: SpireAttributes, fallback: string, jwtAudiences: readonly string[]): string {
  const value = attributes[name];
  if (value === undefined) return fallback;
  const field = `volume attribute ${attr(name)}`;
  const plain = `; it must be a plain file name such as ${q(fallback)}`;
  if (value === '') throw invalid(`${field} is empty${plain}`);
  if (value.includes('/')) throw invalid(`${field} ${q(value)} contains "/"${plain}, without folders`);
  if (value === '.' || value === '..') throw invalid(`${field} ${q(value)} is not a file name${plain}`);
  if (value.startsWith('.')) {
    throw invalid(`${field} ${q(value)} starts with "."; such names are reserved for the volume's internal links${plain}`);
  }
  // eslint-disable-next-line no-control-regex -- rejecting control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(value)) throw invalid(`${field} ${q(value)} contains a control character${plain}`);
  if (Buffer.byteLength(value, 'utf8') > MAX_FILE_NAME_BYTES) {
    throw invalid(`${field} is longer than ${MAX_FILE_NAME_BYTES} bytes${plain}`);
  }
  // The credential bundle may take any of its own spellings; every other file none of them, since
  // readers take each spelling for a credential bundle.
  const ownSpelling = name === 'credential-bundle-file' && (CREDENTIAL_BUNDLE_FILES as readonly string[]).includes(value);
  if ((RESERVED_FILE_NAMES.includes(value) && !ownSpelling) || RESERVED_FILE_SUFFIXES.some((suffix) => value.endsWith(suffix))) {
    throw invalid(
      `${field} ${q(value)} is reserved: the driver itself writes ${RESERVED_FILE_NAMES.join(', ')}, ` +
        `<trust-domain>.spiffe-trust-bundle.x509.pem (or .spiffe-trust-bundle.pem) and <trust-domain>.jwt-bundle.json; choose another name`,
    );
  }
  checkJwtSvidFilePattern(name, value, field, jwtAudiences);
  return value;
}

/**
 * `jwt-svid.<audience>.token` names are the per-audience tokens' (readers take any such file for
 * that audience's token), so a user-chosen file may not take one. The one exception is
 * jwt-svid-file naming its single audience's own file, which holds exactly that token.
 */
function checkJwtSvidFilePattern(name: SpireAttribute, value: string, field: string, jwtAudiences: readonly string[]): void {
  const audience = audienceOfJwtSvidFileName(value);
  if (audience === undefined) return;
  if (name === 'jwt-svid-file' && jwtAudiences.length === 1 && jwtAudiences[0] === audience) return;
  if (jwtAudiences.length > 1 && jwtAudiences.includes(audience)) {
    throw invalid(
      `${field} ${q(value)} names the file the JWT-SVID for audience ${q(audience)} of ${attr('jwt-audiences')} is written to; ` +
        `choose another name for ${attr(name)}`,
    );
  }
  throw invalid(
    `${field} ${q(value)} is reserved: the driver writes one JWT-SVID per audience as ` +
      `${JWT_SVID_AUDIENCE_FILE_PREFIX}<audience>${JWT_SVID_AUDIENCE_FILE_SUFFIX}; choose another name`,
  );
}

/** Every per-audience token file must be a name the filesystem takes. */
export function checkAudienceFileNames(files: ReadonlyMap<string, string>): void {
  for (const [audience, file] of files) {
    if (Buffer.byteLength(file, 'utf8') > MAX_FILE_NAME_BYTES) {
      throw invalid(
        `volume attribute ${attr('jwt-audiences')} has the audience ${q(audience)}, whose token file name would be longer than ` +
          `${MAX_FILE_NAME_BYTES} bytes (characters outside [A-Za-z0-9._-] take 3 bytes each in it); use a shorter audience`,
      );
    }
  }
}

export function checkDistinct(named: readonly [SpireAttribute, string][], attributes: SpireAttributes): void {
  const describe = (name: SpireAttribute, value: string): string =>
    attributes[name] === undefined ? `${attr(name)} (default ${q(value)})` : `${attr(name)} ${q(value)}`;
  for (let i = 0; i < named.length; i++) {
    for (let j = i + 1; j < named.length; j++) {
      const [a, aValue] = named[i] as [SpireAttribute, string];
      const [b, bValue] = named[j] as [SpireAttribute, string];
      if (aValue === bValue) {
        throw invalid(
          `volume attributes ${describe(a, aValue)} and ${describe(b, bValue)} name the same file; ` +
            'give each file its own name',
        );
      }
    }
  }
}
