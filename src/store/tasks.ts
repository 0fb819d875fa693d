/** The D1 index of tasks and runs: written by task agents, read by listings. */
import { SortieError } from "../errors.ts";
import type { TaskState, TaskStatus, TaskSummary } from "../schema.ts";

/** Records a new task. Fails if the id exists, so a task is never created twice. */
/** Whether the index has a task with this id. */
export async function taskExists(db: D1Database, id: string): Promise<boolean> {
  return (await db.prepare("SELECT 1 AS found FROM tasks WHERE id = ?").bind(id).first()) !== null;
}

/** Tasks the index still shows open though created before `before` (the sweeper closes them). */
export async function openTasksCreatedBefore(db: D1Database, before: number, limit = 100): Promise<string[]> {
  const { results } = await db.prepare("SELECT id FROM tasks WHERE status IN ('queued', 'running') AND created_at < ? LIMIT ?").bind(before, limit).all<{ id: string }>();
  return results.map((row) => row.id);
}

export async function insertTask(db: D1Database, task: TaskState): Promise<void> {
  await db.batch([taskInsert(db, task, "INSERT"), ...runUpserts(db, task)]);
}

/** Brings the task's row and its runs' rows up to date. */
export async function saveTask(db: D1Database, task: TaskState): Promise<void> {
  await db.batch([taskInsert(db, task, "INSERT OR REPLACE"), ...runUpserts(db, task)]);
}

function taskInsert(db: D1Database, task: TaskState, verb: "INSERT" | "INSERT OR REPLACE") {
  const totals = diffTotals(task);
  return db
    .prepare(
      `${verb} INTO tasks (id, repo, branch, prompt, model, status, source, created_by, created_at, started_at, ended_at, runs, cost_usd, files, additions, deletions, error_code, error_message)
       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)`,
    )
    .bind(
      task.id, task.repo, task.branch, task.prompt, task.model, task.status, task.source, task.createdBy, task.createdAt,
      task.startedAt, task.endedAt, task.runs.length, task.costUsd, totals?.files ?? null, totals?.additions ?? null,
      totals?.deletions ?? null, task.error?.code ?? null, task.error?.message ?? null,
    );
}

function runUpserts(db: D1Database, task: TaskState) {
  return task.runs.map((run) =>
    db
      .prepare(
        `INSERT OR REPLACE INTO runs (task_id, idx, status, phase, started_at, ended_at, duration_ms, cost_usd, num_turns, files, additions, deletions, session_id, error_code, error_message, input_tokens, output_tokens, created_by, repo)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)`,
      )
      .bind(
        task.id, run.index, run.status, run.phase, run.startedAt, run.endedAt, run.durationMs, run.costUsd, run.numTurns,
        run.diff?.files ?? null, run.diff?.additions ?? null, run.diff?.deletions ?? null, run.sessionId, run.error?.code ?? null, run.error?.message ?? null,
        run.inputTokens, run.outputTokens, task.createdBy, task.repo,
      ),
  );
}

function diffTotals(task: TaskState) {
  const diffs = task.runs.map((run) => run.diff).filter((diff) => diff !== null);
  if (diffs.length === 0) return null;
  return diffs.reduce((sum, diff) => ({ files: sum.files + diff.files, additions: sum.additions + diff.additions, deletions: sum.deletions + diff.deletions }), { files: 0, additions: 0, deletions: 0 });
}

export interface ListTasksFilter {
  status?: TaskStatus;
  repo?: string;
  limit: number;
  cursor?: string;
}

/** Tasks newest first, filtered, one page at a time; `nextCursor` is null on the last page. */
export async function listTasks(db: D1Database, filter: ListTasksFilter): Promise<{ tasks: TaskSummary[]; nextCursor: string | null }> {
  const where: string[] = [];
  const args: (string | number)[] = [];
  if (filter.status) {
    where.push("status = ?");
    args.push(filter.status);
  }
  if (filter.repo) {
    where.push("repo = ?");
    args.push(filter.repo);
  }
  if (filter.cursor) {
    const { createdAt, id } = decodeCursor(filter.cursor);
    where.push("(created_at < ? OR (created_at = ? AND id < ?))");
    args.push(createdAt, createdAt, id);
  }
  const sql = `SELECT * FROM tasks ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY created_at DESC, id DESC LIMIT ?`;
  const { results } = await db.prepare(sql).bind(...args, filter.limit + 1).all<TaskRow>();
  const page = results.slice(0, filter.limit);
  const last = page.at(-1);
  return {
    tasks: page.map(toSummary),
    nextCursor: results.length > filter.limit && last ? encodeCursor(last.created_at, last.id) : null,
  };
}

interface TaskRow {
  id: string;
  repo: string;
  prompt: string;
  status: TaskStatus;
  source: string;
  created_by: string;
  created_at: number;
  started_at: number | null;
  ended_at: number | null;
  runs: number;
  cost_usd: number;
  files: number | null;
  additions: number | null;
  deletions: number | null;
  error_code: string | null;
  error_message: string | null;
}

function toSummary(row: TaskRow): TaskSummary {
  return {
    id: row.id,
    repo: row.repo,
    prompt: row.prompt.length > 300 ? `${row.prompt.slice(0, 299)}…` : row.prompt,
    status: row.status,
    source: row.source,
    createdBy: row.created_by,
    createdAt: row.created_at,
    startedAt: row.started_at,
    endedAt: row.ended_at,
    runs: row.runs,
    costUsd: row.cost_usd,
    files: row.files,
    additions: row.additions,
    deletions: row.deletions,
    error: row.error_code ? { code: row.error_code, message: row.error_message ?? "" } : null,
  };
}

function encodeCursor(createdAt: number, id: string): string {
  return btoa(`${createdAt}:${id}`).replace(/=+$/, "");
}

function decodeCursor(cursor: string): { createdAt: number; id: string } {
  let decoded = "";
  try {
    decoded = atob(cursor);
  } catch {
    // fall through to the error below
  }
  const match = /^(\d{1,15}):([a-z0-9]{1,40})$/.exec(decoded);
  if (!match) throw new SortieError("invalid_cursor", "cursor is not one this API returned");
  return { createdAt: Number(match[1]), id: match[2]! };
}
