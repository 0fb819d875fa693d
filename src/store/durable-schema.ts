/**
 * The schema of a Durable Object's own SQLite database, as numbered steps:
 * each applied once, in order, in one transaction, and recorded in
 * `sortie_schema` under the schema's name. An instance migrates when it is
 * constructed, so no query path creates or alters a table.
 *
 *   migrateDurable(ctx.storage, "fleet", FLEET_SCHEMA);
 */
export type SchemaStep = string | ((sql: SqlStorage) => void);

export function migrateDurable(storage: DurableObjectStorage, name: string, steps: readonly SchemaStep[]): void {
  const sql = storage.sql;
  sql.exec("CREATE TABLE IF NOT EXISTS sortie_schema (name TEXT PRIMARY KEY, version INTEGER NOT NULL)");
  const at = sql.exec<{ version: number }>("SELECT version FROM sortie_schema WHERE name = ?", name).toArray()[0]?.version ?? 0;
  if (at >= steps.length) return;
  storage.transactionSync(() => {
    for (const step of steps.slice(at)) {
      if (typeof step === "string") sql.exec(step);
      else step(sql);
    }
    sql.exec("INSERT OR REPLACE INTO sortie_schema (name, version) VALUES (?, ?)", name, steps.length);
  });
}

/** Adds `column` to `table` unless it is there (a table created before the column existed). */
export function addColumnIfMissing(sql: SqlStorage, table: string, column: string, definition: string): void {
  const columns = sql.exec<{ name: string }>(`PRAGMA table_info(${table})`).toArray().map((c) => c.name);
  if (!columns.includes(column)) sql.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${definition}`);
}
