/** What each benchmark hands back to bench/run.ts. */
import type { Figure } from "./report.ts";

export interface BenchResult {
  /** The headline numbers, printed as a table and compared with their goals. */
  figures: Figure[];
  /** Extra text printed under the table (breakdowns, warnings). */
  notes: string[];
  /** Everything measured, for bench/results.json. */
  details: Record<string, unknown>;
}
