/**
 * A fake SPIRE agent admin socket that serves the Delegated Identity API with whatever messages a
 * test hands it: first good material (minted by TestCa), then the kinds of bad data a broken or
 * compromised agent could send. Legitimate test scaffolding for "SPIRE misbehaves"; it is not a
 * SPIRE agent and serves nothing but what the test scripts.
 */
import { lstat, unlink } from 'node:fs/promises';
import {
  Server,
  ServerCredentials,
  status,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
} from '@grpc/grpc-js';
import { loadProtos } from '../../../driver/src/proto/load.js';
import type {
  WireSubscribeToX509BundlesResponse,
  WireSubscribeToX509SvidsResponse,
} from '../../../driver/src/identity/delegated/wire.js';
import type { MintedSvid } from '../../helpers/test-ca.js';

type Stream<T> = ServerWritableStream<unknown, T>;

export class FakeDelegatedIdentityAgent {
  private readonly svidCalls = new Set<Stream<WireSubscribeToX509SvidsResponse>>();
  private readonly bundleCalls = new Set<Stream<WireSubscribeToX509BundlesResponse>>();
  private svids: WireSubscribeToX509SvidsResponse | undefined;
  private bundles: WireSubscribeToX509BundlesResponse | undefined;
  /** Messages written, by stream kind. */
  readonly sent = { svid: 0, bundle: 0 };

  private constructor(
    readonly socketPath: string,
    private readonly server: Server,
  ) {}

  static async start(socketPath: string): Promise<FakeDelegatedIdentityAgent> {
    const server = new Server();
    const agent = new FakeDelegatedIdentityAgent(socketPath, server);
    server.addService(loadProtos().delegatedIdentity.DelegatedIdentity.service, {
      SubscribeToX509SVIDs: (call: Stream<WireSubscribeToX509SvidsResponse>) => agent.subscribe(agent.svidCalls, call, agent.svids, 'svid'),
      SubscribeToX509Bundles: (call: Stream<WireSubscribeToX509BundlesResponse>) =>
        agent.subscribe(agent.bundleCalls, call, agent.bundles, 'bundle'),
      FetchJWTSVIDs: (_call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) =>
        callback({ code: status.UNIMPLEMENTED, details: 'fake agent: no JWT-SVIDs' }),
      SubscribeToJWTBundles: (call: Stream<unknown>) => call.emit('error', { code: status.UNIMPLEMENTED, details: 'fake agent: no JWT bundles' }),
    });
    await unlink(socketPath).catch(() => undefined);
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix:${socketPath}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    return agent;
  }

  get streamCounts(): { svid: number; bundle: number } {
    return { svid: this.svidCalls.size, bundle: this.bundleCalls.size };
  }

  /** Sent on every open SVID stream, and to every stream that opens later. */
  sendSvids(message: WireSubscribeToX509SvidsResponse): void {
    this.svids = message;
    for (const call of this.svidCalls) this.write(call, message, 'svid');
  }

  sendBundles(message: WireSubscribeToX509BundlesResponse): void {
    this.bundles = message;
    for (const call of this.bundleCalls) this.write(call, message, 'bundle');
  }

  async close(): Promise<void> {
    for (const call of [...this.svidCalls, ...this.bundleCalls]) call.end();
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 500);
      this.server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    if (await lstat(this.socketPath).then((s) => s.isSocket(), () => false)) await unlink(this.socketPath);
  }

  private subscribe<T>(calls: Set<Stream<T>>, call: Stream<T>, latest: T | undefined, kind: 'svid' | 'bundle'): void {
    calls.add(call);
    call.on('cancelled', () => calls.delete(call));
    call.on('close', () => calls.delete(call));
    if (latest !== undefined) this.write(call, latest, kind);
  }

  private write<T>(call: Stream<T>, message: T, kind: 'svid' | 'bundle'): void {
    if (call.cancelled || call.writableEnded) return;
    call.write(message);
    this.sent[kind]++;
  }
}

/** One X509-SVID as the agent sends it; every field can be overridden to make it wrong. */
export function svidMessage(
  svid: MintedSvid,
  spiffeId: string,
  overrides: { chain?: Buffer[]; key?: Buffer; id?: { trust_domain: string; path: string } | null } = {},
): WireSubscribeToX509SvidsResponse {
  const parsed = new URL(spiffeId);
  return {
    x509_svids: [
      {
        x509_svid: {
          cert_chain: overrides.chain ?? svid.chainDer,
          id: overrides.id === undefined ? { trust_domain: parsed.host, path: parsed.pathname } : overrides.id,
          expires_at: String(Math.floor(new Date(svid.cert.validTo).getTime() / 1000)),
          hint: '',
        },
        x509_svid_key: overrides.key ?? svid.keyDer,
      },
    ],
    federates_with: [],
  };
}

export function bundlesMessage(bundles: Readonly<Record<string, Buffer>>): WireSubscribeToX509BundlesResponse {
  return {
    ca_certificates: Object.fromEntries(Object.entries(bundles).map(([td, der]) => [`spiffe://${td}`, der])),
  };
}
