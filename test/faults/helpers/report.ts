/** One summary line per fault test, in a fixed format the lead copies into BENCHMARKS.md. */
export interface FaultSummary {
  readonly seed: number;
  /** Operations, requests or reads checked. */
  readonly cases: number;
  /** Faults injected (kills, outages, bad messages, mutations...). */
  readonly faults: number;
  /** Valid credentials lost, torn reads seen, leaked mounts/records: must be 0. */
  readonly losses: number;
  readonly notes?: Readonly<Record<string, number | string>>;
}

export function reportFaults(name: string, summary: FaultSummary): void {
  const notes = Object.entries(summary.notes ?? {})
    .map(([key, value]) => ` ${key}=${value}`)
    .join('');
  console.log(
    `[faults] SUMMARY ${name}: seed=${summary.seed} cases=${summary.cases} faults=${summary.faults} losses=${summary.losses}${notes}`,
  );
}
