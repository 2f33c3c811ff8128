/** What the torn-read readers report, shared by the reader threads and the tests. */
export interface ReadTally {
  /** Whole, consistent snapshots read (or FileSource updates verified). */
  reads: number;
  /** The first few torn snapshots, described. */
  torn: string[];
  /** Every torn snapshot. */
  tornCount: number;
  /** readSnapshot gave up because the writer kept swapping faster than it could read: not torn. */
  exhausted: number;
}

export interface ReaderThreadData {
  readonly folder: string;
}

export function emptyTally(): ReadTally {
  return { reads: 0, torn: [], tornCount: 0, exhausted: 0 };
}

export function addTallies(tallies: readonly ReadTally[]): ReadTally {
  const sum = emptyTally();
  for (const t of tallies) {
    sum.reads += t.reads;
    sum.torn.push(...t.torn);
    sum.tornCount += t.tornCount;
    sum.exhausted += t.exhausted;
  }
  return sum;
}
