/**
 * The pull requests Sortie opened and tends, in D1: where each one's branch is,
 * the commit Sortie last pushed, the attempt budget used, the fix running now
 * and the triggers queued behind it, and the dedupe keys already acted on.
 * Every change that decides something is one conditional UPDATE, so two
 * deliveries racing for the same pull request cannot both win.
 */

import type { FixTrigger } from "../fix-request.ts";

export type { FailedCheck, FixRequest, FixTrigger, ReviewComment } from "../fix-request.ts";

export type TendingState = "tending" | "stopped";
export type StopReason = "closed" | "merged" | "human_push" | "stop_command" | "budget";

export interface TendedPull {
  repo: string;
  number: number;
  /** The pull request's web page. */
  url: string;
  branch: string;
  base: string;
  taskId: string;
  prompt: string;
  createdBy: string;
  /** The Worker's public origin, for links to fix runs. */
  origin: string;
  headSha: string;
  state: TendingState;
  stopReason: StopReason | null;
  attempts: number;
  granted: number;
  fixTaskId: string | null;
  queued: FixTrigger[];
  pollDelaySeconds: number;
}

interface Row {
  repo: string;
  number: number;
  url: string;
  branch: string;
  base: string;
  task_id: string;
  prompt: string;
  created_by: string;
  origin: string;
  head_sha: string;
  state: TendingState;
  stop_reason: StopReason | null;
  attempts: number;
  granted: number;
  fix_task_id: string | null;
  queued: string;
  poll_delay_seconds: number;
}

function toPull(row: Row): TendedPull {
  return {
    repo: row.repo,
    number: row.number,
    url: row.url,
    branch: row.branch,
    base: row.base,
    taskId: row.task_id,
    prompt: row.prompt,
    createdBy: row.created_by,
    origin: row.origin,
    headSha: row.head_sha,
    state: row.state,
    stopReason: row.stop_reason,
    attempts: row.attempts,
    granted: row.granted,
    fixTaskId: row.fix_task_id,
    queued: JSON.parse(row.queued) as FixTrigger[],
    pollDelaySeconds: row.poll_delay_seconds,
  };
}

/** Starts tending a pull request Sortie just opened. Recording it again changes nothing. */
export async function recordTendedPull(
  db: D1Database,
  pull: Pick<TendedPull, "repo" | "number" | "url" | "branch" | "base" | "taskId" | "prompt" | "createdBy" | "origin" | "headSha">,
  now = Date.now(),
): Promise<void> {
  await db
    .prepare(
      `INSERT INTO tended_pulls (repo, number, url, branch, base, task_id, prompt, created_by, origin, head_sha, created_at, updated_at)
       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11) ON CONFLICT DO NOTHING`,
    )
    .bind(pull.repo.toLowerCase(), pull.number, pull.url, pull.branch, pull.base, pull.taskId, pull.prompt, pull.createdBy, pull.origin, pull.headSha, now)
    .run();
}

export async function findTendedPull(db: D1Database, repo: string, number: number): Promise<TendedPull | null> {
  const row = await db.prepare("SELECT * FROM tended_pulls WHERE repo = ? AND number = ?").bind(repo.toLowerCase(), number).first<Row>();
  return row ? toPull(row) : null;
}

/** The tended pull request whose head branch is `branch` (for check events that name no pull request). */
export async function findTendedPullByBranch(db: D1Database, repo: string, branch: string): Promise<TendedPull | null> {
  const row = await db
    .prepare("SELECT * FROM tended_pulls WHERE repo = ? AND branch = ? ORDER BY created_at DESC LIMIT 1")
    .bind(repo.toLowerCase(), branch)
    .first<Row>();
  return row ? toPull(row) : null;
}

/** Marks `key` acted on; false if it already was (a redelivery, or the same failure reported twice). */
export async function claimTendingKey(db: D1Database, repo: string, number: number, key: string, now = Date.now()): Promise<boolean> {
  const inserted = await db
    .prepare("INSERT INTO tended_pull_keys (repo, number, key, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING")
    .bind(repo.toLowerCase(), number, key, now)
    .run();
  return inserted.meta.changes > 0;
}

/** Gives a key back when acting on it failed, so a redelivery is acted on instead of deduplicated. */
export async function releaseTendingKey(db: D1Database, repo: string, number: number, key: string): Promise<void> {
  await db.prepare("DELETE FROM tended_pull_keys WHERE repo = ? AND number = ? AND key = ?").bind(repo.toLowerCase(), number, key).run();
}

