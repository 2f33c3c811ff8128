/**
 * Tells FileSource "something in the credential folder may have changed". It never interprets
 * events: every add/change/unlink/addDir/unlinkDir just triggers a (debounced) re-read, because
 * the snapshot reader, not the event stream, decides what the current content is.
 *
 * The watch is placed on the folder's parent (depth 1, everything but the folder filtered out) so
 * the folder being deleted and recreated is seen too; chokidar then re-watches the new directory
 * itself. A directory renamed over the folder is not followed by chokidar, so `resync()` compares
 * the folder's identity (real path, device, inode) with the watched one and restarts the watch when
 * it changed. When the parent cannot be listed, only the folder itself is watched and the periodic
 * re-check of FileSource covers the folder being replaced.
 */
import { access, realpath, stat } from 'node:fs/promises';
import { constants } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import { systemClock, type Clock } from '../clock/clock.js';
import type { Logger } from '../logger.js';
import { messageOf } from '../internal/error-text.js';

export interface FolderWatcherOptions {
  /** Poll instead of inotify (NFS, some FUSE and container filesystems). */
  readonly usePolling?: boolean;
  /** Poll interval when polling. Default 1000 ms. */
  readonly pollIntervalMs?: number;
  readonly logger: Logger;
  /** Times the bound on waiting for the watch to be established. Default systemClock. */
  readonly clock?: Clock;
  /**
   * Called for every filesystem event that may concern the folder. `folderChanged`: the event is
   * about the folder itself (created, removed, replaced) or the watch reported an error, so the
   * watch may need re-establishing (resync) before the next read; false for the files inside.
   */
  readonly onChange: (folderChanged: boolean) => void;
}

const READY_TIMEOUT_MS = 5_000;

interface FolderIdentity {
  readonly real: string;
  readonly dev: number;
  readonly ino: number;
}

function sameIdentity(a: FolderIdentity | null, b: FolderIdentity | null): boolean {
  if (a === null || b === null) return a === b;
  return a.real === b.real && a.dev === b.dev && a.ino === b.ino;
}

async function identityOf(folder: string): Promise<FolderIdentity | null> {
  try {
    const real = await realpath(folder);
    const stats = await stat(real);
    return stats.isDirectory() ? { real, dev: stats.dev, ino: stats.ino } : null;
  } catch {
    return null;
  }
}

/** The folder path as it would be after resolving any symlinks in its parents. */
async function resolvedPath(folder: string): Promise<string> {
  try {
    return join(await realpath(dirname(folder)), basename(folder));
  } catch {
    return folder;
  }
}

async function canList(dir: string): Promise<boolean> {
  try {
    await access(dir, constants.R_OK | constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether a raw chokidar event concerns the folder: fs.watch reports a name relative to
 * `details.watchedPath`; polling reports the full path of the polled file or directory.
 */
function isAboutFolder(folder: string, path: string, details: unknown): boolean {
  const watchedPath =
    typeof details === 'object' && details !== null && 'watchedPath' in details ? (details as { watchedPath: unknown }).watchedPath : undefined;
  if (typeof watchedPath !== 'string') return path === folder || dirname(path) === folder || path === dirname(folder);
  if (watchedPath === folder || dirname(watchedPath) === folder) return true;
  // The parent's watch reports every sibling; only the folder's own name matters there.
  return watchedPath === dirname(folder) && (typeof path !== 'string' || path === basename(folder));
}

/**
 * Whether a raw event (already known to be about the folder) names the folder itself rather than
 * a file inside it: reported by the parent's watch, or by polling with the folder's own path.
 */
function isTheFolderItself(folder: string, path: string, details: unknown): boolean {
  const watchedPath =
    typeof details === 'object' && details !== null && 'watchedPath' in details ? (details as { watchedPath: unknown }).watchedPath : undefined;
  if (typeof watchedPath !== 'string') return path === folder || path === dirname(folder);
  return watchedPath === dirname(folder);
}

export class FolderWatcher {
  private watcher: FSWatcher | undefined;
  private watched: FolderIdentity | null = null;
  private closed = false;

  constructor(
    readonly folder: string,
    private readonly options: FolderWatcherOptions,
  ) {}

  /** Starts watching; resolves once the watch is established, so later changes are not missed. */
  async start(): Promise<void> {
    await this.restart(await identityOf(this.folder));
  }

  /** Re-establishes the watch when the folder was replaced since it was set up. */
  async resync(): Promise<void> {
    if (this.closed) return;
    const current = await identityOf(this.folder);
    if (!sameIdentity(current, this.watched)) await this.restart(current);
  }

  async close(): Promise<void> {
    this.closed = true;
    const watcher = this.watcher;
    this.watcher = undefined;
    await watcher?.close();
  }

  private async restart(identity: FolderIdentity | null): Promise<void> {
    const previous = this.watcher;
    this.watcher = undefined;
    await previous?.close();
    if (this.closed) return;
    const folder = identity?.real ?? (await resolvedPath(this.folder));
    const parent = dirname(folder);
    const throughParent = parent !== folder && (await canList(parent));
    const watcher = watch(throughParent ? parent : folder, {
      depth: throughParent ? 1 : 0,
      followSymlinks: false,
      ignoreInitial: true,
      // A credential watcher must not keep a process alive on its own; close() is still expected.
      persistent: false,
      // Events are only hints to re-read; chokidar's unlink/add coalescing would just delay them.
      atomic: false,
      usePolling: this.options.usePolling ?? false,
      interval: this.options.pollIntervalMs ?? 1000,
      binaryInterval: this.options.pollIntervalMs ?? 1000,
      ignored: throughParent ? (path: string) => !(path === parent || path === folder || dirname(path) === folder) : undefined,
    });
    watcher.on('all', (_event: string, path: string) => this.options.onChange(path === folder || path === parent));
    // chokidar drops some events by design (an unlink quickly followed by an add of the same
    // name can yield nothing), so the raw fs events for the folder count as well.
    watcher.on('raw', (_event: string, path: string, details: unknown) => {
      if (isAboutFolder(folder, path, details)) this.options.onChange(isTheFolderItself(folder, path, details));
    });
    watcher.on('error', (err: unknown) => {
      this.options.logger.debug({ folder: this.folder, error: messageOf(err) }, 'filesource: watcher error');
      // An error can mean the watch broke; the re-read it triggers resyncs the watch first.
      this.options.onChange(true);
    });
    // Bounded: a watch that never reports ready must not stall every later re-read.
    const clock = this.options.clock ?? systemClock;
    await new Promise<void>((done) => {
      const timer = clock.setTimeout(done, READY_TIMEOUT_MS);
      watcher.once('ready', () => {
        clock.clearTimeout(timer);
        done();
      });
    });
    if (this.closed) {
      await watcher.close();
      return;
    }
    this.watcher = watcher;
    this.watched = identity;
    this.options.logger.debug(
      { folder: this.folder, watching: throughParent ? parent : folder, polling: this.options.usePolling ?? false },
      'filesource: watching credential folder',
    );
  }
}
