import { afterEach, describe, expect, it } from 'vitest';
import type { BrokerBackend } from '../../driver/src/identity/broker/broker-backend.js';
import { isRoot } from '../helpers/driver-harness.js';
import type { EmulatedPod, PublishedVolume } from '../helpers/kubelet-emulator.js';
import { waitFor } from '../helpers/wait-for.js';
import { BrokerNode, serialOf } from '../driver/broker-node.js';

const VOLUMES = 100;

async function allRotated(volumes: readonly PublishedVolume[], before: ReadonlyMap<string, string>): Promise<boolean> {
  for (const volume of volumes) {
    if ((await serialOf(volume.targetPath)) === before.get(volume.volumeId)) return false;
  }
  return true;
}

async function serials(volumes: readonly PublishedVolume[]): Promise<Map<string, string>> {
  return new Map(await Promise.all(volumes.map(async (v) => [v.volumeId, await serialOf(v.targetPath)] as const)));
}

describe.skipIf(!isRoot)("broker mode: the driver's own SVID rotates under 100 open volume streams", () => {
  let node: BrokerNode;

  afterEach(async () => {
    await node?.cleanup();
  });

  it('breaks or pauses no stream: no failed publish, no missed update, and reconnects use the new SVID', async () => {
    node = await BrokerNode.create();
    const driver = await node.startDriver();
    const backend = driver.identity as BrokerBackend;
    const pods: EmulatedPod[] = [];
    for (let i = 0; i < VOLUMES + 10; i++) pods.push(await node.pod(i % 2 === 0 ? 'web' : 'db'));
    const volumes = await Promise.all(pods.slice(0, VOLUMES).map((pod) => node.kubelet.publish(pod)));
    expect(node.agent.brokerStreamCount).toBe(VOLUMES);
    const ownBefore = node.agent.workloadSvid!.serial;

    // The driver's SVID and every pod's SVID rotate at the same moment.
    const before = await serials(volumes);
    await Promise.all([node.agent.rotateWorkloadSvid(), node.agent.rotateNow()]);
    await waitFor(() => allRotated(volumes, before), { timeoutMs: 20_000, message: 'every volume to get its rotated SVID' });
    const seconds = (date: Date | undefined): number | undefined => (date === undefined ? undefined : Math.floor(date.getTime() / 1000));
    await waitFor(() => seconds(backend.ownSvidExpiry()) === seconds(node.agent.workloadSvid!.expiresAt), {
      message: "the driver to hold its rotated SVID",
    });
    expect(node.agent.workloadSvid!.serial).not.toBe(ownBefore);
    expect(node.agent.brokerStreamCount).toBe(VOLUMES);
    expect(driver.identity.connected).toBe(true);

    // New publishes after the rotation all succeed.
    const later = await Promise.all(pods.slice(VOLUMES).map((pod) => node.kubelet.publish(pod)));
    expect(later).toHaveLength(10);

    // A new connection is made with the rotated SVID: the endpoint restarts, every stream resubscribes.
    await node.agent.setAnswering(false);
    await waitFor(() => !driver.identity.connected, { message: 'the driver to see the endpoint go' });
    await node.agent.setAnswering(true);
    await waitFor(() => node.agent.brokerStreamCount === VOLUMES + 10, { timeoutMs: 30_000, message: 'every stream to resubscribe over the new connection' });
    const all = [...volumes, ...later];
    const again = await serials(all);
    await node.agent.rotateNow();
    await waitFor(() => allRotated(all, again), { timeoutMs: 20_000, message: 'every volume to get the next rotation' });
    expect(node.logLines.filter((line) => line.includes('"level":50') || line.includes('"level":"error"'))).toEqual([]);
  }, 120_000);
});
