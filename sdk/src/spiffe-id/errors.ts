/** Thrown when a string is not a valid SPIFFE ID or trust domain; the message names the broken rule. */
export class SpiffeIdError extends Error {
  constructor(message: string) {
    super(`spiffeid: ${message}`);
    this.name = 'SpiffeIdError';
  }
}
