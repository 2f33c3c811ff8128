/**
 * The Node examples as their users run them: each server example and the undici client example
 * as separate processes, with driver-style credential folders from one test CA (plus a federated
 * one), checking the shared environment contract, authorization and rotation.
 */
import { createServer as createHttpsServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TestCa, type MintedSvid } from '../helpers/test-ca.js';
import { waitFor } from '../helpers/wait-for.js';
import {
  childEnv,
  credentialFolder,
  killChildren,
  requireBuiltSdk,
  runExample,
  serialOf,
  serverSerial,
  start,
  startServer,
  examplePath,
  type RunningServer,
  type WrittenFolder,
} from './harness.js';

const CLIENT = 'undici-client/client.mjs';
const SERVERS = [
  { name: 'https-server', script: 'https-server/server.mjs' },
  { name: 'http2-server', script: 'http2-server/server.mjs' },
  { name: 'fastify-server', script: 'fastify-server/server.mjs' },
] as const;

let example: TestCa;
let partner: TestCa;
let serverSvid: MintedSvid;
let clientSvid: MintedSvid;
let partnerClientSvid: MintedSvid;
/** example.org client folder, shared by tests that do not rotate it. */
let clientFolder: WrittenFolder;
/** partner.org client that also trusts example.org (federation). */
let partnerClientFolder: WrittenFolder;

const folders: WrittenFolder[] = [];

beforeAll(async () => {
  requireBuiltSdk();
  [example, partner] = await Promise.all([TestCa.create('example.org'), TestCa.create('partner.org')]);
  [serverSvid, clientSvid, partnerClientSvid] = await Promise.all([
    example.mint('spiffe://example.org/server'),
    example.mint('spiffe://example.org/client'),
    partner.mint('spiffe://partner.org/client'),
  ]);
  clientFolder = await credentialFolder(clientSvid, { ca: example });
  partnerClientFolder = await credentialFolder(partnerClientSvid, { ca: partner, federated: [example] });
  return async () => {
    await clientFolder.remove();
    await partnerClientFolder.remove();
  };
});

afterEach(async () => {
  killChildren();
  for (const folder of folders.splice(0)) await folder.remove();
});

/** A fresh server folder (tests rotate it): example.org SVID, trusting partner.org too. */
async function serverFolder(svid: MintedSvid = serverSvid): Promise<WrittenFolder> {
  const folder = await credentialFolder(svid, { ca: example, federated: [partner] });
  folders.push(folder);
  return folder;
}

function client(folder: WrittenFolder, url: string, extra: Record<string, string> = {}) {
  return runExample(CLIENT, childEnv({ SPIFFE_CREDENTIAL_FOLDER: folder.path, TARGET_URL: url, ...extra }));
}

