/**
 * Hands the verified peer identity to the application. It is stored on the TLS socket under a
 * module-private symbol rather than in a WeakMap because http2 only exposes the socket through a
 * Proxy (a different object, so a WeakMap lookup would miss) that forwards property reads.
 * Nobody outside this module can write the symbol, so the value cannot be forged.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { SpiffeId } from '../spiffeid/spiffe-id.js';

const kPeerSpiffeId = Symbol('spire-csi.peerSpiffeId');

/** Anything that leads to a server-side TLS socket: the socket, an http(s)/http2 request, an http2 session or stream. */
export type PeerIdCarrier = Socket | Duplex | { readonly socket?: unknown } | { readonly session?: unknown };

export function recordPeerSpiffeId(socket: Socket, id: SpiffeId): void {
  Object.defineProperty(socket, kPeerSpiffeId, { value: id, enumerable: false, writable: false, configurable: false });
}

function read(target: unknown, depth: number): SpiffeId | undefined {
  if (target === null || typeof target !== 'object' || depth > 4) return undefined;
  try {
    const value = (target as Record<symbol, unknown>)[kPeerSpiffeId];
    if (value instanceof SpiffeId) return value;
    const { socket, session } = target as { socket?: unknown; session?: unknown };
    return read(socket, depth + 1) ?? read(session, depth + 1);
  } catch {
    // http2's socket proxy throws once its session is gone: no connection, no identity.
    return undefined;
  }
}

/** The SPIFFE ID verified for the peer of this connection, or undefined when none was. */
export function peerSpiffeId(target: PeerIdCarrier): SpiffeId | undefined {
  return read(target, 0);
}
