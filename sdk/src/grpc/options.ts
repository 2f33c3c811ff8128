import type { Authorizer } from '../authorize/authorizer.js';
import type { Logger } from '../logger.js';
import { SpiffeGrpcError } from './errors.js';

/** Options of {@link spiffeChannelCredentials} and {@link spiffeServerCredentials}. */
export interface SpiffeGrpcCredentialsOptions {
  /** Who the peer may be, once verified against its own trust domain's bundle (use authorizeAny() to accept any verified peer). */
  readonly authorize: Authorizer;
  /** Where refused peers are logged (pino-compatible). Default: nowhere. */
  readonly logger?: Logger;
}

/** Throws unless an Authorizer was given: credentials that accept anyone must be asked for explicitly. */
export function checkAuthorizer(options: SpiffeGrpcCredentialsOptions | undefined, where: string): Authorizer {
  const authorize = options?.authorize;
  if (typeof authorize !== 'function') {
    throw new SpiffeGrpcError('config', `${where}: the \`authorize\` option is required (an Authorizer such as authorizeId(...); authorizeAny() accepts every verified peer)`);
  }
  return authorize;
}
