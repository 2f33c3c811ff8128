import { X509Certificate } from 'node:crypto';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metadata, status, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { decodeJwt } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { authorizeId } from '@spire-csi/sdk/authorize';
import { spiffeChannelCredentials } from '@spire-csi/sdk/grpc';
import { StaticSource } from '@spire-csi/sdk/source';
import { verifyX509Svid, X509Bundle, X509BundleSet, X509Svid } from '@spire-csi/sdk/x509';
import { CertificateAuthority } from '../../dev/src/dev-agent/ca.js';
import { record, registrations, type Recording } from '../helpers/agent-harness.js';
import {
  agentBundles,
  AGENT_ID,
  brokerClientCredentials,
  brokerMetadata,
  DRIVER_ID,
  errorInfoOf,
  podReference,
  rawBrokerClient,
  startBrokerAgent,
  TD,
  type BrokerAgentFixture,
  type RawBrokerClient,
  type WireBrokerX509SvidResponse,
  type WireJwtSvidResponse,
} from '../helpers/broker-harness.js';
import { waitFor } from '../helpers/wait-for.js';

const UID_WEB = '2f0c7a9e-1d7b-4c55-9a43-0f5e1c2a9b01';
const UID_DB = '6a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
const UID_LONELY = '9b8a7c6d-5e4f-4321-8765-0fedcba98765';
const WEB = { namespace: 'default', name: 'web-0', uid: UID_WEB, serviceAccount: 'web' };
const DB = { namespace: 'default', name: 'db-0', uid: UID_DB, serviceAccount: 'db' };
const LONELY = { namespace: 'empty', name: 'lonely', uid: UID_LONELY, serviceAccount: 'default' };
const K8S_REF = 'type.googleapis.com/spiffe.broker.KubernetesObjectReference';

const ENTRIES = registrations({
  entries: [
    { spiffeId: 'spiffe://example.org/ns/default', selectors: ['k8s:ns:default'] },
    { spiffeId: 'spiffe://example.org/web', selectors: ['k8s:ns:default', 'k8s:sa:web'], federatesWith: ['other.org'], hint: 'web' },
    { spiffeId: 'spiffe://example.org/db', selectors: ['k8s:ns:default', 'k8s:sa:db'] },
    { spiffeId: 'spiffe://example.org/pod/web-0', selectors: [`k8s:pod-uid:${UID_WEB}`, 'k8s:pod-name:web-0'] },
  ],
  federatedTrustDomains: ['other.org'],
});

let fixture: BrokerAgentFixture | null = null;
const clients: RawBrokerClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await fixture?.cleanup();
  fixture = null;
});

async function setup(options: Parameters<typeof startBrokerAgent>[0] = {}) {
  fixture = await startBrokerAgent({ registrations: ENTRIES, pods: [WEB, DB, LONELY], ...options });
  const client = await clientAs(DRIVER_ID);
  return { fixture, agent: fixture.agent, client };
}

async function clientAs(spiffeId: string): Promise<RawBrokerClient> {
  const c = rawBrokerClient(fixture!.brokerSocket, await brokerClientCredentials(fixture!.agent, spiffeId));
  clients.push(c);
  return c;
}

function subscribe(c: RawBrokerClient, reference: object | undefined, metadata = brokerMetadata()): Recording<WireBrokerX509SvidResponse> {
  return record(c.SubscribeToX509SVID(reference === undefined ? {} : { reference }, metadata));
}

async function endStatus<T>(recording: Recording<T>): Promise<StatusObject> {
  return waitFor(() => recording.status, { message: 'the stream to end' });
}

async function firstMessage<T>(recording: Recording<T>): Promise<T> {
  await waitFor(() => recording.messages.length > 0 || recording.status !== null, { message: 'a first message' });
  if (recording.messages.length === 0) throw new Error(`stream ended instead: ${recording.status!.code} ${recording.status!.details}`);
  return recording.messages[0]!;
}

function fetchJwt(c: RawBrokerClient, request: object, metadata = brokerMetadata()) {
  return new Promise<{ error: ServiceError | null; response?: WireJwtSvidResponse }>((resolve) =>
    c.FetchJWTSVID(request, metadata, (error, response) => resolve({ error, response })),
  );
}

