/**
 * `npm run soak` sets SPIRE_CSI_SOAK=1: the same fault tests with far more iterations. The default
 * counts keep the suite within a few minutes inside `npm test`.
 */
export const isSoak = process.env.SPIRE_CSI_SOAK === '1' || process.env.SPIRE_CSI_SOAK === 'true';

export function scaled(defaultCount: number, soakCount: number): number {
  return isSoak ? soakCount : defaultCount;
}

/** A per-test timeout that grows with the soak counts. */
export function testTimeout(defaultMs: number, soakMs: number): number {
  return isSoak ? soakMs : defaultMs;
}
