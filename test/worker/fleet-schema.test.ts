/**
 * The Fleet's SQLite schema (src/store/fleet.ts): made once when an instance
 * is constructed, and an instance whose tables predate the schema (made on
 * first use, before some columns existed) is brought up to date with its
 * rows kept.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { migrateDurable } from "../../src/store/durable-schema.ts";
import { FLEET_SCHEMA } from "../../src/store/fleet.ts";

const columnsOf = (sql: SqlStorage, table: string) => sql.exec<{ name: string }>(`PRAGMA table_info(${table})`).toArray().map((c) => c.name);
const versionOf = (sql: SqlStorage) => sql.exec<{ version: number }>("SELECT version FROM sortie_schema WHERE name = 'fleet'").toArray()[0]?.version;

describe("the fleet's schema", () => {
  it("is in place as soon as an instance exists, at its last version", async () => {
    await runInDurableObject(env.Fleet.get(env.Fleet.idFromName("schema-fresh")), (_instance, state) => {
      const sql = state.storage.sql;
      expect(versionOf(sql)).toBe(FLEET_SCHEMA.length);
      expect(columnsOf(sql, "fleet_slots")).toContain("checked_at");
      expect(columnsOf(sql, "fleet_warm")).toEqual(expect.arrayContaining(["bytes", "family"]));
      for (const table of ["fleet_claims", "fleet_rate", "fleet_host_boot"]) expect(columnsOf(sql, table).length, table).toBeGreaterThan(0);
    });
  });

  it("brings tables made before it up to date, keeping their rows, and does nothing the second time", async () => {
    await runInDurableObject(env.Fleet.get(env.Fleet.idFromName("schema-old")), (_instance, state) => {
      const sql = state.storage.sql;
      // As an instance from before the schema left them: no record of a version, columns missing.
      for (const table of ["sortie_schema", "fleet_slots", "fleet_claims", "fleet_rate", "fleet_warm", "fleet_host_boot"]) sql.exec(`DROP TABLE IF EXISTS ${table}`);
      sql.exec("CREATE TABLE fleet_slots (seq INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL, run INTEGER NOT NULL, creator TEXT NOT NULL, state TEXT NOT NULL, enqueued_at INTEGER NOT NULL, granted_at INTEGER, UNIQUE (task_id, run))");
      sql.exec("CREATE TABLE fleet_warm (key TEXT PRIMARY KEY, snapshot TEXT NOT NULL, at INTEGER NOT NULL)");
      sql.exec("INSERT INTO fleet_slots (task_id, run, creator, state, enqueued_at, granted_at) VALUES ('t1', 0, 'alice', 'live', 1, 2)");
      sql.exec("INSERT INTO fleet_warm (key, snapshot, at) VALUES ('k', 'snap-1', 3)");
      migrateDurable(state.storage, "fleet", FLEET_SCHEMA);
      expect(versionOf(sql)).toBe(FLEET_SCHEMA.length);
      expect(columnsOf(sql, "fleet_slots")).toContain("checked_at");
      expect(sql.exec("SELECT task_id, creator, state, checked_at FROM fleet_slots").toArray()).toEqual([{ task_id: "t1", creator: "alice", state: "live", checked_at: null }]);
      expect(sql.exec("SELECT key, snapshot, bytes, family FROM fleet_warm").toArray()).toEqual([{ key: "k", snapshot: "snap-1", bytes: 0, family: null }]);
      expect(columnsOf(sql, "fleet_claims")).toEqual(["key", "task_id", "expires_at"]);
      // Applied already: nothing runs again (an ALTER of a column that exists would throw).
      migrateDurable(state.storage, "fleet", FLEET_SCHEMA);
      expect(versionOf(sql)).toBe(FLEET_SCHEMA.length);
    });
  });
});
