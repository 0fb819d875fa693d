/** The append-only audit trail in D1: who created, cancelled, picked, messaged; from which trigger. */
import { SortieError } from "../errors.ts";
import { redactor } from "../redact.ts";

export interface AuditEntry {
  actor: string;
  action: string;
  taskId: string | null;
  detail?: Record<string, unknown>;
}

/** The trigger an actor name comes from: `slack:…`, `github:…`, `schedule:…`, else the API. */
export function sourceOf(actor: string): string {
  const prefix = /^(slack|github|schedule):/.exec(actor)?.[1];
  return prefix ?? "api";
}

export async function appendAudit(db: D1Database, entry: AuditEntry, now = Date.now()): Promise<void> {
  await db
    .prepare("INSERT INTO audit_log (at, actor, source, action, task_id, detail) VALUES (?, ?, ?, ?, ?, ?)")
    .bind(now, entry.actor, sourceOf(entry.actor), entry.action, entry.taskId, JSON.stringify(redactor([])(entry.detail ?? {})))
    .run();
}

export interface AuditQuery {
  from?: number;
  to?: number;
  task?: string;
  limit: number;
  cursor?: string;
}

/** Entries newest first, one page at a time. */
export async function listAudit(db: D1Database, query: AuditQuery) {
  const where: string[] = [];
  const args: (string | number)[] = [];
  const add = (clause: string, value: string | number) => {
    where.push(clause);
    args.push(value);
  };
  if (query.from !== undefined) add("at >= ?", query.from);
  if (query.to !== undefined) add("at < ?", query.to);
  if (query.task) add("task_id = ?", query.task);
  if (query.cursor) {
    if (!/^\d{1,15}$/.test(query.cursor)) throw new SortieError("invalid_cursor", "cursor is not one this API returned");
    add("id < ?", Number(query.cursor));
  }
  const { results } = await db
    .prepare(`SELECT * FROM audit_log ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT ?`)
    .bind(...args, query.limit + 1)
    .all<{ id: number; at: number; actor: string; source: string; action: string; task_id: string | null; detail: string }>();
  const page = results.slice(0, query.limit);
  return {
    entries: page.map((row) => ({ id: row.id, at: row.at, actor: row.actor, source: row.source, action: row.action, taskId: row.task_id, detail: JSON.parse(row.detail) as unknown })),
    nextCursor: results.length > query.limit ? String(page.at(-1)!.id) : null,
  };
}

/** Cost, tokens, runs and minutes by creator and by repo, for runs started in [from, to). */
export async function usageReport(db: D1Database, from: number, to: number) {
  const group = async (column: "created_by" | "repo") => {
    const { results } = await db
      .prepare(
        `SELECT ${column} AS name, COUNT(*) AS runs, COALESCE(SUM(cost_usd), 0) AS costUsd, COALESCE(SUM(input_tokens), 0) AS inputTokens,
                COALESCE(SUM(output_tokens), 0) AS outputTokens, COALESCE(SUM(duration_ms), 0) / 60000.0 AS minutes
         FROM runs WHERE started_at >= ? AND started_at < ? GROUP BY ${column} ORDER BY costUsd DESC`,
      )
      .bind(from, to)
      .all<{ name: string; runs: number; costUsd: number; inputTokens: number; outputTokens: number; minutes: number }>();
    return results;
  };
  const [byCreator, byRepo] = await Promise.all([group("created_by"), group("repo")]);
  const total = byCreator.reduce(
    (sum, row) => ({ runs: sum.runs + row.runs, costUsd: sum.costUsd + row.costUsd, inputTokens: sum.inputTokens + row.inputTokens, outputTokens: sum.outputTokens + row.outputTokens, minutes: sum.minutes + row.minutes }),
    { runs: 0, costUsd: 0, inputTokens: 0, outputTokens: 0, minutes: 0 },
  );
  return { from, to, total, byCreator, byRepo };
}
