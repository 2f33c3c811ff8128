import { FileSource, type Logger } from '@spire-csi/sdk';
import type { DemoState, PodRole } from './state.js';

/**
 * Opens a pod's credential folder with the SDK, as the pod's application would, and reports
 * every load, rejected update and expiry warning to the demo state.
 */
export async function openPodSource(
  role: PodRole,
  folder: string,
  rotationMs: number,
  state: DemoState,
  logger: Logger,
): Promise<FileSource> {
  // The default window (a third of the lifetime, which counts the agent's backdating) would fire on
  // every SVID with second-scale TTLs; a quarter of the rotation interval still flags a late one.
  const source = new FileSource(folder, { logger, expiryWarningMs: rotationMs / 4 });
  source.on('update', ({ svid }) =>
    state.credentialsLoaded(role, { spiffeId: svid.id.toString(), serial: svid.serialNumber, notAfter: svid.notAfter }),
  );
  source.on('error', (error) => state.note(`${role} SDK kept its current credentials: ${error.message}`, 'warning'));
  source.on('warning', (warning) => state.note(`${role} SDK: ${warning.message}`, 'warning'));
  try {
    await source.ready(10_000);
  } catch (error) {
    await source.close();
    throw error;
  }
  return source;
}
