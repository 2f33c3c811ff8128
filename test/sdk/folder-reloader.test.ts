import { renameSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { systemClock } from '../../sdk/src/clock/clock.js';
import type { Logger } from '../../sdk/src/logger.js';
import {
  CredentialFolderReloader,
  type CredentialFolderDelegate,
  type CredentialFolderWording,
  type FolderReloadOptions,
} from '../../sdk/src/source/folder-reloader.js';
import { CredentialFolder } from '../helpers/credential-folder.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { waitFor } from '../helpers/wait-for.js';

/**
 * The reloader on its own, with a one-file toy format so each rule is visible: `value.txt` holds a
 * word; "bad..." does not parse, "expired" parses but is not usable, and a change of case only
 * (adopt() says "same") is nothing to announce.
 */

class ToyError extends Error {
  constructor(
    readonly kind: string,
    /** The message before the source's name is put in front: what quote() gives the reloader. */
    readonly problem: string,
    options?: { cause?: unknown },
  ) {
    super(`toysource: ${problem}`, options);
    this.name = 'ToyError';
  }
}

interface ToyMaterial {
  readonly value: string;
}

const WORDING: CredentialFolderWording = {
  prefix: 'toysource',
  material: 'toy value',
  materialWasLoaded: 'a toy value was loaded',
  loaded: 'loaded the toy value',
  keptCurrent: 'ignoring invalid update, keeping the toy value',
  unseenChanges: 'toy changes',
};

type ToyDelegate = CredentialFolderDelegate<string, ToyMaterial, ToyError>;
type ToyReloader = CredentialFolderReloader<string, ToyMaterial, ToyError>;

interface LogEntry {
  readonly level: string;
  readonly obj: Record<string, unknown>;
  readonly msg: string | undefined;
}

interface Toy {
  readonly reloader: ToyReloader;
  /** Drives every wait of the reloader unless the test passed its own clock. */
  readonly clock: FakeClock;
  readonly updates: ToyMaterial[];
  readonly errors: ToyError[];
  readonly expiryChecks: ToyMaterial[];
  readonly logs: LogEntry[];
  /** How often the delegate parsed a snapshot. */
  parses(): number;
}

const roots: string[] = [];
const reloaders: ToyReloader[] = [];

afterEach(async () => {
  await Promise.all(reloaders.splice(0).map((reloader) => reloader.close()));
  await Promise.all(roots.splice(0).map((root) => rm(root, { recursive: true, force: true })));
});

async function newFolder(): Promise<CredentialFolder> {
  const { folder, root } = await CredentialFolder.create('atomic');
  roots.push(root);
  return folder;
}

function recordingLogger(logs: LogEntry[]): Logger {
  const log = (level: string) => (obj: object, msg?: string) => logs.push({ level, obj: obj as Record<string, unknown>, msg });
  return { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}

/**
 * A started reloader over `folder`. Without a watch and with a long re-check by default, so every
 * read in a test is one it asked for with refresh() (or the first one, from start()). Its waits
 * are on a FakeClock: a test moves time, it never sleeps.
 */
function open(
  folder: string,
  options: FolderReloadOptions = {},
  overrides: Partial<ToyDelegate> & { listenErrors?: boolean } = {},
  start = true,
): Toy {
  const updates: ToyMaterial[] = [];
  const errors: ToyError[] = [];
  const expiryChecks: ToyMaterial[] = [];
  const logs: LogEntry[] = [];
  let parses = 0;
  let usabilityChecks = 0;
  const { listenErrors = true, ...delegateOverrides } = overrides;
  const delegate: ToyDelegate = {
    wording: WORDING,
    defaultDebounceMs: 10,
    createError: (kind, message, errorOptions) => new ToyError(kind, message, errorOptions),
    toError: (err) => {
      if (err instanceof ToyError) return err;
      const kind = err instanceof Error && 'kind' in err && typeof err.kind === 'string' ? err.kind : 'invalid';
      return new ToyError(kind, err instanceof Error ? err.message : String(err), { cause: err });
    },
    quote: (err) => err.problem,
    select: (names) => names.filter((name) => name === 'value.txt'),
    parse: (files) => {
      parses++;
      const raw = files.get('value.txt');
      if (raw === undefined) throw new ToyError('missing', 'no value.txt');
      const value = raw.toString('utf8').trim();
      if (value.startsWith('bad')) throw new Error(`cannot parse ${value}`);
      return value;
    },
    checkUsable: (value) => {
      // The message differs on every check, like a real expiry message naming the current time.
      if (value === 'expired') throw new ToyError('expired', `the value expired (check ${++usabilityChecks})`);
    },
    adopt: (value, previous) => (previous !== undefined && previous.value.toLowerCase() === value.toLowerCase() ? undefined : { value }),
    describe: (material) => ({ value: material.value }),
    checkExpiry: (material) => {
      expiryChecks.push(material);
      return undefined;
    },
    emitUpdate: (material) => updates.push(material),
    emitError: (error) => {
      if (!listenErrors) return false;
      errors.push(error);
      return true;
    },
    ...delegateOverrides,
  };
  const clock = new FakeClock();
  const reloader = new CredentialFolderReloader(
    folder,
    { watch: false, recheckIntervalMs: 600_000, readRetryDelayMs: 1, clock, ...options },
    recordingLogger(logs),
    delegate,
  );
  reloaders.push(reloader);
  if (start) reloader.start();
  return { reloader, clock, updates, errors, expiryChecks, logs, parses: () => parses };
}

function messages(logs: readonly LogEntry[], level: string): (string | undefined)[] {
  return logs.filter((entry) => entry.level === level).map((entry) => entry.msg);
}

describe('CredentialFolderReloader', () => {
  it('loads, announces and logs the first material, and does not parse the same bytes again', async () => {
    const folder = await newFolder();
    await folder.write({ 'value.txt': 'one\n', 'other.txt': 'not selected' });
    const toy = open(folder.path);
    const material = await toy.reloader.ready(10_000);
    expect(material).toEqual({ value: 'one' });
    expect(toy.reloader.material).toBe(material);
    expect(toy.updates).toEqual([material]);
    expect(toy.logs).toContainEqual({ level: 'info', obj: { folder: folder.path, value: 'one' }, msg: 'toysource: loaded the toy value' });

    await folder.write({ 'value.txt': 'one\n', 'other.txt': 'not selected' });
    await toy.reloader.refresh();
    expect(toy.parses()).toBe(1);
    expect(toy.updates).toHaveLength(1);
  });

  it('announces nothing when adopt() finds the new read the same, yet remembers its bytes', async () => {
    const folder = await newFolder();
    await folder.write({ 'value.txt': 'one' });
    const toy = open(folder.path);
    const first = await toy.reloader.ready(10_000);

    await folder.write({ 'value.txt': 'ONE' });
    await toy.reloader.refresh();
    expect(toy.parses()).toBe(2);
    expect(toy.updates).toHaveLength(1);
    expect(toy.reloader.material).toBe(first);

    await toy.reloader.refresh();
    expect(toy.parses()).toBe(2);

    await folder.write({ 'value.txt': 'two' });
    await toy.reloader.refresh();
    expect(toy.updates.map((m) => m.value)).toEqual(['one', 'two']);
  });

  it('keeps the good material through bad reads and reports each bad content once', async () => {
    const folder = await newFolder();
    await folder.write({ 'value.txt': 'one' });
    const toy = open(folder.path);
    await toy.reloader.ready(10_000);

    await folder.write({ 'value.txt': 'bad-a' });
    await toy.reloader.refresh();
    await toy.reloader.refresh();
    expect(toy.errors.map((e) => [e.kind, e.message])).toEqual([['invalid', 'toysource: cannot parse bad-a']]);
    expect(messages(toy.logs, 'debug')).toContain('toysource: update still invalid');

    await folder.write({ 'value.txt': 'bad-b' });
    await toy.reloader.refresh();
    expect(toy.errors).toHaveLength(2);

    // Same content, a different message on every check: still reported once.
    await folder.write({ 'value.txt': 'expired' });
    await toy.reloader.refresh();
    await toy.reloader.refresh();
    expect(toy.errors.map((e) => e.kind)).toEqual(['invalid', 'invalid', 'expired']);
    expect(toy.reloader.material).toEqual({ value: 'one' });
    expect(toy.updates).toHaveLength(1);

    // After a good read, the same bad content counts as news again.
    await folder.write({ 'value.txt': 'two' });
    await toy.reloader.refresh();
    await folder.write({ 'value.txt': 'bad-a' });
    await toy.reloader.refresh();
    expect(toy.errors).toHaveLength(4);
    expect(toy.errors[3]!.message).toBe('toysource: cannot parse bad-a');
    expect(toy.reloader.material).toEqual({ value: 'two' });
  });

  it('logs a warning in the source wording when nobody listens for errors', async () => {
    const folder = await newFolder();
    const toy = open(folder.path, {}, { listenErrors: false });
    const ready = toy.reloader.ready(10_000);
    // An empty folder reads as plain files, re-read (on the clock) until the attempts run out.
    await toy.clock.runUntilSettled(toy.reloader.refresh());
    expect(toy.logs).toContainEqual({
      level: 'warn',
      obj: { folder: folder.path, kind: 'missing', error: 'toysource: no value.txt' },
      msg: 'toysource: no valid toy value yet',
    });

    await folder.write({ 'value.txt': 'one' });
    await toy.reloader.refresh();
    await expect(ready).resolves.toEqual({ value: 'one' });
    await folder.write({ 'value.txt': 'bad' });
    await toy.reloader.refresh();
    expect(messages(toy.logs, 'warn')).toEqual(['toysource: no valid toy value yet', 'toysource: ignoring invalid update, keeping the toy value']);
    expect(toy.errors).toEqual([]);
  });

  it('ready() times out quoting the last problem without repeating the prefix', async () => {
    const folder = await newFolder();
    await folder.write({ 'value.txt': 'bad-x' });
    const toy = open(folder.path);
    await toy.reloader.refresh();
    const pending = toy.reloader.ready(50).catch((e: unknown) => e);
    await toy.clock.advance(49);
    expect(toy.clock.pendingDelays()).toContain(1);
    await toy.clock.advance(1);
    const err = await pending;
    expect(err).toBeInstanceOf(ToyError);
    expect((err as ToyError).kind).toBe('timeout');
    expect((err as ToyError).message).toBe(`toysource: no valid toy value in ${folder.path} after 50 ms (last problem: cannot parse bad-x)`);
    expect((err as ToyError).cause).toMatchObject({ kind: 'invalid', message: 'toysource: cannot parse bad-x' });
  });

  it('close() rejects pending ready() calls, is idempotent, and ends reading', async () => {
    const folder = await newFolder();
    const toy = open(folder.path);
    const pending = toy.reloader.ready(10_000).catch((e: unknown) => e);
    const closing = toy.reloader.close();
    expect(toy.reloader.close()).toBe(closing);
    await closing;
    expect(toy.reloader.closed).toBe(true);
    expect(await pending).toMatchObject({ kind: 'closed', message: `toysource: closed before a toy value was loaded from ${folder.path}` });
    await expect(toy.reloader.ready(10_000)).rejects.toMatchObject({ kind: 'closed' });

    // The first read was pausing between attempts on the empty folder: close() cut that short.
    expect(toy.clock.pendingTimers).toBe(0);

    await folder.write({ 'value.txt': 'one' });
    const parses = toy.parses();
    await toy.reloader.refresh();
    expect(toy.parses()).toBe(parses);
    expect(toy.reloader.material).toBeUndefined();
  });

  it('retries a failed read on the backoff, without events, until the re-check interval', async () => {
    const folder = await newFolder();
    await folder.write({ 'value.txt': 'bad' });
    const toy = open(folder.path, { recheckIntervalMs: 3_000 });
    await toy.clock.advance(0); // the first read, from start()
    expect(toy.errors).toHaveLength(1);
    expect(toy.clock.pendingDelays()).toEqual([1_000]);
    await toy.clock.advance(1_000);
    expect(toy.clock.pendingDelays()).toEqual([2_000]);
    await toy.clock.advance(2_000);
    // 4 s is the next step, capped by the 3 s re-check interval.
    expect(toy.clock.pendingDelays()).toEqual([3_000]);
    expect(toy.parses()).toBe(3);

    await folder.write({ 'value.txt': 'one' });
    await toy.clock.advance(3_000);
    expect(toy.reloader.material).toEqual({ value: 'one' });
    // Good material: back to the plain re-check interval.
    expect(toy.clock.pendingDelays()).toEqual([3_000]);
  });

  it('holds the process open while ready() is pending, though every clock timer is unref\'d', async () => {
    // The reloader's own keep-alive handle, watched directly: counting every timer of the process
    // would also count what earlier tests in this file leave to expire.
    const created: NodeJS.Timeout[] = [];
    const cleared = new Set<unknown>();
    const realSetInterval = globalThis.setInterval;
    const realClearInterval = globalThis.clearInterval;
    const setSpy = vi.spyOn(globalThis, 'setInterval').mockImplementation(((fn: () => void, ms?: number) => {
      const handle = realSetInterval(fn, ms);
      created.push(handle);
      return handle;
    }) as typeof setInterval);
    const clearSpy = vi.spyOn(globalThis, 'clearInterval').mockImplementation((handle?: string | number | NodeJS.Timeout) => {
      cleared.add(handle);
      realClearInterval(handle);
    });
    try {
      const live = (): NodeJS.Timeout[] => created.filter((handle) => !cleared.has(handle) && handle.hasRef());
      const folder = await newFolder();
      await folder.write({ 'value.txt': 'bad' });
      const toy = open(folder.path, {}, {}, false);
      expect(live()).toHaveLength(0);
      const pending = toy.reloader.ready(1_000).catch((e: unknown) => e);
      expect(live()).toHaveLength(1);
      toy.reloader.start();
      await toy.clock.advance(1_000);
      expect(await pending).toMatchObject({ kind: 'timeout' });
      expect(live()).toHaveLength(0);

      const second = toy.reloader.ready(1_000);
      expect(live()).toHaveLength(1);
      await folder.write({ 'value.txt': 'one' });
      await toy.reloader.refresh();
      await expect(second).resolves.toEqual({ value: 'one' });
      expect(live()).toHaveLength(0);
    } finally {
      setSpy.mockRestore();
      clearSpy.mockRestore();
    }
  });

  it('rejects bad options with the source error class', async () => {
    const folder = await newFolder();
    const configError = (options: FolderReloadOptions): unknown => {
      try {
        open(folder.path, options, {}, false);
      } catch (err) {
        return err;
      }
      return undefined;
    };
    expect(configError({ debounceMs: -1 })).toMatchObject({ kind: 'config', message: 'toysource: debounceMs must be a finite number >= 0, got -1' });
    expect(configError({ maxReadAttempts: 0 })).toMatchObject({ kind: 'config', message: expect.stringMatching(/maxReadAttempts must be a finite number >= 1/) });
    expect(configError({ pollIntervalMs: Number.NaN })).toMatchObject({ kind: 'config' });
    expect(configError({ watch: false, recheckIntervalMs: 0 })).toMatchObject({
      kind: 'config',
      message: 'toysource: with watch: false, recheckIntervalMs must be > 0 or toy changes are never seen',
    });
    expect(configError({ watch: false, recheckIntervalMs: 1000 })).toBeUndefined();

    const toy = open(folder.path);
    await expect(toy.reloader.ready(0)).rejects.toMatchObject({ kind: 'config', message: expect.stringMatching(/ready\(\) timeout must be a positive number/) });
  });

  it('logs listeners that throw instead of failing the reload', async () => {
    const folder = await newFolder();
    await folder.write({ 'value.txt': 'one' });
    const toy = open(
      folder.path,
      {},
      {
        emitUpdate: () => {
          throw new Error('update listener broke');
        },
        emitError: () => {
          throw new Error('error listener broke');
        },
      },
    );
    await expect(toy.reloader.ready(10_000)).resolves.toEqual({ value: 'one' });
    await folder.write({ 'value.txt': 'bad' });
    await toy.reloader.refresh();
    expect(toy.logs.filter((entry) => entry.level === 'error')).toEqual([
      { level: 'error', obj: { folder: folder.path, error: 'update listener broke' }, msg: "toysource: an 'update' listener threw" },
      { level: 'error', obj: { folder: folder.path, error: 'error listener broke' }, msg: "toysource: an 'error' listener threw" },
    ]);
    expect(toy.reloader.material).toEqual({ value: 'one' });
  });

  it('checks the expiry of the current material after every reload, and only once there is one', async () => {
    const folder = await newFolder();
    const toy = open(folder.path);
    await toy.clock.runUntilSettled(toy.reloader.refresh());
    expect(toy.expiryChecks).toEqual([]);
    await folder.write({ 'value.txt': 'one' });
    await toy.reloader.refresh();
    await folder.write({ 'value.txt': 'bad' });
    await toy.reloader.refresh();
    expect(toy.expiryChecks).toEqual([{ value: 'one' }, { value: 'one' }]);
    expect(toy.expiryChecks[1]).toBe(toy.reloader.material);
  });

  it('with a watch, follows changes inside the folder and a folder replaced by rename', async () => {
    const folder = await newFolder();
    await folder.write({ 'value.txt': 'one' });
    // Real filesystem events, so real time: the debounce after each event is short.
    const toy = open(folder.path, { watch: true, debounceMs: 10, clock: systemClock });
    await toy.reloader.ready(10_000);

    await folder.write({ 'value.txt': 'two' });
    await waitFor(() => toy.reloader.material?.value === 'two', { message: 'a change inside the watched folder' });

    const staged = new CredentialFolder(`${folder.path}.staged`, 'atomic');
    await staged.write({ 'value.txt': 'three' });
    rmSync(folder.path, { recursive: true });
    renameSync(staged.path, folder.path);
    await waitFor(() => toy.reloader.material?.value === 'three', { message: 'the value in the renamed-in folder' });
    // Only seen if the event about the folder itself made the next read re-establish the watch.
    await folder.write({ 'value.txt': 'four' });
    await waitFor(() => toy.reloader.material?.value === 'four', { message: 'a change inside the renamed-in folder' });
    expect(toy.updates.map((m) => m.value)).toEqual(['one', 'two', 'three', 'four']);
  });
});
