/**
 * JWT-SVIDs over HTTP: the server side (`jwtSvidMiddleware` for node:http/express,
 * `authenticateJwtSvid` for any framework) and the client side (`bearerTokenInterceptor` for
 * undici), per JWT-SVID.md §5.2.
 *
 * @packageDocumentation
 */
export { jwtSvidMiddleware, type JwtSvidMiddleware, type JwtSvidMiddlewareOptions, type JwtSvidNextFunction } from './middleware.js';
export { authenticateJwtSvid, jwtPeerId, type JwtAuthenticationOptions, type RequestWithHeaders } from './authenticate.js';
export { bearerTokenInterceptor, type BearerTokenInterceptorOptions, type BearerTokenProvider } from './bearer-interceptor.js';
export { HttpAuthError, JwtAuthenticationError, type HttpAuthErrorKind, type JwtAuthenticationStatus } from './errors.js';