describe.each(SERVERS)('$name example', ({ script }) => {
  async function server(folder: WrittenFolder, extra: Record<string, string> = {}) {
    return startServer(script, childEnv({ SPIFFE_CREDENTIAL_FOLDER: folder.path, PORT: '0', ...extra }));
  }

  describe('with neither ALLOWED_SPIFFE_ID nor ALLOWED_TRUST_DOMAIN', () => {
    // One server for these read-only tests, outside afterEach's cleanup; stopped by its own teardown.
    let srv: RunningServer;
    beforeAll(async () => {
      const folder = await credentialFolder(serverSvid, { ca: example, federated: [partner] });
      srv = await startServer(script, childEnv({ SPIFFE_CREDENTIAL_FOLDER: folder.path, PORT: '0' }), { shared: true });
      return async () => {
        srv.child.kill('SIGKILL');
        await srv.exited();
        await folder.remove();
      };
    });

    it('prints "listening <port>" and answers GET / with the caller\'s SPIFFE ID', async () => {
      expect(srv.port).toBeGreaterThan(0);
      const result = await client(clientFolder, srv.url);
      expect(result.stderr).not.toMatch(/failed/);
      expect(result).toMatchObject({ code: 0, stdout: 'spiffe://example.org/client\n' });

      const pinned = await client(clientFolder, srv.url, { ALLOWED_SPIFFE_ID: 'spiffe://example.org/server' });
      expect(pinned).toMatchObject({ code: 0, stdout: 'spiffe://example.org/client\n' });
    });

    it('answers other paths with 404, which the client reports as a failure', async () => {
      const result = await client(clientFolder, `${srv.url}nothing-here`);
      expect(result).toMatchObject({ code: 1, stdout: '', stderr: expect.stringMatching(/failed: HTTP 404/) });
    });

    it('refuses a client of another trust domain, even one it trusts', async () => {
      const result = await client(partnerClientFolder, srv.url, { ALLOWED_TRUST_DOMAIN: 'example.org' });
      expect(result).toMatchObject({ code: 1, stdout: '', stderr: expect.stringMatching(/request 1 to .* failed: /) });
      await waitFor(() => /refused a client: .*spiffe:\/\/partner\.org\/client is not a member/.test(srv.stderr()), {
        message: 'the server to log the refusal',
      });
    });
  });

  it('refuses a client that is not ALLOWED_SPIFFE_ID', async () => {
    const srv = await server(await serverFolder(), { ALLOWED_SPIFFE_ID: 'spiffe://example.org/someone-else' });
    const result = await client(clientFolder, srv.url);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/undici-client: request 1 to https:\/\/127\.0\.0\.1:\d+\/ failed: /);
    await waitFor(() => /refused a client: authorize: peer spiffe:\/\/example\.org\/client is not/.test(srv.stderr()), {
      message: 'the server to log the refusal',
    });
  });

  it('admits the trust domain named by ALLOWED_TRUST_DOMAIN instead of its own', async () => {
    const partnerOnly = await server(await serverFolder(), { ALLOWED_TRUST_DOMAIN: 'partner.org' });
    const admitted = await client(partnerClientFolder, partnerOnly.url, { ALLOWED_TRUST_DOMAIN: 'example.org' });
    expect(admitted).toMatchObject({ code: 0, stdout: 'spiffe://partner.org/client\n' });
    const ownDomain = await client(clientFolder, partnerOnly.url);
    expect(ownDomain).toMatchObject({ code: 1, stdout: '', stderr: expect.stringMatching(/request 1 to .* failed: /) });
  });

  it('serves a rotated SVID without restarting', async () => {
    const folder = await serverFolder();
    const srv = await server(folder);
    expect(await serverSerial(srv.port, clientSvid)).toBe(serialOf(serverSvid));
    expect((await client(clientFolder, srv.url)).code).toBe(0);

    const rotated = await example.mint('spiffe://example.org/server');
    await folder.write(rotated);
    await waitFor(async () => (await serverSerial(srv.port, clientSvid)) === serialOf(rotated), {
      message: 'the server to present the rotated SVID',
    });

    const after = await client(clientFolder, srv.url);
    expect(after).toMatchObject({ code: 0, stdout: 'spiffe://example.org/client\n' });
    expect(srv.child.exitCode).toBeNull();
    expect(srv.stderr()).toContain(`serial ${rotated.cert.serialNumber}`);
  });

  it('exits 0 on SIGTERM', async () => {
    const srv = await server(await serverFolder());
    expect((await client(clientFolder, srv.url)).code).toBe(0);
    srv.child.kill('SIGTERM');
    expect(await srv.exited()).toBe(0);
  });

  it('refuses bad configuration with a message naming the setting', async () => {
    const folder = await serverFolder();
    const cases: [Record<string, string | undefined>, RegExp][] = [
      [{ PORT: 'http' }, /PORT must be a number from 0 to 65535, got "http"/],
      [{ ALLOWED_SPIFFE_ID: 'spiffe://example.org/a', ALLOWED_TRUST_DOMAIN: 'example.org' }, /not both/],
      [{ ALLOWED_SPIFFE_ID: 'example.org/a' }, /ALLOWED_SPIFFE_ID: spiffeid: /],
      [{ ALLOWED_TRUST_DOMAIN: 'Example.ORG' }, /ALLOWED_TRUST_DOMAIN: spiffeid: /],
      [{ SPIFFE_CREDENTIAL_FOLDER: undefined }, /SPIFFE_CREDENTIAL_FOLDER/],
    ];
    const results = await Promise.all(
      cases.map(([vars]) => runExample(script, childEnv({ SPIFFE_CREDENTIAL_FOLDER: folder.path, PORT: '0', ...vars }))),
    );
    cases.forEach(([vars, message], i) => {
      expect(results[i], JSON.stringify(vars)).toMatchObject({ code: 1, stdout: '', stderr: expect.stringMatching(message) });
    });
  });
});

