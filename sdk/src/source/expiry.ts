/**
 * When an SVID counts as "about to expire". SPIRE rotates X509-SVIDs once half of their lifetime
 * has passed, so by default a source warns when only a third of the lifetime is left: by then a
 * rotation is overdue and an operator should look, yet there is still time to act.
 */
import type { X509Svid } from '../x509/svid.js';

export const DEFAULT_EXPIRY_WARNING_FRACTION = 1 / 3;

export interface ExpiryWarning {
  /** When to warn that the SVID is about to expire. */
  readonly warnAt: Date;
  readonly notAfter: Date;
}

/** `warningMs`: fixed lead time before notAfter; default one third of the SVID's lifetime. */
export function expiryWarningFor(svid: Pick<X509Svid, 'notBefore' | 'notAfter'>, warningMs?: number): ExpiryWarning {
  const notAfter = svid.notAfter;
  const lifetime = Math.max(0, notAfter.getTime() - svid.notBefore.getTime());
  const lead = warningMs ?? lifetime * DEFAULT_EXPIRY_WARNING_FRACTION;
  return { warnAt: new Date(notAfter.getTime() - lead), notAfter };
}
