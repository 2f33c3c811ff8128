/**
 * Knows, for many volume folders at once, when each one starts serving a serial other than a
 * given one. inotify on every folder (the `..data` rename) gives the moment; a slow poll catches
 * anything an event missed. Reading is from identity.json, which the driver writes per payload.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { mapLimit, sleep } from './report.js';

export async function serialOf(target: string): Promise<string | undefined> {
  try {
    return (JSON.parse(await readFile(join(target, 'identity.json'), 'utf8')) as { serial?: string }).serial;
  } catch {
    return undefined;
  }
}

export class SerialWatch {
  private readonly watchers: FSWatcher[] = [];
  private readonly pending = new Map<string, string>();
  /** target → performance.now() when it was first seen serving another serial. */
  readonly changedAt = new Map<string, number>();

  constructor(private readonly targets: readonly string[]) {}

  /** Starts watching; `oldSerial` is what every target serves now. */
  arm(oldSerial: string): void {
    this.close();
    this.pending.clear();
    this.changedAt.clear();
    for (const target of this.targets) {
      this.pending.set(target, oldSerial);
      const watcher = watch(target, (_event, name) => {
        if (name === '..data' || name === null) void this.check(target);
      });
      watcher.on('error', () => undefined);
      this.watchers.push(watcher);
    }
  }

  private async check(target: string): Promise<void> {
    const old = this.pending.get(target);
    if (old === undefined) return;
    const serial = await serialOf(target);
    if (serial !== undefined && serial !== old && this.pending.has(target)) {
      this.pending.delete(target);
      this.changedAt.set(target, performance.now());
    }
  }

  /** Resolves when every target changed; throws after `timeoutMs` naming how many did not. */
  async waitAll(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    let lastPoll = performance.now();
    while (this.pending.size > 0) {
      if (performance.now() > deadline) {
        throw new Error(`bench: ${this.pending.size} of ${this.targets.length} folders did not change serial within ${timeoutMs} ms`);
      }
      await sleep(10);
      if (performance.now() - lastPoll > 500) {
        // The safety net: events can be coalesced or lost when many arrive at once.
        await mapLimit([...this.pending.keys()], 16, (target) => this.check(target));
        lastPoll = performance.now();
      }
    }
  }

  /**
   * Resolves when every target holds a single payload directory: the writer has also finished its
   * cleanup after the swap, so the driver is idle again (memory measured earlier includes work in flight).
   */
  async waitSettled(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    let unsettled = [...this.targets];
    while (unsettled.length > 0) {
      const counts = await mapLimit(unsettled, 16, async (target) =>
        (await readdir(target).catch(() => [] as string[])).filter((n) => n.startsWith('..') && n !== '..data' && n !== '..data_tmp').length,
      );
      unsettled = unsettled.filter((_, i) => counts[i] !== 1);
      if (unsettled.length === 0) return;
      if (performance.now() > deadline) throw new Error(`bench: ${unsettled.length} folders still had leftover payload directories after ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  close(): void {
    for (const watcher of this.watchers.splice(0)) watcher.close();
  }
}