/**
 * Takes one attempt of the budget for fix task `taskId`: only while tending,
 * with no fix running, and attempts left under `max` plus what was granted.
 * Returns whether it was taken.
 */
export async function takeAttempt(db: D1Database, repo: string, number: number, taskId: string, max: number, now = Date.now()): Promise<boolean> {
  const taken = await db
    .prepare(
      `UPDATE tended_pulls SET attempts = attempts + 1, fix_task_id = ?3, updated_at = ?5
       WHERE repo = ?1 AND number = ?2 AND state = 'tending' AND fix_task_id IS NULL AND attempts < ?4 + granted`,
    )
    .bind(repo.toLowerCase(), number, taskId, max, now)
    .run();
  return taken.meta.changes > 0;
}

/** Gives back an attempt whose task could not be started. */
export async function giveBackAttempt(db: D1Database, repo: string, number: number, taskId: string): Promise<void> {
  await db
    .prepare("UPDATE tended_pulls SET attempts = attempts - 1, fix_task_id = NULL WHERE repo = ? AND number = ? AND fix_task_id = ?")
    .bind(repo.toLowerCase(), number, taskId)
    .run();
}

/** Queues a trigger behind the fix running now. */
export async function queueTrigger(db: D1Database, repo: string, number: number, trigger: FixTrigger, now = Date.now()): Promise<void> {
  await db
    .prepare("UPDATE tended_pulls SET queued = json_insert(queued, '$[#]', json(?3)), updated_at = ?4 WHERE repo = ?1 AND number = ?2")
    .bind(repo.toLowerCase(), number, JSON.stringify(trigger), now)
    .run();
}

/**
 * The fix task `taskId` has ended: the pull request is free again, and its
 * head is `pushed` when the fix pushed a commit. Returns the triggers that
 * waited behind it (taken off the queue), or null if `taskId` was not the
 * running fix.
 */
export async function endFix(db: D1Database, repo: string, number: number, taskId: string, pushed: string | null, now = Date.now()): Promise<FixTrigger[] | null> {
  const key = [repo.toLowerCase(), number, taskId] as const;
  // One batch is one transaction: the queue read is the queue cleared.
  const [waiting] = await db.batch<{ queued: string }>([
    db.prepare("SELECT queued FROM tended_pulls WHERE repo = ? AND number = ? AND fix_task_id = ?").bind(...key),
    db
      .prepare(
        `UPDATE tended_pulls SET fix_task_id = NULL, head_sha = COALESCE(?4, head_sha), queued = '[]', poll_delay_seconds = 0, updated_at = ?5
         WHERE repo = ?1 AND number = ?2 AND fix_task_id = ?3`,
      )
      .bind(...key, pushed, now),
  ]);
  const row = waiting?.results[0];
  return row ? (JSON.parse(row.queued) as FixTrigger[]) : null;
}

/** Stops tending; true only for the call that stopped it (so the pull request is told once). */
export async function stopTending(db: D1Database, repo: string, number: number, reason: StopReason, now = Date.now()): Promise<boolean> {
  const stopped = await db
    .prepare("UPDATE tended_pulls SET state = 'stopped', stop_reason = ?3, queued = '[]', updated_at = ?4 WHERE repo = ?1 AND number = ?2 AND state = 'tending'")
    .bind(repo.toLowerCase(), number, reason, now)
    .run();
  return stopped.meta.changes > 0;
}

/**
 * `/sortie retry`: one more attempt than used so far, and tending again if
 * the budget had stopped it. False if tending stopped for another reason.
 */
export async function grantAttempt(db: D1Database, repo: string, number: number, max: number, now = Date.now()): Promise<boolean> {
  const granted = await db
    .prepare(
      `UPDATE tended_pulls SET granted = MAX(granted, attempts - ?3) + 1, state = 'tending', stop_reason = NULL, updated_at = ?4
       WHERE repo = ?1 AND number = ?2 AND (state = 'tending' OR stop_reason = 'budget')`,
    )
    .bind(repo.toLowerCase(), number, max, now)
    .run();
  return granted.meta.changes > 0;
}

/** Remembers the merge-conflict poll's current delay. */
export async function setPollDelay(db: D1Database, repo: string, number: number, seconds: number): Promise<void> {
  await db.prepare("UPDATE tended_pulls SET poll_delay_seconds = ? WHERE repo = ? AND number = ?").bind(seconds, repo.toLowerCase(), number).run();
}
