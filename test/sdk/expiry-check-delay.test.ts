import { describe, expect, it } from 'vitest';
import { EXPIRY_CHECK_STEP_MS, expiryCheckDelay } from '../../sdk/src/source/expiry-check-delay.js';

describe('expiryCheckDelay', () => {
  it('waits long stretches in one fixed step, so every rotation re-arms with the same duration', () => {
    const hours = [30, 31.5, 720].map((h) => expiryCheckDelay(h * 3_600_000));
    expect(new Set(hours)).toEqual(new Set([EXPIRY_CHECK_STEP_MS]));
  });

  it('waits exactly when the next warning is within a step, and never negatively', () => {
    expect(expiryCheckDelay(1_234)).toBe(1_234);
    expect(expiryCheckDelay(EXPIRY_CHECK_STEP_MS)).toBe(EXPIRY_CHECK_STEP_MS);
    expect(expiryCheckDelay(-5)).toBe(0);
  });
});
