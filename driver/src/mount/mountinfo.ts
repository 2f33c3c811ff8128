/**
 * Parser for /proc/<pid>/mountinfo (proc(5)). Pure, so the escaping rules are tested without a
 * kernel: the kernel writes space, tab, newline and backslash in paths as 3-digit octal escapes.
 */

export interface MountInfoEntry {
  readonly mountId: number;
  readonly parentId: number;
  readonly majorMinor: string;
  /** Path inside the source filesystem that forms the root of this mount. */
  readonly root: string;
  readonly mountPoint: string;
  readonly mountOptions: string;
  readonly optionalFields: readonly string[];
  readonly fsType: string;
  readonly source: string;
  readonly superOptions: string;
}

export class MountInfoError extends Error {
  constructor(message: string) {
    super(`mountinfo: ${message}`);
    this.name = 'MountInfoError';
  }
}

/** Decodes `\040`-style octal escapes; any other backslash is kept as is. */
export function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

export function parseMountInfoLine(line: string): MountInfoEntry {
  const fields = line.split(' ');
  const separator = fields.indexOf('-', 6);
  if (fields.length < 10 || separator < 0 || fields.length < separator + 4) {
    throw new MountInfoError(`malformed line: ${JSON.stringify(line)}`);
  }
  const mountId = Number(fields[0]);
  const parentId = Number(fields[1]);
  if (!Number.isInteger(mountId) || !Number.isInteger(parentId)) {
    throw new MountInfoError(`malformed mount ids in line: ${JSON.stringify(line)}`);
  }
  const at = (i: number): string => fields[i] ?? '';
  return {
    mountId,
    parentId,
    majorMinor: at(2),
    root: unescapeMountField(at(3)),
    mountPoint: unescapeMountField(at(4)),
    mountOptions: at(5),
    optionalFields: fields.slice(6, separator),
    fsType: at(separator + 1),
    source: unescapeMountField(at(separator + 2)),
    superOptions: at(separator + 3),
  };
}

/** Parses a whole mountinfo file; blank lines are ignored, malformed lines throw. */
export function parseMountInfo(text: string): MountInfoEntry[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map(parseMountInfoLine);
}

/** Entries mounted exactly at `absolutePath` (several when mounts are stacked). */
export function mountsAt(entries: readonly MountInfoEntry[], absolutePath: string): MountInfoEntry[] {
  return entries.filter((entry) => entry.mountPoint === absolutePath);
}

/** The kernel's escaping of paths in mountinfo (space, tab, newline, backslash), the inverse of `unescapeMountField`. */
export function escapeMountField(path: string): string {
  return path.replace(/[ \t\n\\]/g, (char) => `\\${char.charCodeAt(0).toString(8).padStart(3, '0')}`);
}

/**
 * `mountsAt(parseMountInfo(text), absolutePath)` without splitting every line into fields: with
 * a thousand pod volumes mounted, checking each of them that way is quadratic. An escaped path
 * contains no space, so ` <escaped path> ` can only be a whole field; only the lines holding it
 * are parsed, and then checked for it in the mount point field (it may be the root or source).
 */
export function scanMountsAt(text: string, absolutePath: string): MountInfoEntry[] {
  const needle = ` ${escapeMountField(absolutePath)} `;
  const found: MountInfoEntry[] = [];
  let at = text.indexOf(needle);
  while (at >= 0) {
    const start = text.lastIndexOf('\n', at) + 1;
    const newline = text.indexOf('\n', at);
    const end = newline < 0 ? text.length : newline;
    const entry = parseMountInfoLine(text.slice(start, end));
    if (entry.mountPoint === absolutePath) found.push(entry);
    at = text.indexOf(needle, end);
  }
  return found;
}
