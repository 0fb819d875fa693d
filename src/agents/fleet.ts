/**
 * Fleet: the coordinating Durable Objects. The one named "fleet" bounds
 * parallelism (a global cap on live sandboxes and one per creator) and queues
 * runs above the cap in an order fair across creators. Claims (leases on
 * canonical keys, so two tasks never take the same work) live in CLAIM_SHARDS
 * instances of the same class, "claims-0" to "claims-7", each key in the one
 * its hash names: a key needs no other key to decide, and the renewals every
 * live task sends every 30 s are most of what the fleet is asked.
 *
 * A slot is granted by calling the task agent's `grantRun`; the agent gives it
 * back with `release` once the run's sandbox is destroyed, so the count of
 * live slots never falls below the count of live sandboxes.
 */
import { Agent, getAgentByName } from "agents";
import { readConfig } from "../config.ts";
import { messageOf } from "../errors.ts";
import { openTasksCreatedBefore } from "../store/tasks.ts";
import { writeLog } from "../log.ts";
import { planOfHolder } from "./slot.ts";

/** How long a claim lives without renewal. The owning task agent renews it every LEASE_RENEW_SECONDS. */
export const LEASE_SECONDS = 90;
export const LEASE_RENEW_SECONDS = 30;
/** Live slots the sweeper asks about per pass (each at most once a minute), so a pass stays short however large the fleet. */
const SWEEP_BATCH = 1000;
/** Questions the sweeper has in flight at once. */
const SWEEP_CONCURRENCY = 25;

export type ClaimOutcome = { granted: true; superseded: string | null } | { granted: false; holder: string };

type SlotRow = {
  seq: number;
  task_id: string;
  run: number;
  creator: string;
  state: "queued" | "live";
  enqueued_at: number;
  granted_at: number | null;
};

/** Live slots, in all and per creator: kept in memory (from SQLite on first use) so a grant never counts the table. */
interface LiveCounts {
  total: number;
  byCreator: Map<string, number>;
}

export class Fleet extends Agent<Cloudflare.Env> {
  static override options = { sendIdentityOnConnect: false };
  private ready = false;
  /** Set when the tables are first opened (sql_). */
  private counts?: LiveCounts;

  private get sql_(): SqlStorage {
    const sql = this.ctx.storage.sql;
    if (!this.ready) {
      sql.exec(`CREATE TABLE IF NOT EXISTS fleet_slots (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        task_id TEXT NOT NULL,
        run INTEGER NOT NULL,
        creator TEXT NOT NULL,
        state TEXT NOT NULL,
        enqueued_at INTEGER NOT NULL,
        granted_at INTEGER,
        UNIQUE (task_id, run)
      )`);
      // The queue in order, and each creator's runs by state: what a grant, a release and a queue position read.
      sql.exec("CREATE INDEX IF NOT EXISTS fleet_slots_queue ON fleet_slots (state, seq)");
      sql.exec("CREATE INDEX IF NOT EXISTS fleet_slots_creator ON fleet_slots (state, creator, seq)");
      const columns = sql.exec<{ name: string }>("PRAGMA table_info(fleet_slots)").toArray().map((c) => c.name);
      if (!columns.includes("checked_at")) sql.exec("ALTER TABLE fleet_slots ADD COLUMN checked_at INTEGER");
      // Counted before anything changes a slot: each change then moves the counts by one.
      const rows = sql.exec<{ creator: string; n: number }>("SELECT creator, COUNT(*) AS n FROM fleet_slots WHERE state = 'live' GROUP BY creator").toArray();
      this.counts = { total: rows.reduce((sum, row) => sum + row.n, 0), byCreator: new Map(rows.map((row) => [row.creator, row.n])) };
      sql.exec(`CREATE TABLE IF NOT EXISTS fleet_claims (
        key TEXT PRIMARY KEY,
        task_id TEXT NOT NULL,
        expires_at INTEGER NOT NULL
      )`);
      this.ready = true;
    }
    return sql;
  }

  override async onStart(): Promise<void> {
    await this.scheduleEvery(60, "sweep");
  }

  /** Queues runs of a task; those that fit under the caps start at once. Returns each queued run's position. */
  enqueue(taskId: string, runs: number[], creator: string): Record<number, number> {
    const now = Date.now();
    for (const run of runs) {
      this.sql_.exec("INSERT OR IGNORE INTO fleet_slots (task_id, run, creator, state, enqueued_at) VALUES (?, ?, ?, 'queued', ?)", taskId, run, creator, now);
    }
    this.pump();
    return this.positions(taskId);
  }

