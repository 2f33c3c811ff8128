/**
 * Strict PEM handling for the SPIFFE file formats: blocks with no headers and nothing but
 * whitespace between them (SPIFFE Filesystem Delivery, RFC 7468 strict encoding).
 */
import { X509Error } from './errors.js';

export interface PemBlock {
  readonly label: string;
  readonly der: Buffer;
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END ([A-Z0-9 ]+)-----/g;
const BASE64_LINE = /^[A-Za-z0-9+/]*={0,2}$/;

/** Parses every PEM block; rejects headers, mismatched labels and stray data between blocks. */
export function decodePem(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  let last = 0;
  for (const match of text.matchAll(BLOCK)) {
    const between = text.slice(last, match.index);
    if (between.trim() !== '') throw new X509Error('pem', 'unexpected data between PEM blocks');
    const [, begin, body, end] = match as unknown as [string, string, string, string];
    if (begin !== end) throw new X509Error('pem', `BEGIN ${begin} closed by END ${end}`);
    const lines = body.split(/\r?\n/).filter((line) => line.length > 0);
    for (const line of lines) {
      if (line.includes(':')) throw new X509Error('pem', `PEM headers are not allowed (in ${begin} block)`);
      if (!BASE64_LINE.test(line)) throw new X509Error('pem', `invalid base64 in ${begin} block`);
    }
    const base64 = lines.join('');
    const der = Buffer.from(base64, 'base64');
    // Node's decoder skips garbage and misplaced padding; a round trip proves the text was canonical.
    if (der.toString('base64') !== base64) throw new X509Error('pem', `invalid base64 in ${begin} block`);
    if (der.length === 0) throw new X509Error('pem', `empty ${begin} block`);
    blocks.push({ label: begin, der });
    last = (match.index ?? 0) + match[0].length;
  }
  if (text.slice(last).trim() !== '') throw new X509Error('pem', 'unexpected data after the last PEM block');
  return blocks;
}

/** Encodes one block with 64-character lines. */
export function encodePem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

export function encodeCertificatesPem(ders: readonly Uint8Array[]): string {
  return ders.map((der) => encodePem('CERTIFICATE', der)).join('');
}
