/**
 * A SPIFFE Workload API server for tests, written with @grpc/grpc-js and loaded from the repository's
 * proto/spiffe/workload/workload.proto (not from the SDK's embedded descriptor, so talking to it
 * also proves the two agree on the wire). It serves FetchX509SVID over a real unix socket, checks
 * the security header as the spec requires (InvalidArgument without it), and lets a test push
 * messages, answer the next calls with a status, or stop and restart the server.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  loadPackageDefinition,
  Server,
  ServerCredentials,
  status,
  type Metadata,
  type ServerWritableStream,
  type ServiceClientConstructor,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { MintedSvid, TestCa } from './test-ca.js';

const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url));
export const WORKLOAD_PROTO = 'spiffe/workload/workload.proto';

/** The repository's workload.proto as @grpc/proto-loader reads it (snake_case, bytes as Buffer). */
export function loadWorkloadProto(): ReturnType<typeof loadSync> {
  return loadSync(WORKLOAD_PROTO, { includeDirs: [PROTO_DIR], keepCase: true, bytes: Buffer, defaults: true });
}

export interface X509SvidWire {
  spiffe_id: string;
  x509_svid: Buffer;
  x509_svid_key: Buffer;
  bundle: Buffer;
  hint: string;
}

export interface X509SvidResponseWire {
  svids: X509SvidWire[];
  crl: Buffer[];
  federated_bundles: Record<string, Buffer>;
}

export interface SvidEntry {
  readonly minted: MintedSvid;
  /** The SPIFFE ID the message claims; defaults to the certificate's. */
  readonly spiffeId: string;
  /** The SVID's own trust domain's CA(s): their roots make up its `bundle`. */
  readonly bundle: readonly TestCa[];
  readonly hint?: string;
}

/** One FetchX509SVID message: the SVIDs, and federated bundles keyed `spiffe://td`. */
export function x509Response(svids: readonly SvidEntry[], federated: Readonly<Record<string, readonly TestCa[]>> = {}): X509SvidResponseWire {
  return {
    svids: svids.map((entry) => ({
      spiffe_id: entry.spiffeId,
      x509_svid: Buffer.concat(entry.minted.chainDer),
      x509_svid_key: entry.minted.keyDer,
      bundle: Buffer.concat(entry.bundle.map((ca) => ca.rootDer)),
      hint: entry.hint ?? '',
    })),
    crl: [],
    federated_bundles: Object.fromEntries(Object.entries(federated).map(([td, cas]) => [td, Buffer.concat(cas.map((ca) => ca.rootDer))])),
  };
}

/** grpc-js ends a server stream with a status when an Error carrying `code` is emitted on it. */
function endWithStatus(call: ServerWritableStream<unknown, X509SvidResponseWire>, code: status, details: string): void {
  call.emit('error', Object.assign(new Error(details), { code, details }));
}

interface PendingStatus {
  readonly code: status;
  readonly details: string;
}

export class WorkloadApiTestServer {
  /** Every FetchX509SVID call's request metadata, in order (rejected ones too). */
  readonly calls: Metadata[] = [];
  private readonly streams = new Set<ServerWritableStream<unknown, X509SvidResponseWire>>();
  private readonly statusQueue: PendingStatus[] = [];
  private server: Server | undefined;
  private latest: X509SvidResponseWire | undefined;
  private readonly service: ServiceClientConstructor['service'];
  private streamWaiters: (() => void)[] = [];

  private constructor(
    readonly dir: string,
    readonly socketPath: string,
  ) {
    const grpcObject = loadPackageDefinition(loadWorkloadProto());
    this.service = (grpcObject['SpiffeWorkloadAPI'] as ServiceClientConstructor).service;
  }

  /** A server listening on a fresh unix socket. */
  static async start(): Promise<WorkloadApiTestServer> {
    const dir = mkdtempSync(join(tmpdir(), 'spire-csi-wlapi-'));
    const server = new WorkloadApiTestServer(dir, join(dir, 'api.sock'));
    await server.listen();
    return server;
  }

  /** `unix:///...`: what SPIFFE_ENDPOINT_SOCKET would hold. */
  get endpoint(): string {
    return `unix://${this.socketPath}`;
  }

  /** Streams currently open. */
  get openStreams(): number {
    return this.streams.size;
  }

  /** Sends `message` on every open stream, and on every stream opened later (until the next send). */
  send(message: X509SvidResponseWire): void {
    this.latest = message;
    for (const stream of this.streams) stream.write(message);
  }

  /** Answers the next FetchX509SVID call with this status instead of a stream. */
  failNext(code: status, details: string): void {
    this.statusQueue.push({ code, details });
  }

  /** Ends every open stream with `code`. */
  endStreams(code: status, details: string): void {
    const streams = [...this.streams];
    this.streams.clear();
    for (const stream of streams) endWithStatus(stream, code, details);
  }

  /** Resolves once `count` streams are open. */
  async streamsOpen(count = 1): Promise<void> {
    while (this.streams.size < count) await new Promise<void>((resolve) => this.streamWaiters.push(resolve));
  }

  /** Stops serving: open streams end (the client sees UNAVAILABLE), the socket goes away. */
  stop(): void {
    this.server?.forceShutdown();
    this.server = undefined;
    this.streams.clear();
  }

  /** Serves again on the same socket. */
  async restart(): Promise<void> {
    this.stop();
    await this.listen();
  }

  /** Stops and removes the socket folder. */
  close(): void {
    this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async listen(): Promise<void> {
    rmSync(this.socketPath, { force: true });
    const server = new Server();
    server.addService(this.service, {
      FetchX509SVID: (call: ServerWritableStream<unknown, X509SvidResponseWire>) => this.onFetch(call),
    });
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(`unix://${this.socketPath}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
    });
    this.server = server;
  }

  private onFetch(call: ServerWritableStream<unknown, X509SvidResponseWire>): void {
    this.calls.push(call.metadata);
    // The spec's one mandatory check: without the header, InvalidArgument.
    if (call.metadata.get('workload.spiffe.io')[0] !== 'true') {
      endWithStatus(call, status.INVALID_ARGUMENT, 'security header missing from request');
      return;
    }
    const pending = this.statusQueue.shift();
    if (pending !== undefined) {
      endWithStatus(call, pending.code, pending.details);
      return;
    }
    this.streams.add(call);
    call.on('cancelled', () => this.streams.delete(call));
    call.on('close', () => this.streams.delete(call));
    if (this.latest !== undefined) call.write(this.latest);
    const waiters = this.streamWaiters;
    this.streamWaiters = [];
    for (const wake of waiters) wake();
  }
}