  /** Gives a run's slot back (its sandbox is gone, or it never started); the next queued run starts. */
  release(taskId: string, run: number): void {
    const gone = this.sql_.exec<{ state: string; creator: string }>("DELETE FROM fleet_slots WHERE task_id = ? AND run = ? RETURNING state, creator", taskId, run).toArray()[0];
    if (gone?.state === "live") this.countLive(gone.creator, -1);
    this.pump();
  }

  /** Drops a task's runs that are still waiting. */
  dropQueued(taskId: string): void {
    this.sql_.exec("DELETE FROM fleet_slots WHERE task_id = ? AND state = 'queued'", taskId);
    this.pump();
  }

  /** 1-based place in the queue of each of the task's waiting runs. */
  positions(taskId: string): Record<number, number> {
    const rows = this.sql_.exec<{ run: number; position: number }>(
      `SELECT s.run AS run, (SELECT COUNT(*) FROM fleet_slots q WHERE q.state = 'queued' AND q.seq <= s.seq) AS position
       FROM fleet_slots s WHERE s.task_id = ? AND s.state = 'queued'`,
      taskId,
    ).toArray();
    return Object.fromEntries(rows.map((row) => [row.run, row.position]));
  }

  stats(): { live: number; queued: number; cap: number; perCreatorCap: number } {
    const config = readConfig(this.env);
    const counts = this.sql_.exec<{ state: string; n: number }>("SELECT state, COUNT(*) AS n FROM fleet_slots GROUP BY state").toArray();
    const count = (state: string) => counts.find((row) => row.state === state)?.n ?? 0;
    return { live: count("live"), queued: count("queued"), cap: config.maxSandboxes, perCreatorCap: config.maxSandboxesPerCreator };
  }

  /** Takes `key` for `taskId`, unless a live lease holds it; `supersede` takes it anyway and names the task it took it from. */
  claim(key: string, taskId: string, supersede: boolean): ClaimOutcome {
    const now = Date.now();
    const held = this.sql_.exec<{ task_id: string; expires_at: number }>("SELECT task_id, expires_at FROM fleet_claims WHERE key = ?", key).toArray()[0];
    const live = held && held.expires_at > now && held.task_id !== taskId ? held.task_id : null;
    if (live && !supersede) return { granted: false, holder: live };
    this.sql_.exec("INSERT OR REPLACE INTO fleet_claims (key, task_id, expires_at) VALUES (?, ?, ?)", key, taskId, now + LEASE_SECONDS * 1000);
    return { granted: true, superseded: live };
  }

  /** Extends the lease; false when the task no longer holds the key (it was superseded or expired and taken). */
  renewClaim(key: string, taskId: string): boolean {
    const result = this.sql_.exec("UPDATE fleet_claims SET expires_at = ? WHERE key = ? AND task_id = ?", Date.now() + LEASE_SECONDS * 1000, key, taskId);
    return result.rowsWritten > 0;
  }

