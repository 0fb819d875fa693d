/**
 * Screenshots of a task's previews, kept in the agent's SQLite with the task:
 * one PNG per run, the latest taken, served by `GET …/runs/:n/screenshot`.
 */

/** Largest PNG kept: under the 2 MB SQLite row limit. */
export const SCREENSHOT_MAX_BYTES = 1_900_000;

export class ScreenshotStore {
  constructor(private readonly sql: SqlStorage) {}

  /** Keeps `png` as run `run`'s screenshot; false (and nothing kept) when it is over the size limit. */
  put(run: number, png: Uint8Array, takenAt = Date.now()): boolean {
    if (png.byteLength > SCREENSHOT_MAX_BYTES) return false;
    this.sql.exec("INSERT OR REPLACE INTO sortie_screenshots (run, png, taken_at) VALUES (?, ?, ?)", run, png, takenAt);
    return true;
  }

  get(run: number): Uint8Array | null {
    const rows = this.sql.exec<{ png: ArrayBuffer }>("SELECT png FROM sortie_screenshots WHERE run = ?", run).toArray();
    return rows[0] ? new Uint8Array(rows[0].png) : null;
  }
}

/** The screenshots' table (in the task agent's schema: src/store/agent-schemas.ts). */
export const SCREENSHOTS_TABLE = `CREATE TABLE IF NOT EXISTS sortie_screenshots (
  run INTEGER PRIMARY KEY,
  png BLOB NOT NULL,
  taken_at INTEGER NOT NULL
)`;
