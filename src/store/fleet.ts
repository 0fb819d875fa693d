/**
 * The Fleet's SQLite (its Durable Object storage): the slot queue, claims,
 * rate windows and the warm-snapshot index, each a class of its own over
 * the tables FLEET_SCHEMA makes. The Fleet (src/agents/fleet.ts) decides;
 * these only read and write.
 */
import { addColumnIfMissing, type SchemaStep } from "./durable-schema.ts";

/**
 * Step 1 is every table as the Fleet made them on first use before it had a schema, so an instance from then
 * takes it as it stands; step 2 adds the columns that came later to such an instance's tables.
 */
export const FLEET_SCHEMA: readonly SchemaStep[] = [
  (sql) => {
    sql.exec(`CREATE TABLE IF NOT EXISTS fleet_slots (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      task_id TEXT NOT NULL,
      run INTEGER NOT NULL,
      creator TEXT NOT NULL,
      state TEXT NOT NULL,
      enqueued_at INTEGER NOT NULL,
      granted_at INTEGER,
      checked_at INTEGER,
      UNIQUE (task_id, run)
    )`);
    // The queue in order, and each creator's runs by state: what a grant, a release and a queue position read.
    sql.exec("CREATE INDEX IF NOT EXISTS fleet_slots_queue ON fleet_slots (state, seq)");
    sql.exec("CREATE INDEX IF NOT EXISTS fleet_slots_creator ON fleet_slots (state, creator, seq)");
    sql.exec("CREATE TABLE IF NOT EXISTS fleet_claims (key TEXT PRIMARY KEY, task_id TEXT NOT NULL, expires_at INTEGER NOT NULL)");
    sql.exec("CREATE TABLE IF NOT EXISTS fleet_rate (key TEXT NOT NULL, at INTEGER NOT NULL, n INTEGER NOT NULL)");
    sql.exec("CREATE TABLE IF NOT EXISTS fleet_warm (key TEXT PRIMARY KEY, snapshot TEXT NOT NULL, at INTEGER NOT NULL, bytes INTEGER NOT NULL DEFAULT 0, family TEXT)");
    sql.exec("CREATE TABLE IF NOT EXISTS fleet_host_boot (id TEXT PRIMARY KEY)");
  },
  (sql) => {
    addColumnIfMissing(sql, "fleet_slots", "checked_at", "INTEGER");
    addColumnIfMissing(sql, "fleet_warm", "bytes", "INTEGER NOT NULL DEFAULT 0");
    addColumnIfMissing(sql, "fleet_warm", "family", "TEXT");
  },
];

export type SlotRow = {
  seq: number;
  task_id: string;
  run: number;
  creator: string;
  state: "queued" | "live";
  enqueued_at: number;
  granted_at: number | null;
};

/** The slot queue: each holder's slots, queued or live. */
export class SlotTable {
  constructor(private readonly sql: SqlStorage) {}

  /** Queues a slot unless the holder has it already (queued or live). */
  enqueue(holder: string, slot: number, creator: string, at: number): void {
    this.sql.exec("INSERT OR IGNORE INTO fleet_slots (task_id, run, creator, state, enqueued_at) VALUES (?, ?, ?, 'queued', ?)", holder, slot, creator, at);
  }

  /** Deletes a slot; what it was, if it existed. */
  remove(holder: string, slot: number): { state: string; creator: string } | undefined {
    return this.sql.exec<{ state: string; creator: string }>("DELETE FROM fleet_slots WHERE task_id = ? AND run = ? RETURNING state, creator", holder, slot).toArray()[0];
  }

  dropQueued(holder: string): void {
    this.sql.exec("DELETE FROM fleet_slots WHERE task_id = ? AND state = 'queued'", holder);
  }

  /** 1-based place in the queue of each of the holder's waiting slots. */
  positions(holder: string): Record<number, number> {
    const rows = this.sql.exec<{ run: number; position: number }>(
      `SELECT s.run AS run, (SELECT COUNT(*) FROM fleet_slots q WHERE q.state = 'queued' AND q.seq <= s.seq) AS position
       FROM fleet_slots s WHERE s.task_id = ? AND s.state = 'queued'`,
      holder,
    ).toArray();
    return Object.fromEntries(rows.map((row) => [row.run, row.position]));
  }

