import { readdir, readFile, readlink, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JwtSource, jwtPeerId, jwtSvidMiddleware } from '@spire-csi/sdk';
import { JwtBundle, JwtBundleSet, validateJwtSvid } from '@spire-csi/sdk/jwt';
import { DriverHarness, isRoot } from '../helpers/driver-harness.js';
import { KubeletEmulator, type PublishedVolume } from '../helpers/kubelet-emulator.js';
import { entry } from '../helpers/registration-entry.js';
import { waitFor } from '../helpers/wait-for.js';

const WEB_ID = 'spiffe://example.org/ns/default/sa/web';
const DB_ID = 'spiffe://example.org/ns/default/sa/db';

const tokenOf = (volume: PublishedVolume, file = 'jwt-svid.token'): Promise<string> => readFile(join(volume.targetPath, file), 'utf8');

const kidOf = (token: string): unknown => JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8')).kid;

/** The JWT bundles exactly as the pod sees them on its volume. */
async function bundlesOf(volume: PublishedVolume, ...tds: string[]): Promise<JwtBundleSet> {
  const bundles = await Promise.all(tds.map(async (td) => JwtBundle.parse(td, await readFile(join(volume.targetPath, `${td}.jwt-bundle.json`)))));
  return new JwtBundleSet(bundles);
}

