/**
 * A tiny seeded PRNG (mulberry32) so every fault run can be replayed: the seed is printed, and
 * SPIRE_CSI_FAULT_SEED sets it. Each test derives its own stream from the base seed and its name,
 * so running one test alone replays exactly what it did in the full suite.
 */
import { createHash } from 'node:crypto';
import { isSoak } from './soak.js';

/** Default when SPIRE_CSI_FAULT_SEED is unset: fixed for `npm test`, fresh for each soak run. */
const DEFAULT_SEED = 0x5eed_c51;

function parseSeed(text: string): number {
  const value = /^0x[0-9a-f]+$/i.test(text) ? parseInt(text, 16) : Number(text);
  if (!Number.isSafeInteger(value)) throw new Error(`prng: SPIRE_CSI_FAULT_SEED ${JSON.stringify(text)} is not an integer`);
  return value >>> 0;
}

const baseSeed: number = (() => {
  const env = process.env.SPIRE_CSI_FAULT_SEED;
  if (env !== undefined && env !== '') return parseSeed(env);
  return isSoak ? (Date.now() ^ (process.pid << 16)) >>> 0 : DEFAULT_SEED;
})();

export function faultBaseSeed(): number {
  return baseSeed;
}

export class Rng {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Integer in [min, max]. */
  between(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('prng: pick from an empty list');
    return items[this.int(items.length)] as T;
  }

  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [out[i], out[j]] = [out[j] as T, out[i] as T];
    }
    return out;
  }

  /** A child stream, so adding draws in one place does not shift every later choice. */
  fork(label: string): Rng {
    return new Rng(deriveSeed(this.seed, label));
  }
}

function deriveSeed(seed: number, label: string): number {
  return createHash('sha256').update(`${seed}:${label}`).digest().readUInt32BE(0);
}

/** The generator for one test, announced on stdout with how to replay it. */
export function rngFor(testName: string): Rng {
  const seed = deriveSeed(baseSeed, testName);
  console.log(`[faults] ${testName}: base seed ${baseSeed} (replay with SPIRE_CSI_FAULT_SEED=${baseSeed}), test seed ${seed}`);
  return new Rng(seed);
}
