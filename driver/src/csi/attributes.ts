import { CsiError } from './errors.js';

/*
 * The volume attributes users set under csi.spire.io/, and the pieces every INVALID_ARGUMENT
 * message is made of: the attribute's full name, a quoted value, the error itself.
 */

export const SPIRE_ATTRIBUTE_PREFIX = 'csi.spire.io/';
export const SPIRE_ATTRIBUTES = [
  'svid-file',
  'key-file',
  'bundle-file',
  'bundle-include-federated',
  'fs-group',
  'spiffe-id',
  'jwt-audiences',
  'jwt-svid-file',
  'credential-bundle-file',
  'layout-names',
  'hint',
  'all-svids',
] as const;
export type SpireAttribute = (typeof SPIRE_ATTRIBUTES)[number];
export type SpireAttributes = Partial<Record<SpireAttribute, string>>;

/** Quoted values are cut to this many characters: messages end up in gRPC trailers and pod events. */
const MAX_QUOTED_CHARS = 256;

export function attr(name: SpireAttribute): string {
  return `${SPIRE_ATTRIBUTE_PREFIX}${name}`;
}

/** A huge echoed value would make the message undeliverable (gRPC trailers are size-limited). */
export function q(value: string): string {
  if (value.length <= MAX_QUOTED_CHARS) return JSON.stringify(value);
  return `${JSON.stringify(value.slice(0, MAX_QUOTED_CHARS))}... (${value.length} characters)`;
}

export function invalid(message: string): CsiError {
  return CsiError.invalidArgument(message);
}
