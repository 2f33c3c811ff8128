/**
 * An https.Agent that always connects with the source's current SVID and verifies servers by
 * SPIFFE ID. One long-lived agent instead of a new agent per rotation: each socket remembers the
 * credential generation it was made with, and a socket of an older generation is closed instead
 * of being returned to the keep-alive pool, so after an update every new connection handshakes
 * with the new material while requests already running finish on their old connection.
 */
import * as https from 'node:https';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import type { Authorizer } from '../authorize/authorizer.js';
import { silentLogger, type Logger } from '../logger.js';
import type { X509Material, X509Source } from '../source/x509-source.js';
import { createClientTlsOptions } from './client-options.js';
import { TlsError } from './errors.js';
import { rejectManagedOptions, type ManagedTlsOption } from './tls-settings.js';

/** Options of {@link SpiffeHttpsAgent}: Node's agent options, minus the managed TLS ones. */
export type SpiffeHttpsAgentOptions = Omit<https.AgentOptions, ManagedTlsOption> & {
  /** Where rotations and refused servers are logged (pino-compatible). Default: nowhere. */
  logger?: Logger;
};

/**
 * An `https.Agent` that always connects with the source's current SVID and verifies servers by
 * SPIFFE ID; after a rotation, idle connections of the old SVID are dropped.
 */
export class SpiffeHttpsAgent extends https.Agent {
  private readonly source: X509Source;
  private readonly authorizer: Authorizer;
  private readonly logger: Logger;
  private generation = 0;
  private readonly generations = new WeakMap<Duplex, number>();
  private closed = false;
  private readonly onUpdate = (material: X509Material): void => this.rotate(material);

  /** Throws a {@link TlsError} (`config`) without an authorizer, or when the source has no material yet. */
  constructor(source: X509Source, authorizer: Authorizer, options: SpiffeHttpsAgentOptions = {}) {
    const { logger, ...agentOptions } = options;
    rejectManagedOptions(agentOptions, 'SpiffeHttpsAgent');
    if (typeof authorizer !== 'function') {
      throw new TlsError('config', 'an Authorizer is required (use authorizeAny() to accept every verified peer)');
    }
    // No session cache: Node does not call checkServerIdentity on a resumed session.
    super({ ...agentOptions, maxCachedSessions: 0 });
    this.source = source;
    this.authorizer = authorizer;
    this.logger = logger ?? silentLogger;
    source.current(); // fail now, not on the first request, if the source has nothing yet
    source.on('update', this.onUpdate);
  }

  /** A TLS connection with the current SVID, verifying the server by SPIFFE ID. */
  override createConnection(options: https.RequestOptions): Duplex {
    const tlsOptions = createClientTlsOptions(this.source, this.authorizer, { logger: this.logger });
    const { session: _session, ...connect } = options as tls.ConnectionOptions;
    const socket = tls.connect({ ...connect, ...tlsOptions });
    this.generations.set(socket, this.generation);
    return socket;
  }

  /** Keeps a socket for reuse only if it was made with the current credentials. */
  override keepSocketAlive(socket: Duplex): boolean {
    if (this.generations.get(socket) !== this.generation) return false;
    const keep: unknown = super.keepSocketAlive(socket);
    return keep !== false;
  }

  /** Destroys pooled sockets and stops following the source. Idempotent. */
  override destroy(): void {
    if (!this.closed) {
      this.closed = true;
      this.source.off('update', this.onUpdate);
    }
    super.destroy();
  }

  private rotate(material: X509Material): void {
    this.generation++;
    let dropped = 0;
    for (const sockets of Object.values(this.freeSockets)) {
      for (const socket of sockets ?? []) {
        socket.destroy();
        dropped++;
      }
    }
    this.logger.debug(
      { spiffeId: material.svid.id.toString(), serialNumber: material.svid.serialNumber, idleSocketsClosed: dropped },
      'tls: https agent switched to new credentials',
    );
  }
}

/** `new SpiffeHttpsAgent(source, authorizer, options)`. */
export function createHttpsAgent(
  source: X509Source,
  authorizer: Authorizer,
  options: SpiffeHttpsAgentOptions = {},
): SpiffeHttpsAgent {
  return new SpiffeHttpsAgent(source, authorizer, options);
}
