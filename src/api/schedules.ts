/** `POST/GET/DELETE /api/schedules`: tasks created on a cron. */
import { getAgentByName } from "agents";
import { parseCronExpression } from "cron-schedule";
import { Hono } from "hono";
import { planTask } from "../agents/launch.ts";
import { SortieError } from "../errors.ts";
import { newTaskId } from "../ids.ts";
import { CreateScheduleBody, CreateTaskBody } from "../schema.ts";
import { appendAudit } from "../store/audit.ts";
import { listSchedules, scheduleById, type ScheduleRow } from "../store/schedules.ts";
import { requireScope, type AuthVariables } from "./auth.ts";
import { jsonBody, validate } from "./body.ts";

export const scheduleRoutes = new Hono<{ Bindings: Cloudflare.Env; Variables: AuthVariables }>();

scheduleRoutes.use("*", requireScope("admin"));

scheduleRoutes.post("/", async (c) => {
  const { cron, task } = await jsonBody(c, CreateScheduleBody);
  const next = nextTick(cron);
  const body = validate(CreateTaskBody, task, "task");
  if (body.supersede) throw new SortieError("invalid_task", "task: supersede is not allowed in a schedule");
  planTask(c.env, { body, source: "schedule", createdBy: "schedule" });
  const id = `s${newTaskId().slice(1)}`;
  const agent = await getAgentByName(c.env.ScheduleAgent, id);
  await agent.start({ id, cron: cron.trim(), task: body, createdBy: c.var.caller.name });
  await appendAudit(c.env.DB, { actor: c.var.caller.name, action: "schedule.create", taskId: null, detail: { schedule: id, cron } });
  return c.json({ id, cron: cron.trim(), task: body, nextAt: next }, 201);
});

scheduleRoutes.get("/", async (c) => {
  return c.json({ schedules: (await listSchedules(c.env.DB)).map(present) });
});

scheduleRoutes.get("/:id", async (c) => c.json(present(await find(c.env.DB, c.req.param("id")))));

scheduleRoutes.delete("/:id", async (c) => {
  const row = await find(c.env.DB, c.req.param("id"));
  const agent = await getAgentByName(c.env.ScheduleAgent, row.id);
  await agent.stop();
  await appendAudit(c.env.DB, { actor: c.var.caller.name, action: "schedule.delete", taskId: null, detail: { schedule: row.id } });
  return c.json({ id: row.id, deleted: true });
});

async function find(db: D1Database, id: string): Promise<ScheduleRow> {
  const row = /^s[a-z0-9]{18}$/.test(id) ? await scheduleById(db, id) : null;
  if (!row || row.deleted_at !== null) throw new SortieError("not_found", `no schedule ${id}`, 404);
  return row;
}

function present(row: ScheduleRow) {
  return {
    id: row.id,
    cron: row.cron,
    task: JSON.parse(row.task) as unknown,
    createdBy: row.created_by,
    createdAt: row.created_at,
    lastTaskId: row.last_task_id,
    lastTickAt: row.last_tick_at,
    ticks: row.ticks,
    skipped: row.skipped,
    nextAt: nextTick(row.cron),
  };
}

/** The next tick of a 5-field cron expression; a 400 that says why when the expression is not one. */
function nextTick(cron: string): number {
  const fields = cron.trim().split(/\s+/);
  if (fields.length !== 5) throw new SortieError("invalid_cron", `cron must have 5 fields (minute hour day month weekday), got ${fields.length}`);
  try {
    return parseCronExpression(cron.trim()).getNextDate(new Date()).getTime();
  } catch (error) {
    throw new SortieError("invalid_cron", `invalid cron expression ${JSON.stringify(cron)}: ${error instanceof Error ? error.message : String(error)}`);
  }
}
