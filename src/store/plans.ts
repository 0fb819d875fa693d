/** The D1 index of plans: written by plan agents, read by `GET /api/plans` and the routes' existence check. */
import type { PlanState, PlanStatus, PlanSummary } from "../plan-schema.ts";

/** Records a new plan. Fails if the id exists, so a plan is never created twice. */
export async function insertPlan(db: D1Database, plan: PlanState): Promise<void> {
  await planRow(db, plan, "INSERT").run();
}

/** Brings the plan's row up to date. */
export async function savePlan(db: D1Database, plan: PlanState): Promise<void> {
  await planRow(db, plan, "INSERT OR REPLACE").run();
}

/** Removes the row of a plan whose creation failed. */
export async function deletePlan(db: D1Database, id: string): Promise<void> {
  await db.prepare("DELETE FROM plans WHERE id = ?").bind(id).run();
}

/** The live plan holding `key`, if any: one live plan per key. */
export async function livePlanWithKey(db: D1Database, key: string): Promise<string | null> {
  const row = await db.prepare("SELECT id FROM plans WHERE key = ? AND status NOT IN ('succeeded', 'failed', 'cancelled') LIMIT 1").bind(key).first<{ id: string }>();
  return row?.id ?? null;
}

export async function planExists(db: D1Database, id: string): Promise<boolean> {
  return (await db.prepare("SELECT 1 AS found FROM plans WHERE id = ?").bind(id).first()) !== null;
}

function planRow(db: D1Database, plan: PlanState, verb: "INSERT" | "INSERT OR REPLACE") {
  return db
    .prepare(
      `${verb} INTO plans (id, repo, spec, status, subtasks, created_by, created_at, ended_at, cost_usd, key, error_code, error_message)
       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)`,
    )
    .bind(plan.id, plan.repo, plan.spec, plan.status, plan.subtasks.length, plan.createdBy, plan.createdAt, plan.endedAt, plan.costUsd, plan.key, plan.error?.code ?? null, plan.error?.message ?? null);
}

interface PlanRow {
  id: string;
  repo: string;
  spec: string;
  status: PlanStatus;
  subtasks: number;
  created_by: string;
  created_at: number;
  ended_at: number | null;
  cost_usd: number;
  error_code: string | null;
  error_message: string | null;
}

/** The newest plans first, filtered by status and repository. */
export async function listPlans(db: D1Database, query: { status?: PlanStatus; repo?: string; limit: number }): Promise<{ plans: PlanSummary[] }> {
  const where: string[] = [];
  const binds: unknown[] = [];
  if (query.status) {
    where.push(`status = ?${binds.length + 1}`);
    binds.push(query.status);
  }
  if (query.repo) {
    where.push(`repo = ?${binds.length + 1}`);
    binds.push(query.repo);
  }
  binds.push(query.limit);
  const sql = `SELECT * FROM plans ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY created_at DESC, id DESC LIMIT ?${binds.length}`;
  const { results } = await db.prepare(sql).bind(...binds).all<PlanRow>();
  return {
    plans: results.map((row) => ({
      id: row.id,
      repo: row.repo,
      spec: row.spec,
      status: row.status,
      subtasks: row.subtasks,
      createdBy: row.created_by,
      createdAt: row.created_at,
      endedAt: row.ended_at,
      costUsd: row.cost_usd,
      error: row.error_code ? { code: row.error_code, message: row.error_message ?? "" } : null,
    })),
  };
}
