/**
 * Bad agent data: a (fake) SPIRE agent first sends good material, then garbage: invalid DER, a key
 * that does not match the certificate, malformed or mismatched SPIFFE IDs, expired or CA
 * certificates, empty or corrupt bundles. The driver must keep the last good files, say why in its
 * log, and publish the next good material as soon as it comes.
 */
import { randomBytes } from 'node:crypto';
import { readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { WireSubscribeToX509BundlesResponse, WireSubscribeToX509SvidsResponse } from '../../driver/src/identity/delegated/wire.js';
import { DriverHarness, isRoot } from '../helpers/driver-harness.js';
import { KubeletEmulator, type PublishedVolume } from '../helpers/kubelet-emulator.js';
import { TestCa } from '../helpers/test-ca.js';
import { waitFor } from '../helpers/wait-for.js';
import { bundlesMessage, FakeDelegatedIdentityAgent, svidMessage } from './helpers/bad-agent.js';
import { startInProcessDriver, type InProcessDriver } from './helpers/driver.js';
import { checkFolder } from './helpers/folder-check.js';
import { rngFor, type Rng } from './helpers/prng.js';
import { reportFaults } from './helpers/report.js';
import { scaled, testTimeout } from './helpers/soak.js';

const TD = 'example.org';
const ID = `spiffe://${TD}/ns/default/sa/web`;
if (!isRoot) console.warn('[faults] bad agent tests skipped: they mount tmpfs and need root');

interface Fixture {
  readonly ca: TestCa;
  readonly otherCa: TestCa;
}

/** What a broken agent sends instead of the next good update, and the log text that must explain it. */
interface BadData {
  readonly svids?: (f: Fixture, rng: Rng) => Promise<WireSubscribeToX509SvidsResponse>;
  readonly bundles?: (f: Fixture, rng: Rng) => WireSubscribeToX509BundlesResponse;
  readonly why: RegExp;
}

/** Every key handed to the driver, to prove none of it reaches the log. */
const sentKeys: string[] = [];
const mint = async (ca: TestCa, id: string | null = ID, options: Parameters<TestCa['mint']>[1] = {}) => {
  const minted = await ca.mint(id, options);
  // Bytes 36..66 of a P-256 PKCS#8 key are its private scalar (the prefix is the same for every key),
  // looked for as base64 (as in PEM) and as hex.
  sentKeys.push(minted.keyDer.toString('base64').slice(48, 88), minted.keyDer.subarray(36, 66).toString('hex'));
  return minted;
};

const BAD_DATA: Record<string, BadData> = {
  'certificate chain is not DER': {
    svids: async (f, rng) => svidMessage(await mint(f.ca), ID, { chain: [randomBytes(rng.between(1, 200))] }),
    why: /not (a valid )?DER|cert_chain/,
  },
  'certificate truncated': {
    svids: async (f, rng) => {
      const good = await mint(f.ca);
      return svidMessage(good, ID, { chain: [good.certDer.subarray(0, rng.between(10, good.certDer.length - 1))] });
    },
    why: /not DER|cert_chain|unusable/,
  },
  'private key does not match the certificate': {
    svids: async (f) => svidMessage(await mint(f.ca), ID, { key: (await mint(f.ca)).keyDer }),
    why: /key/i,
  },
  'private key is garbage': {
    svids: async (f, rng) => svidMessage(await mint(f.ca), ID, { key: randomBytes(rng.between(1, 120)) }),
    why: /key|unusable/i,
  },
  'no private key': {
    svids: async (f) => svidMessage(await mint(f.ca), ID, { key: Buffer.alloc(0) }),
    why: /no private key/,
  },
  // Each spelling on its own, so every run covers all three: the SPIFFE ID parser refuses the
  // first two, the wire layer the third (a path without "/" would run into the trust domain name).
  'malformed SPIFFE ID: bad trust domain': {
    svids: async (f) => svidMessage(await mint(f.ca), ID, { id: { trust_domain: 'Bad Domain!', path: '/x' } }),
    why: /malformed SPIFFE ID/,
  },
  'malformed SPIFFE ID: dot segment': {
    svids: async (f) => svidMessage(await mint(f.ca), ID, { id: { trust_domain: TD, path: '/a/../b' } }),
    why: /malformed SPIFFE ID/,
  },
  'malformed SPIFFE ID: path without leading slash': {
    svids: async (f) => svidMessage(await mint(f.ca), ID, { id: { trust_domain: TD, path: 'no-slash' } }),
    why: /malformed SPIFFE ID/,
  },
  'no SPIFFE ID': {
    svids: async (f) => svidMessage(await mint(f.ca), ID, { id: null }),
    why: /no SPIFFE ID/,
  },
  'SPIFFE ID label differs from the certificate': {
    svids: async (f) => svidMessage(await mint(f.ca, `spiffe://${TD}/ns/default/sa/admin`), ID),
    why: /labelled|is for/,
  },
  'certificate without a SPIFFE ID': {
    svids: async (f) => svidMessage(await mint(f.ca, null), ID),
    why: /unusable|URI|SPIFFE/,
  },
  'expired certificate': {
    svids: async (f) => svidMessage(await mint(f.ca, ID, { notBefore: new Date(Date.now() - 7_200_000), notAfter: new Date(Date.now() - 3_600_000) }), ID),
    why: /expired/,
  },
  'CA certificate as the leaf': {
    svids: async (f) => svidMessage(await mint(f.ca, ID, { isCa: true, keyUsages: ['keyCertSign', 'digitalSignature'] }), ID),
    why: /unusable|CA|leaf/i,
  },
  'empty own bundle': {
    bundles: () => bundlesMessage({ [TD]: Buffer.alloc(0) }),
    why: /empty/,
  },
  'own bundle from an unrelated CA': {
    // A bundle that does not anchor the SVID would make the pod distrust its whole trust domain.
    bundles: (f) => bundlesMessage({ [TD]: f.otherCa.rootDer }),
    why: /chain|anchor|signed|verif/i,
  },
  'own bundle is not DER': {
    bundles: (_f, rng) => bundlesMessage({ [TD]: randomBytes(rng.between(1, 300)) }),
    why: /not valid DER|bundle/,
  },
};

describe.skipIf(!isRoot)('bad agent data', () => {
  let h: DriverHarness;
  let agent: FakeDelegatedIdentityAgent | undefined;
  let driver: InProcessDriver | undefined;

  beforeEach(async () => {
    h = await DriverHarness.create({ registrations: { entries: [], federatedTrustDomains: [] }, publishTimeoutMs: 5_000 });
  });

  afterEach(async () => {
    await driver?.stop();
    driver = undefined;
    await agent?.close();
    agent = undefined;
    await h.cleanup();
  });

  it(
    'keeps the last good files through every kind of bad agent data and says why',
    async () => {
      const rng = rngFor('bad-agent/data');
      const rounds = scaled(2, 25);
      const fixture: Fixture = { ca: await TestCa.create(TD), otherCa: await TestCa.create(TD) };
      const goodBundles = bundlesMessage({ [TD]: fixture.ca.rootDer });
      agent = await FakeDelegatedIdentityAgent.start(join(h.root, 'agent', 'fake-admin.sock'));
      agent.sendBundles(goodBundles);
      agent.sendSvids(svidMessage(await mint(fixture.ca), ID));
      driver = await startInProcessDriver({ ...h.config, adminSocketPath: agent.socketPath });
      const volumes: PublishedVolume[] = [await h.kubelet.publish(KubeletEmulator.pod()), await h.kubelet.publish(KubeletEmulator.pod())];

      const kinds = Object.keys(BAD_DATA);
      let faults = 0;
      let losses = 0;
      const problems: string[] = [];
      for (let round = 0; round < rounds; round++) {
        for (const kind of rng.shuffle(kinds)) {
          // Good material first, so "last good" is always the newest good.
          const good = await mint(fixture.ca);
          agent.sendSvids(svidMessage(good, ID));
          await waitFor(async () => (await Promise.all(volumes.map((v) => checkFolder(v.targetPath, { spiffeId: ID })))).every((f) => f.serial === good.cert.serialNumber), {
            message: `good material before "${kind}" to land`,
          });
          const held = await Promise.all(volumes.map((v) => readlink(join(v.targetPath, '..data'))));

          const bad = BAD_DATA[kind]!;
          const logged = driver.logLines.length;
          if (bad.svids) agent.sendSvids(await bad.svids(fixture, rng));
          if (bad.bundles) agent.sendBundles(bad.bundles(fixture, rng));
          faults++;
          const explained = (): string | undefined =>
            driver!.logLines.slice(logged).find((line) => /keeping|not publishable/.test(line) && bad.why.test(line));
          await waitFor(explained, { timeoutMs: 3_000, message: `a log line explaining "${kind}" (${bad.why})` }).catch((err: unknown) => {
            problems.push(`${kind}: ${(err as Error).message}; logged: ${driver!.logLines.slice(logged).join('\n').slice(0, 1500)}`);
          });
          // Both volumes' streams got it; give the second a moment to act on it too.
          await new Promise((resolve) => setTimeout(resolve, 50));
          for (const [i, v] of volumes.entries()) {
            const now = await checkFolder(v.targetPath, { spiffeId: ID }).catch((err: unknown) => {
              problems.push(`${kind}: ${(err as Error).message}`);
              return undefined;
            });
            if (now?.serial !== good.cert.serialNumber || (await readlink(join(v.targetPath, '..data'))) !== held[i]) {
              losses++;
              problems.push(`${kind}: ${v.targetPath} no longer holds the last good SVID`);
            }
          }
          if (bad.bundles) agent.sendBundles(goodBundles);
        }
      }
      // Recovery: the next good material still lands everywhere.
      const last = await mint(fixture.ca);
      agent.sendSvids(svidMessage(last, ID));
      await waitFor(async () => (await Promise.all(volumes.map((v) => checkFolder(v.targetPath, { spiffeId: ID })))).every((f) => f.serial === last.cert.serialNumber), {
        message: 'good material after the bad to land',
      });
      const log = driver.logLines.join('\n');
      expect(sentKeys.filter((key) => log.includes(key))).toEqual([]);
      reportFaults('bad-agent/data', { seed: rng.seed, cases: rounds * kinds.length, faults, losses, notes: { kinds: kinds.length } });
      expect(problems).toEqual([]);
    },
    testTimeout(60_000, 1_200_000),
  );
});
