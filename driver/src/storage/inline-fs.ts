import * as fs from 'node:fs';
import type { WriterFileHandle, WriterFs } from './atomic-writer.js';

/**
 * The writer's fs calls made synchronously, for the driver's own tmpfs: each call is a few
 * microseconds of memory work that can never wait on a disk, while its threadpool round-trip (the
 * default promise API) costs far more in dispatch, callbacks and garbage, and a rotation of a
 * thousand volumes makes ~50 of them per volume. A whole payload of a few KiB blocks the event
 * loop for well under a millisecond. Never use it for a disk-backed target.
 * Errors surface as rejected promises, exactly like node:fs/promises.
 */
export const inlineFs: WriterFs = {
  async mkdir(path, options) {
    fs.mkdirSync(path, options);
  },
  async open(path, flags, mode) {
    return new InlineFileHandle(fs.openSync(path, flags, mode));
  },
  async chmod(path, mode) {
    fs.chmodSync(path, mode);
  },
  async chown(path, uid, gid) {
    fs.chownSync(path, uid, gid);
  },
  async symlink(target, path) {
    fs.symlinkSync(target, path);
  },
  async rename(oldPath, newPath) {
    fs.renameSync(oldPath, newPath);
  },
  async readlink(path) {
    return fs.readlinkSync(path);
  },
  async readdir(path, options) {
    return fs.readdirSync(path, options);
  },
  async readFile(path) {
    return fs.readFileSync(path);
  },
  async unlink(path) {
    fs.unlinkSync(path);
  },
  async rmdir(path) {
    fs.rmdirSync(path);
  },
  async rm(path, options) {
    fs.rmSync(path, options);
  },
};

class InlineFileHandle implements WriterFileHandle {
  private fd: number | undefined;

  constructor(fd: number) {
    this.fd = fd;
  }

  async writeFile(data: Buffer): Promise<void> {
    // writeFileSync on a descriptor loops until every byte is written.
    fs.writeFileSync(this.descriptor(), data);
  }

  async chown(uid: number, gid: number): Promise<void> {
    fs.fchownSync(this.descriptor(), uid, gid);
  }

  async chmod(mode: number): Promise<void> {
    fs.fchmodSync(this.descriptor(), mode);
  }

  async sync(): Promise<void> {
    fs.fsyncSync(this.descriptor());
  }

  async close(): Promise<void> {
    const fd = this.fd;
    if (fd === undefined) return;
    this.fd = undefined;
    fs.closeSync(fd);
  }

  private descriptor(): number {
    if (this.fd === undefined) throw Object.assign(new Error('inline-fs: file handle already closed'), { code: 'EBADF' });
    return this.fd;
  }
}
