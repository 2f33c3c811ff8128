import { ownBytes } from '@spire-csi/sdk/internal';

/**
 * PEM encodings remembered per source object. A rotation hands a thousand volumes the same parsed
 * SVID object (from the validation cache) and the same bundle buffers (from the one bundle stream),
 * so encoding once and sharing the bytes saves both CPU and memory. Weakly keyed: an entry lives
 * exactly as long as the object it was computed from, so no bound or eviction is needed, and the
 * key's PEM is held no longer than the parsed key itself. Callers must only use an owner object
 * whose bytes never change (X509Svid is immutable; agent buffers are never written to).
 */
export class PemMemo {
  private readonly byOwner = new WeakMap<object, Map<string, Buffer>>();

  /** The bytes stored for (owner, slot), computing them with `encode` on first use. */
  get(owner: object, slot: string, encode: () => string): Buffer {
    let slots = this.byOwner.get(owner);
    if (slots === undefined) {
      slots = new Map();
      this.byOwner.set(owner, slots);
    }
    let bytes = slots.get(slot);
    if (bytes === undefined) {
      bytes = ownBytes(encode());
      slots.set(slot, bytes);
    }
    return bytes;
  }
}
