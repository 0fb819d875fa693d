/**
 * Each subtask's change as the plan agent took it from its task, kept in the
 * plan agent's SQLite for the integration.
 */
export class PlanPatches {
  constructor(private readonly sql: SqlStorage) {}

  put(key: string, patch: string): void {
    this.sql.exec("INSERT OR REPLACE INTO plan_patches (key, patch) VALUES (?, ?)", key, patch);
  }

  /** The subtask's change, empty when it has none. */
  get(key: string): string {
    return this.sql.exec<{ patch: string }>("SELECT patch FROM plan_patches WHERE key = ?", key).toArray()[0]?.patch ?? "";
  }
}

export const PLAN_PATCHES_TABLE = "CREATE TABLE IF NOT EXISTS plan_patches (key TEXT PRIMARY KEY, patch TEXT NOT NULL)";
