import { describe, expect, it } from 'vitest';
import { Backoff, BackoffError } from '../../driver/src/retry/backoff.js';

/** A deterministic random source cycling through the given values. */
function sequence(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length]!;
}

describe('Backoff', () => {
  it('without jitter doubles up to the cap', () => {
    const backoff = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 'none' });
    expect(Array.from({ length: 6 }, () => backoff.next())).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(backoff.attempts).toBe(6);
  });

  it('full jitter draws in [0, ceiling]', () => {
    const backoff = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 'full', random: sequence(0.5, 1, 0, 0.5, 0.5) });
    expect(Array.from({ length: 5 }, () => backoff.next())).toEqual([50, 200, 0, 400, 500]);
  });

  it('decorrelated jitter stays within [initial, min(max, 3 × previous)]', () => {
    const backoff = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 'decorrelated', random: sequence(1) });
    // With the top draw every time: 100 → 300 → 900 → capped at 1000.
    expect(Array.from({ length: 5 }, () => backoff.next())).toEqual([300, 900, 1000, 1000, 1000]);
    const low = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 'decorrelated', random: sequence(0) });
    expect(Array.from({ length: 3 }, () => low.next())).toEqual([100, 100, 100]);
  });

  it('never leaves [0, max] for any random draw', () => {
    for (const mode of ['full', 'decorrelated', 'none'] as const) {
      const backoff = new Backoff({ initialMs: 10, maxMs: 500, jitter: mode });
      for (let i = 0; i < 200; i++) {
        const delay = backoff.next();
        expect(delay).toBeGreaterThanOrEqual(0);
        expect(delay).toBeLessThanOrEqual(500);
      }
    }
  });

  it('tolerates a broken random source', () => {
    const backoff = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 'full', random: () => Number.NaN });
    expect(backoff.next()).toBe(0);
    const big = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 'full', random: () => 7 });
    expect(big.next()).toBe(100);
  });

  it('starts small again after reset', () => {
    const backoff = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 'none' });
    backoff.next();
    backoff.next();
    backoff.next();
    backoff.reset();
    expect(backoff.attempts).toBe(0);
    expect(backoff.next()).toBe(100);
  });

  it('rejects nonsensical settings', () => {
    expect(() => new Backoff({ initialMs: 0 })).toThrow(BackoffError);
    expect(() => new Backoff({ initialMs: 100, maxMs: 50 })).toThrow(/maxMs/);
    expect(() => new Backoff({ multiplier: 0.5 })).toThrow(/multiplier/);
  });
});
