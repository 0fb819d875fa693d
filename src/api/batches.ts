/** `POST /api/batches`: independent tasks (one prompt per file, per issue…) created together. */
import { Hono } from "hono";
import { planTask, startTasks } from "../agents/launch.ts";
import { SortieError } from "../errors.ts";
import { CreateBatchBody, CreateTaskBody } from "../schema.ts";
import { requireScope, type AuthVariables } from "./auth.ts";
import { jsonBody, validate } from "./body.ts";
import { present } from "./tasks.ts";

export const batchRoutes = new Hono<{ Bindings: Cloudflare.Env; Variables: AuthVariables }>();

batchRoutes.use("*", requireScope("tasks:write"));

batchRoutes.post("/", async (c) => {
  const { tasks } = await jsonBody(c, CreateBatchBody);
  // Every task is checked before any is created: one bad entry creates nothing.
  const specs = tasks.map((entry, index) => {
    try {
      const body = validate(CreateTaskBody, entry, "body");
      if (body.supersede) throw new SortieError("invalid_body", "supersede is not allowed in a batch");
      return planTask(c.env, { body, source: "api", createdBy: c.var.caller.name });
    } catch (error) {
      if (error instanceof SortieError) throw new SortieError(error.code, `tasks[${index}]: ${error.message}`, error.status);
      throw error;
    }
  });
  const keys = specs.map((spec) => spec.key).filter((key) => key !== null);
  if (new Set(keys).size !== keys.length) throw new SortieError("invalid_body", "two tasks in the batch share a key");
  // All or nothing, claims included (src/agents/launch.ts).
  const started = await startTasks(c.env, { specs, starter: c.var.caller });
  if (!("tasks" in started)) throw new Error("a batch has no idempotency key to replay");
  return c.json({ tasks: await Promise.all(started.tasks.map((task) => present(c.req.url, c.env, task))) }, 202);
});
