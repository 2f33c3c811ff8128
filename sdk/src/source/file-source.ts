/**
 * An X509Source fed by a credential folder (our CSI driver's volume, a Kubernetes projected volume,
 * spiffe-helper output, ...).
 *
 * The rule that shapes everything here: a bad read never replaces good material. Every re-read
 * takes one consistent snapshot, parses and validates it completely, and only then swaps; anything
 * else is reported ('error' event, or logger.warn when nobody listens so an unhandled 'error'
 * cannot crash the application) while the last good credentials keep serving.
 *
 * Re-reads are triggered by filesystem events (debounced, since one rotation is a burst of them),
 * by a periodic re-check that covers missed events, and by refresh(). That machinery is the
 * CredentialFolderReloader's (shared with JwtSource); this file says what X.509 material is: which
 * files, how they parse, when an SVID is usable, and when to warn that it is about to expire.
 */
import { EventEmitter } from 'node:events';
import { messageOf } from '../internal/error-text.js';
import { systemClock, type Clock } from '../clock/clock.js';
import type { SplitFileNames } from '../layout/layout.js';
import { silentLogger, type Logger } from '../logger.js';
import type { TrustDomain } from '../spiffeid/trust-domain.js';
import type { X509Bundle } from '../x509/bundle.js';
import type { X509BundleSet } from '../x509/bundle-set.js';
import type { X509Svid } from '../x509/svid.js';
import {
  parseCredentialFiles,
  resolveSplitFileNames,
  checkLayout,
  checkSvidChoice,
  selectCredentialFiles,
  type CredentialFilesOptions,
  type DuplicateSpelling,
  type CredentialLayout,
  type ForeignRoot,
  type ParsedCredentials,
} from './credential-files.js';
import { SourceError, problemOf } from './errors.js';
import { expiryWarningFor } from './expiry.js';
import { CredentialFolderReloader, checkDuration, type CredentialFolderWording, type FolderReloadOptions } from './folder-reloader.js';
import { locateCredentialFolder } from './locate.js';
import type { X509Material, X509Source } from './x509-source.js';

/** Options of {@link FileSource}. */
export interface FileSourceOptions extends FolderReloadOptions {
  /**
   * `credential-bundle` (SPIFFE Filesystem Delivery), `split` (spiffe-helper files), or `auto`
   * (default): the credential bundle when present, else the split files.
   */
  readonly layout?: CredentialLayout;
  /** Split-file names; default `svid.pem`, `svid_key.pem`, `bundle.pem`. */
  readonly files?: Partial<SplitFileNames>;
  /** Where SPIFFE_CREDENTIAL_FOLDER is looked up when no folder is given. Default process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /**
   * Quiet period after a filesystem event before re-reading. Default 10 ms: the driver's (and
   * kubelet's) update is a single `..data` rename, and a read that lands mid-update is retried.
   */
  readonly debounceMs?: number;
  /**
   * Emit 'warning' when the current SVID is this close to notAfter and no newer one arrived.
   * Default: one third of the SVID's lifetime (SPIRE rotates at one half, so the rotation is late).
   */
  readonly expiryWarningMs?: number;
  /** Where loads, rejected updates and warnings are logged (pino-compatible). Default: nowhere. */
  readonly logger?: Logger;
  /**
   * In a folder holding several SVIDs (the driver's `csi.spire.io/all-svids`), load the one with
   * this SPIFFE ID, as listed in its hints.json; without hints.json the folder's SVID must be it.
   */
  readonly spiffeId?: string;
  /** Likewise, the SVID with this hint (the registration entry's); needs hints.json. */
  readonly hint?: string;
}

/**
 * What a FileSource `warning` event carries: a {@link SourceError} (so it logs like one) with the
 * SVID it is about.
 */
