import { X509Certificate } from 'node:crypto';
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { verifyX509Svid, X509Bundle, X509BundleSet, X509Svid } from '@spire-csi/sdk/x509';
import { record, registrations } from '../helpers/agent-harness.js';
import {
  DRIVER_ID,
  rawWorkloadClient,
  startBrokerAgent,
  TD,
  workloadMetadata,
  type BrokerAgentFixture,
  type RawWorkloadClient,
  type WireBrokerX509SvidResponse,
  type WireJwtSvidResponse,
} from '../helpers/broker-harness.js';
import { waitFor } from '../helpers/wait-for.js';

let fixture: BrokerAgentFixture | null = null;
let client: RawWorkloadClient | null = null;

afterEach(async () => {
  client?.close();
  client = null;
  await fixture?.cleanup();
  fixture = null;
});

async function setup(options: Parameters<typeof startBrokerAgent>[0] = {}) {
  fixture = await startBrokerAgent(options);
  client = rawWorkloadClient(fixture.workloadSocket);
  return { fixture, client, agent: fixture.agent };
}

/** Parses the message's one SVID and verifies it against the message's own bundle. */
function svidOf(message: WireBrokerX509SvidResponse) {
  expect(message.svids).toHaveLength(1);
  const wire = message.svids[0]!;
  const svid = X509Svid.fromDer(wire.x509_svid, wire.x509_svid_key);
  const bundles = new X509BundleSet([X509Bundle.fromDer(TD, wire.bundle)]);
  return { wire, svid, verified: verifyX509Svid(svid.certificates, bundles), serial: new X509Certificate(wire.x509_svid).serialNumber };
}

function fetchJwt(c: RawWorkloadClient, request: object, metadata = workloadMetadata()) {
  return new Promise<{ error: ServiceError | null; response?: WireJwtSvidResponse }>((resolve) =>
    c.FetchJWTSVID(request, metadata, (error, response) => resolve({ error, response })),
  );
}

