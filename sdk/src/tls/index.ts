/**
 * SPIFFE mTLS for `node:tls`, `node:https` and `node:http2`: servers that present the current SVID
 * and admit only verified, authorized clients, and client options and agents that verify servers
 * by SPIFFE ID instead of hostname. Everything follows the source's rotations.
 *
 * @packageDocumentation
 */
export {
  createTlsServer,
  createHttpsServer,
  createHttp2SecureServer,
  type SpiffeTlsServerOptions,
  type SpiffeHttpsServerOptions,
  type SpiffeHttp2SecureServerOptions,
} from './servers.js';
export { attachSpiffeTls, SPIFFE_AUTHORIZATION_FAILED, type SpiffeServerOptions, type SpiffeTlsBinding } from './attach-server.js';
export { peerSpiffeId, type PeerIdCarrier } from './peer-id.js';
export { createClientTlsOptions, type SpiffeClientOptions, type SpiffeClientTlsOptions } from './client-options.js';
export { SpiffeHttpsAgent, createHttpsAgent, type SpiffeHttpsAgentOptions } from './https-agent.js';
export { verifyPeer } from './verify-peer.js';
export type { ManagedTlsOption, TlsSettings } from './tls-settings.js';
export { TlsError, type TlsErrorKind } from './errors.js';