export interface FileSourceWarning extends SourceError {
  /**
   * `expiring`: within the warning window of notAfter. `expired`: past notAfter. `foreign-root`:
   * a root in the split bundle file names another trust domain, so it was not trusted for the
   * SVID's own (once per root while it stays there). `duplicate-spelling`: the folder holds one
   * file under two spellings of the SPIFFE Filesystem Delivery draft (`credential-bundle.pem` and
   * `credential-bundle.private-key.x509.pem`, say); the newest was read (once while it stays).
   */
  readonly kind: 'expiring' | 'expired' | 'foreign-root' | 'duplicate-spelling';
  /** The credential folder. */
  readonly folder: string;
  /** The current SVID's SPIFFE ID. */
  readonly spiffeId: string;
  /** The current SVID's serial number (hex). */
  readonly serialNumber: string;
  /** The current SVID's notAfter. */
  readonly notAfter: Date;
  /** `foreign-root`: the file the root was in. `duplicate-spelling`: the spelling that was read. */
  readonly file?: string;
  /** `duplicate-spelling`: the older spellings present too, which were ignored. */
  readonly ignored?: readonly string[];
  /** `foreign-root`: the trust domain the root names (the URI as written when it is not a valid one). */
  readonly trustDomain?: string;
  /** `foreign-root`: the root's SHA-256 fingerprint. */
  readonly fingerprint256?: string;
}

/** The events of {@link FileSource}. */
export interface FileSourceEvents {
  /** New material, including the first load. */
  update: [material: X509Material];
  /** A re-read failed; the previous material (if any) is still current. */
  error: [error: SourceError];
  /** The current SVID is about to expire, or has, and nothing newer arrived. Once per SVID each. */
  warning: [warning: FileSourceWarning];
}

/** How long ready() waits by default. */
export const DEFAULT_READY_TIMEOUT_MS = 30_000;
export const DEFAULT_DEBOUNCE_MS = 10;

const WORDING: CredentialFolderWording = {
  prefix: 'filesource',
  material: 'credentials',
  materialWasLoaded: 'credentials were loaded',
  loaded: 'loaded credentials',
  keptCurrent: 'ignoring invalid update, keeping current credentials',
  unseenChanges: 'rotations',
};

function configError(message: string): SourceError {
  return new SourceError('filesource', 'config', message);
}

/** Errors of the reader and parser are this source's SourceErrors already; anything else is 'invalid'. */
function asSourceError(err: unknown): SourceError {
  return err instanceof SourceError ? err : new SourceError('filesource', 'invalid', messageOf(err), { cause: err });
}

/** Throws a SourceError ('expired') unless the SVID and its chain are valid at `now`. */
function checkValidity(svid: X509Svid, now: Date): void {
  if (svid.isValidAt(now)) return;
  const leafState = now < svid.notBefore ? 'not valid yet' : now > svid.notAfter ? 'expired' : 'valid';
  const detail = leafState === 'valid' ? 'a certificate in its chain is outside its validity period' : `the leaf is ${leafState}`;
  throw new SourceError(
    'filesource',
    'expired',
    `X509-SVID ${svid.id.toString()} (serial ${svid.serialNumber}) is not usable at ${now.toISOString()}: ${detail} ` +
      `(leaf valid ${svid.notBefore.toISOString()} to ${svid.notAfter.toISOString()})`,
  );
}

/** Every read that parses is an update; only the bundle set is carried over when equal. */
function adoptX509(parsed: ParsedCredentials, previous: X509Material | undefined): X509Material {
  const next = parsed.material;
  // An SVID rotation usually leaves the bundles as they were: keeping the previous (immutable)
  // set then keeps everything scoped to it, such as remembered peer verifications, valid.
  const bundles = previous !== undefined && previous.bundles.equals(next.bundles) ? previous.bundles : next.bundles;
  return Object.freeze({ svid: next.svid, bundles });
}

/**
 * An {@link X509Source} fed by a credential folder (the spire-csi driver's volume, a Kubernetes
 * projected volume, spiffe-helper output, ...). A bad read never replaces good material: it is
 * reported as an `error` event while the last good credentials keep serving.
 */
export class FileSource extends EventEmitter<FileSourceEvents> implements X509Source {
  /** The absolute credential folder being read. */
  readonly folder: string;

  private readonly fileOptions: CredentialFilesOptions;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly expiryWarningMs: number | undefined;
  private readonly reloader: CredentialFolderReloader<ParsedCredentials, X509Material, SourceError>;

  private warnedExpiring: X509Svid | undefined;
  private warnedExpired: X509Svid | undefined;
  /** Fingerprints of the foreign roots reported for the current material. */
  private warnedForeignRoots = new Set<string>();
  private pendingForeignRoots: readonly ForeignRoot[] = [];
  /** The duplicate spellings reported for the current material, as `used\0ignored...` keys. */
  private warnedDuplicates = new Set<string>();
  private pendingDuplicates: readonly DuplicateSpelling[] = [];