const ids = (message: WireBrokerX509SvidResponse) => message.svids.map((s) => s.spiffe_id);
const serialOf = (message: WireBrokerX509SvidResponse, i = 0) => new X509Certificate(message.svids[i]!.x509_svid).serialNumber;

describe('dev agent Broker endpoint: checks and errors, as SPIRE answers', () => {
  it('refuses every method without the security header', async () => {
    const { client } = await setup();
    const noHeader = new Metadata();
    const ends = await Promise.all([
      endStatus(subscribe(client, podReference(WEB), noHeader)),
      endStatus(record(client.SubscribeToX509Bundles({ reference: podReference(WEB) }, noHeader))),
      endStatus(record(client.SubscribeToJWTBundles({ reference: podReference(WEB) }, noHeader))),
    ]);
    for (const ended of ends) {
      expect([ended.code, ended.details]).toEqual([status.INVALID_ARGUMENT, 'security header missing from request']);
    }
    const { error } = await fetchJwt(client, { reference: podReference(WEB), audience: ['a'] }, noHeader);
    expect([error?.code, error?.details]).toEqual([status.INVALID_ARGUMENT, 'security header missing from request']);
  });

  /** [case, reference, code, message, ErrorInfo reason, ErrorInfo metadata]. */
  const refCases: [string, () => object | undefined, status, string | RegExp, string | undefined, Record<string, string>?][] = [
    ['no reference', () => undefined, status.INVALID_ARGUMENT, 'workload reference must be provided', 'WORKLOAD_REFERENCE_INVALID'],
    ['an empty Any', () => ({ reference: null }), status.INVALID_ARGUMENT, 'workload reference must be provided', 'WORKLOAD_REFERENCE_INVALID'],
    [
      'another reference type',
      () => ({ reference: { type_url: 'type.googleapis.com/spiffe.broker.WorkloadPIDReference', value: Buffer.from([8, 42]) } }),
      status.PERMISSION_DENIED,
      `broker "${DRIVER_ID}" is not allowed to use reference type "type.googleapis.com/spiffe.broker.WorkloadPIDReference"`,
      undefined,
    ],
    [
      'undecodable bytes',
      () => ({ reference: { type_url: K8S_REF, value: Buffer.from([0x0a, 0xff, 0x01]) } }),
      status.INVALID_ARGUMENT,
      /^unable to unmarshal object reference: /,
      'WORKLOAD_REFERENCE_INVALID',
    ],
    ['no type', () => podReference({ ...WEB, type: null }), status.INVALID_ARGUMENT, 'object reference is missing type', 'WORKLOAD_REFERENCE_INVALID'],
    [
      'a type without group',
      () => podReference({ ...WEB, type: { plural: 'pods', group: '' } }),
      status.INVALID_ARGUMENT,
      'object reference type is missing group',
      'WORKLOAD_REFERENCE_INVALID',
    ],
    [
      'neither key nor uid',
      () => podReference({}),
      status.INVALID_ARGUMENT,
      'object reference is missing key and UID',
      'WORKLOAD_REFERENCE_INVALID',
    ],
    [
      'a key without name',
      () => podReference({ namespace: 'default' }),
      status.INVALID_ARGUMENT,
      'object reference key is missing name',
      'WORKLOAD_REFERENCE_INVALID',
    ],
    [
      'a name without namespace',
      () => podReference({ name: 'web-0' }),
      status.INVALID_ARGUMENT,
      'namespace is required when name is set for a namespaced resource',
      'WORKLOAD_REFERENCE_INVALID',
    ],
    [
      'a deployment',
      () => podReference({ namespace: 'default', name: 'web', type: { plural: 'deployments', group: 'apps' } }),
      status.INVALID_ARGUMENT,
      'dev-agent: only pods can be referenced (type {plural: "pods", group: "core"}), got {plural: "deployments", group: "apps"}',
      'WORKLOAD_REFERENCE_INVALID',
    ],
    [
      'an unknown pod',
      () => podReference({ namespace: 'default', name: 'nope' }),
      status.NOT_FOUND,
      'pod default/nope not found on agent node',
      'WORKLOAD_NOT_FOUND',
      { namespace: 'default', name: 'nope' },
    ],
    [
      'an unknown UID',
      () => podReference({ uid: 'no-such-uid' }),
      status.NOT_FOUND,
      'pod with UID no-such-uid not found on agent node',
      'WORKLOAD_NOT_FOUND',
      { uid: 'no-such-uid' },
    ],
    [
      'a key whose pod has another UID',
      () => podReference({ namespace: 'default', name: 'web-0', uid: UID_DB }),
      status.NOT_FOUND,
      `pod default/web-0 has UID ${UID_WEB}, expected ${UID_DB}`,
      'WORKLOAD_NOT_FOUND',
      { namespace: 'default', name: 'web-0', uid: UID_DB },
    ],
  ];

  it.each(refCases)('answers %s with the code, message and ErrorInfo SPIRE and the Broker API give', async (_name, reference, code, details, reason, metadata) => {
    const { client } = await setup();
    const request = reference();
    const body = request === undefined ? {} : { reference: request };
    const streams = await Promise.all([
      endStatus(record(client.SubscribeToX509SVID(body, brokerMetadata()))),
      endStatus(record(client.SubscribeToX509Bundles(body, brokerMetadata()))),
      endStatus(record(client.SubscribeToJWTBundles(body, brokerMetadata()))),
    ]);
    const { error } = await fetchJwt(client, { ...body, audience: ['a'] });
    const statuses: Pick<StatusObject, 'code' | 'details' | 'metadata'>[] = [...streams, error!];
    for (const ended of statuses) {
      expect(ended.code).toBe(code);
      expect(ended.details).toMatch(typeof details === 'string' ? new RegExp(`^${escape(details)}$`) : details);
      const info = errorInfoOf(ended);
      if (reason === undefined) expect(info).toBeUndefined();
      else expect(info).toEqual({ reason, domain: 'spiffe.io', metadata: metadata ?? {} });
    }
  });

  it('leaves ErrorInfo out when errorInfo is off, keeping the code and message', async () => {
    const { client } = await setup({ errorInfo: false });
    const ended = await endStatus(subscribe(client, podReference({ namespace: 'default', name: 'nope' })));
    expect([ended.code, ended.details]).toEqual([status.NOT_FOUND, 'pod default/nope not found on agent node']);
    expect(errorInfoOf(ended)).toBeUndefined();
    expect(ended.metadata.get('grpc-status-details-bin')).toEqual([]);
  });

  it('answers FetchJWTSVID without audience and for a pod without entry as SPIRE does', async () => {
    const { client } = await setup();
    const { error: noAudience } = await fetchJwt(client, { reference: podReference(WEB) });
    expect([noAudience?.code, noAudience?.details]).toEqual([status.INVALID_ARGUMENT, 'audience must be specified']);
    const { error: noEntry } = await fetchJwt(client, { reference: podReference(LONELY), audience: ['a'] });
    expect([noEntry?.code, noEntry?.details]).toEqual([status.PERMISSION_DENIED, 'no identity issued']);
    expect(errorInfoOf(noEntry)).toMatchObject({ reason: 'WORKLOAD_NOT_ENTITLED', domain: 'spiffe.io' });
    const { error: otherId } = await fetchJwt(client, { reference: podReference(DB), audience: ['a'], spiffe_id: 'spiffe://example.org/web' });
    expect(otherId?.details).toBe('no identity issued');
  });
});

