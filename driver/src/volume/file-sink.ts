import { AtomicWriter, type Ownership } from './atomic-writer.js';
import { buildPayload } from './payload.js';
import type { VolumeSink, VolumeState } from './sink.js';
import type { VolumeSpec } from './volume-spec.js';

export type WriterFactory = (targetDir: string) => AtomicWriter;

export const defaultWriterFactory: WriterFactory = (targetDir) => new AtomicWriter(targetDir);

/**
 * Writes the volume's files into its tmpfs. Files are root:fsGroup when a group is asked for, so
 * the 0440 key is readable by the pod and nobody else; otherwise root-owned and owner-only.
 */
export class FileSink implements VolumeSink {
  private readonly writer: AtomicWriter;
  private readonly ownership: Ownership | undefined;

  constructor(spec: VolumeSpec, writerFactory: WriterFactory = defaultWriterFactory) {
    this.writer = writerFactory(spec.targetPath);
    // The owner stays the driver (root in a cluster); only the group opens the key to the pod.
    this.ownership = spec.fsGroup === null ? undefined : { uid: process.getuid?.() ?? 0, gid: spec.fsGroup };
  }

  async update(state: VolumeState): Promise<boolean> {
    const { files } = buildPayload({
      spec: state.spec,
      svid: state.svid,
      bundles: state.bundles,
      federatesWith: state.federatesWith,
      ...(state.jwt === undefined ? {} : { jwt: state.jwt }),
      now: state.updatedAt,
    });
    const result = await this.writer.write(files, this.ownership);
    return result.changed;
  }

  async close(): Promise<void> {
    // Nothing to release: the files stay for the running pod until unpublish removes the mount.
  }
}
