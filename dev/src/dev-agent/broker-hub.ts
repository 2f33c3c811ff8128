import type { Metadata, ServerWritableStream, status } from '@grpc/grpc-js';
import { endOk, endWithStatus, writeMessage } from './grpc-endpoint.js';
import { entryKey, matchEntries } from './matcher.js';
import { isProblem, resolvePod, type PodReference } from './pod-reference.js';
import { podSelectors, type Pod } from './pods.js';
import type { RegistrationEntry } from './registrations.js';
import { buildSpiffeSvidMessage, spiffeSvidFingerprint } from './spiffe-responses.js';
import type { AgentState } from './stream-hub.js';

export type BrokerCall = ServerWritableStream<unknown, unknown>;
export type BrokerStreamKind = 'svid' | 'bundle' | 'jwtBundle';

interface BrokerStream {
  readonly kind: BrokerStreamKind;
  readonly call: BrokerCall;
  /** As the client sent it: re-resolved on every push, so a pod that left (or was re-created) ends the stream. */
  readonly reference: PodReference;
  pod: Pod;
  /** What the stream last received (a fingerprint or a bundle version); a push sends only when it would change. */
  sent: string | null;
}

export interface BrokerState extends AgentState {
  readonly pods: readonly Pod[];
  readonly nodeName: string | undefined;
}

export interface BrokerStreamCounts {
  readonly svid: number;
  readonly bundle: number;
  readonly jwtBundle: number;
}

/**
 * The Broker endpoint's open subscriptions, one pod each. A push re-resolves every stream's
 * reference against the current pod list (gone: the stream ends with OK, as the Broker API's
 * workload lifecycle asks), then brings each up to date: SVID streams get the pod's full set when
 * any part of it changes, bundle streams their bundle set when its version moves.
 */
export class BrokerHub {
  private readonly streams = new Set<BrokerStream>();

  get counts(): BrokerStreamCounts {
    const counts = { svid: 0, bundle: 0, jwtBundle: 0 };
    for (const stream of this.streams) counts[stream.kind]++;
    return counts;
  }

  get size(): number {
    return this.streams.size;
  }

  add(kind: BrokerStreamKind, call: BrokerCall, reference: PodReference, pod: Pod): void {
    const stream: BrokerStream = { kind, call, reference, pod, sent: null };
    this.streams.add(stream);
    call.on('cancelled', () => this.streams.delete(stream));
  }

  /** Ends the streams of pods `which` accepts (every stream without a filter) with `code`. */
  end(code: status, details: string, which: (pod: Pod) => boolean = () => true, metadata?: Metadata): void {
    for (const stream of [...this.streams]) {
      if (!which(stream.pod)) continue;
      this.streams.delete(stream);
      endWithStatus(stream.call, code, details, metadata);
    }
  }

  /** Shares the SVID cache with the delegated hub: a pod matching an entry gets the very SVID a delegated stream does. */
  async push(state: BrokerState): Promise<void> {
    const { trust, registrations, svids, pods, nodeName } = state;
    const svidStreams: { stream: BrokerStream; matched: RegistrationEntry[] }[] = [];
    for (const stream of [...this.streams]) {
      const resolved = resolvePod(stream.reference, pods);
      if (isProblem(resolved)) {
        this.streams.delete(stream);
        endOk(stream.call);
        continue;
      }
      stream.pod = resolved;
      if (stream.kind === 'bundle') this.send(stream, `x509:${trust.version}`, () => ({ crl: [], bundles: trust.caCertificates() }));
      else if (stream.kind === 'jwtBundle') this.send(stream, `jwt:${trust.jwtVersion}`, () => ({ bundles: trust.jwtBundles() }));
      else svidStreams.push({ stream, matched: matchEntries(registrations.entries, podSelectors(resolved, nodeName)) });
    }
    if (svidStreams.length === 0) return;
    const issued = await svids.ensure(svidStreams.flatMap(({ matched }) => matched));
    let bundles: Record<string, Buffer> | undefined;
    for (const { stream, matched } of svidStreams) {
      // Ended (client gone, pod gone) while SVIDs were being issued.
      if (!this.streams.has(stream)) continue;
      const identities = matched.map((entry) => ({ entry, svid: issued.get(entryKey(entry))! }));
      const federatesWith = matched.flatMap((entry) => entry.federatesWith);
      this.send(stream, spiffeSvidFingerprint(identities, federatesWith, trust), () =>
        buildSpiffeSvidMessage(identities, federatesWith, trust.trustDomain, (bundles ??= trust.caCertificates())),
      );
    }
  }

  private send(stream: BrokerStream, fingerprint: string, message: () => object): void {
    if (stream.sent === fingerprint) return;
    stream.sent = fingerprint;
    writeMessage(stream.call, message());
  }
}
