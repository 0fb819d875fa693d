/** The plan routes: create, list, read, approve, cancel, retry, the integrated diff, events, and the live WebSocket. */
import { getAgentByName } from "agents";
import { Hono } from "hono";
import { preparePlan, startPlan } from "../agents/plan-start.ts";
import { readConfig } from "../config.ts";
import { SortieError } from "../errors.ts";
import { isTaskId } from "../ids.ts";
import { ApprovePlanBody, CreatePlanBody, ListPlansQuery, RetrySubtaskBody, type PlanState, type PlanView } from "../plan-schema.ts";
import { listPlans, planExists } from "../store/plans.ts";
import { requireScope, signViewerToken, taskScope, type AuthVariables } from "./auth.ts";
import { jsonBody, validate } from "./body.ts";
import { afterSeq, diffResponse, eventsResponse, viewerSocket } from "./streams.ts";
import { underIdempotencyKey } from "./idempotent.ts";

type Env = { Bindings: Cloudflare.Env; Variables: AuthVariables };

export const planRoutes = new Hono<Env>();

/** The WebSocket upgrade authenticates itself (header or viewer token), so it is mounted before `requireScope`. */
planRoutes.get("/:id/ws", async (c) => {
  const id = c.req.param("id");
  return viewerSocket(c.env, c.req.raw, id, "plan", () => knownPlan(c.env, id));
});

planRoutes.use("*", requireScope(taskScope));

planRoutes.post("/", async (c) => {
  const body = await jsonBody(c, CreatePlanBody);
  const creator = c.var.caller.name;
  const prepared = preparePlan(c.env, body, creator, new URL(c.req.url).origin);
  // A retried request with the same Idempotency-Key gets the plan the first one made; plans' keys are kept apart from tasks'.
  const plan = await underIdempotencyKey(c, creator, "plan:", prepared.plan.id, (earlier) => loadPlan(c.env, earlier), () => startPlan(c.env, prepared));
  return c.json(await present(c.req.url, c.env, plan), 202);
});

planRoutes.get("/", async (c) => {
  const query = validate(ListPlansQuery, c.req.query(), "query");
  return c.json(await listPlans(c.env.DB, query));
});

planRoutes.get("/:id", async (c) => {
  return c.json(await present(c.req.url, c.env, await loadPlan(c.env, c.req.param("id"))));
});

planRoutes.post("/:id/approve", async (c) => {
  const agent = await knownPlan(c.env, c.req.param("id"));
  const text = await c.req.text();
  const body = text.trim() === "" ? {} : validate(ApprovePlanBody, parseJson(text), "body");
  return c.json(await present(c.req.url, c.env, accepted(await agent.approve(body.plan, c.var.caller.name))), 202);
});

planRoutes.post("/:id/cancel", async (c) => {
  const agent = await knownPlan(c.env, c.req.param("id"));
  return c.json(await present(c.req.url, c.env, accepted(await agent.cancel(c.var.caller.name))));
});

planRoutes.post("/:id/retry", async (c) => {
  const agent = await knownPlan(c.env, c.req.param("id"));
  const { subtask } = await jsonBody(c, RetrySubtaskBody);
  return c.json(await present(c.req.url, c.env, accepted(await agent.retrySubtask(subtask, c.var.caller.name))), 202);
});

planRoutes.get("/:id/diff", async (c) => {
  const id = c.req.param("id");
  const plan = await loadPlan(c.env, id);
  if (plan.integration?.status !== "succeeded" || !plan.integration.diff) {
    throw new SortieError("diff_not_ready", `plan ${id} has no integrated diff yet (status ${plan.status})`, 409);
  }
  const agent = await getAgentByName(c.env.PlanAgent, id);
  return diffResponse(await agent.diffChunkCount(), (index) => agent.diffChunk(index), plan.integration.diff.files);
});

planRoutes.get("/:id/events", async (c) => {
  const agent = await knownPlan(c.env, c.req.param("id"));
  const after = afterSeq(c.req.query("after"));
  return eventsResponse((from, limit) => agent.readEvents(from, limit), after);
});

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new SortieError("invalid_json", "the body is not valid JSON");
  }
}

async function knownPlan(env: Cloudflare.Env, id: string) {
  if (!isTaskId(id) || !(await planExists(env.DB, id))) throw new SortieError("not_found", `no plan ${id}`, 404);
  return getAgentByName(env.PlanAgent, id);
}

export async function loadPlan(env: Cloudflare.Env, id: string): Promise<PlanState> {
  const agent = await knownPlan(env, id);
  const plan = await agent.view();
  if (!plan) throw new SortieError("not_found", `no plan ${id}`, 404);
  return plan;
}

/** An agent's answer to an action: the plan, or its refusal as the API's error. */
function accepted(outcome: { plan: PlanState } | { refused: { code: string; message: string; status: 400 | 409 } }): PlanState {
  if ("refused" in outcome) throw new SortieError(outcome.refused.code, outcome.refused.message, outcome.refused.status);
  return outcome.plan;
}

/** Adds where to watch the plan: its API URL and a WebSocket URL carrying a fresh viewer token. */
export async function present(requestUrl: string, env: Cloudflare.Env, plan: PlanState): Promise<PlanView> {
  const origin = new URL(requestUrl).origin;
  const token = await signViewerToken(env.SORTIE_ADMIN_TOKEN, plan.id, readConfig(env).viewerTokenTtlSeconds);
  return { ...plan, url: `${origin}/api/plans/${plan.id}`, ws: `${origin.replace(/^http/, "ws")}/api/plans/${plan.id}/ws?token=${encodeURIComponent(token)}` };
}
