import { AtomicWriter, type Ownership } from './atomic-writer.js';
import { inlineFs } from './inline-fs.js';
import { buildPayload } from './payload.js';
import type { PemMemo } from './pem-memo.js';
import type { VolumeState } from '../volume/volume-state.js';
import type { VolumeSpec } from '../volume/volume-spec.js';

export type WriterFactory = (targetDir: string) => AtomicWriter;

/** For any directory: every file and the swap are fsynced. */
export const defaultWriterFactory: WriterFactory = (targetDir) => new AtomicWriter(targetDir);

/**
 * For the driver's own tmpfs: no fsync (memory has nothing to flush, and the mount does not outlive
 * a reboot) and synchronous calls (each is microseconds on memory). Readers still see one rename.
 * `deferCleanup` receives the removal of replaced payload directories, to run after other writes.
 */
export function tmpfsWriterFactory(deferCleanup?: (task: () => Promise<void>) => void): WriterFactory {
  return (targetDir) => new AtomicWriter(targetDir, { fs: inlineFs, durable: false, ...(deferCleanup === undefined ? {} : { deferCleanup }) });
}

export interface VolumeFilesOptions {
  readonly writerFactory?: WriterFactory;
  /**
   * Runs before every write and throws when the target is no longer the tmpfs the driver mounted
   * (then nothing is written: key material must never land on the node's disk).
   */
  readonly verifyTarget?: () => Promise<unknown>;
  /** Shared across volumes so identical SVIDs and bundles are encoded once. */
  readonly pem?: PemMemo;
}

/** The target is not the tmpfs the driver mounted (unmounted, replaced): nothing was written. */
export class TargetUnsafeError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TargetUnsafeError';
  }
}

/**
 * Writes the volume's files into its tmpfs. Files are root:fsGroup when a group is asked for, so
 * the 0440 key is readable by the pod and nobody else; otherwise root-owned and owner-only.
 */
export class VolumeFiles {
  private readonly writer: AtomicWriter;
  private readonly ownership: Ownership | undefined;
  private readonly pem: PemMemo | undefined;
  private readonly verifyTarget: (() => Promise<unknown>) | undefined;

  constructor(spec: VolumeSpec, options: VolumeFilesOptions = {}) {
    this.writer = (options.writerFactory ?? defaultWriterFactory)(spec.targetPath);
    this.pem = options.pem;
    this.verifyTarget = options.verifyTarget;
    // The owner stays the driver (root in a cluster); only the group opens the key to the pod.
    this.ownership = spec.fsGroup === null ? undefined : { uid: process.getuid?.() ?? 0, gid: spec.fsGroup };
  }

  /** Resolves true when the files changed. */
  async write(state: VolumeState): Promise<boolean> {
    if (this.verifyTarget !== undefined) {
      try {
        await this.verifyTarget();
      } catch (err) {
        throw new TargetUnsafeError(`${state.spec.targetPath}: ${(err as Error).message}; wrote nothing`, { cause: err });
      }
    }
    const { files } = buildPayload({
      spec: state.spec,
      svid: state.svid,
      bundles: state.bundles,
      federatesWith: state.federatesWith,
      ...(state.jwt === undefined ? {} : { jwt: state.jwt }),
      ...(state.extras === undefined ? {} : { extras: state.extras }),
      now: state.updatedAt,
      parsed: state.parsed,
      ...(this.pem === undefined ? {} : { pem: this.pem }),
    });
    const result = await this.writer.write(files, this.ownership);
    return result.changed;
  }
}