describe('dev agent Broker endpoint: who may call', () => {
  it('answers PermissionDenied per call to a client not in brokers (call mode)', async () => {
    const { client } = await setup();
    const intruder = await clientAs(`spiffe://${TD}/intruder`);
    const ended = await endStatus(subscribe(intruder, podReference(WEB)));
    expect(ended.code).toBe(status.PERMISSION_DENIED);
    expect(ended.details).toBe(`broker "spiffe://${TD}/intruder" is not allowed to use reference type "${K8S_REF}"`);
    // The allowed broker on the same endpoint is served.
    expect(ids(await firstMessage(subscribe(client, podReference(WEB))))).toContain('spiffe://example.org/web');
  });

  it('drops the connection of a client not in brokers right after its handshake (handshake mode, as SPIRE)', async () => {
    const { client } = await setup({ brokerAuthz: 'handshake' });
    expect(ids(await firstMessage(subscribe(client, podReference(WEB))))).toContain('spiffe://example.org/web');
    const intruder = await clientAs(`spiffe://${TD}/intruder`);
    const ended = await endStatus(subscribe(intruder, podReference(WEB)));
    // Not a gRPC answer from the service: the connection never carried a call.
    expect(ended.code).toBe(status.UNAVAILABLE);
    expect(ended.details).not.toMatch(/not allowed to use reference type/);
    const { error } = await fetchJwt(intruder, { reference: podReference(WEB), audience: ['a'] });
    expect(error?.code).toBe(status.UNAVAILABLE);
  });

  it('accepts a broker list naming other IDs, and refuses the default one then', async () => {
    const other = `spiffe://${TD}/ns/tools/sa/broker`;
    await setup({ brokers: [other] });
    const allowed = await clientAs(other);
    expect(ids(await firstMessage(subscribe(allowed, podReference(DB))))).toEqual(['spiffe://example.org/ns/default', 'spiffe://example.org/db']);
    const driver = await clientAs(DRIVER_ID);
    expect((await endStatus(subscribe(driver, podReference(DB)))).code).toBe(status.PERMISSION_DENIED);
  });

  it('refuses to start the Broker endpoint with an empty broker list or a malformed ID', async () => {
    await expect(startBrokerAgent({ brokers: [] })).rejects.toThrow(/brokers must name at least one SPIFFE ID/);
    await expect(startBrokerAgent({ brokers: ['spiffe://example.org/ok', 'http://nope'] })).rejects.toThrow(/dev-agent: brokers\[1\]: /);
    await expect(startBrokerAgent({ brokerServerId: 'spiffe://other.org/agent' })).rejects.toThrow(
      /brokerServerId "spiffe:\/\/other\.org\/agent" is not in the agent's trust domain/,
    );
  });

  it('never lets in a client whose SVID another CA signed, even with an allowed ID', async () => {
    const { agent } = await setup();
    const forger = await CertificateAuthority.create(TD);
    const forged = await forger.issueSvid(DRIVER_ID, 3_600_000);
    const source = new StaticSource({ svid: X509Svid.fromDer(forged.chainDer, forged.keyDer), bundles: agentBundles(agent) });
    const c = rawBrokerClient(fixture!.brokerSocket, spiffeChannelCredentials(source, { authorize: authorizeId(AGENT_ID) }));
    clients.push(c);
    const ended = await endStatus(subscribe(c, podReference(WEB)));
    expect([status.UNAVAILABLE, status.UNAUTHENTICATED]).toContain(ended.code);
  });

  it('presents brokerServerId, issued by its CA', async () => {
    const custom = `spiffe://${TD}/spire/agent/k8s_psat/node-1`;
    const { agent } = await setup({ brokerServerId: custom });
    expect(agent.brokerServerSvid).toBeDefined();
    const c = rawBrokerClient(fixture!.brokerSocket, await brokerClientCredentials(agent, DRIVER_ID, authorizeId(custom)));
    clients.push(c);
    expect(ids(await firstMessage(subscribe(c, podReference(DB))))).toHaveLength(2);
    // A client expecting the default ID refuses this server.
    const strict = rawBrokerClient(fixture!.brokerSocket, await brokerClientCredentials(agent, DRIVER_ID, authorizeId(AGENT_ID)));
    clients.push(strict);
    expect((await endStatus(subscribe(strict, podReference(DB)))).code).toBe(status.UNAVAILABLE);
  });
});

