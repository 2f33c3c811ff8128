/**
 * The workload's JWT-SVIDs and the JWT bundles, read from the same credential folder as FileSource
 * (the driver writes `jwt-svid.token`, or one `jwt-svid.<audience>.token` per audience, and
 * `<td>.jwt-bundle.json` into the same payload).
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
import { systemClock, type Clock } from '../clock/clock.js';
import { jwtSvidFileName } from '../layout/layout.js';
import { messageOf } from '../internal/error-text.js';
import type { JwtBundle, JwtBundleSource } from '../jwt/jwt-bundle.js';
import type { JwtBundleSet } from '../jwt/jwt-bundle-set.js';
import type { JwtSvidToken } from '../jwt/jwt-svid.js';
import { silentLogger, type Logger } from '../logger.js';
import type { TrustDomain } from '../spiffeid/trust-domain.js';
import { SourceError, problemOf, type SourceErrorKind } from './errors.js';
import { CredentialFolderReloader, type CredentialFolderWording, type FolderReloadOptions } from './folder-reloader.js';
import { checkTokenFileName, parseJwtFiles, selectJwtFiles, type JwtMaterial, type ParsedJwtFiles } from './jwt-files.js';
import { locateCredentialFolder } from './locate.js';

/** Options of {@link JwtSource}. */
export interface JwtSourceOptions extends FolderReloadOptions {
  /**
   * Name of the single token file in the folder. Default `jwt-svid.token` (the driver's default).
   * Per-audience files (`jwt-svid.<audience>.token`) are read whatever this says.
   */
  readonly tokenFile?: string;
  /**
   * Default true. false: bundles alone make the source ready, for services that only validate
   * JWT-SVIDs; current()/getToken() then throw until a token file appears.
   */
  readonly requireToken?: boolean;
  /** Where SPIFFE_CREDENTIAL_FOLDER is looked up when no folder is given. Default process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Quiet period after a filesystem event before re-reading. Default 50 ms. */
  readonly debounceMs?: number;
  /** Where loads and rejected updates are logged (pino-compatible). Default: nowhere. */
  readonly logger?: Logger;
}

/** The events of {@link JwtSource}. */
export interface JwtSourceEvents {
  /** New token and/or bundles, including the first load. */
  update: [material: JwtMaterial];
  /** A re-read failed or held an expired token; the previous material (if any) is still current. */
  error: [error: SourceError];
}

/** How long ready() waits by default. */
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

/** Every error of this source, composed once where it is raised, naming `jwtsource`. */
function jwtSourceError(kind: SourceErrorKind, message: string, options?: { cause?: unknown }): SourceError {
  return new SourceError('jwtsource', kind, message, options);
}

/**
 * The shared reader and parser raise this source's errors already (they are told whose they are);
 * anything else (a bug, an unexpected throw) is 'invalid'.
 */
function asSourceError(err: unknown): SourceError {
  return err instanceof SourceError ? err : jwtSourceError('invalid', messageOf(err), { cause: err });
}

function sameAudienceTokens(a: ReadonlyMap<string, JwtSvidToken>, b: ReadonlyMap<string, JwtSvidToken>): boolean {
  if (a.size !== b.size) return false;
  for (const [audience, token] of a) if (b.get(audience)?.token !== token.token) return false;
  return true;
}

/**
 * Same tokens and same keys under different bytes (whitespace, key order): nothing to announce.
 * Otherwise the new material, keeping the previous object of every token that did not change, so
 * what was said about a token (its expiry was logged) stays said.
 */
function adoptJwt(parsed: ParsedJwtFiles, previous: JwtMaterial | undefined, tokenFile: string): JwtMaterial | undefined {
  const next = parsed.material;
  if (
    previous !== undefined &&
    previous.svid?.token === next.svid?.token &&
    sameAudienceTokens(previous.audienceTokens, next.audienceTokens) &&
    previous.bundles.equals(next.bundles)
  ) {
    return undefined;
  }
  const held = new Map(previous === undefined ? [] : tokensOf(previous, tokenFile).map(([, token]) => [token.token, token]));
  const keep = (token: JwtSvidToken): JwtSvidToken => held.get(token.token) ?? token;
  return Object.freeze({
    svid: next.svid === null ? null : keep(next.svid),
    audienceTokens: new Map([...next.audienceTokens].map(([audience, token]) => [audience, keep(token)])),
    bundles: next.bundles,
  });
}

