import { describe, expect, it } from 'vitest';
import { decodePem, encodePem } from '../../sdk/src/x509/pem.js';

describe('pem', () => {
  it('round-trips a block', () => {
    const der = Buffer.from([0x30, 0x03, 0x02, 0x01, 0x05]);
    const [block] = decodePem(encodePem('CERTIFICATE', der));
    expect(block?.label).toBe('CERTIFICATE');
    expect(block?.der.equals(der)).toBe(true);
  });
  it.each([
    ['data between blocks', `${encodePem('A', Buffer.from([1]))}junk\n${encodePem('A', Buffer.from([1]))}`],
    ['headers', '-----BEGIN A-----\nProc-Type: 4,ENCRYPTED\nAQ==\n-----END A-----\n'],
    ['mismatched labels', '-----BEGIN A-----\nAQ==\n-----END B-----\n'],
    ['trailing data', `${encodePem('A', Buffer.from([1]))}tail`],
  ])('rejects %s', (_name, text) => {
    expect(() => decodePem(text)).toThrow(/pem:/);
  });
});
