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
import { migrateDurable } from "../store/durable-schema.ts";
import { ClaimTable, FLEET_SCHEMA, RateTable, SlotTable, WarmTable, type ClaimOutcome, type SlotRow } from "../store/fleet.ts";
import { openTasksCreatedBefore } from "../store/tasks.ts";
import { writeLog } from "../log.ts";
import { planOfHolder } from "./slot.ts";

export type { ClaimOutcome } from "../store/fleet.ts";

/** How long a claim lives without renewal. The owning task agent renews it every LEASE_RENEW_SECONDS. */
export const LEASE_SECONDS = 90;
export const LEASE_RENEW_SECONDS = 30;
/** Live slots the sweeper asks about per pass (each at most once a minute), so a pass stays short however large the fleet. */
const SWEEP_BATCH = 1000;
/** Questions the sweeper has in flight at once. */
const SWEEP_CONCURRENCY = 25;


/** Live slots, in all and per creator: kept in memory (from SQLite on first use) so a grant never counts the table. */
interface LiveCounts {
  total: number;
  byCreator: Map<string, number>;
}

export class Fleet extends Agent<Cloudflare.Env> {
  static override options = { sendIdentityOnConnect: false };
  private readonly slots: SlotTable;
  private readonly claims: ClaimTable;
  private readonly rates: RateTable;
  private readonly warm: WarmTable;
  /** Live slots, counted from SQLite once, when the instance starts; each change then moves them by one. */
  private readonly counts: LiveCounts;

  constructor(ctx: DurableObjectState, env: Cloudflare.Env) {
    super(ctx, env);
    // The tables are made (or brought up to date) here, once per instance, never on a query's path.
    migrateDurable(ctx.storage, "fleet", FLEET_SCHEMA);
    const sql = ctx.storage.sql;
    this.slots = new SlotTable(sql);
    this.claims = new ClaimTable(sql);
    this.rates = new RateTable(sql);
    this.warm = new WarmTable(sql);
    const rows = this.slots.liveByCreator();
    this.counts = { total: rows.reduce((sum, row) => sum + row.n, 0), byCreator: new Map(rows.map((row) => [row.creator, row.n])) };
  }

  override async onStart(): Promise<void> {
    await this.scheduleEvery(60, "sweep");
  }

  /** Queues runs of a task; those that fit under the caps start at once. Returns each queued run's position. */
  enqueue(taskId: string, runs: number[], creator: string): Record<number, number> {
    const now = Date.now();
    for (const run of runs) this.slots.enqueue(taskId, run, creator, now);
    this.pump();
    return this.positions(taskId);
  }

  /** Gives a run's slot back (its sandbox is gone, or it never started); the next queued run starts. */
  release(taskId: string, run: number): void {
    const gone = this.slots.remove(taskId, run);
    if (gone?.state === "live") this.countLive(gone.creator, -1);
    this.pump();
  }

  /** Drops a task's runs that are still waiting. */
  dropQueued(taskId: string): void {
    this.slots.dropQueued(taskId);
    this.pump();
  }

  /** 1-based place in the queue of each of the task's waiting runs. */
  positions(taskId: string): Record<number, number> {
    return this.slots.positions(taskId);
  }

  stats(): { live: number; queued: number; cap: number; perCreatorCap: number } {
    const config = readConfig(this.env);
    return { ...this.slots.countsByState(), cap: config.maxSandboxes, perCreatorCap: config.maxSandboxesPerCreator };
  }

  /** Takes `key` for `taskId`, unless a live lease holds it; `supersede` takes it anyway and names the task it took it from. */
  claim(key: string, taskId: string, supersede: boolean): ClaimOutcome {
    return this.claims.claim(key, taskId, supersede, Date.now(), LEASE_SECONDS * 1000);
  }

  /** Extends the lease; false when the task no longer holds the key (it was superseded or expired and taken). */
  renewClaim(key: string, taskId: string): boolean {
    return this.claims.renew(key, taskId, Date.now() + LEASE_SECONDS * 1000);
  }

  releaseClaim(key: string, taskId: string): void {
    this.claims.release(key, taskId);
  }

  /**
   * Takes `count` from `key`'s allowance of `limit` per minute (a sliding
   * window); when it would go over, takes nothing and says how long to wait.
   */
  takeRate(key: string, count: number, limit: number): { allowed: true } | { allowed: false; retryAfterSeconds: number } {
    return this.rates.take(key, count, limit, Date.now());
  }

  /** A warm workspace snapshot for `key` (repo, branch, commit, setup) still within its time to live. */
  findWarm(key: string): string | null {
    return this.warm.find(key, Date.now() - readConfig(this.env).warmSnapshotTtlMinutes * 60_000);
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
    return this.warm.put(key, snapshot, bytes, family, Date.now(), { ttlMs: warmSnapshotTtlMinutes * 60_000, max: warmSnapshotMax, maxBytes: warmSnapshotMaxBytes });
  }

  /**
   * Brings the warm index in line with a sandbox host that started again
   * (`boot` is new): entries whose snapshot is not among the ones it found on
   * disk at its start are dropped, and the snapshots on disk no entry names
   * are returned, for the caller to delete. Nothing for a boot seen before.
   */
  reconcileWarm(boot: string, onDisk: string[]): string[] {
    return this.warm.reconcile(boot, onDisk);
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
    const heads = this.slots.queueHeads();
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
      const next = this.slots.markLive(head.seq, Date.now());
      this.countLive(next.creator, 1);
      void this.grant(next.task_id, next.run);
      const following = this.slots.nextQueuedOf(head.creator);
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
    return this.counts;
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
      const back = this.slots.requeue(taskId, run);
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
    this.claims.expire(now);
    // A claims shard holds no slots and closes no tasks.
    if (this.name !== FLEET_NAME) return;
    const live = this.slots.unchecked(now - 60_000, SWEEP_BATCH);
    const ask = async (slot: SlotRow) => {
      try {
        if (await (await this.holderOf(slot.task_id)).holdsSlot(slot.run)) this.slots.markChecked(slot.seq, Date.now());
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
