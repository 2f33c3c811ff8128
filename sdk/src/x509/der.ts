/**
 * A minimal DER reader: just enough ASN.1 to walk certificates and pull out the extensions that
 * Node's X509Certificate does not expose faithfully (key usage bits, URI SANs, basic constraints).
 */
import { X509Error } from './errors.js';

export interface DerNode {
  /** The full identifier octet (class, constructed bit and tag number for low tags). */
  readonly tag: number;
  /** Offset of the first content byte within `buffer`. */
  readonly contentStart: number;
  /** Offset one past the last content byte. */
  readonly end: number;
  /** Offset of the identifier octet. */
  readonly start: number;
  readonly buffer: Uint8Array;
}

export const DerTag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  OID: 0x06,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** Reads one TLV starting at `offset`, bounded by `limit`. High-tag-number form is rejected. */
export function readDer(buffer: Uint8Array, offset = 0, limit = buffer.length): DerNode {
  if (offset + 2 > limit) throw new X509Error('der', `truncated element at offset ${offset}`);
  const tag = buffer[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new X509Error('der', `high tag numbers are not supported (offset ${offset})`);
  let pos = offset + 1;
  const first = buffer[pos++]!;
  let length: number;
  if (first < 0x80) {
    length = first;
  } else {
    const count = first & 0x7f;
    if (count === 0) throw new X509Error('der', `indefinite length is not DER (offset ${offset})`);
    if (count > 4) throw new X509Error('der', `length of ${count} octets is too large (offset ${offset})`);
    if (pos + count > limit) throw new X509Error('der', `truncated length at offset ${offset}`);
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + buffer[pos++]!;
    if (length < 0x80 || (count > 1 && buffer[pos - count] === 0)) {
      throw new X509Error('der', `non-minimal length encoding at offset ${offset}`);
    }
  }
  const end = pos + length;
  if (end > limit) throw new X509Error('der', `element at offset ${offset} runs past its container`);
  return { tag, start: offset, contentStart: pos, end, buffer };
}

/** The direct children of a constructed node. */
export function derChildren(node: DerNode): DerNode[] {
  const out: DerNode[] = [];
  let pos = node.contentStart;
  while (pos < node.end) {
    const child = readDer(node.buffer, pos, node.end);
    out.push(child);
    pos = child.end;
  }
  return out;
}

export function derContent(node: DerNode): Uint8Array {
  return node.buffer.subarray(node.contentStart, node.end);
}

export function derBytes(node: DerNode): Uint8Array {
  return node.buffer.subarray(node.start, node.end);
}

/** Decodes an OBJECT IDENTIFIER node to dotted form. */
export function derOid(node: DerNode): string {
  if (node.tag !== DerTag.OID) throw new X509Error('der', `expected an OID, found tag 0x${node.tag.toString(16)}`);
  const bytes = derContent(node);
  if (bytes.length === 0) throw new X509Error('der', 'empty OID');
  const parts: number[] = [];
  let value = 0;
  let started = false;
  for (const byte of bytes) {
    // X.690 §8.19.2: an arc must not start with 0x80 (that would be a non-minimal encoding).
    if (!started && byte === 0x80) throw new X509Error('der', 'non-minimal OID arc encoding');
    value = value * 128 + (byte & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER) throw new X509Error('der', 'OID arc too large');
    started = true;
    if ((byte & 0x80) === 0) {
      parts.push(value);
      value = 0;
      started = false;
    }
  }
  // A dangling continuation bit means the last arc was cut off; dropping it would alias OIDs.
  if (started) throw new X509Error('der', 'truncated OID');
  const head = parts.shift() ?? 0;
  const first = head < 80 ? Math.floor(head / 40) : 2;
  return [first, head - first * 40, ...parts].join('.');
}

/**
 * Splits a concatenation of DER elements (how SPIRE sends bundles and chains) into its parts.
 * Throws when the bytes do not split exactly.
 */
export function splitDer(data: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let pos = 0;
  while (pos < data.length) {
    const node = readDer(data, pos);
    out.push(data.subarray(node.start, node.end));
    pos = node.end;
  }
  return out;
}
