/**
 * Bytes that get a memory block of their own. `Buffer.from(string)` and `Buffer.concat` carve
 * small results out of a shared 8 KiB pool, and one slice kept alive pins its whole slab: each
 * volume's payload, held until its next rotation, pinned a slab of its own (8 KiB per volume,
 * 7.8 MiB of the driver's arrayBuffers at 1,000 volumes). Only for bytes that live long.
 */
export function ownBytes(text: string): Buffer {
  const bytes = Buffer.allocUnsafeSlow(Buffer.byteLength(text, 'utf8'));
  bytes.write(text, 0, 'utf8');
  return bytes;
}

/** `Buffer.concat` into a block of its own; see ownBytes. */
export function ownConcat(parts: readonly Buffer[]): Buffer {
  const bytes = Buffer.allocUnsafeSlow(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) offset += part.copy(bytes, offset);
  return bytes;
}
