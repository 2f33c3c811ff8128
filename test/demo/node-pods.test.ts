import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parsePods } from '../../dev/src/dev-agent/pods.js';
import { KubeletClient } from '../../dev/src/demo/kubelet-client.js';
import { PodsFile } from '../../dev/src/demo/node-pods.js';

describe("the demo's pods file (the dev agent's --pods)", () => {
  const folders: string[] = [];
  afterEach(async () => {
    for (const folder of folders.splice(0)) await rm(folder, { recursive: true, force: true });
  });

  async function podsFile(onLoaded: () => Promise<void> = async () => {}): Promise<PodsFile> {
    const folder = await mkdtemp(join(tmpdir(), 'spire-csi-pods-file-'));
    folders.push(folder);
    return new PodsFile(join(folder, 'pods.json'), onLoaded);
  }

  it('follows the pods created and deleted, in the format the dev agent reads', async () => {
    const file = await podsFile();
    await file.save();
    expect(parsePods(await readFile(file.path, 'utf8'))).toEqual([]);

    const web = KubeletClient.pod({ name: 'web-0', fsGroup: 1000 });
    const api = KubeletClient.pod({ name: 'api-0', namespace: 'shop', serviceAccount: 'api' });
    await file.created(web);
    await file.created(api);
    // fsGroup is kubelet's business, not the agent's: it is not written.
    expect(parsePods(await readFile(file.path, 'utf8'))).toEqual([
      { namespace: 'default', name: 'web-0', uid: web.uid, serviceAccount: 'web' },
      { namespace: 'shop', name: 'api-0', uid: api.uid, serviceAccount: 'api' },
    ]);

    await file.deleted(web);
    await file.deleted(web); // already gone: nothing to do
    expect(parsePods(await readFile(file.path, 'utf8'))).toEqual([{ namespace: 'shop', name: 'api-0', uid: api.uid, serviceAccount: 'api' }]);
    // Written whole by rename: no temporary file stays behind.
    expect(await readdir(join(file.path, '..'))).toEqual(['pods.json']);
  });

  it('tells the agent after every write, one write at a time, in order', async () => {
    const seen: string[][] = [];
    const holder: { file?: PodsFile } = {};
    const file = await podsFile(async () => {
      seen.push(parsePods(await readFile(holder.file!.path, 'utf8')).map((p) => p.name));
    });
    holder.file = file;
    const pods = ['a', 'b', 'c'].map((name) => KubeletClient.pod({ name }));
    await Promise.all(pods.map((pod) => file.created(pod)));
    await file.deleted(pods[1]!);
    expect(seen.at(-1)).toEqual(['a', 'c']);
    expect(seen.slice(0, 3)).toEqual([['a'], ['a', 'b'], ['a', 'b', 'c']]);
  });

  it('reports a failed write to its caller and keeps writing afterwards', async () => {
    let fail = true;
    const file = await podsFile(async () => {
      if (fail) throw new Error('agent refused the list');
    });
    await expect(file.created(KubeletClient.pod({ name: 'x' }))).rejects.toThrow('agent refused the list');
    fail = false;
    await file.created(KubeletClient.pod({ name: 'y' }));
    expect(parsePods(await readFile(file.path, 'utf8')).map((p) => p.name)).toEqual(['x', 'y']);
  });
});
