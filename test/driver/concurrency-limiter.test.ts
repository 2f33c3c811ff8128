import { describe, expect, it } from 'vitest';
import { FakeClock } from '../helpers/fake-clock.js';
import { ConcurrencyLimiter } from '../../driver/src/concurrency/concurrency-limiter.js';

/** A task the test finishes by hand. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('ConcurrencyLimiter', () => {
  it('runs at most `limit` tasks at once, the rest in arrival order', async () => {
    const limiter = new ConcurrencyLimiter(2);
    const gates = [gate(), gate(), gate(), gate()];
    const started: number[] = [];
    const done = gates.map((g, i) =>
      limiter.run(async () => {
        started.push(i);
        await g.promise;
        return i;
      }),
    );
    await settle();
    expect(started).toEqual([0, 1]);
    expect([limiter.running, limiter.waiting]).toEqual([2, 2]);
    gates[1]!.open();
    await settle();
    expect(started).toEqual([0, 1, 2]);
    gates[0]!.open();
    gates[2]!.open();
    gates[3]!.open();
    expect(await Promise.all(done)).toEqual([0, 1, 2, 3]);
    expect([limiter.running, limiter.waiting]).toEqual([0, 0]);
  });

  it('frees the slot when a task fails and passes the error on', async () => {
    const limiter = new ConcurrencyLimiter(1);
    await expect(limiter.run(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await limiter.run(async () => 'next')).toBe('next');
    expect(limiter.running).toBe(0);
  });

  it('gives background tasks a slot only when no regular task waits, and drops their errors', async () => {
    const limiter = new ConcurrencyLimiter(1);
    const order: string[] = [];
    const first = gate();
    const running = limiter.run(async () => {
      order.push('write-1');
      await first.promise;
    });
    const cleanup = limiter.background(async () => {
      order.push('cleanup');
      throw new Error('ignored');
    });
    const second = limiter.run(async () => {
      order.push('write-2');
    });
    await settle();
    first.open();
    await Promise.all([running, second, cleanup]);
    expect(order).toEqual(['write-1', 'write-2', 'cleanup']);
    expect(limiter.running).toBe(0);
  });

  it('with quietMs, starts background tasks only after regular tasks stopped starting, or after maxDelayMs', async () => {
    const clock = new FakeClock(0);
    const advance = (ms: number): Promise<void> => clock.advance(ms);
    const limiter = new ConcurrencyLimiter(4, { quietMs: 100, maxDelayMs: 1000, clock });
    let cleaned = 0;
    const cleanup = limiter.background(async () => {
      cleaned++;
    });
    // Writes keep starting every 50 ms: still busy at each check.
    for (let i = 0; i < 5; i++) {
      await limiter.run(async () => undefined);
      await advance(50);
    }
    expect(cleaned).toBe(0);
    expect(limiter.waiting).toBe(1);
    await advance(100);
    await cleanup;
    expect(cleaned).toBe(1);

    // Under steady traffic the wait is capped.
    const capped = limiter.background(async () => {
      cleaned++;
    });
    for (let elapsed = 0; elapsed < 1100; elapsed += 50) {
      await limiter.run(async () => undefined);
      await advance(50);
    }
    await capped;
    expect(cleaned).toBe(2);
  });

  it('rejects a nonsensical limit', () => {
    expect(() => new ConcurrencyLimiter(0)).toThrow(RangeError);
    expect(() => new ConcurrencyLimiter(1.5)).toThrow(RangeError);
  });
});