  countsByState(): { live: number; queued: number } {
    const counts = this.sql.exec<{ state: string; n: number }>("SELECT state, COUNT(*) AS n FROM fleet_slots GROUP BY state").toArray();
    const count = (state: string) => counts.find((row) => row.state === state)?.n ?? 0;
    return { live: count("live"), queued: count("queued") };
  }

  liveByCreator(): { creator: string; n: number }[] {
    return this.sql.exec<{ creator: string; n: number }>("SELECT creator, COUNT(*) AS n FROM fleet_slots WHERE state = 'live' GROUP BY creator").toArray();
  }

  /** The oldest waiting slot of each creator that has one. */
  queueHeads(): { creator: string; seq: number }[] {
    return this.sql.exec<{ creator: string; seq: number }>("SELECT creator, MIN(seq) AS seq FROM fleet_slots WHERE state = 'queued' GROUP BY creator").toArray();
  }

  nextQueuedOf(creator: string): { seq: number } | undefined {
    return this.sql.exec<{ seq: number }>("SELECT seq FROM fleet_slots WHERE state = 'queued' AND creator = ? ORDER BY seq LIMIT 1", creator).toArray()[0];
  }

  markLive(seq: number, at: number): SlotRow {
    return this.sql.exec<SlotRow>("UPDATE fleet_slots SET state = 'live', granted_at = ? WHERE seq = ? RETURNING *", at, seq).toArray()[0]!;
  }

  /** A live slot back in the queue (its grant did not reach the holder); its creator, if it was live. */
  requeue(holder: string, slot: number): { creator: string } | undefined {
    return this.sql.exec<{ creator: string }>("UPDATE fleet_slots SET state = 'queued', granted_at = NULL WHERE task_id = ? AND run = ? AND state = 'live' RETURNING creator", holder, slot).toArray()[0];
  }

  /** Live slots not asked about since `before`, those asked about longest ago first. */
  unchecked(before: number, limit: number): SlotRow[] {
    return this.sql.exec<SlotRow>("SELECT * FROM fleet_slots WHERE state = 'live' AND COALESCE(checked_at, granted_at) < ? ORDER BY COALESCE(checked_at, granted_at) LIMIT ?", before, limit).toArray();
  }

  markChecked(seq: number, at: number): void {
    this.sql.exec("UPDATE fleet_slots SET checked_at = ? WHERE seq = ?", at, seq);
  }
}

export type ClaimOutcome = { granted: true; superseded: string | null } | { granted: false; holder: string };

/** Claims: a lease on a canonical key, held by one task until it lapses or is released. */
export class ClaimTable {
  constructor(private readonly sql: SqlStorage) {}

  /** Takes `key` for `taskId` unless a live lease of another task holds it; `supersede` takes it anyway. */
  claim(key: string, taskId: string, supersede: boolean, now: number, leaseMs: number): ClaimOutcome {
    const held = this.sql.exec<{ task_id: string; expires_at: number }>("SELECT task_id, expires_at FROM fleet_claims WHERE key = ?", key).toArray()[0];
    const live = held && held.expires_at > now && held.task_id !== taskId ? held.task_id : null;
    if (live && !supersede) return { granted: false, holder: live };
    this.sql.exec("INSERT OR REPLACE INTO fleet_claims (key, task_id, expires_at) VALUES (?, ?, ?)", key, taskId, now + leaseMs);
    return { granted: true, superseded: live };
  }

  renew(key: string, taskId: string, until: number): boolean {
    return this.sql.exec("UPDATE fleet_claims SET expires_at = ? WHERE key = ? AND task_id = ?", until, key, taskId).rowsWritten > 0;
  }

  release(key: string, taskId: string): void {
    this.sql.exec("DELETE FROM fleet_claims WHERE key = ? AND task_id = ?", key, taskId);
  }

  expire(now: number): void {
    this.sql.exec("DELETE FROM fleet_claims WHERE expires_at < ?", now);
  }
}

/** Sliding one-minute windows of what each key took. */
export class RateTable {
  constructor(private readonly sql: SqlStorage) {}

