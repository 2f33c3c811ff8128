/**
 * The all-svids policy of a volume session, against a fake agent: every extra SVID is checked like
 * the chosen one, an invalid one is left out of the generation (warned about once) and never holds
 * back the chosen SVID, and is written once a good one arrives.
 */
import { X509Certificate } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentX509Svid } from '../../driver/src/identity/identity-backend.js';
import type { VolumeManager } from '../../driver/src/manager/volume-manager.js';
import type { VolumeErrorEvent } from '../../driver/src/volume/volume-events.js';
import { TestCa } from '../helpers/test-ca.js';
import { waitFor } from '../helpers/wait-for.js';
import { isRoot, VolumeHarness } from './volume-harness.js';

if (!isRoot) console.log('all-svids-volume.test.ts: skipping: needs root (uid 0) for real tmpfs mounts');

const CREDENTIAL = 'credential-bundle.private-key.x509.pem';

describe.skipIf(!isRoot)('a volume with all-svids', () => {
  let h: VolumeHarness;
  let manager: VolumeManager;
  const errors: VolumeErrorEvent[] = [];

  beforeEach(async () => {
    h = await VolumeHarness.create();
    manager = h.manager();
    errors.length = 0;
    manager.events.on('error', (e) => errors.push(e));
  });

  afterEach(async () => {
    await h.cleanup();
  });

  const hinted = async (id: string, hint: string): Promise<AgentX509Svid> => ({ ...(await h.svid(id)), hint });
  const visible = async (target: string): Promise<string[]> => (await readdir(target)).filter((n) => !n.startsWith('..')).sort();
  const hints = async (target: string): Promise<{ file: string; spiffeId: string; hint: string }[]> =>
    (JSON.parse(await readFile(join(target, 'hints.json'), 'utf8')) as { credentialBundles: { file: string; spiffeId: string; hint: string }[] })
      .credentialBundles;

  it('publishes the chosen SVID when another one is invalid, and adds it once it is good', async () => {
    const chosen = await hinted('spiffe://example.org/web', 'web');
    const foreign = await TestCa.create('example.org');
    // Signed by a CA the bundle does not hold: fails the same chain check as a chosen SVID would.
    const minted = await foreign.mint('spiffe://example.org/admin');
    const untrusted: AgentX509Svid = { spiffeId: 'spiffe://example.org/admin', chainDer: minted.chainDer, keyDer: minted.keyDer, hint: 'admin' };
    const good = await hinted('spiffe://example.org/db', 'db');
    h.identity.respond = () => ({ svids: [chosen, untrusted, good], federatesWith: [] });
    const spec = await h.spec({ allSvids: true });
    await manager.publish(spec);

    // The invalid one is left out; the numbers count the SVIDs written.
    expect(await visible(spec.targetPath)).toEqual([`1.${CREDENTIAL}`, 'bundle.pem', CREDENTIAL, 'example.org.spiffe-trust-bundle.x509.pem', 'hints.json', 'identity.json', 'svid.pem', 'svid_key.pem']);
    expect((await hints(spec.targetPath)).map((e) => [e.file, e.spiffeId, e.hint])).toEqual([
      [CREDENTIAL, 'spiffe://example.org/web', 'web'],
      [`1.${CREDENTIAL}`, 'spiffe://example.org/db', 'db'],
    ]);
    const warned = h.logs.filter((l) => l.msg?.startsWith('left an invalid extra SVID out'));
    expect(warned).toHaveLength(1);
    expect(warned[0]!.obj).toMatchObject({ spiffeId: 'spiffe://example.org/admin', hint: 'admin', reason: expect.stringMatching(/does not chain/) });
    expect(errors).toEqual([{ kind: 'invalid-svid', volumeId: spec.volumeId }]);

    // The same bad SVID again (with a rotated chosen one): written without it, not warned again.
    const rotated = await hinted('spiffe://example.org/web', 'web');
    h.identity.push({ svids: [rotated, untrusted, good], federatesWith: [] });
    const rotatedSerial = new X509Certificate(rotated.chainDer[0]!).serialNumber;
    await waitFor(async () => JSON.parse(await readFile(join(spec.targetPath, 'identity.json'), 'utf8')).serial === rotatedSerial, {
      message: 'the rotated chosen SVID',
    });
    expect(h.logs.filter((l) => l.msg?.startsWith('left an invalid extra SVID out'))).toHaveLength(1);

    // A good SVID for that entry: it is written, in the agent's order.
    const fixed = await hinted('spiffe://example.org/admin', 'admin');
    h.identity.push({ svids: [rotated, fixed, good], federatesWith: [] });
    await waitFor(async () => (await hints(spec.targetPath)).length === 3, { message: 'the fixed SVID in hints.json' });
    expect((await hints(spec.targetPath)).map((e) => [e.file, e.hint])).toEqual([
      [CREDENTIAL, 'web'],
      [`1.${CREDENTIAL}`, 'admin'],
      [`2.${CREDENTIAL}`, 'db'],
    ]);
  });

  it('chooses by hint and keeps the other SVIDs in the agent order around it', async () => {
    const first = await hinted('spiffe://example.org/a', 'a');
    const second = await hinted('spiffe://example.org/b', 'b');
    const third = await hinted('spiffe://example.org/c', 'c');
    h.identity.respond = () => ({ svids: [first, second, third], federatesWith: [] });
    const spec = await h.spec({ allSvids: true, hint: 'b' });
    await manager.publish(spec);
    expect((await hints(spec.targetPath)).map((e) => [e.file, e.hint])).toEqual([
      [CREDENTIAL, 'b'],
      [`1.${CREDENTIAL}`, 'a'],
      [`2.${CREDENTIAL}`, 'c'],
    ]);
    expect(JSON.parse(await readFile(join(spec.targetPath, 'identity.json'), 'utf8'))).toMatchObject({ spiffeId: 'spiffe://example.org/b', hint: 'b' });
  });

  it('rewrites the folder when only a hint changes', async () => {
    const web = await hinted('spiffe://example.org/web', 'web');
    const db = await hinted('spiffe://example.org/db', 'db');
    h.identity.respond = () => ({ svids: [web, db], federatesWith: [] });
    const spec = await h.spec({ allSvids: true });
    await manager.publish(spec);
    h.identity.push({ svids: [web, { ...db, hint: 'database' }], federatesWith: [] });
    await waitFor(async () => (await hints(spec.targetPath))[1]?.hint === 'database', { message: 'the new hint in hints.json' });
  });
});
