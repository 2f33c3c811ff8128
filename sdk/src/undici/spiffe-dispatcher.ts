/**
 * An undici Dispatcher for SPIFFE mTLS clients (fetch, request, setGlobalDispatcher).
 *
 * Each credential generation gets its own undici Agent: an Agent's connector captures its TLS
 * options, and a pooled keep-alive connection would otherwise keep presenting the old SVID. On an
 * update, new requests go to a fresh Agent at once while the previous one is closed gracefully
 * (undici's close() lets queued and running requests finish), so a rotation never fails a request.
 */
import type { EventEmitter } from 'node:events';
import { Agent, Dispatcher } from 'undici';
import type { Authorizer } from '../authorize/authorizer.js';
import { silentLogger, type Logger } from '../logger.js';
import type { X509Material, X509Source } from '../source/x509-source.js';
import { createClientTlsOptions } from '../tls/client-options.js';
import { messageOf } from '../internal/error-text.js';
import { TlsError } from '../tls/errors.js';
import { rejectManagedOptions, type TlsSettings } from '../tls/tls-settings.js';

/** Options of {@link SpiffeDispatcher}: undici Agent options (minus `connect`), a logger and TLS tunables. */
export interface SpiffeDispatcherOptions extends Omit<Agent.Options, 'connect'> {
  /** Where rotations and refused servers are logged (pino-compatible). Default: nowhere. */
  logger?: Logger;
  /** TLS tunables (ciphers, sigalgs, maxVersion, ...); identity and trust come from the source. */
  tlsSettings?: TlsSettings;
}

const FORWARDED_EVENTS = ['connect', 'disconnect', 'connectionError', 'drain'] as const;

/**
 * An undici Dispatcher for SPIFFE mTLS clients: it presents the source's current SVID and accepts
 * only servers that verify against the bundle of their own trust domain and pass `authorizer`.
 * Use it with this module's `fetch` and `request` (same undici), or as undici's global
 * dispatcher. On rotation new requests go to a fresh Agent while in-flight ones finish.
 */
export class SpiffeDispatcher extends Dispatcher {
  readonly #source: X509Source;
  readonly #authorizer: Authorizer;
  readonly #logger: Logger;
  readonly #tls: TlsSettings;
  readonly #agentOptions: Omit<Agent.Options, 'connect'>;
  #agent: Agent;
  /** Agents of older generations, until their in-flight requests have finished. */
  readonly #retiring = new Map<Agent, Promise<void>>();
  readonly #forwarders = new Map<Agent, { event: string; forward: (...args: unknown[]) => void }[]>();
  #closing: Promise<void> | undefined;
  #destroying: Promise<void> | undefined;
  readonly #onUpdate = (material: X509Material): void => this.#rotate(material);

  /** Throws a {@link TlsError} (`config`) without an authorizer or with a managed TLS option. */
  constructor(source: X509Source, authorizer: Authorizer, options: SpiffeDispatcherOptions = {}) {
    super();
    if (typeof authorizer !== 'function') {
      throw new TlsError('config', 'an Authorizer is required (use authorizeAny() to accept every verified peer)');
    }
    const { logger, tlsSettings, ...agentOptions } = options;
    rejectManagedOptions(tlsSettings ?? {}, 'SpiffeDispatcher');
    this.#source = source;
    this.#authorizer = authorizer;
    this.#logger = logger ?? silentLogger;
    this.#tls = tlsSettings ?? {};
    this.#agentOptions = agentOptions;
    this.#agent = this.#createAgent();
    source.on('update', this.#onUpdate);
  }

  /** True once close() or destroy() was called. */
  get closed(): boolean {
    return this.#closing !== undefined || this.#destroying !== undefined;
  }

  /** Sends the request through the agent of the current credentials. */
  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    // After close() this is a closed Agent, which reports ClientClosedError through the handler.
    return this.#agent.dispatch(options, handler);
  }

  /** Stops following the source and closes every agent once its requests have finished. Idempotent. */
  override close(): Promise<void>;
  override close(callback: () => void): void;
  override close(callback?: () => void): Promise<void> | void {
    if (this.#destroying) this.#closing ??= this.#destroying;
    if (!this.#closing) {
      this.#source.off('update', this.#onUpdate);
      this.#closing = Promise.all([this.#agent.close(), ...this.#retiring.values()]).then(() => undefined);
    }
    if (callback === undefined) return this.#closing;
    this.#closing.then(callback, callback);
  }

  /** Stops following the source and aborts every request in flight. Idempotent. */
  override destroy(): Promise<void>;
  override destroy(err: Error | null): Promise<void>;
  override destroy(callback: () => void): void;
  override destroy(err: Error | null, callback: () => void): void;
  override destroy(errOrCallback?: Error | null | (() => void), maybeCallback?: () => void): Promise<void> | void {
    const callback = typeof errOrCallback === 'function' ? errOrCallback : maybeCallback;
    const err = typeof errOrCallback === 'function' ? null : (errOrCallback ?? null);
    if (!this.#destroying) {
      this.#source.off('update', this.#onUpdate);
      const agents = [this.#agent, ...this.#retiring.keys()];
      this.#destroying = Promise.all(agents.map((agent) => agent.destroy(err))).then(() => undefined);
    }
    if (callback === undefined) return this.#destroying;
    this.#destroying.then(callback, callback);
  }

  #createAgent(): Agent {
    const tlsOptions = createClientTlsOptions(this.#source, this.#authorizer, { logger: this.#logger, tlsSettings: this.#tls });
    const agent = new Agent({
      ...this.#agentOptions,
      connect: {
        ...tlsOptions,
        // undici resumes cached sessions, and Node skips checkServerIdentity on a resumed session.
        maxCachedSessions: 0,
      },
    });
    const forwarders = FORWARDED_EVENTS.map((event) => {
      const forward = (...args: unknown[]): void => {
        (this as EventEmitter).emit(event, ...args);
      };
      (agent as EventEmitter).on(event, forward);
      return { event, forward };
    });
    this.#forwarders.set(agent, forwarders);
    return agent;
  }

  #rotate(material: X509Material): void {
    if (this.closed) return;
    const previous = this.#agent;
    this.#agent = this.#createAgent();
    const retired = previous
      .close()
      .catch((err: unknown) => {
        this.#logger.warn({ reason: messageOf(err) }, 'undici: closing the previous agent failed');
      })
      .finally(() => {
        this.#retiring.delete(previous);
        for (const { event, forward } of this.#forwarders.get(previous) ?? []) {
          (previous as EventEmitter).off(event, forward);
        }
        this.#forwarders.delete(previous);
      });
    this.#retiring.set(previous, retired);
    this.#logger.debug(
      { spiffeId: material.svid.id.toString(), serialNumber: material.svid.serialNumber },
      'undici: dispatcher switched to new credentials',
    );
  }
}
