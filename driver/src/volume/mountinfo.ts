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
