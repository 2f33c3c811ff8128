/**
 * Authorizers: what a verified peer must be to be let in (an exact ID, one of several, any member
 * of a trust domain, or a custom policy).
 *
 * @packageDocumentation
 */
export {
  AuthorizationError,
  authorizeAny,
  authorizeId,
  authorizeOneOf,
  authorizeMemberOf,
  authorizeIf,
  type Authorizer,
  type AuthorizationErrorKind,
} from './authorizer.js';
