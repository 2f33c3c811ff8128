import { describe, expect, it } from 'vitest';
import {
  escapeMountField,
  MountInfoError,
  mountsAt,
  parseMountInfo,
  parseMountInfoLine,
  scanMountsAt,
  unescapeMountField,
} from '../../driver/src/mount/mountinfo.js';
import { TMPFS_MOUNT_FLAGS, tmpfsMountData, tmpfsMountOptions } from '../../driver/src/mount/mounter.js';

const SAMPLE = [
  '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw',
  '41 22 0:38 / /var/lib/kubelet/pods/abc/volumes/kubernetes.io~csi/spiffe/mount rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,size=1024k,mode=755',
  '42 22 0:39 / /mnt/with\\040space\\011tab rw,relatime master:3 shared:4 - tmpfs my\\134src rw',
  '',
].join('\n');

describe('mountinfo parser', () => {
  it('parses the fields of each line', () => {
    const entries = parseMountInfo(SAMPLE);
    expect(entries).toHaveLength(3);
    expect(entries[1]).toMatchObject({
      mountId: 41,
      parentId: 22,
      majorMinor: '0:38',
      root: '/',
      mountPoint: '/var/lib/kubelet/pods/abc/volumes/kubernetes.io~csi/spiffe/mount',
      fsType: 'tmpfs',
      source: 'tmpfs',
      superOptions: 'rw,size=1024k,mode=755',
      optionalFields: [],
    });
  });

  it('decodes octal escapes in paths and keeps optional fields', () => {
    const entry = parseMountInfo(SAMPLE)[2];
    expect(entry?.mountPoint).toBe('/mnt/with space\ttab');
    expect(entry?.source).toBe('my\\src');
    expect(entry?.optionalFields).toEqual(['master:3', 'shared:4']);
  });

  it('leaves non-escape backslashes alone', () => {
    expect(unescapeMountField('a\\x\\012b')).toBe('a\\x\nb');
  });

  it('rejects malformed lines', () => {
    expect(() => parseMountInfoLine('1 2 3')).toThrow(MountInfoError);
    expect(() => parseMountInfoLine('x 1 0:1 / /a rw shared:1 - tmpfs tmpfs rw')).toThrow(/mountinfo: malformed mount ids/);
    expect(() => parseMountInfoLine('1 2 0:1 / /a rw shared:1 x tmpfs tmpfs rw')).toThrow(/mountinfo: malformed line/);
  });

  it('finds every mount stacked at a path', () => {
    const text = `${SAMPLE}43 41 0:40 / /var/lib/kubelet/pods/abc/volumes/kubernetes.io~csi/spiffe/mount rw - tmpfs tmpfs rw\n`;
    expect(mountsAt(parseMountInfo(text), '/var/lib/kubelet/pods/abc/volumes/kubernetes.io~csi/spiffe/mount')).toHaveLength(2);
    expect(mountsAt(parseMountInfo(text), '/var/lib/kubelet/pods/abc')).toHaveLength(0);
  });
});

describe('scanning mountinfo for one path', () => {
  const text = [
    SAMPLE.trimEnd(),
    // /srv appears as a root and as a source below, never as a mount point.
    '50 22 0:41 /srv /mnt/bind rw - ext4 /srv rw',
    '51 22 0:42 / /srv/sub rw - tmpfs tmpfs rw',
    '52 51 0:43 / /srv/sub rw - tmpfs tmpfs rw',
    '53 22 0:44 / /last\\134line rw - tmpfs tmpfs rw',
  ].join('\n');

  it('finds what the full parse finds', () => {
    const paths = ['/', '/mnt/with space\ttab', '/var/lib/kubelet/pods/abc/volumes/kubernetes.io~csi/spiffe/mount', '/srv', '/srv/sub', '/mnt/bind', '/last\\line', '/mnt', '/nowhere'];
    for (const path of paths) {
      expect(scanMountsAt(text, path), path).toEqual(mountsAt(parseMountInfo(text), path));
    }
    expect(scanMountsAt(text, '/srv/sub').map((entry) => entry.mountId)).toEqual([51, 52]);
    expect(scanMountsAt(text, '/srv')).toEqual([]);
  });

  it('escapes paths the way the kernel does', () => {
    expect(escapeMountField('/a b\tc\nd\\e')).toBe('/a\\040b\\011c\\012d\\134e');
    expect(unescapeMountField(escapeMountField('/a b\\040'))).toBe('/a b\\040');
  });
});

describe('tmpfs mount options', () => {
  it('splits flags from the tmpfs data for mount(2)', () => {
    expect(tmpfsMountData({ sizeBytes: 4096, mode: 0o750, gid: 2000 })).toBe('size=4096,mode=0750,gid=2000');
    // MS_NOSUID | MS_NODEV | MS_NOEXEC
    expect(TMPFS_MOUNT_FLAGS).toBe(0x2 | 0x4 | 0x8);
  });

  it('restricts size, mode and executable content', () => {
    expect(tmpfsMountOptions({ sizeBytes: 1048576, mode: 0o755 })).toBe('size=1048576,mode=0755,nosuid,nodev,noexec');
    expect(tmpfsMountOptions({ sizeBytes: 4096, mode: 0o750, gid: 2000 })).toBe('size=4096,mode=0750,gid=2000,nosuid,nodev,noexec');
  });

  it('rejects values that would change the option string', () => {
    expect(() => tmpfsMountOptions({ sizeBytes: 0, mode: 0o755 })).toThrow(/mounter: tmpfs size/);
    expect(() => tmpfsMountOptions({ sizeBytes: 1.5, mode: 0o755 })).toThrow(/mounter: tmpfs size/);
    expect(() => tmpfsMountOptions({ sizeBytes: 10, mode: 0o755, gid: -1 })).toThrow(/mounter: invalid gid/);
  });
});
