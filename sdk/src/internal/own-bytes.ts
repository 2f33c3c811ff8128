/**
 * Bytes that get a memory block of their own. `Buffer.from`, `Buffer.concat` and protobuf
 * encoders carve small results out of a shared 8 KiB pool, and one slice kept alive pins its whole
 * slab: a small buffer that lives long (a key held by an SVID, a volume's payload until its next
 * rotation, a stream's request) would otherwise hold 8 KiB each. Only for bytes that live long.
 */

/** The UTF-8 bytes of `text`. */
export function ownBytes(text: string): Buffer {
  const bytes = Buffer.allocUnsafeSlow(Buffer.byteLength(text, 'utf8'));
  bytes.write(text, 0, 'utf8');
  return bytes;
}

/** `parts` one after another (one part: a copy). */
export function ownConcat(parts: readonly Uint8Array[]): Buffer {
  const bytes = Buffer.allocUnsafeSlow(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.length;
  }
  return bytes;
}
