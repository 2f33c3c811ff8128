/**
 * The workload's JWT-SVID and the JWT bundles, read from the same credential folder as FileSource
 * (the driver writes `jwt-svid.token` and `<td>.jwt-bundle.json` into the same payload).
 *
 * Reading, watching and reloading are FileSource's, through the shared CredentialFolderReloader:
 * readSnapshot() gives one consistent generation through `..data`, FolderWatcher says when to look
 * again. The rule is FileSource's too: a bad or expired update never replaces good material; the
 * problem is reported ('error' event, or logger.warn when nobody listens, so an unhandled 'error'
 * cannot crash the application) and the last good token and bundles keep serving. Token and
 * bundles come from one payload and are swapped together. This file says what JWT material is:
 * which files, how they parse, when a token is expired, and when a new read is worth announcing.
 */
import { EventEmitter } from 'node:events';
import { silentLogger, type Logger } from '../logger.js';
import { FileSourceError } from '../source/errors.js';
import { CredentialFolderReloader, type CredentialFolderWording, type FolderReloadOptions } from '../source/folder-reloader.js';
import { locateCredentialFolder, type Environment } from '../source/locate.js';
import type { TrustDomain } from '../spiffe-id/trust-domain.js';
import { JwtSourceError, messageOf } from './errors.js';
import type { JwtBundle, JwtBundleSource } from './jwt-bundle.js';
import type { JwtBundleSet } from './jwt-bundle-set.js';
import { checkTokenFileName, parseJwtFiles, selectJwtFiles, type JwtMaterial, type ParsedJwtFiles } from './jwt-files.js';
import type { JwtSvidToken } from './jwt-svid.js';

export interface JwtSourceOptions extends FolderReloadOptions {
  /** Name of the token file in the folder. Default `jwt-svid.token` (the driver's default). */
  readonly tokenFile?: string;
  /**
   * Default true. false: bundles alone make the source ready, for services that only validate
   * JWT-SVIDs; current()/getToken() then throw until a token file appears.
   */
  readonly requireToken?: boolean;
  /** Where SPIFFE_CREDENTIAL_FOLDER is looked up when no folder is given. Default process.env. */
  readonly env?: Environment;
  /** Quiet period after a filesystem event before re-reading. Default 50 ms. */
  readonly debounceMs?: number;
  /** The clock used for token expiry. */
  readonly now?: () => Date;
  readonly logger?: Logger;
}

export interface JwtSourceEvents {
  /** New token and/or bundles, including the first load. */
  update: [material: JwtMaterial];
  /** A re-read failed or held an expired token; the previous material (if any) is still current. */
  error: [error: JwtSourceError];
}

export const DEFAULT_JWT_READY_TIMEOUT_MS = 30_000;
const DEFAULT_DEBOUNCE_MS = 50;

const WORDING: CredentialFolderWording = {
  prefix: 'jwtsource',
  material: 'JWT-SVID material',
  materialWasLoaded: 'JWT-SVID material was loaded',
  loaded: 'loaded JWT-SVID material',
  keptCurrent: 'ignoring invalid update, keeping the current JWT-SVID material',
  unseenChanges: 'refreshed tokens',
};

/** FileSourceErrors from the shared reader are re-labelled so every message names this module. */
function asJwtSourceError(err: unknown): JwtSourceError {
  if (err instanceof JwtSourceError) return err;
  if (err instanceof FileSourceError) return new JwtSourceError(err.kind, err.message.replace(/^filesource: /, ''), { cause: err });
  return new JwtSourceError('invalid', messageOf(err), { cause: err });
}

/** Same token and same keys under different bytes (whitespace, key order): nothing to announce. */
function adoptJwt(parsed: ParsedJwtFiles, previous: JwtMaterial | undefined): JwtMaterial | undefined {
  const next = parsed.material;
  if (previous !== undefined && previous.svid?.token === next.svid?.token && previous.bundles.equals(next.bundles)) return undefined;
  return Object.freeze({ ...next });
}

export class JwtSource extends EventEmitter<JwtSourceEvents> implements JwtBundleSource {
  /** The absolute credential folder being read. */
  readonly folder: string;
  readonly tokenFile: string;

  private readonly requireToken: boolean;
  private readonly logger: Logger;
  private readonly now: () => Date;
  private readonly reloader: CredentialFolderReloader<ParsedJwtFiles, JwtMaterial, JwtSourceError>;

  private warnedExpired: JwtSvidToken | undefined;