describe('dev agent Workload API', () => {
  it('refuses every call without the security header', async () => {
    const { client } = await setup();
    for (const call of [
      record(client.FetchX509SVID({}, new Metadata())),
      record(client.FetchX509Bundles({}, new Metadata())),
      record(client.FetchJWTBundles({}, new Metadata())),
    ]) {
      const ended = await waitFor(() => call.status, { message: 'status of a call without the header' });
      expect(ended.code).toBe(status.INVALID_ARGUMENT);
      expect(ended.details).toBe('security header missing from request');
    }
    const wrongValue = new Metadata();
    wrongValue.set('workload.spiffe.io', 'TRUE');
    const { error } = await fetchJwt(client, { audience: ['a'] }, wrongValue);
    expect(error?.code).toBe(status.INVALID_ARGUMENT);
    expect(error?.details).toBe('security header missing from request');
  });

  it("serves the driver's own SVID with its key, own bundle and the federated bundles", async () => {
    const { client, agent } = await setup({ registrations: registrations({ entries: [], federatedTrustDomains: ['other.org'] }) });
    const stream = record(client.FetchX509SVID({}, workloadMetadata()));
    await waitFor(() => stream.messages.length > 0, { message: 'first X509-SVID message' });
    const { wire, svid, verified } = svidOf(stream.messages[0]!);
    expect(wire.spiffe_id).toBe(DRIVER_ID);
    expect(verified.id.toString()).toBe(DRIVER_ID);
    expect(svid.id.toString()).toBe(DRIVER_ID);
    // The key in the message is the leaf's: a TLS context built from both accepts them together.
    expect(svid.privateKey.asymmetricKeyType).toBe('ec');
    expect(wire.bundle).toEqual(agent.caCertificates()[`spiffe://${TD}`]);
    expect(Object.keys(stream.messages[0]!.federated_bundles)).toEqual(['spiffe://other.org']);
    expect(stream.messages[0]!.federated_bundles['spiffe://other.org']).toEqual(agent.caCertificates()['spiffe://other.org']);
    expect(agent.workloadSvid?.serial).toBe(new X509Certificate(wire.x509_svid).serialNumber.toLowerCase());
  });

  it('pushes a new message on rotateWorkloadSvid, not on a rotation of the pods’ SVIDs', async () => {
    const { client, agent } = await setup();
    const stream = record(client.FetchX509SVID({}, workloadMetadata()));
    await waitFor(() => stream.messages.length > 0, { message: 'first message' });
    const before = agent.workloadSvid!.serial;
    await agent.rotateNow();
    expect(agent.workloadSvid!.serial).toBe(before);
    await agent.rotateWorkloadSvid();
    await waitFor(() => stream.messages.length > 1, { message: 'message after rotateWorkloadSvid' });
    const rotated = svidOf(stream.messages[1]!);
    expect(rotated.serial).not.toBe(svidOf(stream.messages[0]!).serial);
    expect(rotated.verified.id.toString()).toBe(DRIVER_ID);
    expect(stream.messages).toHaveLength(2);
  });

  it('reissues at half-life of the agent clock', async () => {
    const clock = { ms: Date.now(), now() { return this.ms; } };
    const { client, agent } = await setup({ clock, svidTtlMs: 3_600_000 });
    const stream = record(client.FetchX509SVID({}, workloadMetadata()));
    await waitFor(() => stream.messages.length > 0, { message: 'first message' });
    const first = agent.workloadSvid!;
    clock.ms += 29 * 60_000;
    await agent.dropOldCa(); // any change runs a push; not due yet
    expect(agent.workloadSvid).toBe(first);
    clock.ms += 2 * 60_000;
    await agent.dropOldCa();
    await waitFor(() => stream.messages.length > 1, { message: 'message at half-life' });
    expect(agent.workloadSvid!.serial).not.toBe(first.serial);
    expect(agent.workloadSvid!.issuedAt.getTime()).toBe(clock.ms);
  });

  it('pushes the SVID from the new CA and the overlap bundle on rotateCa', async () => {
    const { client, agent } = await setup();
    const svids = record(client.FetchX509SVID({}, workloadMetadata()));
    const bundles = record(client.FetchX509Bundles({}, workloadMetadata()));
    await waitFor(() => svids.messages.length > 0 && bundles.messages.length > 0, { message: 'first messages' });
    expect(Object.keys(bundles.messages[0]!.bundles)).toEqual([`spiffe://${TD}`]);
    const oldRoot = bundles.messages[0]!.bundles[`spiffe://${TD}`]!;

    await agent.rotateCa();
    await waitFor(() => svids.messages.length > 1 && bundles.messages.length > 1, { message: 'messages after rotateCa' });
    const rotated = svidOf(svids.messages[1]!);
    const overlap = X509Bundle.fromDer(TD, bundles.messages[1]!.bundles[`spiffe://${TD}`]!);
    expect(overlap.authorities).toHaveLength(2);
    expect(overlap.authorities.some((root) => root.raw.equals(oldRoot))).toBe(true);
    // Issued by the new root, which is not the old one.
    expect(() => verifyX509Svid(rotated.svid.certificates, new X509BundleSet([X509Bundle.fromDer(TD, oldRoot)]))).toThrow();
  }, 30_000);

  it('signs JWT-SVIDs for its one identity and streams the JWT bundles', async () => {
    const { client, agent } = await setup();
    const { error: noAudience } = await fetchJwt(client, {});
    expect(noAudience?.code).toBe(status.INVALID_ARGUMENT);
    expect(noAudience?.details).toBe('audience must be specified');

    const { error: otherId } = await fetchJwt(client, { audience: ['a'], spiffe_id: `spiffe://${TD}/someone-else` });
    expect(otherId?.code).toBe(status.PERMISSION_DENIED);
    expect(otherId?.details).toBe('no identity issued');

    const { error, response } = await fetchJwt(client, { audience: ['db', 'cache'], spiffe_id: DRIVER_ID });
    expect(error).toBeNull();
    expect(response!.svids.map((s) => s.spiffe_id)).toEqual([DRIVER_ID]);
    const token = response!.svids[0]!.svid;
    expect(decodeJwt(token)).toMatchObject({ sub: DRIVER_ID, aud: ['db', 'cache'] });
    expect(decodeProtectedHeader(token).kid).toBe(agent.jwtKeyId);

    const jwtBundles = record(client.FetchJWTBundles({}, workloadMetadata()));
    await waitFor(() => jwtBundles.messages.length > 0, { message: 'first JWT bundles' });
    expect(jwtBundles.messages[0]!.bundles).toEqual(agent.jwtBundles());
    await agent.rotateJwtAuthority();
    await waitFor(() => jwtBundles.messages.length > 1, { message: 'JWT bundles after a key rotation' });
    const keys = (JSON.parse(jwtBundles.messages[1]!.bundles[`spiffe://${TD}`]!.toString()) as { keys: unknown[] }).keys;
    expect(keys).toHaveLength(2);
  });

  it('ends its streams with Unavailable when the agent stops answering, and serves again after', async () => {
    const { client, agent } = await setup();
    const stream = record(client.FetchX509SVID({}, workloadMetadata()));
    await waitFor(() => stream.messages.length > 0, { message: 'first message' });
    expect(agent.workloadStreamCount).toBe(1);
    await agent.setAnswering(false);
    const ended = await waitFor(() => stream.status, { message: 'stream end' });
    expect(ended.code).toBe(status.UNAVAILABLE);
    expect(agent.workloadStreamCount).toBe(0);
    await agent.setAnswering(true);
    const again = record(client.FetchX509SVID({}, workloadMetadata()));
    await waitFor(() => again.messages.length > 0, { message: 'message after serving again' });
    expect(svidOf(again.messages[0]!).wire.spiffe_id).toBe(DRIVER_ID);
  });

  it('serves a configured workloadId and refuses one outside its trust domain', async () => {
    const id = `spiffe://${TD}/custom/driver`;
    const { client } = await setup({ workloadId: id });
    const stream = record(client.FetchX509SVID({}, workloadMetadata()));
    await waitFor(() => stream.messages.length > 0, { message: 'first message' });
    expect(svidOf(stream.messages[0]!).wire.spiffe_id).toBe(id);
    await expect(startBrokerAgent({ workloadId: 'spiffe://elsewhere.org/driver' })).rejects.toThrow(
      /workloadId "spiffe:\/\/elsewhere\.org\/driver" is not in the agent's trust domain "example\.org"/,
    );
  });
});
