import { existsSync } from 'node:fs';
import { readdir, readFile, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { JwtBundle, JwtBundleSet, validateJwtSvid } from '@spire-csi/sdk/jwt';
import { FakeClock } from '../helpers/fake-clock.js';
import { isRoot, mountsUnder } from '../helpers/driver-harness.js';
import type { PublishedVolume } from '../helpers/kubelet-emulator.js';
import { waitFor } from '../helpers/wait-for.js';
import { BrokerNode, DB_ID, serialOf, spiffeIdOf, WEB_ID } from './broker-node.js';

const tokenOf = (volume: PublishedVolume): Promise<string> => readFile(join(volume.targetPath, 'jwt-svid.token'), 'utf8');
const kidOf = (token: string): unknown => JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8')).kid;

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe.skipIf(!isRoot)('broker mode end to end (dev agent Broker endpoint over mTLS, real tmpfs)', () => {
  let node: BrokerNode;

  afterEach(async () => {
    await node?.cleanup();
  });

  it('publishes, rotates and unpublishes a volume with the same files as delegated mode', async () => {
    node = await BrokerNode.create();
    await node.startDriver();
    const pod = await node.pod('web');
    const volume = await node.kubelet.publish({ ...pod, fsGroup: 2000 });
    const target = volume.targetPath;
    expect(await mountsUnder(target)).toEqual([target]);
    expect(await spiffeIdOf(target)).toBe(WEB_ID);
    expect((await readdir(target)).sort()).toEqual(
      expect.arrayContaining(['..data', 'credential-bundle.private-key.x509.pem', 'example.org.spiffe-trust-bundle.x509.pem', 'partner.org.spiffe-trust-bundle.x509.pem', 'svid.pem', 'svid_key.pem', 'bundle.pem', 'identity.json']),
    );
    expect((await stat(join(target, 'svid_key.pem'))).mode & 0o777).toBe(0o440);
    const data = await readlink(join(target, '..data'));
    const before = await serialOf(target);
    await node.agent.rotateNow();
    await waitFor(async () => (await serialOf(target)) !== before, { message: 'a rotated SVID on disk' });
    expect(await readlink(join(target, '..data'))).not.toBe(data);
    await node.kubelet.unpublish(volume);
    expect(existsSync(target)).toBe(false);
    expect(await mountsUnder(target)).toEqual([]);
  });

  it('logs the broker choice once, names the pod by reference, and never logs keys', async () => {
    node = await BrokerNode.create();
    await node.startDriver();
    const pod = await node.pod('web');
    const volume = await node.kubelet.publish(pod);
    const logs = node.logs();
    expect(logs.match(/no --broker-id: the broker endpoint may present any SPIFFE ID of the driver's own trust domain/g)).toHaveLength(1);
    expect(logs).toContain('"identityApi":"broker"');
    const key = (await readFile(join(volume.targetPath, 'svid_key.pem'), 'utf8')).split('\n')[1]!;
    expect(logs).not.toContain(key);
    const driverKey = node.agent.workloadSvid!.keyDer.toString('base64').slice(0, 40);
    expect(logs).not.toContain(driverKey);
  });

  it('gives each pod its own identity and its own federation, and follows federation changes', async () => {
    node = await BrokerNode.create();
    await node.startDriver();
    const web = await node.kubelet.publish(await node.pod('web'));
    const db = await node.kubelet.publish(await node.pod('db'));
    expect(await spiffeIdOf(web.targetPath)).toBe(WEB_ID);
    expect(await spiffeIdOf(db.targetPath)).toBe(DB_ID);
    const partner = (v: PublishedVolume): string => join(v.targetPath, 'partner.org.spiffe-trust-bundle.x509.pem');
    expect(existsSync(partner(web))).toBe(true);
    expect(existsSync(partner(db))).toBe(false);

    await node.agent.removeFederatedTrustDomain('partner.org');
    await waitFor(() => !existsSync(partner(web)), { message: 'the partner.org bundle file to go away' });
    expect(existsSync(join(web.targetPath, 'example.org.spiffe-trust-bundle.x509.pem'))).toBe(true);
    await node.agent.addFederatedTrustDomain('partner.org');
    await waitFor(() => existsSync(partner(web)), { message: 'the partner.org bundle file to come back' });
    expect(existsSync(partner(db))).toBe(false);
    expect(await spiffeIdOf(db.targetPath)).toBe(DB_ID);
  });

  it('publishes JWT-SVIDs from FetchJWTSVID with the pod\'s JWT bundles, and refreshes them', async () => {
    const clock = new FakeClock(Date.now());
    node = await BrokerNode.create({ clock });
    await node.startDriver();
    const volume = await node.kubelet.publish(await node.pod('web'), 'spiffe', { 'csi.spire.io/jwt-audiences': 'db' });
    const first = await tokenOf(volume);
    const bundles = async (): Promise<JwtBundleSet> =>
      new JwtBundleSet([JwtBundle.parse('example.org', await readFile(join(volume.targetPath, 'example.org.jwt-bundle.json')))]);
    const validated = await validateJwtSvid(first, { audience: 'db', bundles: await bundles() });
    expect(validated.id.toString()).toBe(WEB_ID);
    const identity = JSON.parse(await readFile(join(volume.targetPath, 'identity.json'), 'utf8')) as Record<string, unknown>;
    // exp comes from the token itself: the Broker API sends no expires_at.
    expect(identity).toMatchObject({ jwtAudiences: ['db'], jwtExpiresAt: validated.expiresAt.toISOString() });

    // A new signing key reaches the volume's JWT bundle (its own stream) and then the refreshed token.
    await node.agent.rotateJwtAuthority();
    const kid = node.agent.jwtKeyId;
    await waitFor(async () => (await readFile(join(volume.targetPath, 'example.org.jwt-bundle.json'), 'utf8')).includes(kid), {
      message: 'the new JWT key in the volume',
    });
    // Refreshes are due at half of the remaining lifetime, on the driver's clock.
    await clock.advance((validated.expiresAt.getTime() - clock.nowMs) / 2 + 1_000);
    await waitFor(async () => kidOf(await tokenOf(volume)) === kid, { message: 'the refreshed token on disk' }).catch((e: unknown) => {
      throw new Error(`${(e as Error).message}\n${node.logs()}`);
    });
    const second = await tokenOf(volume);
    expect((await validateJwtSvid(second, { audience: 'db', bundles: await bundles() })).id.toString()).toBe(WEB_ID);
    expect(node.logs()).not.toContain(first.split('.')[2]!);
    expect(node.logs()).not.toContain(second.split('.')[2]!);
  });

  it('resumes recorded volumes after a restart by reference, with no kubelet call', async () => {
    node = await BrokerNode.create();
    await node.startDriver();
    const volume = await node.kubelet.publish(await node.pod('web'));
    const before = await serialOf(volume.targetPath);
    await node.stopDriver();
    // The files stay for the pod while the driver is down.
    expect(await serialOf(volume.targetPath)).toBe(before);
    expect(node.agent.brokerStreamCount).toBe(0);
    await node.agent.rotateNow();

    const driver = await node.startDriver();
    expect(await driver.resumed).toEqual({ resumed: 1, removed: 0, failed: 0, corrupt: 0 });
    await waitFor(async () => (await serialOf(volume.targetPath)) !== before, { message: 'the resumed volume to get the rotated SVID' });
    expect(node.agent.brokerStreamCount).toBeGreaterThan(0);
    expect(await mountsUnder(volume.targetPath)).toEqual([volume.targetPath]);
    await node.kubelet.unpublish(volume);
    expect(existsSync(volume.targetPath)).toBe(false);
  });

  it("reports the broker connection and its own SVID on /readyz and /metrics", async () => {
    node = await BrokerNode.create({ metricsAddress: '127.0.0.1:0' });
    const driver = await node.startDriver();
    const base = `http://${driver.metricsAddress}`;
    await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, { message: '/readyz to say ready' });
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(sample(text, 'spire_csi_agent_connected')).toBe(1);
    const own = sample(text, 'spire_csi_own_svid_expiry_seconds');
    const expected = (node.agent.workloadSvid!.expiresAt.getTime() - Date.now()) / 1000;
    expect(own).toBeGreaterThan(expected - 60);
    expect(own).toBeLessThanOrEqual(expected + 1);

    await node.agent.setAnswering(false);
    await waitFor(async () => (await fetch(`${base}/readyz`)).status === 503, { message: '/readyz to report the broker down' });
    expect(await (await fetch(`${base}/readyz`)).text()).toMatch(new RegExp(`^broker endpoint unreachable at ${node.fixture.brokerEndpoint}`));
    expect(sample(await (await fetch(`${base}/metrics`)).text(), 'spire_csi_agent_connected')).toBe(0);
    await node.agent.setAnswering(true);
    await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, { timeoutMs: 20_000, message: '/readyz to recover' });
  });

  it('is not ready before the driver has an SVID of its own', async () => {
    node = await BrokerNode.create({ metricsAddress: '127.0.0.1:0', workloadApi: 'unix:///nonexistent/spire-csi/api.sock' });
    const driver = await node.startDriver();
    const response = await fetch(`http://${driver.metricsAddress}/readyz`);
    expect(response.status).toBe(503);
    expect(await response.text()).toBe(
      "the driver has no X.509-SVID of its own yet from the Workload API at unix:///nonexistent/spire-csi/api.sock; " +
        "check that the SPIRE agent serves it there and that a registration entry matches the driver's pod\n",
    );
    expect(await node.kubelet.probe()).toBe(false);
    expect(sample(await (await fetch(`http://${driver.metricsAddress}/metrics`)).text(), 'spire_csi_own_svid_expiry_seconds')).toBeUndefined();
  });
});