  /**
   * `folder`: the credential folder; defaults to $SPIFFE_CREDENTIAL_FOLDER. Throws JwtSourceError
   * ('config') for a missing folder setting or bad options. Loading starts at once; await ready().
   */
  constructor(folder?: string, options: JwtSourceOptions = {}) {
    super();
    this.setMaxListeners(0);
    try {
      this.folder = locateCredentialFolder(folder, options.env);
    } catch (err) {
      throw asJwtSourceError(err);
    }
    this.tokenFile = checkTokenFileName(options.tokenFile);
    this.requireToken = options.requireToken ?? true;
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? (() => new Date());
    this.reloader = new CredentialFolderReloader<ParsedJwtFiles, JwtMaterial, JwtSourceError>(this.folder, options, this.logger, {
      wording: WORDING,
      defaultDebounceMs: DEFAULT_DEBOUNCE_MS,
      createError: (kind, message, errorOptions) => new JwtSourceError(kind, message, errorOptions),
      toError: asJwtSourceError,
      select: (names) => selectJwtFiles(names, this.tokenFile),
      parse: (files) => parseJwtFiles(files, this.tokenFile, this.requireToken),
      checkUsable: (parsed) => this.checkNotExpired(parsed.material.svid),
      adopt: adoptJwt,
      describe: (material, parsed) => ({
        files: parsed.sources,
        spiffeId: material.svid?.id.toString(),
        audience: material.svid?.audience,
        expiresAt: material.svid?.expiresAt.toISOString(),
        trustDomains: material.bundles.trustDomains().map((td) => td.name),
      }),
      checkExpiry: (material) => this.checkExpiry(material.svid),
      emitUpdate: (material) => this.emit('update', material),
      emitError: (error) => this.listenerCount('error') > 0 && this.emit('error', error),
    });
    this.reloader.start();
  }

  /** Resolves with the first valid material; rejects after `timeoutMs` saying what was wrong. */
  ready(timeoutMs: number = DEFAULT_JWT_READY_TIMEOUT_MS): Promise<JwtMaterial> {
    return this.reloader.ready(timeoutMs);
  }

  /** Token and bundles as last loaded. Throws JwtSourceError ('not-ready') before the first load. */
  getMaterial(): JwtMaterial {
    const material = this.reloader.material;
    if (material === undefined) {
      throw new JwtSourceError('not-ready', `no JWT-SVID material loaded yet from ${this.folder}; await ready() first`);
    }
    return material;
  }

  /** The current JWT-SVID (id, audience, expiresAt, token). Throws JwtSourceError when there is none. */
  current(): JwtSvidToken {
    const svid = this.getMaterial().svid;
    if (svid === null) throw new JwtSourceError('missing', `no JWT-SVID file ${this.tokenFile} in ${this.folder}`);
    return svid;
  }

  /**
   * The current serialized JWT-SVID, read fresh on every call so refreshed tokens are used at
   * once. With `audience`, throws JwtSourceError ('audience') unless the token carries it: sending
   * a token to a service it was not minted for would only be rejected there.
   */
  getToken(audience?: string): string {
    const svid = this.current();
    if (audience !== undefined && !svid.hasAudience(audience)) {
      throw new JwtSourceError(
        'audience',
        `the JWT-SVID in ${this.tokenFile} has audience ${JSON.stringify(svid.audience)}, not ${JSON.stringify(audience)}; ` +
          'add it to the volume attribute csi.spire.io/jwt-audiences',
      );
    }
    return svid.token;
  }

  /** Throws JwtSourceError ('not-ready') before the first load. */
  getJwtBundles(): JwtBundleSet {
    return this.getMaterial().bundles;
  }

  /** Undefined before the first load: an unknown domain is untrusted, which is the safe answer. */
  getJwtBundleForTrustDomain(td: TrustDomain): JwtBundle | undefined {
    return this.reloader.material?.bundles.get(td);
  }

  /** Re-reads the folder now; resolves once a read that started after this call has finished. */
  refresh(): Promise<void> {
    return this.reloader.refresh();
  }

  /** Stops watching and timers. Idempotent; material already loaded stays readable. */
  close(): Promise<void> {
    return this.reloader.close();
  }

  private checkNotExpired(svid: JwtSvidToken | null): void {
    const now = this.now();
    if (svid === null || !svid.isExpiredAt(now)) return;
    throw new JwtSourceError(
      'expired',
      `JWT-SVID ${svid.id.toString()} in ${this.tokenFile} expired at ${svid.expiresAt.toISOString()} (now ${now.toISOString()})`,
    );
  }

  /**
   * Logs once when the current token expires without a replacement: every request will now fail.
   * Returns the time until that is due.
   */
  private checkExpiry(svid: JwtSvidToken | null): number | undefined {
    if (svid === null || this.warnedExpired === svid) return undefined;
    const remaining = svid.expiresAt.getTime() - this.now().getTime();
    if (remaining <= 0) {
      this.warnedExpired = svid;
      this.logger.error(
        { folder: this.folder, spiffeId: svid.id.toString(), expiresAt: svid.expiresAt.toISOString() },
        `jwtsource: the JWT-SVID expired and no newer one arrived in ${this.folder}`,
      );
      return undefined;
    }
    // +1: expired starts just after expiresAt.
    return remaining + 1;
  }
}