describe('dev agent Broker endpoint: per-pod identities', () => {
  it('resolves a pod by key, by UID and by both to the same full set', async () => {
    const { client, agent } = await setup();
    const messages = await Promise.all(
      [podReference({ namespace: 'default', name: 'web-0' }), podReference({ uid: UID_WEB }), podReference(WEB)].map((ref) =>
        firstMessage(subscribe(client, ref)),
      ),
    );
    for (const message of messages) {
      expect(ids(message)).toEqual(['spiffe://example.org/ns/default', 'spiffe://example.org/web', 'spiffe://example.org/pod/web-0']);
      expect(message.svids.map((s) => s.hint)).toEqual(['', 'web', '']);
      expect(Object.keys(message.federated_bundles)).toEqual(['spiffe://other.org']);
      expect(message.federated_bundles['spiffe://other.org']).toEqual(agent.caCertificates()['spiffe://other.org']);
      expect(message.crl).toEqual([]);
      for (const svid of message.svids) {
        // Each SVID carries its own trust domain's bundle, and verifies against it with its own key.
        expect(svid.bundle).toEqual(agent.caCertificates()[`spiffe://${TD}`]);
        const parsed = X509Svid.fromDer(svid.x509_svid, svid.x509_svid_key);
        expect(verifyX509Svid(parsed.certificates, new X509BundleSet([X509Bundle.fromDer(TD, svid.bundle)])).id.toString()).toBe(svid.spiffe_id);
      }
    }
    // One SVID per entry, shared by every stream of the pod.
    expect(new Set(messages.map((m) => serialOf(m, 1))).size).toBe(1);
    expect(agent.brokerStreamCounts).toEqual({ svid: 3, bundle: 0, jwtBundle: 0 });
  });

  it("keeps each pod's set to its own entries and federated bundles", async () => {
    const { client } = await setup();
    const db = await firstMessage(subscribe(client, podReference(DB)));
    expect(ids(db)).toEqual(['spiffe://example.org/ns/default', 'spiffe://example.org/db']);
    expect(db.federated_bundles).toEqual({});
  });

  it('sends zero SVIDs to a pod no entry matches, then its SVID once an entry appears', async () => {
    const { client, agent } = await setup();
    const stream = subscribe(client, podReference(LONELY));
    const first = await firstMessage(stream);
    expect(first.svids).toEqual([]);
    expect(first.federated_bundles).toEqual({});
    await agent.setRegistrations([
      ...ENTRIES.entries,
      ...registrations({ entries: [{ spiffeId: 'spiffe://example.org/lonely', selectors: ['k8s:ns:empty', 'k8s:sa:default'] }] }).entries,
    ]);
    await waitFor(() => stream.messages.length > 1, { message: 'the message after the entry was added' });
    expect(ids(stream.messages[1]!)).toEqual(['spiffe://example.org/lonely']);
  });

  it('matches the node-name selector when the agent knows its node', async () => {
    const { client } = await setup({
      nodeName: 'node-1',
      registrations: registrations({ entries: [{ spiffeId: 'spiffe://example.org/on-node-1', selectors: ['k8s:node-name:node-1', 'k8s:sa:db'] }] }),
    });
    expect(ids(await firstMessage(subscribe(client, podReference(DB))))).toEqual(['spiffe://example.org/on-node-1']);
  });

  it('pushes each rotation, CA rotation and federation change to the pod streams', async () => {
    const { client, agent } = await setup();
    const stream = subscribe(client, podReference(WEB));
    const db = subscribe(client, podReference(DB));
    const first = await firstMessage(stream);
    await firstMessage(db);

    await agent.rotateNow();
    await waitFor(() => stream.messages.length > 1, { message: 'message after rotateNow' });
    expect(serialOf(stream.messages[1]!)).not.toBe(serialOf(first));

    await agent.rotateCa();
    await waitFor(() => stream.messages.length > 2, { message: 'message after rotateCa' });
    expect(X509Bundle.fromDer(TD, stream.messages[2]!.svids[0]!.bundle).authorities).toHaveLength(2);

    await agent.removeFederatedTrustDomain('other.org');
    await waitFor(() => stream.messages.length > 3, { message: 'message after the federation was removed' });
    expect(stream.messages[3]!.federated_bundles).toEqual({});
    await agent.addFederatedTrustDomain('other.org');
    await waitFor(() => stream.messages.length > 4, { message: 'message after the federation came back' });
    expect(Object.keys(stream.messages[4]!.federated_bundles)).toEqual(['spiffe://other.org']);
    // The other pod never federates, whatever happens to other.org.
    expect(db.messages.every((m) => Object.keys(m.federated_bundles).length === 0)).toBe(true);
  });

  it("does not rotate the pods' SVIDs on rotateWorkloadSvid or rotateBrokerServerSvid", async () => {
    const { client, agent } = await setup();
    const stream = subscribe(client, podReference(WEB));
    await firstMessage(stream);
    const server = agent.brokerServerSvid!.serial;
    await agent.rotateWorkloadSvid();
    await agent.rotateBrokerServerSvid();
    expect(agent.brokerServerSvid!.serial).not.toBe(server);
    // The open connection keeps working; a new one handshakes with the new server SVID.
    await agent.rotateNow();
    await waitFor(() => stream.messages.length > 1, { message: 'message after rotateNow' });
    expect(stream.messages).toHaveLength(2);
    const fresh = await clientAs(DRIVER_ID);
    expect(ids(await firstMessage(subscribe(fresh, podReference(WEB))))).toHaveLength(3);
  });

  it('streams X.509 and JWT bundles per pod and signs JWT-SVIDs for its entries', async () => {
    const { client, agent } = await setup();
    const x509 = record(client.SubscribeToX509Bundles({ reference: podReference(DB) }, brokerMetadata()));
    const jwt = record(client.SubscribeToJWTBundles({ reference: podReference(DB) }, brokerMetadata()));
    expect((await firstMessage(x509)).bundles).toEqual(agent.caCertificates());
    expect((await firstMessage(jwt)).bundles).toEqual(agent.jwtBundles());
    await agent.rotateJwtAuthority();
    await waitFor(() => jwt.messages.length > 1, { message: 'JWT bundles after a key rotation' });
    expect(x509.messages).toHaveLength(1);

    const { error, response } = await fetchJwt(client, { reference: podReference(DB), audience: ['api'] });
    expect(error).toBeNull();
    expect(response!.svids.map((s) => s.spiffe_id)).toEqual(['spiffe://example.org/ns/default', 'spiffe://example.org/db']);
    for (const svid of response!.svids) expect(decodeJwt(svid.svid)).toMatchObject({ sub: svid.spiffe_id, aud: ['api'] });
    const one = await fetchJwt(client, { reference: podReference(DB), audience: ['api'], spiffe_id: 'spiffe://example.org/db' });
    expect(one.response!.svids.map((s) => s.spiffe_id)).toEqual(['spiffe://example.org/db']);
    expect(agent.brokerStreamCounts).toEqual({ svid: 0, bundle: 1, jwtBundle: 1 });
  });
});

