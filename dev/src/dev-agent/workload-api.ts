import {
  status,
  type Metadata,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { Logger } from '@spire-csi/sdk';
import type { IssuedSvid } from './ca.js';
import { endWithStatus, writeMessage } from './grpc-endpoint.js';
import type { IssuedJwtSvid } from './jwt-authority.js';
import type { RegistrationEntry } from './registrations.js';
import { buildSpiffeSvidMessage, spiffeSvidFingerprint } from './spiffe-responses.js';
import type { TrustStore } from './trust-store.js';

/** The SSRF guard of the Workload Endpoint spec: every request carries `workload.spiffe.io: true`. */
export const WORKLOAD_HEADER = 'workload.spiffe.io';

type Kind = 'svid' | 'bundle' | 'jwtBundle';

interface WorkloadStream {
  readonly kind: Kind;
  readonly call: ServerWritableStream<unknown, unknown>;
  sent: string | null;
}

export interface WorkloadApiOptions {
  /** The one identity served: the driver's own. */
  readonly entry: RegistrationEntry;
  readonly logger: Logger;
  requestPush(): void;
  issueJwtSvid(audiences: string[]): Promise<IssuedJwtSvid>;
}

interface WireJwtSvidRequest {
  readonly audience?: string[];
  readonly spiffe_id?: string;
}

/**
 * The SPIFFE Workload API for exactly one workload, the driver: no attestation (whoever reaches
 * the socket is the driver), its SVID from the agent's CA, and the agent's bundles. Streams get
 * the full set again on every rotation of that SVID and every bundle change. Methods not handled
 * here (ValidateJWTSVID, the WIT profile) get grpc-js's Unimplemented.
 */
export class WorkloadApi {
  private readonly streams = new Set<WorkloadStream>();

  constructor(private readonly options: WorkloadApiOptions) {}

  get size(): number {
    return this.streams.size;
  }

  push(svid: IssuedSvid, trust: TrustStore): void {
    // The driver has no registration entry to federate from: it gets every federated bundle the agent holds.
    const identities = [{ entry: this.options.entry, svid }];
    const federated = trust.federatedTrustDomains();
    const fingerprint = spiffeSvidFingerprint(identities, federated, trust);
    let message: object | undefined;
    const svidMessage = () => (message ??= buildSpiffeSvidMessage(identities, federated, trust.trustDomain, trust.caCertificates()));
    for (const stream of this.streams) {
      if (stream.kind === 'svid') this.send(stream, fingerprint, svidMessage);
      else if (stream.kind === 'bundle') this.send(stream, `x509:${trust.version}`, () => ({ crl: [], bundles: trust.caCertificates() }));
      else this.send(stream, `jwt:${trust.jwtVersion}`, () => ({ bundles: trust.jwtBundles() }));
    }
  }

  endAll(code: status, details: string): void {
    for (const stream of this.streams) endWithStatus(stream.call, code, details);
    this.streams.clear();
  }

  handlers(): UntypedServiceImplementation {
    const subscribe = (kind: Kind) => (call: ServerWritableStream<unknown, unknown>) => {
      const problem = checkHeader(call.metadata);
      if (problem) return endWithStatus(call, problem.code, problem.details);
      const stream: WorkloadStream = { kind, call, sent: null };
      this.streams.add(stream);
      call.on('cancelled', () => this.streams.delete(stream));
      this.options.requestPush();
    };
    return {
      FetchX509SVID: subscribe('svid'),
      FetchX509Bundles: subscribe('bundle'),
      FetchJWTBundles: subscribe('jwtBundle'),
      FetchJWTSVID: (call: ServerUnaryCall<WireJwtSvidRequest, unknown>, callback: sendUnaryData<unknown>) => {
        const problem = checkHeader(call.metadata);
        if (problem) return callback(problem);
        const audiences = call.request.audience ?? [];
        if (audiences.length === 0) return callback({ code: status.INVALID_ARGUMENT, details: 'audience must be specified' });
        const { entry } = this.options;
        const wanted = call.request.spiffe_id ?? '';
        // As SPIRE: asking for an ID the workload does not hold is "no identity", not a bad request.
        if (wanted !== '' && wanted !== entry.spiffeId) return callback({ code: status.PERMISSION_DENIED, details: 'no identity issued' });
        this.options.issueJwtSvid([...audiences]).then(
          (issued) => callback(null, { svids: [{ spiffe_id: entry.spiffeId, svid: issued.token, hint: entry.hint }] }),
          (error: unknown) => {
            this.options.logger.error({ err: (error as Error).message }, 'dev-agent: issuing the workload JWT-SVID failed');
            callback({ code: status.INTERNAL, details: 'dev-agent: issuing the JWT-SVID failed' });
          },
        );
      },
    };
  }

  private send(stream: WorkloadStream, fingerprint: string, message: () => object): void {
    if (stream.sent === fingerprint) return;
    stream.sent = fingerprint;
    writeMessage(stream.call, message());
  }
}

function checkHeader(metadata: Metadata): { code: status; details: string } | undefined {
  const values = metadata.get(WORKLOAD_HEADER);
  if (values.length === 1 && values[0] === 'true') return undefined;
  return { code: status.INVALID_ARGUMENT, details: 'security header missing from request' };
}
