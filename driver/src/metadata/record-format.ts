import { VOLUME_SPEC_FIELDS, valueAt, type SpecFieldType, type VolumeSpec } from '../volume/volume-spec.js';

/**
 * Rebuilds a VolumeSpec from untrusted JSON (a record on disk), checking every field's type by the
 * spec's field table. Fields the table does not name are dropped, so a record can never carry more
 * into the driver than a publish request could; fields the table added later get their
 * `whenAbsent` value, so records of an older driver still resume.
 */
export function parseVolumeSpec(raw: unknown): VolumeSpec {
  asObject(raw, 'spec');
  const out: Record<string, unknown> = {};
  for (const field of VOLUME_SPEC_FIELDS) {
    const name = ['spec', ...field.path].join('.');
    for (let depth = 1; depth < field.path.length; depth++) {
      asObject(valueAt(raw, field.path.slice(0, depth)), ['spec', ...field.path.slice(0, depth)].join('.'));
    }
    const value = valueAt(raw, field.path);
    // A field added after the record was written takes the value that keeps the volume as it was.
    if (value === undefined && field.whenAbsent !== undefined) setAt(out, field.path, field.whenAbsent(out));
    else setAt(out, field.path, checked(value, field.type, name));
  }
  return out as unknown as VolumeSpec;
}

function checked(value: unknown, type: SpecFieldType, name: string): unknown {
  switch (type) {
    case 'string':
      if (typeof value !== 'string' || value === '') throw new Error(`${name} must be a non-empty string`);
      return value;
    case 'boolean':
      if (typeof value !== 'boolean') throw new Error(`${name} must be a boolean`);
      return value;
    case 'gid-or-null':
      if (value !== null && !(Number.isInteger(value) && (value as number) >= 0)) {
        throw new Error(`${name} must be null or a non-negative integer`);
      }
      return value;
    case 'string-or-null':
      if (value !== null && typeof value !== 'string') throw new Error(`${name} must be null or a string`);
      return value;
    case 'strings':
      if (!Array.isArray(value) || !value.every((a) => typeof a === 'string')) throw new Error(`${name} must be an array of strings`);
      return [...(value as string[])];
  }
}

function setAt(obj: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let target = obj;
  for (const key of path.slice(0, -1)) target = (target[key] ??= {}) as Record<string, unknown>;
  target[path[path.length - 1]!] = value;
}

function asObject(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${what} must be an object`);
  return value as Record<string, unknown>;
}