describe('undici-client example', () => {
  it('refuses a server that is not ALLOWED_SPIFFE_ID', async () => {
    const srv = await startServer(SERVERS[0].script, childEnv({ SPIFFE_CREDENTIAL_FOLDER: (await serverFolder()).path, PORT: '0' }));
    const result = await client(clientFolder, srv.url, { ALLOWED_SPIFFE_ID: 'spiffe://example.org/not-the-server' });
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/failed: .*authorize: peer spiffe:\/\/example\.org\/server is not spiffe:\/\/example\.org\/not-the-server/);
  });

  it('refuses a server of another trust domain by default', async () => {
    const partnerServer = await partner.mint('spiffe://partner.org/server');
    const folder = await credentialFolder(partnerServer, { ca: partner, federated: [example] });
    folders.push(folder);
    const srv = await startServer(SERVERS[0].script, childEnv({ SPIFFE_CREDENTIAL_FOLDER: folder.path, PORT: '0', ALLOWED_TRUST_DOMAIN: 'example.org' }));
    // The client trusts partner.org only through federation: verification passes, authorization does not.
    const clientTrustingPartner = await credentialFolder(clientSvid, { ca: example, federated: [partner] });
    folders.push(clientTrustingPartner);
    const refused = await client(clientTrustingPartner, srv.url);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/spiffe:\/\/partner\.org\/server is not a member of trust domain "example\.org"/);
    const allowed = await client(clientTrustingPartner, srv.url, { ALLOWED_TRUST_DOMAIN: 'partner.org' });
    expect(allowed).toMatchObject({ code: 0, stdout: 'spiffe://example.org/client\n' });
  });

  describe('against a server that echoes the client certificate serial', () => {
    let url: string;
    beforeAll(async () => {
      const echo: Server = createHttpsServer(
        { cert: serverSvid.chainPem, key: serverSvid.keyPem, ca: example.rootPem, requestCert: true, rejectUnauthorized: true },
        (req, res) => res.end(`${(req.socket as TLSSocket).getPeerCertificate().serialNumber.toUpperCase()}\n`),
      );
      await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
      url = `https://127.0.0.1:${(echo.address() as AddressInfo).port}/`;
      return () => {
        echo.closeAllConnections();
        echo.close();
      };
    });

    it('makes REQUEST_COUNT requests INTERVAL_MS apart', async () => {
      const result = await client(clientFolder, url, { REQUEST_COUNT: '3', INTERVAL_MS: '10' });
      expect(result).toMatchObject({ code: 0, stdout: `${serialOf(clientSvid)}\n`.repeat(3) });
    });

    it('with REQUEST_COUNT=0 keeps requesting, presents its rotated SVID, and exits 0 on SIGTERM', async () => {
      const folder = await credentialFolder(clientSvid, { ca: example });
      folders.push(folder);
      const running = start(process.execPath, [examplePath(CLIENT)], childEnv({
        SPIFFE_CREDENTIAL_FOLDER: folder.path,
        TARGET_URL: url,
        REQUEST_COUNT: '0',
        INTERVAL_MS: '20',
      }));
      await waitFor(() => running.stdout().includes(`${serialOf(clientSvid)}\n`), { message: 'a first answer' });

      const rotated = await example.mint('spiffe://example.org/client');
      await folder.write(rotated);
      await waitFor(() => running.stdout().includes(`${serialOf(rotated)}\n`), {
        message: 'a request made with the rotated SVID',
      });
      running.child.kill('SIGTERM');
      expect(await running.exited()).toBe(0);
      expect(running.stderr()).not.toMatch(/failed/);
    });

    it('exits 1 when any request failed, after making them all', async () => {
      const result = await client(clientFolder, `${url.replace(/\d+\/$/, '1/')}`, { REQUEST_COUNT: '2', INTERVAL_MS: '1' });
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/request 1 to .* failed: .*ECONNREFUSED/);
      expect(result.stderr).toMatch(/request 2 to .* failed/);
    });
  });

  it('refuses bad configuration with a message naming the setting', async () => {
    const cases: [Record<string, string | undefined>, RegExp][] = [
      [{ TARGET_URL: undefined }, /TARGET_URL is required/],
      [{ TARGET_URL: 'http://127.0.0.1:1/' }, /TARGET_URL must be an https:\/\/ URL/],
      [{ TARGET_URL: 'not a url' }, /TARGET_URL is not a URL/],
      [{ REQUEST_COUNT: 'many' }, /REQUEST_COUNT must be a whole number, got "many"/],
      [{ INTERVAL_MS: '-5' }, /INTERVAL_MS must be a whole number/],
      [{ ALLOWED_SPIFFE_ID: 'spiffe://x/a', ALLOWED_TRUST_DOMAIN: 'x' }, /not both/],
      [{ SPIFFE_CREDENTIAL_FOLDER: undefined }, /SPIFFE_CREDENTIAL_FOLDER/],
    ];
    const results = await Promise.all(
      cases.map(([vars]) =>
        runExample(CLIENT, childEnv({ SPIFFE_CREDENTIAL_FOLDER: clientFolder.path, TARGET_URL: 'https://127.0.0.1:1/', ...vars })),
      ),
    );
    cases.forEach(([vars, message], i) => {
      expect(results[i], JSON.stringify(vars)).toMatchObject({ code: 1, stdout: '', stderr: expect.stringMatching(message) });
    });
  });
});
