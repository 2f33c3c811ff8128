import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { Stopper } from '../../dev/src/demo/stopper.js';

describe('demo stop conditions', () => {
  it('keeps the first reason', async () => {
    const stopper = new Stopper();
    stopper.stop('--rotations 3 reached');
    stopper.stop('SIGINT received');
    expect(await stopper.wait()).toBe('--rotations 3 reached');
  });

  it('stops on SIGINT, ignores the copy npm forwards, and counts real repeats', () => {
    const signals = new EventEmitter();
    let now = 0;
    const repeats: number[] = [];
    const stopper = new Stopper();
    stopper.watchSignals(signals, (_signal, count) => repeats.push(count), 1_000, () => now);
    signals.emit('SIGINT', 'SIGINT');
    expect(stopper.reason).toBe('SIGINT received');
    now = 5;
    signals.emit('SIGINT', 'SIGINT');
    expect(repeats).toEqual([]);
    now = 2_000;
    signals.emit('SIGTERM', 'SIGTERM');
    expect(repeats).toEqual([1]);
    stopper.dispose();
    expect(signals.listenerCount('SIGINT')).toBe(0);
  });
});