  /**
   * `folder`: the credential folder; defaults to $SPIFFE_CREDENTIAL_FOLDER (there is no default
   * folder). Throws a {@link SourceError} ('config') for a missing folder setting or bad options.
   * Loading starts at once; await ready() for the first valid material.
   */
  constructor(folder?: string, options: FileSourceOptions = {}) {
    super();
    // Every server, agent and dispatcher subscribes; dozens of listeners is normal, not a leak.
    this.setMaxListeners(0);
    this.folder = locateCredentialFolder(folder, options.env ?? process.env, 'filesource');
    const layout = checkLayout(options.layout);
    const choice = checkSvidChoice({ layout, spiffeId: options.spiffeId, hint: options.hint });
    this.fileOptions = { layout, files: resolveSplitFileNames(options.files), ...choice };
    this.logger = options.logger ?? silentLogger;
    this.clock = options.clock ?? systemClock;
    this.expiryWarningMs =
      options.expiryWarningMs === undefined ? undefined : checkDuration('expiryWarningMs', options.expiryWarningMs, 0, 0, configError);
    this.reloader = new CredentialFolderReloader<ParsedCredentials, X509Material, SourceError>(this.folder, options, this.logger, {
      wording: WORDING,
      defaultDebounceMs: DEFAULT_DEBOUNCE_MS,
      createError: (kind, message, errorOptions) => new SourceError('filesource', kind, message, errorOptions),
      toError: asSourceError,
      quote: problemOf,
      select: (names) => selectCredentialFiles(names, this.fileOptions),
      parse: (files) => parseCredentialFiles(files, this.fileOptions),
      checkUsable: (parsed) => checkValidity(parsed.material.svid, this.clock.now()),
      adopt: (parsed, previous) => {
        // Reported with the update, once the material is current(), not while it is being chosen.
        this.pendingForeignRoots = parsed.foreignRoots;
        this.pendingDuplicates = parsed.duplicates;
        return adoptX509(parsed, previous);
      },
      describe: (material, parsed) => ({
        layout: parsed.layout,
        files: parsed.sources,
        spiffeId: material.svid.id.toString(),
        serialNumber: material.svid.serialNumber,
        notAfter: material.svid.notAfter.toISOString(),
        trustDomains: material.bundles.trustDomains().map((td) => td.name),
      }),
      checkExpiry: (material) => this.checkExpiry(material.svid),
      emitUpdate: (material) => {
        this.reportForeignRoots(material.svid, this.pendingForeignRoots);
        this.reportDuplicates(material.svid, this.pendingDuplicates);
        this.emit('update', material);
      },
      emitError: (error) => this.listenerCount('error') > 0 && this.emit('error', error),
    });
    this.reloader.start();
  }

  /** Resolves with the first valid material; rejects after `timeoutMs` saying what was wrong. */
  ready(timeoutMs: number = DEFAULT_READY_TIMEOUT_MS): Promise<X509Material> {
    return this.reloader.ready(timeoutMs);
  }

  /** The current material. Throws a {@link SourceError} ('not-ready') before the first valid load. */
  current(): X509Material {
    const material = this.reloader.material;
    if (material === undefined) {
      throw new SourceError('filesource', 'not-ready', `no credentials loaded yet from ${this.folder}; await ready() first`);
    }
    return material;
  }

  /** The current SVID; throws like {@link FileSource.current} before the first load. */
  getX509Svid(): X509Svid {
    return this.current().svid;
  }

  /** The current bundles; throws like {@link FileSource.current} before the first load. */
  getX509Bundles(): X509BundleSet {
    return this.current().bundles;
  }

