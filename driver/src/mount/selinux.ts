/**
 * SELinux labels for the volume's tmpfs. With `seLinuxMount: true` on the CSIDriver, kubelet sends
 * the pod's label as a `context="..."` mount flag and skips relabelling the volume, so the driver
 * must mount with it; without one (SELinux off on the node, or a pod without a label), the driver's
 * `--selinux-context` decides.
 */
import { readFile } from 'node:fs/promises';
import { scanMountsAt } from './mountinfo.js';

/** What `--selinux-context auto` labels a tmpfs with on an SELinux node when kubelet sent no context. */
export const AUTO_SELINUX_CONTEXT = 'system_u:object_r:container_file_t:s0';
/** Where the kernel's selinuxfs is mounted when SELinux is enabled (libselinux looks there too). */
export const SELINUXFS_MOUNT_POINT = '/sys/fs/selinux';

/**
 * `user:role:type[:level]`, the level an MLS/MCS sensitivity range with categories (`s0`,
 * `s0:c1,c2`, `s0-s0:c0.c1023`). Nothing else: the label goes into a mount option string, where a
 * quote, or a comma that is not between categories, would end it or smuggle in another option.
 */
const NAME = '[A-Za-z0-9_.]+';
const CATEGORIES = 'c[0-9]+(?:\\.c[0-9]+)?(?:,c[0-9]+(?:\\.c[0-9]+)?)*';
const SENSITIVITY = `s[0-9]+(?::${CATEGORIES})?`;
const SELINUX_LABEL = new RegExp(`^${NAME}:${NAME}:${NAME}(?::${SENSITIVITY}(?:-${SENSITIVITY})?)?$`);
const MAX_LABEL_LENGTH = 1024;

export function isSelinuxLabel(value: string): boolean {
  return value.length <= MAX_LABEL_LENGTH && SELINUX_LABEL.test(value);
}

/**
 * `auto`: label with AUTO_SELINUX_CONTEXT when SELinux is enabled; `none`: mount without a
 * context; a label: always that one. Only for volumes kubelet sent no context for: kubelet's own
 * is always applied, since kubelet then does not relabel the volume.
 */
export type SelinuxSetting = { readonly mode: 'auto' } | { readonly mode: 'none' } | { readonly mode: 'label'; readonly label: string };

export class SelinuxSettingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SelinuxSettingError';
  }
}

export function parseSelinuxSetting(value: string, field = '--selinux-context'): SelinuxSetting {
  if (value === 'auto' || value === 'none') return { mode: value };
  if (isSelinuxLabel(value)) return { mode: 'label', label: value };
  throw new SelinuxSettingError(
    `${field} ${JSON.stringify(value.slice(0, 256))} is neither auto, none nor an SELinux label; ` +
      `use auto, none, or a label such as ${AUTO_SELINUX_CONTEXT}`,
  );
}

/** Whether SELinux is enabled on this node; injected where a test needs another answer. */
export type SelinuxProbe = () => Promise<boolean>;

export interface SelinuxfsProbeOptions {
  readonly mountInfoPath?: string;
  readonly mountPoint?: string;
}

/**
 * True when a selinuxfs is mounted at /sys/fs/selinux, which is how libselinux's
 * is_selinux_enabled() decides too: without it the kernel has no policy loaded (or hides it from
 * this container), and a `context=` option would make mount(2) fail with EINVAL.
 */
export function selinuxfsProbe(options: SelinuxfsProbeOptions = {}): SelinuxProbe {
  const mountInfoPath = options.mountInfoPath ?? '/proc/self/mountinfo';
  const mountPoint = options.mountPoint ?? SELINUXFS_MOUNT_POINT;
  return async () => {
    let text: string;
    try {
      text = await readFile(mountInfoPath, 'utf8');
    } catch {
      return false;
    }
    try {
      return scanMountsAt(text, mountPoint).some((entry) => entry.fsType === 'selinuxfs');
    } catch {
      // A line that does not parse cannot show selinuxfs; the mount then goes without a label.
      return false;
    }
  };
}

/** The label a tmpfs gets when kubelet sent none, or undefined to mount without one. */
export async function defaultSelinuxContext(setting: SelinuxSetting, probe: SelinuxProbe): Promise<string | undefined> {
  switch (setting.mode) {
    case 'none':
      return undefined;
    case 'label':
      return setting.label;
    case 'auto':
      return (await probe()) ? AUTO_SELINUX_CONTEXT : undefined;
  }
}
