/** The task routes: create, list, read, cancel, diff, events, and the live WebSocket. */
import { getAgentByName } from "agents";
import { Hono } from "hono";
import { fleetOf } from "../agents/fleet.ts";
import { planTask, startTasks } from "../agents/launch.ts";
import { readConfig } from "../config.ts";
import { SortieError } from "../errors.ts";
import { isTaskId } from "../ids.ts";
import { CreateTaskBody, FollowUpBody, ListTasksQuery, PickWinnerBody, PublishBody, type TaskState, type TaskView } from "../schema.ts";
import { listTasks, taskExists } from "../store/tasks.ts";
import { requireScope, signViewerToken, taskScope, type AuthVariables } from "./auth.ts";
import { idempotencyKeyOf } from "./idempotent.ts";
import { jsonBody, validate } from "./body.ts";
import { afterSeq, diffResponse, eventsResponse, viewerSocket } from "./streams.ts";

type Env = { Bindings: Cloudflare.Env; Variables: AuthVariables };

export const taskRoutes = new Hono<Env>();

/** The WebSocket upgrade authenticates itself (header or viewer token), so it is mounted before `requireScope`. */
taskRoutes.get("/:id/ws", async (c) => {
  const id = c.req.param("id");
  return viewerSocket(c.env, c.req.raw, id, "task", async () => {
    await requireKnownTask(c.env, id);
    return getAgentByName(c.env.TaskAgent, id);
  });
});

taskRoutes.use("*", requireScope(taskScope));

taskRoutes.post("/", async (c) => {
  const body = await jsonBody(c, CreateTaskBody);
  const creator = c.var.caller.name;
  const spec = planTask(c.env, { body, source: "api", createdBy: creator, origin: new URL(c.req.url).origin });
  const idempotencyKey = idempotencyKeyOf(c);
  const started = await startTasks(c.env, {
    specs: [spec],
    starter: c.var.caller,
    supersede: body.supersede ?? false,
    ...(idempotencyKey !== undefined ? { idempotency: { owner: creator, key: idempotencyKey } } : {}),
  });
  if ("replayed" in started) {
    c.header("idempotent-replayed", "true");
    return c.json(await present(c.req.url, c.env, await loadTask(c.env, started.replayed)), 202);
  }
  return c.json(await present(c.req.url, c.env, started.tasks[0]!), 202);
});

taskRoutes.get("/", async (c) => {
  const query = validate(ListTasksQuery, c.req.query(), "query");
  return c.json(await listTasks(c.env.DB, query));
});

taskRoutes.get("/:id", async (c) => {
  const task = await loadTask(c.env, c.req.param("id"));
  return c.json(await present(c.req.url, c.env, task));
});

taskRoutes.post("/:id/cancel", async (c) => {
  const outcome = await (await knownAgent(c.env, c.req.param("id"))).cancel(c.var.caller.name);
  return c.json(await present(c.req.url, c.env, accepted(outcome)));
});

taskRoutes.post("/:id/messages", async (c) => {
  const agent = await knownAgent(c.env, c.req.param("id"));
  const { text, run } = await jsonBody(c, FollowUpBody);
  return c.json(await present(c.req.url, c.env, accepted(await agent.message(text, run, c.var.caller.name))), 202);
});

taskRoutes.post("/:id/publish", async (c) => {
  const agent = await knownAgent(c.env, c.req.param("id"));
  const { run, output } = await jsonBody(c, PublishBody);
  return c.json(await present(c.req.url, c.env, accepted(await agent.publish(run, output, c.var.caller.name))), 202);
});

taskRoutes.post("/:id/winner", async (c) => {
  const agent = await knownAgent(c.env, c.req.param("id"));
  const { run } = await jsonBody(c, PickWinnerBody);
  return c.json(await present(c.req.url, c.env, accepted(await agent.pickWinner(run, c.var.caller.name))));
});

taskRoutes.get("/:id/runs/:n/diff", async (c) => {
  const id = c.req.param("id");
  const task = await loadTask(c.env, id);
  const n = Number(c.req.param("n"));
  const run = Number.isInteger(n) ? task.runs[n] : undefined;
  if (!run) throw new SortieError("not_found", `task ${id} has no run ${c.req.param("n")}`, 404);
  if (!run.diff) throw new SortieError("diff_not_ready", `run ${n} has no diff yet (status ${run.status}${run.phase ? `, phase ${run.phase}` : ""})`, 409);
  const agent = await getAgentByName(c.env.TaskAgent, id);
  return diffResponse(await agent.diffChunkCount(n), (index) => agent.diffChunk(n, index), run.diff.files);
});

taskRoutes.get("/:id/events", async (c) => {
  const id = c.req.param("id");
  await requireKnownTask(c.env, id);
  const after = afterSeq(c.req.query("after"));
  const agent = await getAgentByName(c.env.TaskAgent, id);
  return eventsResponse((from, limit) => agent.readEvents(from, limit), after);
});

/** The agent of a task that exists (404 otherwise). */
async function knownAgent(env: Cloudflare.Env, id: string) {
  await requireKnownTask(env, id);
  return getAgentByName(env.TaskAgent, id);
}

/** An agent's answer to an action: the task, or its refusal as the API's error. */
function accepted(outcome: { task: TaskState } | { refused: { code: string; message: string; status: 400 | 409 } }): TaskState {
  if ("refused" in outcome) throw new SortieError(outcome.refused.code, outcome.refused.message, outcome.refused.status);
  return outcome.task;
}

async function requireKnownTask(env: Cloudflare.Env, id: string): Promise<void> {
  if (!isTaskId(id) || !(await taskExists(env.DB, id))) throw new SortieError("not_found", `no task ${id}`, 404);
}

export async function loadTask(env: Cloudflare.Env, id: string): Promise<TaskState> {
  await requireKnownTask(env, id);
  const agent = await getAgentByName(env.TaskAgent, id);
  const task = await agent.view();
  if (!task) throw new SortieError("not_found", `no task ${id}`, 404);
  return task;
}

/**
 * Adds where to watch the task (its API URL and a WebSocket URL carrying a
 * fresh viewer token) and, for runs still waiting, their place in the queue.
 */
export async function present(requestUrl: string, env: Cloudflare.Env, task: TaskState): Promise<TaskView> {
  if (task.runs.some((run) => run.status === "queued")) {
    const positions = await (await fleetOf(env)).positions(task.id);
    task = { ...task, runs: task.runs.map((run) => (run.status === "queued" ? { ...run, queuePosition: positions[run.index] ?? null } : run)) };
  }
  const origin = new URL(requestUrl).origin;
  // A local preview's URL is the orchestrator's own path: absolute here, against the origin the caller used.
  if (task.runs.some((run) => run.preview?.url.startsWith("/"))) {
    task = { ...task, runs: task.runs.map((run) => (run.preview?.url.startsWith("/") ? { ...run, preview: { ...run.preview, url: `${origin}${run.preview.url}` } } : run)) };
  }
  const token = await signViewerToken(env.SORTIE_ADMIN_TOKEN, task.id, readConfig(env).viewerTokenTtlSeconds);
  const wsOrigin = origin.replace(/^http/, "ws");
  return { ...task, url: `${origin}/api/tasks/${task.id}`, ws: `${wsOrigin}/api/tasks/${task.id}/ws?token=${encodeURIComponent(token)}` };
}
