/**
 * Seeded hostile values for request fuzzing: strings that break naive parsers (unicode, NUL,
 * control characters, huge sizes, path tricks) and values of the wrong type.
 */
import type { Rng } from './prng.js';

const UNICODE = ['é', 'ß', '中文', '🔑', '\u202e', '\u0301', '\uffff', '\ud800', 'İ', 'ﬁ', '\u00a0', '\u200b'];
const PATH_TRICKS = ['..', '../', '/..', '/../..', './', '//', '/./', '%2e%2e', '..\\', '...', '/', '~', '$HOME', '*', '\\'];
const CONTROL = ['\0', '\n', '\r', '\t', '\x1b[31m', '\x7f', '\x01'];

export function asciiWord(rng: Rng, max = 24): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789-_.';
  return Array.from({ length: rng.between(1, max) }, () => rng.pick([...alphabet])).join('');
}

/** A string chosen to be awkward. */
export function hostileString(rng: Rng): string {
  switch (rng.int(10)) {
    case 0:
      return '';
    case 1:
      return asciiWord(rng);
    case 2:
      return Array.from({ length: rng.between(1, 8) }, () => rng.pick(UNICODE)).join('');
    case 3:
      return `${asciiWord(rng, 8)}${rng.pick(CONTROL)}${asciiWord(rng, 8)}`;
    case 4:
      return rng.pick(PATH_TRICKS) + (rng.chance(0.5) ? asciiWord(rng, 8) : '');
    case 5:
      // Big, but under gRPC's 4 MiB message limit.
      return 'x'.repeat(rng.pick([256, 4096, 70_000, 1_000_000]));
    case 6:
      return ' '.repeat(rng.between(1, 4));
    case 7:
      return `${asciiWord(rng, 6)}/${asciiWord(rng, 6)}`;
    case 8:
      return String(rng.pick([-1, 0, 1, 2 ** 31, 2 ** 32, 2 ** 53, Number.NaN, 1e308]));
    default:
      return `spiffe://${asciiWord(rng, 10)}/${asciiWord(rng, 10)}`;
  }
}

/** Replaces one character, inserts a trick, or truncates. */
export function mutateString(rng: Rng, value: string): string {
  if (value === '') return hostileString(rng);
  const at = rng.int(value.length);
  switch (rng.int(5)) {
    case 0:
      return value.slice(0, at) + rng.pick([...CONTROL, ...UNICODE]) + value.slice(at + 1);
    case 1:
      return value.slice(0, at) + rng.pick(PATH_TRICKS) + value.slice(at);
    case 2:
      return value.slice(0, at);
    case 3:
      return value + rng.pick(['/', '//', '/.', '/..', ' ', '\0']);
    default:
      return value.toUpperCase();
  }
}

/** A JS value of some wrong type for a string field. */
export function wrongType(rng: Rng): unknown {
  return rng.pick<unknown>([null, undefined, 42, true, [], {}, ['a', 'b'], { nested: 'x' }]);
}

/** Raw protobuf damage: flips, truncation, junk tags. */
export function mutateBytes(rng: Rng, bytes: Buffer): Buffer {
  const out = Buffer.from(bytes);
  switch (rng.int(5)) {
    case 0: {
      for (let i = rng.between(1, 8); i > 0; i--) {
        const at = rng.int(out.length);
        out[at] = (out[at] ?? 0) ^ (1 << rng.int(8));
      }
      return out;
    }
    case 1:
      return out.subarray(0, rng.int(out.length));
    case 2: {
      const junk = Buffer.from(Array.from({ length: rng.between(1, 16) }, () => rng.int(256)));
      const at = rng.int(out.length);
      return Buffer.concat([out.subarray(0, at), junk, out.subarray(at)]);
    }
    case 3: {
      // A known field number with the wrong wire type: varint where a string is expected.
      const field = rng.pick([1, 2, 3, 4, 5, 6, 7, 8]);
      return Buffer.concat([Buffer.from([(field << 3) | 0, rng.int(128)]), out]);
    }
    default: {
      // A length prefix that claims more bytes than follow.
      const field = rng.pick([1, 4, 6]);
      return Buffer.concat([out, Buffer.from([(field << 3) | 2, 0xff, 0xff, 0x03]), Buffer.from('short')]);
    }
  }
}