describe('dev agent Broker endpoint: pods come and go', () => {
  it('ends the streams of a pod that leaves the pods file (OK), keeps the others, and keeps the last good list on a bad file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'spire-csi-pods-'));
    try {
      const podsFile = join(dir, 'pods.json');
      await writeFile(podsFile, JSON.stringify([WEB, DB]));
      const errors: string[] = [];
      const logger = { debug() {}, info() {}, warn() {}, error: (_obj: object, msg?: string) => void errors.push(msg ?? '') };
      fixture = await startBrokerAgent({ registrations: ENTRIES, podsFile, logger });
      const client = await clientAs(DRIVER_ID);
      const web = subscribe(client, podReference(WEB));
      const webBundles = record(client.SubscribeToJWTBundles({ reference: podReference({ uid: UID_WEB }) }, brokerMetadata()));
      const db = subscribe(client, podReference(DB));
      await Promise.all([firstMessage(web), firstMessage(webBundles), firstMessage(db)]);

      // A broken file keeps the previous list, and says so.
      await replace(podsFile, '[{"namespace": "default"');
      await waitFor(() => errors.some((e) => e.includes('pods reload failed, keeping the previous list: pods: not valid JSON')), {
        message: 'the failed reload to be logged',
      });
      expect(fixture.agent.pods).toEqual([WEB, DB]);
      expect(web.status).toBeNull();

      await replace(podsFile, JSON.stringify([DB]));
      const ended = await endStatus(web);
      expect([ended.code, ended.details]).toEqual([status.OK, 'OK']);
      expect((await endStatus(webBundles)).code).toBe(status.OK);
      expect(fixture.agent.pods).toEqual([DB]);
      expect(db.status).toBeNull();
      expect(fixture.agent.brokerStreamCount).toBe(1);
      const gone = await endStatus(subscribe(client, podReference(WEB)));
      expect(gone.code).toBe(status.NOT_FOUND);

      // Back in the list: a new subscription is served again.
      await replace(podsFile, JSON.stringify([DB, WEB]));
      await waitFor(() => fixture!.agent.pods.length === 2, { message: 'the pod to come back' });
      expect(ids(await firstMessage(subscribe(client, podReference(WEB))))).toHaveLength(3);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('ends a stream pinned by key and UID when the pod is re-created under the same name', async () => {
    const { client, agent } = await setup();
    const pinned = subscribe(client, podReference(WEB));
    const byName = subscribe(client, podReference({ namespace: 'default', name: 'web-0' }));
    await Promise.all([firstMessage(pinned), firstMessage(byName)]);
    const recreated = { ...WEB, uid: '11111111-2222-4333-8444-555555555555' };
    await agent.setPods([recreated, DB, LONELY]);
    expect((await endStatus(pinned)).code).toBe(status.OK);
    // The stream that named only the key follows the new pod: its pod-uid entry no longer matches.
    await waitFor(() => byName.messages.length > 1, { message: 'message for the re-created pod' });
    expect(ids(byName.messages[1]!)).toEqual(['spiffe://example.org/ns/default', 'spiffe://example.org/web']);
  });

  it('refuses a malformed pods file at start, and malformed pods from setPods, with an error naming the problem', async () => {
    const { agent } = await setup();
    const podsFile = join(fixture!.dir, 'bad-pods.json');
    await writeFile(podsFile, JSON.stringify([{ namespace: 'default', name: 'x', uid: 'u', serviceAcount: 'typo' }]));
    await expect(startBrokerAgent({ podsFile })).rejects.toThrow('pods: [0]: unknown field "serviceAcount"; valid fields are namespace, name, uid, serviceAccount');
    await writeFile(podsFile, JSON.stringify([WEB, { ...DB, uid: UID_WEB }]));
    await expect(startBrokerAgent({ podsFile })).rejects.toThrow(`pods: [1].uid "${UID_WEB}" is listed twice; UIDs are unique`);
    await expect(startBrokerAgent({ podsFile: join(fixture!.dir, 'missing.json') })).rejects.toThrow(/^pods: cannot read .*missing\.json/);
    await expect(agent.setPods([{ ...WEB, name: '' }])).rejects.toThrow('pods: [0].name must be a non-empty string');
  });
});

describe('dev agent Broker endpoint: test hooks', () => {
  it('fails calls for one pod, or all, with an injected status until cleared', async () => {
    const { client, agent } = await setup();
    agent.injectBrokerError({ uid: UID_WEB }, { code: status.UNAVAILABLE, details: 'dev-agent: loading' });
    const web = await endStatus(subscribe(client, podReference({ namespace: 'default', name: 'web-0' })));
    expect([web.code, web.details]).toEqual([status.UNAVAILABLE, 'dev-agent: loading']);
    await firstMessage(subscribe(client, podReference(DB)));

    agent.injectBrokerError('all', { code: status.UNAUTHENTICATED, details: 'workload attestation failed: kubelet timeout' });
    const db = await endStatus(subscribe(client, podReference(DB)));
    expect([db.code, db.details]).toEqual([status.UNAUTHENTICATED, 'workload attestation failed: kubelet timeout']);
    const { error } = await fetchJwt(client, { reference: podReference(DB), audience: ['a'] });
    expect(error?.code).toBe(status.UNAUTHENTICATED);
    agent.injectBrokerError('all', undefined);

    // A NotFound for a pod the agent "does not see yet", with the reason clients read.
    agent.injectBrokerError({ uid: UID_DB }, { code: status.NOT_FOUND, details: 'pod default/db-0 not found on agent node', reason: 'WORKLOAD_NOT_FOUND' });
    const notYet = await endStatus(subscribe(client, podReference(DB)));
    expect(errorInfoOf(notYet)).toMatchObject({ reason: 'WORKLOAD_NOT_FOUND', domain: 'spiffe.io' });
    agent.injectBrokerError({ uid: UID_DB }, undefined);
    agent.injectBrokerError({ uid: UID_WEB }, undefined);
    await Promise.all([firstMessage(subscribe(client, podReference(DB))), firstMessage(subscribe(client, podReference(WEB)))]);
  });

  it("ends open streams of one pod with a status on request, and all with Unavailable when the agent stops answering", async () => {
    const { client, agent } = await setup();
    const web = subscribe(client, podReference(WEB));
    const db = subscribe(client, podReference(DB));
    await Promise.all([firstMessage(web), firstMessage(db)]);
    agent.endBrokerStreams({ uid: UID_WEB }, { code: status.UNAVAILABLE, details: 'dev-agent: restarting' });
    expect((await endStatus(web)).details).toBe('dev-agent: restarting');
    expect(db.status).toBeNull();
    await agent.setAnswering(false);
    expect((await endStatus(db)).code).toBe(status.UNAVAILABLE);
    expect(agent.brokerStreamCount).toBe(0);
    await agent.setAnswering(true);
    const again = await clientAs(DRIVER_ID);
    expect(ids(await firstMessage(subscribe(again, podReference(DB))))).toHaveLength(2);
  });
});

/** Replaces a file by rename, as editors and ConfigMap updates do, so the agent never reads it half-written. */
async function replace(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, file);
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