describe.skipIf(!isRoot)('JWT-SVIDs end to end (kubelet emulator, dev agent, real tmpfs)', () => {
  let h: DriverHarness;

  beforeEach(async () => {
    h = await DriverHarness.create({
      registrations: {
        entries: [entry(WEB_ID, ['k8s:ns:default', 'k8s:sa:web'], ['partner.org']), entry(DB_ID, ['k8s:ns:default', 'k8s:sa:db'])],
        federatedTrustDomains: ['partner.org'],
      },
      publishTimeoutMs: 5_000,
    });
  });

  afterEach(async () => {
    await h.cleanup();
  });

  it('publishes a token that validates against the volume\'s JWT bundle, and refreshes it before expiry', async () => {
    // Short-lived tokens so the half-life refresh happens within the test.
    h.agent.setJwtSvidTtl(4_000);
    await h.startDriver();
    const volume = await h.kubelet.publish(KubeletEmulator.pod({ serviceAccount: 'web', fsGroup: 3000 }), 'spiffe', {
      'csi.spire.io/jwt-audiences': 'db',
    });

    const first = await tokenOf(volume);
    const tokenStat = await stat(join(volume.targetPath, 'jwt-svid.token'));
    expect(tokenStat.mode & 0o777).toBe(0o440);
    expect(tokenStat.gid).toBe(3000);
    expect((await stat(join(volume.targetPath, 'example.org.jwt-bundle.json'))).mode & 0o777).toBe(0o444);
    const bundles = await bundlesOf(volume, 'example.org', 'partner.org');
    const validated = await validateJwtSvid(first, { audience: 'db', bundles });
    expect(validated.id.toString()).toBe(WEB_ID);
    expect(validated.audience).toEqual(['db']);
    const identity = JSON.parse(await readFile(join(volume.targetPath, 'identity.json'), 'utf8')) as Record<string, unknown>;
    expect(identity).toMatchObject({ jwtAudiences: ['db'], jwtExpiresAt: validated.expiresAt.toISOString() });
    expect(JSON.stringify(identity)).not.toContain(first);

    await waitFor(async () => (await tokenOf(volume)) !== first, { timeoutMs: 15_000, message: 'the refreshed token on disk' });
    const second = await tokenOf(volume);
    const refreshed = await validateJwtSvid(second, { audience: 'db', bundles: await bundlesOf(volume, 'example.org') });
    expect(refreshed.expiresAt.getTime()).toBeGreaterThanOrEqual(validated.expiresAt.getTime());
    expect(h.logLines.join('\n')).not.toContain(first.split('.')[2]!);
    expect(h.logLines.join('\n')).not.toContain(second.split('.')[2]!);
  });

  it('with several audiences writes one token per audience, each accepted by its audience only, refreshed together', async () => {
    h.agent.setJwtSvidTtl(4_000);
    await h.startDriver();
    const volume = await h.kubelet.publish(KubeletEmulator.pod({ serviceAccount: 'web', fsGroup: 3000 }), 'spiffe', {
      'csi.spire.io/jwt-audiences': 'db,https://audit.example/v1',
    });
    const files = { db: 'jwt-svid.db.token', audit: 'jwt-svid.https%3A%2F%2Faudit.example%2Fv1.token' };
    expect((await readdir(volume.targetPath)).filter((name) => name.endsWith('.token')).sort()).toEqual([files.db, files.audit].sort());
    const bundles = await bundlesOf(volume, 'example.org');
    const db = await tokenOf(volume, files.db);
    const audit = await tokenOf(volume, files.audit);
    expect((await validateJwtSvid(db, { audience: 'db', bundles })).audience).toEqual(['db']);
    expect((await validateJwtSvid(audit, { audience: 'https://audit.example/v1', bundles })).audience).toEqual(['https://audit.example/v1']);
    // The point of one token per audience: db cannot replay what it received to audit.
    await expect(validateJwtSvid(db, { audience: 'https://audit.example/v1', bundles })).rejects.toThrow();
    await expect(validateJwtSvid(audit, { audience: 'db', bundles })).rejects.toThrow();
    for (const file of Object.values(files)) {
      const info = await stat(join(volume.targetPath, file));
      expect([info.mode & 0o777, info.gid]).toEqual([0o440, 3000]);
    }
    const identity = JSON.parse(await readFile(join(volume.targetPath, 'identity.json'), 'utf8')) as Record<string, unknown>;
    expect(identity).toMatchObject({
      jwtSpiffeId: WEB_ID,
      jwtAudiences: ['db', 'https://audit.example/v1'],
      jwtSvidFiles: { db: files.db, 'https://audit.example/v1': files.audit },
    });

    // The SDK reads each audience's token from its own file.
    const source = new JwtSource(volume.targetPath);
    try {
      await source.ready(5_000);
      expect(source.getToken('db')).toBe(db);
      expect(source.getToken('https://audit.example/v1')).toBe(audit);
    } finally {
      await source.close();
    }

    // Every generation holds a token for each audience: after refreshes, both files behind one ..data.
    await waitFor(async () => (await tokenOf(volume, files.db)) !== db && (await tokenOf(volume, files.audit)) !== audit, {
      timeoutMs: 15_000,
      message: 'both tokens refreshed',
    });
    // Both read from one payload directory; a swap in between removes it, so that read is retried.
    const inGeneration = (generation: string, file: string) => readFile(join(volume.targetPath, generation, file), 'utf8');
    const [dbNow, auditNow] = await waitFor(async () => {
      const generation = await readlink(join(volume.targetPath, '..data'));
      return Promise.all([inGeneration(generation, files.db), inGeneration(generation, files.audit)] as const);
    }, { message: 'both tokens of one generation' });
    const current = await bundlesOf(volume, 'example.org');
    expect((await validateJwtSvid(dbNow, { audience: 'db', bundles: current })).audience).toEqual(['db']);
    expect((await validateJwtSvid(auditNow, { audience: 'https://audit.example/v1', bundles: current })).audience).toEqual(['https://audit.example/v1']);
    const log = h.logLines.join('\n');
    for (const token of [db, audit]) expect(log).not.toContain(token.split('.')[2]!);
  });

  it('follows a JWT authority rotation: new key in the bundle file, new tokens signed with it still validate', async () => {
    h.agent.setJwtSvidTtl(4_000);
    await h.startDriver();
    const volume = await h.kubelet.publish(KubeletEmulator.pod({ serviceAccount: 'db' }), 'spiffe', { 'csi.spire.io/jwt-audiences': 'web' });
    const oldKid = h.agent.jwtKeyId;
    await h.agent.rotateJwtAuthority();
    const newKid = h.agent.jwtKeyId;
    expect(newKid).not.toBe(oldKid);
    await waitFor(async () => (await bundlesOf(volume, 'example.org')).get('example.org')?.hasKey(newKid), {
      message: 'the new JWT key in the bundle file',
    });
    expect((await bundlesOf(volume, 'example.org')).get('example.org')?.keyIds().sort()).toEqual([oldKid, newKid].sort());
    await waitFor(async () => kidOf(await tokenOf(volume)) === newKid, { timeoutMs: 15_000, message: 'a token signed with the new key' });
    const validated = await validateJwtSvid(await tokenOf(volume), { audience: 'web', bundles: await bundlesOf(volume, 'example.org') });
    expect(validated.id.toString()).toBe(DB_ID);
  });

  it('client in pod A calls server in pod B: A\'s token from its volume, checked with B\'s volume bundles over HTTP', async () => {
    await h.startDriver();
    const a = await h.kubelet.publish(KubeletEmulator.pod({ serviceAccount: 'web' }), 'spiffe', { 'csi.spire.io/jwt-audiences': 'db' });
    const b = await h.kubelet.publish(KubeletEmulator.pod({ serviceAccount: 'db' }), 'spiffe', { 'csi.spire.io/jwt-audiences': 'web' });
    const clientSource = new JwtSource(a.targetPath);
    const serverSource = new JwtSource(b.targetPath);
    let server: Server | undefined;
    try {
      await Promise.all([clientSource.ready(5_000), serverSource.ready(5_000)]);
      const auth = jwtSvidMiddleware({ audience: 'db', bundles: serverSource });
      server = createServer((req, res) =>
        auth(req, res, (err) => {
          if (err) {
            res.writeHead(500).end();
            return;
          }
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ caller: jwtPeerId(req)?.toString() }));
        }),
      );
      await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/items`;

      const ok = await fetch(url, { headers: { authorization: `Bearer ${clientSource.getToken('db')}` } });
      expect(ok.status).toBe(200);
      expect(await ok.json()).toEqual({ caller: WEB_ID });

      // B's own token is for audience "web", not "db": the server refuses it.
      const wrongAudience = await fetch(url, { headers: { authorization: `Bearer ${serverSource.getToken()}` } });
      expect(wrongAudience.status).toBe(401);
      expect(await wrongAudience.text()).not.toContain(serverSource.getToken());
      expect((await fetch(url)).status).toBe(401);
    } finally {
      await new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
      await clientSource.close();
      await serverSource.close();
    }
  });

  it('writes nothing JWT-related for a volume without jwt-audiences', async () => {
    await h.startDriver();
    const volume = await h.kubelet.publish(KubeletEmulator.pod({ serviceAccount: 'web' }));
    expect((await readdir(volume.targetPath)).filter((name) => name.includes('jwt'))).toEqual([]);
    expect(h.agent.jwtBundleStreamCount).toBe(0);
  });
});
