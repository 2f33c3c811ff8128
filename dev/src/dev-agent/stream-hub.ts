import { performance } from 'node:perf_hooks';
import type { ServerWritableStream, status } from '@grpc/grpc-js';
import type {
  Selector,
  WireSubscribeToJwtBundlesResponse,
  WireSubscribeToX509BundlesResponse,
  WireSubscribeToX509SvidsRequest,
} from '@spire-csi/driver/internal';
import { endWithStatus, writeMessage } from './grpc-endpoint.js';
import { entryKey, matchEntries } from './matcher.js';
import type { RegistrationEntry, Registrations } from './registrations.js';
import { buildSvidResponse, type SvidResponse } from './responses.js';
import type { SvidCache } from './svid-cache.js';
import type { IssuedSvid } from './ca.js';
import type { TrustStore } from './trust-store.js';

export type SvidCall = ServerWritableStream<WireSubscribeToX509SvidsRequest, unknown>;
export type BundleCall = ServerWritableStream<unknown, WireSubscribeToX509BundlesResponse>;
export type JwtBundleCall = ServerWritableStream<unknown, WireSubscribeToJwtBundlesResponse>;

interface SvidStream {
  readonly call: SvidCall;
  readonly selectors: Selector[];
  /** What the stream last received; a push sends only when this would change. */
  fingerprint: string | null;
  /** Matching entries, valid while `matchedFor` is the current registrations object. */
  matched: RegistrationEntry[];
  matchedFor: Registrations | null;
  /** The SVIDs (and trust version) the last message was built from: unchanged inputs skip the build. */
  sentSvids: readonly IssuedSvid[];
  sentTrustVersion: number;
  sentFor: Registrations | null;
}

interface BundleStream {
  readonly call: BundleCall;
  version: number;
}

interface JwtBundleStream {
  readonly call: JwtBundleCall;
  version: number;
}

export interface AgentState {
  readonly trust: TrustStore;
  readonly registrations: Registrations;
  readonly svids: SvidCache;
}

/**
 * The open subscriptions and how each is brought up to date: X.509 and JWT bundle streams get
 * their bundle set when its version moves; SVID streams get their full set when any part of it changes. SVIDs are
 * issued once per matched entry for all streams together.
 */
export class StreamHub {
  private readonly svidStreams = new Set<SvidStream>();
  /** Streams added since the last push: when nothing else changed, only they need a message. */
  private readonly freshSvidStreams = new Set<SvidStream>();
  /** What the last full push saw; a push that finds the same needs to visit only fresh streams. */
  private lastFull: { registrations: Registrations; trustVersion: number; svidGeneration: number; svidIssued: number } | undefined;
  private readonly bundleStreams = new Set<BundleStream>();
  private readonly jwtBundleStreams = new Set<JwtBundleStream>();

  get counts(): { svid: number; bundle: number } {
    return { svid: this.svidStreams.size, bundle: this.bundleStreams.size };
  }

  get jwtBundleCount(): number {
    return this.jwtBundleStreams.size;
  }

  addSvidStream(call: SvidCall, selectors: Selector[]): void {
    const stream: SvidStream = { call, selectors, fingerprint: null, matched: [], matchedFor: null, sentSvids: [], sentTrustVersion: -1, sentFor: null };
    this.svidStreams.add(stream);
    this.freshSvidStreams.add(stream);
    call.on('cancelled', () => {
      this.svidStreams.delete(stream);
      this.freshSvidStreams.delete(stream);
    });
  }

  addBundleStream(call: BundleCall): void {
    const stream: BundleStream = { call, version: -1 };
    this.bundleStreams.add(stream);
    call.on('cancelled', () => this.bundleStreams.delete(stream));
  }

  addJwtBundleStream(call: JwtBundleCall): void {
    const stream: JwtBundleStream = { call, version: -1 };
    this.jwtBundleStreams.add(stream);
    call.on('cancelled', () => this.jwtBundleStreams.delete(stream));
  }

  endAll(code: status, details: string): void {
    for (const stream of [...this.svidStreams, ...this.bundleStreams, ...this.jwtBundleStreams]) {
      endWithStatus(stream.call, code, details);
    }
    this.svidStreams.clear();
    this.bundleStreams.clear();
    this.jwtBundleStreams.clear();
  }

  /**
   * When the last push that sent X509-SVID messages began and finished writing them
   * (performance.now() of this process), so benches can time a rotation from the agent's push.
   */
  lastSvidPush: { readonly startedAt: number; readonly endedAt: number; readonly messages: number } | undefined;

