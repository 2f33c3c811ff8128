/**
 * The peers this module has verified, by their leaf certificate, so peerSpiffeId() answers only
 * for a peer that passed the per-trust-domain check and its Authorizer here, never for whatever a
 * certificate merely claims. grpc-js hands calls a fresh copy of the peer's leaf each time (no
 * object to tag, unlike node:tls sockets), so the record is keyed by the leaf's SHA-256.
 */
import { createHash } from 'node:crypto';
import type { SpiffeId } from '../spiffeid/spiffe-id.js';

/** Far more distinct peers than one process talks to within an SVID's lifetime. */
const CAPACITY = 4096;

const verified = new Map<string, SpiffeId>();

function keyOf(leafDer: Uint8Array): string {
  return createHash('sha256').update(leafDer).digest('base64');
}

/** Remembers that `leafDer` was verified as `id`. */
export function rememberVerifiedPeer(leafDer: Uint8Array, id: SpiffeId): void {
  const key = keyOf(leafDer);
  // Re-inserting moves it to the back, so the least recently verified is evicted first.
  verified.delete(key);
  verified.set(key, id);
  if (verified.size > CAPACITY) {
    const oldest = verified.keys().next().value;
    if (oldest !== undefined) verified.delete(oldest);
  }
}

/** The SPIFFE ID `leafDer` was verified as, if it was. */
export function verifiedPeerId(leafDer: Uint8Array): SpiffeId | undefined {
  return verified.get(keyOf(leafDer));
}
