import { afterEach, describe, expect, it, vi } from 'vitest';
import { ReadyWaiters } from '../../sdk/src/source/ready-waiters.js';
import { FakeClock } from '../helpers/fake-clock.js';

const NEVER_MS = 2 ** 31 - 1;

/** The ref'd intervals created while the spy is on and not cleared since: the keep-alive handles. */
function watchIntervals() {
  const created: NodeJS.Timeout[] = [];
  const cleared = new Set<unknown>();
  const realSetInterval = globalThis.setInterval;
  const realClearInterval = globalThis.clearInterval;
  vi.spyOn(globalThis, 'setInterval').mockImplementation(((fn: () => void, ms?: number) => {
    const handle = realSetInterval(fn, ms);
    created.push(handle);
    return handle;
  }) as typeof setInterval);
  vi.spyOn(globalThis, 'clearInterval').mockImplementation((handle?: string | number | NodeJS.Timeout) => {
    cleared.add(handle);
    realClearInterval(handle);
  });
  return () => created.filter((handle) => !cleared.has(handle) && handle.hasRef());
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('ReadyWaiters (FileSource, JwtSource and WorkloadApiSource ready())', () => {
  it('holds the process with one ref\'d handle exactly while waiters are pending, though the clock\'s timers are unref\'d', async () => {
    const live = watchIntervals();
    const clock = new FakeClock();
    const waiters = new ReadyWaiters<string, Error>(clock);
    expect(live()).toHaveLength(0);
    // Handled from the start: the timeout rejects inside advance(), before any await below.
    const a = waiters.wait(1_000, () => new Error('a timed out')).catch((err: unknown) => err);
    const b = waiters.wait(5_000, () => new Error('b timed out'));
    expect(live()).toHaveLength(1);
    await clock.advance(1_000);
    expect(await a).toMatchObject({ message: 'a timed out' });
    expect(live()).toHaveLength(1);
    waiters.resolveAll('ready');
    await expect(b).resolves.toBe('ready');
    expect(live()).toHaveLength(0);
    expect(clock.pendingDelays()).toEqual([]);

    const c = waiters.wait(1_000, () => new Error('c timed out')).catch((err: unknown) => err);
    expect(live()).toHaveLength(1);
    waiters.rejectAll(new Error('closed'));
    expect(await c).toMatchObject({ message: 'closed' });
    expect(live()).toHaveLength(0);
  });

  it('caps a deadline beyond what a timer can hold instead of letting it fire at once', async () => {
    const clock = new FakeClock();
    const waiters = new ReadyWaiters<string, Error>(clock);
    const pending = waiters.wait(3e9, () => new Error('timed out'));
    expect(clock.pendingDelays()).toEqual([NEVER_MS]);
    waiters.resolveAll('ok');
    await expect(pending).resolves.toBe('ok');
  });
});