  async push({ trust, registrations, svids }: AgentState): Promise<void> {
    const version = trust.version;
    for (const stream of this.bundleStreams) {
      if (stream.version === version) continue;
      stream.version = version;
      writeMessage(stream.call, { ca_certificates: trust.caCertificates() });
    }
    const jwtVersion = trust.jwtVersion;
    for (const stream of this.jwtBundleStreams) {
      if (stream.version === jwtVersion) continue;
      stream.version = jwtVersion;
      writeMessage(stream.call, { bundles: trust.jwtBundles() });
    }

    // A thousand pods subscribing one by one must not cost a thousand full passes: when the
    // registrations, the trust bundles and the SVIDs are what the last full push saw (and no SVID
    // is due for rotation), only the streams added since need anything.
    const last = this.lastFull;
    const onlyFresh =
      last !== undefined &&
      !svids.rotationDue() &&
      last.registrations === registrations &&
      last.trustVersion === version &&
      last.svidGeneration === svids.generation &&
      // The Broker endpoint shares the cache: an SVID it rotated must reach these streams too.
      last.svidIssued === svids.issuedCount;
    const targets = onlyFresh ? [...this.freshSvidStreams] : [...this.svidStreams];
    this.freshSvidStreams.clear();

    const used = new Map<string, RegistrationEntry>();
    // Per push, each entry's key is computed once and each distinct matched set gets one response:
    // a thousand streams of one entry (one namespace) cost one build, not a thousand.
    const keys = new Map<RegistrationEntry, string>();
    const keyOf = (entry: RegistrationEntry): string => {
      let key = keys.get(entry);
      if (key === undefined) {
        key = entryKey(entry);
        keys.set(entry, key);
      }
      return key;
    };
    for (const stream of targets) {
      if (stream.matchedFor !== registrations) {
        stream.matched = matchEntries(registrations.entries, stream.selectors);
        stream.matchedFor = registrations;
      }
      for (const entry of stream.matched) used.set(keyOf(entry), entry);
    }
    // Like a SPIRE agent, which holds an SVID for every entry of its node whether or not a workload
    // is connected: a new subscriber (or a driver back from a restart) is answered at once.
    if (!onlyFresh) {
      for (const entry of registrations.entries) used.set(keyOf(entry), entry);
      svids.retainOnly(new Set(used.keys()));
    }
    const issued = await svids.ensure([...used.values()]);
    const indexOf = new Map(registrations.entries.map((entry, i) => [entry, i] as const));
    const responses = new Map<string, SvidResponse>();
    // Issuance is over: from here the agent only writes, which is where a real agent's push starts.
    const startedAt = performance.now();
    let sent = 0;
    for (const stream of targets) {
      // A stream that arrived during issuance may match entries not issued yet; the next push covers it.
      if (stream.matchedFor !== registrations || stream.matched.some((e) => !issued.has(keyOf(e)))) continue;
      // Nothing it is built from changed since the last message (a push for another stream): no
      // rebuild, so a thousand streams arriving one by one cost a thousand builds, not a million.
      const svidsNow = stream.matched.map((e) => issued.get(keyOf(e))!);
      if (
        stream.fingerprint !== null &&
        stream.sentFor === registrations &&
        stream.sentTrustVersion === version &&
        svidsNow.length === stream.sentSvids.length &&
        svidsNow.every((svid, i) => svid === stream.sentSvids[i])
      ) {
        continue;
      }
      // Entry identity (its position in this registration set), so even duplicate entries stay apart.
      const signature = stream.matched.map((e) => indexOf.get(e)).join(',');
      let response = responses.get(signature);
      if (response === undefined) {
        response = buildSvidResponse(stream.matched, issued, (td) => trust.hasFederated(td));
        responses.set(signature, response);
      }
      stream.sentSvids = svidsNow;
      stream.sentTrustVersion = version;
      stream.sentFor = registrations;
      if (response.fingerprint === stream.fingerprint) continue;
      stream.fingerprint = response.fingerprint;
      writeMessage(stream.call, response.message);
      sent++;
    }
    if (sent > 0) this.lastSvidPush = { startedAt, endedAt: performance.now(), messages: sent };
    if (!onlyFresh) this.lastFull = { registrations, trustVersion: version, svidGeneration: svids.generation, svidIssued: svids.issuedCount };
  }
}