  /**
   * Takes `count` from `key`'s allowance of `limit` per minute (a sliding
   * window); when it would go over, takes nothing and says how long to wait.
   */
  takeRate(key: string, count: number, limit: number): { allowed: true } | { allowed: false; retryAfterSeconds: number } {
    const sql = this.sql_;
    sql.exec("CREATE TABLE IF NOT EXISTS fleet_rate (key TEXT NOT NULL, at INTEGER NOT NULL, n INTEGER NOT NULL)");
    const now = Date.now();
    sql.exec("DELETE FROM fleet_rate WHERE at <= ?", now - 60_000);
    const used = Number(sql.exec("SELECT COALESCE(SUM(n), 0) AS used FROM fleet_rate WHERE key = ?", key).one().used);
    if (used + count > limit) {
      const oldest = Number(sql.exec("SELECT COALESCE(MIN(at), ?) AS at FROM fleet_rate WHERE key = ?", now, key).one().at);
      return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((oldest + 60_000 - now) / 1000)) };
    }
    sql.exec("INSERT INTO fleet_rate (key, at, n) VALUES (?, ?, ?)", key, now, count);
    return { allowed: true };
  }

  /** A warm workspace snapshot for `key` (repo, branch, commit, setup) still within its time to live. */
  findWarm(key: string): string | null {
    const ttl = readConfig(this.env).warmSnapshotTtlMinutes * 60_000;
    this.warmTable();
    const row = this.sql_.exec<{ snapshot: string }>("SELECT snapshot FROM fleet_warm WHERE key = ? AND at > ?", key, Date.now() - ttl).toArray()[0];
    return row?.snapshot ?? null;
  }

  /**
   * Keeps `snapshot` (of `bytes`) as the warm one for `key`; returns the
   * snapshots it displaced: replaced (the same key, or an older member of its
   * `family`: the same repository, branch and setup at another commit), expired, past the cap of
   * WARM_SNAPSHOT_MAX entries, or oldest first while all of them together
   * weigh more than WARM_SNAPSHOT_MAX_BYTES.
   */
  putWarm(key: string, snapshot: string, bytes = 0, family: string | null = null): string[] {
    const { warmSnapshotTtlMinutes, warmSnapshotMax, warmSnapshotMaxBytes } = readConfig(this.env);
    const sql = this.sql_;
    this.warmTable();
    // The same key, or (with a family: the repo, branch and setup) an older commit or lockfile of it: outdated now.
    const replaced = sql
      .exec<{ key: string; snapshot: string }>("SELECT key, snapshot FROM fleet_warm WHERE key = ? OR (family IS NOT NULL AND family = ?)", key, family)
      .toArray();
    for (const row of replaced) sql.exec("DELETE FROM fleet_warm WHERE key = ?", row.key);
    sql.exec("INSERT INTO fleet_warm (key, snapshot, at, bytes, family) VALUES (?, ?, ?, ?, ?)", key, snapshot, Date.now(), Math.max(0, Math.round(bytes)), family);
    const expired = Date.now() - warmSnapshotTtlMinutes * 60_000;
    const stale: { key: string; snapshot: string }[] = [];
    let total = 0;
    let kept = 0;
    // Newest first: what fits under both caps stays (the one just put always does).
    for (const row of sql.exec<{ key: string; snapshot: string; at: number; bytes: number }>("SELECT key, snapshot, at, bytes FROM fleet_warm ORDER BY at DESC, key = ? DESC", key)) {
      const fits = row.key === key || (row.at > expired && kept < warmSnapshotMax && total + row.bytes <= warmSnapshotMaxBytes);
      if (fits) {
        kept += 1;
        total += row.bytes;
      } else stale.push(row);
    }
    for (const row of stale) sql.exec("DELETE FROM fleet_warm WHERE key = ?", row.key);
    return [...replaced.map((r) => r.snapshot), ...stale.map((r) => r.snapshot)].filter((id) => id !== snapshot);
  }

  /**
   * Brings the warm index in line with a sandbox host that started again
   * (`boot` is new): entries whose snapshot is not among the ones it found on
   * disk at its start are dropped, and the snapshots on disk no entry names
   * are returned, for the caller to delete. Nothing for a boot seen before.
   */
  reconcileWarm(boot: string, onDisk: string[]): string[] {
    const sql = this.sql_;
    this.warmTable();
    sql.exec("CREATE TABLE IF NOT EXISTS fleet_host_boot (id TEXT PRIMARY KEY)");
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

  private warmTable(): void {
    const sql = this.sql_;
    sql.exec("CREATE TABLE IF NOT EXISTS fleet_warm (key TEXT PRIMARY KEY, snapshot TEXT NOT NULL, at INTEGER NOT NULL, bytes INTEGER NOT NULL DEFAULT 0, family TEXT)");
    // A table from before sizes and families were kept gains the columns.
    const columns = sql.exec<{ name: string }>("PRAGMA table_info(fleet_warm)").toArray().map((c) => c.name);
    if (!columns.includes("bytes")) sql.exec("ALTER TABLE fleet_warm ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0");
    if (!columns.includes("family")) sql.exec("ALTER TABLE fleet_warm ADD COLUMN family TEXT");
  }

  releaseClaim(key: string, taskId: string): void {
    this.sql_.exec("DELETE FROM fleet_claims WHERE key = ? AND task_id = ?", key, taskId);
  }

  /**
   * Starts as many queued runs as the caps allow. Fair across creators: the
   * next slot goes to the creator with the fewest live runs (oldest waiting
   * run first among equals), FIFO within a creator.
   */
  private pump(): void {
    const { maxSandboxes, maxSandboxesPerCreator } = readConfig(this.env);
    const counts = this.liveCounts();
    if (counts.total >= maxSandboxes) return;
    // The oldest waiting run of each creator that has one: the next slot goes to the head whose creator has the fewest live.
    const heads = this.sql_.exec<{ creator: string; seq: number }>("SELECT creator, MIN(seq) AS seq FROM fleet_slots WHERE state = 'queued' GROUP BY creator").toArray();
    while (counts.total < maxSandboxes && heads.length > 0) {
      let best = -1;
      let bestLive = Number.POSITIVE_INFINITY;
      heads.forEach((head, i) => {
        const live = counts.byCreator.get(head.creator) ?? 0;
        if (live < maxSandboxesPerCreator && (live < bestLive || (live === bestLive && head.seq < heads[best]!.seq))) {
          best = i;
          bestLive = live;
        }
      });
      if (best < 0) return;
      const head = heads[best]!;
      const next = this.sql_.exec<SlotRow>("UPDATE fleet_slots SET state = 'live', granted_at = ? WHERE seq = ? RETURNING *", Date.now(), head.seq).toArray()[0]!;
      this.countLive(next.creator, 1);
      void this.grant(next.task_id, next.run);
      const following = this.sql_.exec<{ seq: number }>("SELECT seq FROM fleet_slots WHERE state = 'queued' AND creator = ? ORDER BY seq LIMIT 1", head.creator).toArray()[0];
      if (following) heads[best] = { creator: head.creator, seq: following.seq };
      else heads.splice(best, 1);
    }
  }

  /** The agent a slot belongs to: a task's, or a plan's for its own sandboxes (holder `plan:<id>`, plan-slots.ts). */
  private async holderOf(holder: string): Promise<{ grantRun(slot: number): Promise<boolean>; holdsSlot(slot: number): Promise<boolean> }> {
    const plan = planOfHolder(holder);
    return plan ? getAgentByName(this.env.PlanAgent, plan) : getAgentByName(this.env.TaskAgent, holder);
  }

  private liveCounts(): LiveCounts {
    void this.sql_; // opening the tables counts the live slots, once
    return this.counts!;
  }

  private countLive(creator: string, change: 1 | -1): void {
    const counts = this.liveCounts();
    counts.total += change;
    const n = (counts.byCreator.get(creator) ?? 0) + change;
    if (n > 0) counts.byCreator.set(creator, n);
    else counts.byCreator.delete(creator);
  }

  private async grant(taskId: string, run: number): Promise<void> {
    try {
      const accepted = await (await this.holderOf(taskId)).grantRun(run);
      if (!accepted) this.release(taskId, run);
    } catch (error) {
      // The task agent could not be reached (restarting, say): the run waits in the queue again and the sweeper retries.
      writeLog("error", { event: "fleet.grant_failed", taskId, run, message: messageOf(error) }, this.env);
      const back = this.sql_.exec<{ creator: string }>("UPDATE fleet_slots SET state = 'queued', granted_at = NULL WHERE task_id = ? AND run = ? AND state = 'live' RETURNING creator", taskId, run).toArray()[0];
      if (back) this.countLive(back.creator, -1);
    }
  }

  /**
   * Every minute: gives back slots whose run has ended without releasing
   * (its agent crashed between destroying the sandbox and telling us), drops
   * expired claims, and wakes task agents whose task has been open too long
   * so their own checks close it. A pass asks about at most SWEEP_BATCH
   * slots, those asked about longest ago, SWEEP_CONCURRENCY at a time.
   */
  async sweep(): Promise<void> {
    const now = Date.now();
    this.sql_.exec("DELETE FROM fleet_claims WHERE expires_at < ?", now);
    // A claims shard holds no slots and closes no tasks.
    if (this.name !== FLEET_NAME) return;
    const live = this.sql_.exec<SlotRow>(
      "SELECT * FROM fleet_slots WHERE state = 'live' AND COALESCE(checked_at, granted_at) < ? ORDER BY COALESCE(checked_at, granted_at) LIMIT ?",
      now - 60_000,
      SWEEP_BATCH,
    ).toArray();
    const ask = async (slot: SlotRow) => {
      try {
        if (await (await this.holderOf(slot.task_id)).holdsSlot(slot.run)) this.sql_.exec("UPDATE fleet_slots SET checked_at = ? WHERE seq = ?", Date.now(), slot.seq);
        else this.release(slot.task_id, slot.run);
      } catch (error) {
        writeLog("error", { event: "fleet.sweep_failed", taskId: slot.task_id, message: messageOf(error) }, this.env);
      }
    };
    for (let i = 0; i < live.length; i += SWEEP_CONCURRENCY) await Promise.all(live.slice(i, i + SWEEP_CONCURRENCY).map(ask));
    const { maxTimeoutMinutes } = readConfig(this.env);
    for (const id of await openTasksCreatedBefore(this.env.DB, now - (maxTimeoutMinutes + 10) * 60_000)) {
      const agent = await getAgentByName(this.env.TaskAgent, id);
      await agent.closeIfStale();
    }
    this.pump();
  }
}

const FLEET_NAME = "fleet";
export const CLAIM_SHARDS = 8;

/** The Fleet that grants slots: one Durable Object for the whole deployment. */
export function fleetOf(env: Cloudflare.Env) {
  return getAgentByName(env.Fleet, FLEET_NAME);
}

/** The name of the Fleet instance that holds `key`'s claim (FNV-1a of the key, modulo CLAIM_SHARDS). */
export function claimShardOf(key: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193);
  return `claims-${(hash >>> 0) % CLAIM_SHARDS}`;
}

/** The Fleet instance that holds `key`'s claim. */
export function claimsOf(env: Cloudflare.Env, key: string) {
  return getAgentByName(env.Fleet, claimShardOf(key));
}
