import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../driver/src/logging.js';
import { startDriver, type RunningDriver } from '../../driver/src/main.js';
import { DriverHarness, isRoot } from '../helpers/driver-harness.js';
import { KubeletEmulator } from '../helpers/kubelet-emulator.js';
import { waitFor } from '../helpers/wait-for.js';

const WEB_ID = 'spiffe://example.org/ns/default/sa/web';

function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

describe.skipIf(!isRoot)('driver metrics end to end (dev agent, real tmpfs)', () => {
  let h: DriverHarness;
  let driver: RunningDriver | undefined;

  beforeEach(async () => {
    h = await DriverHarness.create({
      registrations: {
        entries: [
          {
            spiffeId: WEB_ID,
            selectors: [
              { type: 'k8s', value: 'ns:default' },
              { type: 'k8s', value: 'sa:web' },
            ],
            federatesWith: [],
            hint: '',
          },
        ],
        federatedTrustDomains: [],
      },
      publishTimeoutMs: 3_000,
    });
  });

  afterEach(async () => {
    await driver?.stop();
    driver = undefined;
    await h.cleanup();
  });

  it('serves readiness and volume metrics for a real publish, rotation and unpublish', async () => {
    // The harness's own startDriver() has no metrics option; this driver is stopped in afterEach.
    driver = await startDriver({ ...h.config, metricsAddress: '127.0.0.1:0' }, { logger: createLogger('error') });
    expect(driver.metricsAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    const base = `http://${driver.metricsAddress}`;
    const scrape = async (): Promise<string> => (await fetch(`${base}/metrics`)).text();

    await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, { message: '/readyz to turn 200' });
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect(sample(await scrape(), 'spire_csi_agent_connected')).toBe(1);

    const volume = await h.kubelet.publish(KubeletEmulator.pod({ serviceAccount: 'web' }));
    let text = await scrape();
    expect(sample(text, 'spire_csi_volumes')).toBe(1);
    expect(sample(text, 'spire_csi_publish_total{result="ok"}')).toBe(1);
    expect(sample(text, 'spire_csi_publish_duration_seconds_count')).toBe(1);
    const expiry = sample(text, 'spire_csi_svid_expiry_seconds');
    expect(expiry).toBeGreaterThan(0);
    expect(expiry).toBeLessThanOrEqual(3600);

    await h.agent.rotateNow();
    await waitFor(async () => (sample(await scrape(), 'spire_csi_rotations_total') ?? 0) >= 1, { message: 'a counted rotation' });

    await h.kubelet.unpublish(volume);
    text = await scrape();
    expect(sample(text, 'spire_csi_volumes')).toBe(0);
    expect(sample(text, 'spire_csi_unpublish_total{result="ok"}')).toBe(1);
    expect(sample(text, 'spire_csi_svid_expiry_seconds')).toBeUndefined();

    await h.agent.stop();
    const reason = await waitFor(
      async () => {
        const res = await fetch(`${base}/readyz`);
        return res.status === 503 ? res.text() : null;
      },
      { message: '/readyz to turn 503 without the agent' },
    );
    expect(reason).toBe(`agent unreachable at ${h.adminSocket}\n`);
    expect(sample(await scrape(), 'spire_csi_agent_connected')).toBe(0);

    await driver.stop();
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  });
});