/** Every token of the material with the file it came from. */
function tokensOf(material: JwtMaterial, tokenFile: string): [file: string, token: JwtSvidToken][] {
  const tokens: [string, JwtSvidToken][] = material.svid === null ? [] : [[tokenFile, material.svid]];
  for (const [audience, token] of material.audienceTokens) {
    const file = jwtSvidFileName(audience);
    if (file !== tokenFile) tokens.push([file, token]);
  }
  return tokens;
}

/**
 * The workload's JWT-SVIDs and the JWT bundles from a credential folder, kept current like
 * `FileSource` does: a bad or expired update never replaces good material. Also a
 * JwtBundleSource, so validators can take it directly.
 */
export class JwtSource extends EventEmitter<JwtSourceEvents> implements JwtBundleSource {
  /** The absolute credential folder being read. */
  readonly folder: string;
  /** The single token file's name (default `jwt-svid.token`). */
  readonly tokenFile: string;

  private readonly requireToken: boolean;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly reloader: CredentialFolderReloader<ParsedJwtFiles, JwtMaterial, SourceError>;

  private readonly warnedExpired = new WeakSet<JwtSvidToken>();

  /**
   * `folder`: the credential folder; defaults to $SPIFFE_CREDENTIAL_FOLDER. Throws a {@link SourceError}
   * ('config') for a missing folder setting or bad options. Loading starts at once; await ready().
   */
  constructor(folder?: string, options: JwtSourceOptions = {}) {
    super();
    this.setMaxListeners(0);
    this.folder = locateCredentialFolder(folder, options.env ?? process.env, 'jwtsource');
    this.tokenFile = checkTokenFileName(options.tokenFile);
    this.requireToken = options.requireToken ?? true;
    this.logger = options.logger ?? silentLogger;
    this.clock = options.clock ?? systemClock;
    this.reloader = new CredentialFolderReloader<ParsedJwtFiles, JwtMaterial, SourceError>(this.folder, options, this.logger, {
      wording: WORDING,
      defaultDebounceMs: DEFAULT_DEBOUNCE_MS,
      createError: jwtSourceError,
      toError: asSourceError,
      quote: problemOf,
      select: (names) => selectJwtFiles(names, this.tokenFile),
      parse: (files) => parseJwtFiles(files, this.tokenFile, this.requireToken),
      checkUsable: (parsed) => this.checkNotExpired(parsed.material),
      adopt: (parsed, previous) => adoptJwt(parsed, previous, this.tokenFile),
      describe: (material, parsed) => ({
        files: parsed.sources,
        spiffeId: material.svid?.id.toString(),
        audience: material.svid?.audience,
        expiresAt: material.svid?.expiresAt.toISOString(),
        ...(material.audienceTokens.size === 0 ? {} : { audiences: [...material.audienceTokens.keys()] }),
        trustDomains: material.bundles.trustDomains().map((td) => td.name),
      }),
      checkExpiry: (material) => this.checkExpiry(material),
      emitUpdate: (material) => this.emit('update', material),
      emitError: (error) => this.listenerCount('error') > 0 && this.emit('error', error),
    });
    this.reloader.start();
  }

  /** Resolves with the first valid material; rejects after `timeoutMs` saying what was wrong. */
  ready(timeoutMs: number = DEFAULT_JWT_READY_TIMEOUT_MS): Promise<JwtMaterial> {
    return this.reloader.ready(timeoutMs);
  }

  /** Token and bundles as last loaded. Throws a {@link SourceError} ('not-ready') before the first load. */
  getMaterial(): JwtMaterial {
    const material = this.reloader.material;
    if (material === undefined) {
      throw jwtSourceError('not-ready', `no JWT-SVID material loaded yet from ${this.folder}; await ready() first`);
    }
    return material;
  }

  /**
   * The JWT-SVID of the single token file (id, audience, expiresAt, token), whatever its
   * audiences: for inspection. To present a token use getToken(audience), which never hands out
   * one for several audiences. Throws a {@link SourceError} when there is no such file.
   */
  current(): JwtSvidToken {
    const material = this.getMaterial();
    if (material.svid === null) {
      const perAudience = [...material.audienceTokens.keys()];
      const hint = perAudience.length === 0 ? '' : `; it has one token per audience (${JSON.stringify(perAudience)}): use getJwtSvid(audience)`;
      throw jwtSourceError('missing', `no JWT-SVID file ${this.tokenFile} in ${this.folder}${hint}`);
    }
    return material.svid;
  }

