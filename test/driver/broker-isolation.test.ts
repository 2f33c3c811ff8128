import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { X509Material } from '@spire-csi/sdk/source';
import { X509Bundle, X509BundleSet, X509Svid } from '@spire-csi/sdk/x509';
import { BrokerBackend, type BrokerApi } from '../../driver/src/identity/broker/broker-backend.js';
import { status } from '@grpc/grpc-js';
import { AgentError, type AgentJwtSvid, type JwtBundleUpdate, type Subscription, type X509SvidHandlers, type X509SvidUpdate } from '../../driver/src/identity/identity-backend.js';
import { ManagerError } from '../../driver/src/manager/errors.js';
import type { PodReference } from '../../driver/src/identity/pod-reference.js';
import type { VolumeManager } from '../../driver/src/manager/volume-manager.js';
import { TestCa } from '../helpers/test-ca.js';
import { waitFor } from '../helpers/wait-for.js';
import { isRoot, VolumeHarness } from './volume-harness.js';

/** The Broker API client as the backend sees it: each pod's stream answered by the test. */
class StubBrokerApi extends EventEmitter implements BrokerApi {
  connected = true;
  readonly lastConnectionFailure = undefined;
  readonly streams = new Map<string, X509SvidHandlers>();
  readonly jwtBundleWatches: PodReference[] = [];
  start(): void {}
  subscribeX509Svids(pod: PodReference, handlers: X509SvidHandlers): Subscription {
    this.streams.set(pod.uid, handlers);
    return { close: () => this.streams.delete(pod.uid) };
  }
  watchJwtBundles(pod: PodReference, _listener: (bundles: JwtBundleUpdate) => void): () => void {
    this.jwtBundleWatches.push(pod);
    return () => {};
  }
  /** Answers FetchJWTSVID; unset: no JWT-SVID. */
  jwtAnswer: (() => Promise<AgentJwtSvid[]>) | undefined;
  async fetchJwtSvids(): Promise<AgentJwtSvid[]> {
    return (await this.jwtAnswer?.()) ?? [];
  }
  async close(): Promise<void> {}
  send(uid: string, update: X509SvidUpdate): void {
    this.streams.get(uid)!.onUpdate(update);
  }
}

async function ownIdentity(ca: TestCa): Promise<{ current(): X509Material; on(): void; off(): void; close(): void }> {
  const minted = await ca.mint('spiffe://example.org/ns/spire-csi/sa/spire-csi-driver');
  const material = { svid: X509Svid.fromDer(minted.chainDer, minted.keyDer), bundles: new X509BundleSet([X509Bundle.fromDer('example.org', ca.rootDer)]) };
  return { current: () => material, on: () => {}, off: () => {}, close: () => {} };
}

const bundleFile = (target: string, td: string): string => join(target, `${td}.spiffe-trust-bundle.x509.pem`);
const pemOf = (der: Buffer): string => `-----BEGIN CERTIFICATE-----\n${der.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`;

