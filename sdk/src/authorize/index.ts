export {
  AuthorizationError,
  authorizeAny,
  authorizeId,
  authorizeOneOf,
  authorizeMemberOf,
  authorizeIf,
} from './authorizer.js';
export type { Authorizer } from './authorizer.js';