  /**
   * The JWT-SVID to present to `audience`: one whose `aud` is exactly `[audience]`, from
   * `jwt-svid.<audience>.token` or else from the single token file. A token for several audiences
   * is never returned: any of them could replay it to the others. Without `audience`, the one
   * token there is, if it is for one audience. Throws a {@link SourceError} ('audience') naming the
   * audience when there is no such token, ('not-ready'/'missing') when there is no token at all.
   */
  getJwtSvid(audience?: string): JwtSvidToken {
    const material = this.getMaterial();
    const { svid, audienceTokens } = material;
    if (audience === undefined) return this.onlyToken(material);
    if (typeof audience !== 'string' || audience === '') {
      throw jwtSourceError('config', `the audience must be a non-empty string, got ${JSON.stringify(audience)}`);
    }
    const own = audienceTokens.get(audience);
    if (own !== undefined) return own;
    if (svid?.isOnlyFor(audience)) return svid;
    const found: string[] = [];
    if (svid !== null) {
      found.push(
        svid.hasAudience(audience)
          ? `${this.tokenFile} is for ${JSON.stringify(svid.audience)}, and a token for several audiences is never handed out (each of them could replay it to the others)`
          : `${this.tokenFile} is for ${JSON.stringify(svid.audience)}`,
      );
    }
    if (audienceTokens.size > 0) found.push(`per-audience tokens are for ${JSON.stringify([...audienceTokens.keys()])}`);
    if (found.length === 0) found.push('there is no token');
    throw jwtSourceError(
      'audience',
      `no JWT-SVID for audience ${JSON.stringify(audience)} in ${this.folder}: ${found.join('; ')}. ` +
        `List ${JSON.stringify(audience)} in the volume attribute csi.spire.io/jwt-audiences (with several audiences the driver writes ` +
        `each one's token to ${jwtSvidFileName(audience)})`,
    );
  }

  /**
   * The current serialized JWT-SVID for `audience` (see getJwtSvid), read fresh on every call so
   * refreshed tokens are used at once.
   */
  getToken(audience?: string): string {
    return this.getJwtSvid(audience).token;
  }

  /** Throws a {@link SourceError} ('not-ready') before the first load. */
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

  /** getJwtSvid() without an audience: the one token there is, if it is for one audience. */
  private onlyToken(material: JwtMaterial): JwtSvidToken {
    const { svid, audienceTokens } = material;
    if (svid !== null) {
      if (svid.audience.length === 1) return svid;
      throw jwtSourceError(
        'audience',
        `the JWT-SVID in ${this.tokenFile} is for several audiences ${JSON.stringify(svid.audience)} and is never handed out ` +
          '(each of them could replay it to the others); ask for one audience with getToken(audience)',
      );
    }
    if (audienceTokens.size === 1) return [...audienceTokens.values()][0]!;
    if (audienceTokens.size > 1) {
      throw jwtSourceError(
        'audience',
        `${this.folder} has tokens for several audiences ${JSON.stringify([...audienceTokens.keys()])}; name one with getToken(audience)`,
      );
    }
    return this.current();
  }

  /**
   * Refuses material with a token that is new and already expired. A token already being served
   * that expired in place is no reason to refuse: it would hold back the refresh of every other
   * audience's token and of the bundles, and is served either way.
   */
  private checkNotExpired(material: JwtMaterial): void {
    const now = this.clock.now();
    const current = this.reloader.material;
    const held = new Set(current === undefined ? [] : tokensOf(current, this.tokenFile).map(([, token]) => token.token));
    for (const [file, token] of tokensOf(material, this.tokenFile)) {
      if (!token.isExpiredAt(now) || held.has(token.token)) continue;
      throw jwtSourceError(
        'expired',
        `JWT-SVID ${token.id.toString()} in ${file} expired at ${token.expiresAt.toISOString()} (now ${now.toISOString()})`,
      );
    }
  }

  /**
   * Logs once per token when it expires without a replacement: every request with it will now
   * fail. Returns the time until the next of those is due.
   */
  private checkExpiry(material: JwtMaterial): number | undefined {
    const now = this.clock.now().getTime();
    let next: number | undefined;
    for (const [file, token] of tokensOf(material, this.tokenFile)) {
      if (this.warnedExpired.has(token)) continue;
      const remaining = token.expiresAt.getTime() - now;
      if (remaining <= 0) {
        this.warnedExpired.add(token);
        this.logger.error(
          { folder: this.folder, file, spiffeId: token.id.toString(), expiresAt: token.expiresAt.toISOString() },
          `jwtsource: the JWT-SVID in ${file} expired and no newer one arrived in ${this.folder}`,
        );
        continue;
      }
      // +1: expired starts just after expiresAt.
      next = Math.min(next ?? Number.POSITIVE_INFINITY, remaining + 1);
    }
    return next;
  }
}