  /** Undefined before the first load: an unknown domain is untrusted, which is the safe answer. */
  getX509BundleForTrustDomain(td: TrustDomain): X509Bundle | undefined {
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

  /**
   * Warns once per SVID when it nears notAfter and once when it passed it. Returns the time until
   * the next of those is due.
   */
  private checkExpiry(svid: X509Svid): number | undefined {
    const { warnAt, notAfter } = expiryWarningFor(svid, this.expiryWarningMs);
    const now = this.clock.now().getTime();
    if (now > notAfter.getTime() && this.warnedExpired !== svid) {
      this.warnedExpired = this.warnedExpiring = svid;
      this.warn('expired', svid, `X509-SVID ${svid.id.toString()} (serial ${svid.serialNumber}) expired at ${notAfter.toISOString()} and no newer one arrived in ${this.folder}`);
    } else if (now >= warnAt.getTime() && this.warnedExpiring !== svid) {
      this.warnedExpiring = svid;
      this.warn('expiring', svid, `X509-SVID ${svid.id.toString()} (serial ${svid.serialNumber}) expires at ${notAfter.toISOString()} and no newer one arrived in ${this.folder}`);
    }
    const next = this.warnedExpiring !== svid ? warnAt : this.warnedExpired !== svid ? notAfter : undefined;
    // +1: notAfter is inclusive, "expired" starts just after it.
    return next === undefined ? undefined : next.getTime() - now + 1;
  }

  /**
   * Warns about each root of the split bundle file that was left out because it names another
   * trust domain: the folder was written for consumers that cannot tell trust domains apart
   * (bundle-include-federated), and trusting that root would let another trust domain's CA mint
   * identities of ours. A root that stays is reported once, not on every rotation.
   */
  private reportForeignRoots(svid: X509Svid, roots: readonly ForeignRoot[]): void {
    const reported = this.warnedForeignRoots;
    this.warnedForeignRoots = new Set(roots.map((root) => root.fingerprint256));
    for (const root of roots) {
      if (reported.has(root.fingerprint256)) continue;
      const named = /^[a-z0-9._-]+$/.test(root.trustDomain) ? `spiffe://${root.trustDomain}` : root.trustDomain;
      this.warn(
        'foreign-root',
        svid,
        `${root.file}: the root ${root.fingerprint256} names ${named}, so it is not an authority for ${svid.id.trustDomain.name} and is not trusted ` +
          `(bundle-include-federated folders are for non-SPIFFE consumers; SPIFFE peers are verified with the per-trust-domain bundle files)`,
        { file: root.file, trustDomain: root.trustDomain, fingerprint256: root.fingerprint256 },
      );
    }
  }

  /**
   * Warns when a file is there under two spellings: whatever wrote the older one may be a stale
   * or second writer, and readers that only know one spelling may see other content than this one.
   * Reported once while the same files stay.
   */
  private reportDuplicates(svid: X509Svid, duplicates: readonly DuplicateSpelling[]): void {
    const reported = this.warnedDuplicates;
    const keyOf = (d: DuplicateSpelling): string => [d.used, ...d.ignored].join('\0');
    this.warnedDuplicates = new Set(duplicates.map(keyOf));
    for (const duplicate of duplicates) {
      if (reported.has(keyOf(duplicate))) continue;
      this.warn(
        'duplicate-spelling',
        svid,
        `${this.folder} holds ${[duplicate.used, ...duplicate.ignored].join(' and ')}, spellings of the same file; ` +
          `reading the newest, ${duplicate.used}, and ignoring ${duplicate.ignored.join(', ')} (remove the older one, or its writer)`,
        { file: duplicate.used, ignored: duplicate.ignored },
      );
    }
  }

  private warn(
    kind: FileSourceWarning['kind'],
    svid: X509Svid,
    message: string,
    details: Pick<FileSourceWarning, 'file' | 'trustDomain' | 'fingerprint256' | 'ignored'> = {},
  ): void {
    // A SourceError, composed once here, carrying the facts about the SVID as own fields.
    const warning: FileSourceWarning = Object.assign(new SourceError('filesource', kind, message), {
      kind,
      folder: this.folder,
      spiffeId: svid.id.toString(),
      serialNumber: svid.serialNumber,
      notAfter: svid.notAfter,
      ...details,
    });
    const log = {
      folder: this.folder,
      spiffeId: warning.spiffeId,
      serialNumber: warning.serialNumber,
      notAfter: svid.notAfter.toISOString(),
      ...details,
    };
    if (kind === 'expired') this.logger.error(log, warning.message);
    else this.logger.warn(log, warning.message);
    try {
      this.emit('warning', warning);
    } catch (err) {
      this.logger.error({ folder: this.folder, error: messageOf(err) }, "filesource: a 'warning' listener threw");
    }
  }
}
