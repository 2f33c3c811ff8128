/**
 * Which X.509 step failed, so callers can branch without parsing messages.
 *
 * - `svid`: an X509-SVID to hold (chain and key) breaks X509-SVID.md or is malformed.
 * - `bundle`: a trust bundle could not be parsed or built.
 * - `verification`: a peer's chain did not verify against the bundles.
 * - `pem`, `der`: malformed PEM text or DER bytes; these arrive as the `cause` of one of the above.
 */
export type X509ErrorKind = 'svid' | 'bundle' | 'verification' | 'pem' | 'der';

/** One prefix per kind, as go-spiffe names its packages, so a log line says where it came from. */
const PREFIX: Readonly<Record<X509ErrorKind, string>> = {
  svid: 'x509svid',
  bundle: 'x509bundle',
  verification: 'x509svid',
  pem: 'pem',
  der: 'der',
};

/**
 * Every error of the X.509 module. The message starts with `x509svid: `, `x509bundle: `, `pem: `
 * or `der: ` and says what was wrong with the input; it never contains key material.
 */
export class X509Error extends Error {
  /** Which step failed. */
  readonly kind: X509ErrorKind;

  /** `message` says what was wrong; the prefix of `kind` is added here. */
  constructor(kind: X509ErrorKind, message: string, options?: { cause?: unknown }) {
    super(`${PREFIX[kind]}: ${message}`, options);
    this.name = 'X509Error';
    this.kind = kind;
  }
}