  /** Takes `count` of `key`'s `limit` a minute; when it would go over, takes nothing and says how long to wait. */
  take(key: string, count: number, limit: number, now: number): { allowed: true } | { allowed: false; retryAfterSeconds: number } {
    this.sql.exec("DELETE FROM fleet_rate WHERE at <= ?", now - 60_000);
    const used = Number(this.sql.exec("SELECT COALESCE(SUM(n), 0) AS used FROM fleet_rate WHERE key = ?", key).one().used);
    if (used + count > limit) {
      const oldest = Number(this.sql.exec("SELECT COALESCE(MIN(at), ?) AS at FROM fleet_rate WHERE key = ?", now, key).one().at);
      return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((oldest + 60_000 - now) / 1000)) };
    }
    this.sql.exec("INSERT INTO fleet_rate (key, at, n) VALUES (?, ?, ?)", key, now, count);
    return { allowed: true };
  }
}

export interface WarmLimits {
  ttlMs: number;
  max: number;
  maxBytes: number;
}

/** The warm-snapshot index: the newest snapshot of each key (repository, branch, commit, setup), under its caps. */
export class WarmTable {
  constructor(private readonly sql: SqlStorage) {}

  find(key: string, notBefore: number): string | null {
    return this.sql.exec<{ snapshot: string }>("SELECT snapshot FROM fleet_warm WHERE key = ? AND at > ?", key, notBefore).toArray()[0]?.snapshot ?? null;
  }

  /**
   * Keeps `snapshot` for `key`; returns the snapshots it displaced: replaced (the same key, or an older member of
   * its `family`), expired, past `max` entries, or oldest first while all together weigh more than `maxBytes`.
   */
  put(key: string, snapshot: string, bytes: number, family: string | null, now: number, limits: WarmLimits): string[] {
    const sql = this.sql;
    const replaced = sql.exec<{ key: string; snapshot: string }>("SELECT key, snapshot FROM fleet_warm WHERE key = ? OR (family IS NOT NULL AND family = ?)", key, family).toArray();
    for (const row of replaced) sql.exec("DELETE FROM fleet_warm WHERE key = ?", row.key);
    sql.exec("INSERT INTO fleet_warm (key, snapshot, at, bytes, family) VALUES (?, ?, ?, ?, ?)", key, snapshot, now, Math.max(0, Math.round(bytes)), family);
    const expired = now - limits.ttlMs;
    const stale: { key: string; snapshot: string }[] = [];
    let total = 0;
    let kept = 0;
    // Newest first: what fits under both caps stays (the one just put always does).
    for (const row of sql.exec<{ key: string; snapshot: string; at: number; bytes: number }>("SELECT key, snapshot, at, bytes FROM fleet_warm ORDER BY at DESC, key = ? DESC", key)) {
      const fits = row.key === key || (row.at > expired && kept < limits.max && total + row.bytes <= limits.maxBytes);
      if (fits) {
        kept += 1;
        total += row.bytes;
      } else stale.push(row);
    }
    for (const row of stale) sql.exec("DELETE FROM fleet_warm WHERE key = ?", row.key);
    return [...replaced.map((r) => r.snapshot), ...stale.map((r) => r.snapshot)].filter((id) => id !== snapshot);
  }

  /**
   * After a sandbox host started again (`boot` new): drops the entries whose snapshot it no longer has, and returns
   * the snapshots on its disk no entry names. Nothing for a boot seen before.
   */
  reconcile(boot: string, onDisk: string[]): string[] {
    const sql = this.sql;
    if (sql.exec("SELECT id FROM fleet_host_boot WHERE id = ?", boot).toArray().length > 0) return [];
    sql.exec("DELETE FROM fleet_host_boot");
    sql.exec("INSERT INTO fleet_host_boot (id) VALUES (?)", boot);
    const present = new Set(onDisk);
    const named = new Set<string>();
    for (const row of sql.exec<{ key: string; snapshot: string }>("SELECT key, snapshot FROM fleet_warm").toArray()) {
      if (present.has(row.snapshot)) named.add(row.snapshot);
      else sql.exec("DELETE FROM fleet_warm WHERE key = ?", row.key);
    }
    return onDisk.filter((id) => !named.has(id));
  }
}