describe.skipIf(!isRoot)('broker mode: bundles belong to the pod whose stream sent them', () => {
  let h: VolumeHarness;
  let api: StubBrokerApi;
  let manager: VolumeManager;
  let caA: TestCa;
  let caB: TestCa;
  let partner: TestCa;

  beforeEach(async () => {
    h = await VolumeHarness.create();
    api = new StubBrokerApi();
    caA = await TestCa.create('example.org');
    caB = await TestCa.create('example.org');
    partner = await TestCa.create('partner.org');
    const backend = new BrokerBackend({
      api,
      ownIdentity: await ownIdentity(caA),
      brokerEndpoint: 'unix:///run/broker.sock',
      workloadApi: 'unix:///run/api.sock',
    });
    manager = h.manager({ identity: backend });
  });

  afterEach(async () => {
    await manager.shutdown();
    await h.cleanup();
  });

  async function update(ca: TestCa, federated: Map<string, Buffer>): Promise<X509SvidUpdate> {
    const minted = await ca.mint('spiffe://example.org/web');
    const svid = { spiffeId: 'spiffe://example.org/web', chainDer: minted.chainDer, keyDer: minted.keyDer, hint: '' };
    return { svids: [svid], federatesWith: [...federated.keys()], bundles: new Map([...federated, ['example.org', ca.rootDer]]) };
  }

  it("writes each pod's own bundles only, even for the same trust domain, and a later update of one pod leaves the other alone", async () => {
    const specA = await h.spec();
    const specB = await h.spec();
    const publishA = manager.publish(specA);
    const publishB = manager.publish(specB);
    await waitFor(() => api.streams.size === 2, { message: 'both pods subscribed' });
    api.send(specA.pod.uid, await update(caA, new Map([['partner.org', partner.rootDer]])));
    api.send(specB.pod.uid, await update(caB, new Map()));
    await Promise.all([publishA, publishB]);

    expect(await readFile(bundleFile(specA.targetPath, 'example.org'), 'utf8')).toBe(pemOf(caA.rootDer));
    expect(await readFile(bundleFile(specB.targetPath, 'example.org'), 'utf8')).toBe(pemOf(caB.rootDer));
    expect(await readFile(bundleFile(specA.targetPath, 'partner.org'), 'utf8')).toBe(pemOf(partner.rootDer));
    expect(existsSync(bundleFile(specB.targetPath, 'partner.org'))).toBe(false);
    // The shared bundle stream of the harness (its own CA) never reaches a broker-mode volume.
    for (const target of [specA.targetPath, specB.targetPath]) {
      expect(await readFile(join(target, 'bundle.pem'), 'utf8')).not.toContain(pemOf(h.ca.rootDer).split('\n')[1]!);
    }

    const before = await readFile(join(specB.targetPath, 'svid.pem'), 'utf8');
    const other = await TestCa.create('other.org');
    api.send(specA.pod.uid, await update(caA, new Map([['other.org', other.rootDer]])));
    await waitFor(() => existsSync(bundleFile(specA.targetPath, 'other.org')), { message: "pod A's new federated bundle" });
    expect(existsSync(bundleFile(specA.targetPath, 'partner.org'))).toBe(false);
    expect(existsSync(bundleFile(specB.targetPath, 'other.org'))).toBe(false);
    expect(await readFile(join(specB.targetPath, 'svid.pem'), 'utf8')).toBe(before);
    expect(await readFile(bundleFile(specB.targetPath, 'example.org'), 'utf8')).toBe(pemOf(caB.rootDer));
  });

  it('asks for JWT bundles with the volume\'s own pod', async () => {
    const spec = await h.spec({ jwtAudiences: ['db'] });
    const publish = manager.publish(spec).catch(() => undefined);
    await waitFor(() => api.jwtBundleWatches.length === 1, { message: 'a JWT bundle watch' });
    expect(api.jwtBundleWatches[0]).toEqual(spec.pod);
    await manager.shutdown();
    await publish;
  });

  it('fails a publish at once when FetchJWTSVID is refused for good, and maps "not entitled" to no JWT-SVID', async () => {
    const spec = await h.spec({ jwtAudiences: ['db'] });
    api.jwtAnswer = () => Promise.reject(new AgentError(status.INVALID_ARGUMENT, 'refused', 'broker: FetchJWTSVID for pod reference x: rejected as invalid'));
    // No X.509 answer yet, no timeout passed: the refusal alone ends the publish.
    const error = await manager.publish(spec).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(ManagerError);
    expect(error).toMatchObject({ kind: 'agent-refused' });
    expect((error as Error).message).toBe(`volume ${spec.volumeId} of pod ${spec.pod.namespace}/${spec.pod.name}: broker: FetchJWTSVID for pod reference x: rejected as invalid`);
    expect(existsSync(spec.targetPath)).toBe(false);

    const backend = new BrokerBackend({ api, ownIdentity: await ownIdentity(caA), brokerEndpoint: 'unix:///b', workloadApi: 'unix:///w' });
    api.jwtAnswer = () => Promise.reject(new AgentError(status.PERMISSION_DENIED, 'not-entitled', 'no identity issued'));
    await expect(backend.fetchJwtSvids(spec.pod, ['db'])).resolves.toEqual([]);
    api.jwtAnswer = () => Promise.reject(new AgentError(status.UNAVAILABLE, 'unavailable', 'down'));
    await expect(backend.fetchJwtSvids(spec.pod, ['db'])).rejects.toMatchObject({ kind: 'unavailable' });
  });
});
