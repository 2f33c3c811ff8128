import { describe, expect, it } from 'vitest';
import { X509Error } from '@spire-csi/sdk/x509';
import { DerTag, derChildren, derContent, derOid, readDer, splitDer } from '../../sdk/src/x509/der.js';
import { sdkError } from '../helpers/sdk-errors.js';

const bytes = (...b: number[]) => Uint8Array.from(b);

describe('readDer', () => {
  it.each<[string, Uint8Array, { tag: number; contentStart: number; end: number }]>([
    ['short-length', bytes(0x02, 0x01, 0x05), { tag: 0x02, contentStart: 2, end: 3 }],
    ['zero-length', bytes(0x05, 0x00), { tag: 0x05, contentStart: 2, end: 2 }],
    ['long-form-one-octet', Uint8Array.from([0x04, 0x81, 0x80, ...new Array<number>(0x80).fill(0)]), { tag: 0x04, contentStart: 3, end: 0x83 }],
    ['long-form-two-octets', Uint8Array.from([0x04, 0x82, 0x01, 0x00, ...new Array<number>(0x100).fill(0)]), { tag: 0x04, contentStart: 4, end: 0x104 }],
  ])('reads %s', (_name, input, expected) => {
    expect(readDer(input)).toMatchObject(expected);
  });

  it.each<[string, Uint8Array, RegExp]>([
    ['empty', bytes(), /truncated element/],
    ['tag-only', bytes(0x30), /truncated element/],
    ['content-truncated', bytes(0x30, 0x03, 0x02, 0x01), /runs past its container/],
    ['length-octets-truncated', bytes(0x04, 0x82, 0x01), /truncated length/],
    ['indefinite-length', bytes(0x30, 0x80, 0x00, 0x00), /indefinite length/],
    ['non-minimal-long-form-for-short', bytes(0x04, 0x81, 0x05, 0, 0, 0, 0, 0), /non-minimal length/],
    ['non-minimal-leading-zero', Uint8Array.from([0x04, 0x82, 0x00, 0x80, ...new Array<number>(0x80).fill(0)]), /non-minimal length/],
    ['length-too-large', bytes(0x04, 0x85, 1, 0, 0, 0, 0), /too large/],
    ['high-tag-number', bytes(0x1f, 0x81, 0x00, 0x00), /high tag numbers/],
  ])('rejects %s', (_name, input, message) => {
    expect(() => readDer(input)).toThrow(sdkError(X509Error, 'der'));
    expect(() => readDer(input)).toThrow(message);
  });

  it('respects an enclosing limit', () => {
    expect(() => readDer(bytes(0x30, 0x02, 0x05, 0x00, 0xff), 2, 3)).toThrow(/truncated element/);
  });
});

describe('derChildren / derOid', () => {
  it('walks a sequence', () => {
    const seq = readDer(bytes(0x30, 0x06, 0x02, 0x01, 0x07, 0x04, 0x01, 0xaa));
    const children = derChildren(seq);
    expect(children.map((c) => c.tag)).toEqual([DerTag.INTEGER, DerTag.OCTET_STRING]);
    expect([...derContent(children[1]!)]).toEqual([0xaa]);
  });
  it('rejects a child that overflows its parent', () => {
    const seq = readDer(bytes(0x30, 0x03, 0x02, 0x05, 0x07, 0x00, 0x00, 0x00));
    expect(() => derChildren(seq)).toThrow(/runs past its container/);
  });
  it.each([
    ['2.5.29.17', bytes(0x06, 0x03, 0x55, 0x1d, 0x11)],
    ['1.2.840.10045.2.1', bytes(0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01)],
    ['2.999.3', bytes(0x06, 0x03, 0x88, 0x37, 0x03)],
  ])('decodes OID %s', (oid, der) => {
    expect(derOid(readDer(der))).toBe(oid);
  });
  it.each([
    ['not-an-oid', bytes(0x02, 0x01, 0x00), /expected an OID/],
    ['empty-oid', bytes(0x06, 0x00), /empty OID/],
    ['truncated-oid-arc', bytes(0x06, 0x02, 0x55, 0x9d), /truncated OID/],
    ['non-minimal-oid-arc', bytes(0x06, 0x03, 0x55, 0x80, 0x11), /non-minimal OID arc/],
  ])('rejects %s', (_name, der, message) => {
    expect(() => derOid(readDer(der))).toThrow(message);
  });
});

describe('splitDer', () => {
  it('splits a concatenation exactly', () => {
    const parts = splitDer(bytes(0x02, 0x01, 0x01, 0x30, 0x00, 0x04, 0x02, 0xab, 0xcd));
    expect(parts.map((p) => [...p])).toEqual([[0x02, 0x01, 0x01], [0x30, 0x00], [0x04, 0x02, 0xab, 0xcd]]);
  });
  it('returns nothing for empty input', () => {
    expect(splitDer(bytes())).toEqual([]);
  });
  it.each<[string, Uint8Array, RegExp]>([
    ['truncated-last-element', bytes(0x02, 0x01, 0x01, 0x30, 0x02, 0x05), /runs past its container/],
    ['trailing-single-byte', bytes(0x02, 0x01, 0x01, 0x00), /truncated element/],
    ['non-minimal-length', bytes(0x02, 0x01, 0x01, 0x04, 0x81, 0x01, 0x00), /non-minimal/],
  ])('rejects %s', (_name, input, message) => {
    expect(() => splitDer(input)).toThrow(message);
  });
});
