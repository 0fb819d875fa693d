/**
 * Turns a validated plan request, from any trigger (the API, Slack), into a
 * plan that is planning: checks it against the limits (the workers' options
 * on a stand-in subtask too, so a plan that could never start its subtasks
 * is refused before it plans), builds the planner's task, and hands both to
 * a new PlanAgent. Triggers come through here, so they cannot differ in how
 * a plan starts.
 */
import { getAgentByName } from "agents";
import { readConfig } from "../config.ts";
import { SortieError } from "../errors.ts";
import { newTaskId } from "../ids.ts";
import { PLAN_SUBTASKS, type CreatePlanBody, type PlanState } from "../plan-schema.ts";
import { resolveRepo } from "../repo.ts";
import type { CreateTaskBody, TaskSpec } from "../schema.ts";
import { livePlanWithKey } from "../store/plans.ts";
import { planTask } from "./launch.ts";
import type { PlanRequest } from "./plan-agent.ts";
import { plannerPrompt } from "./plan-handoff.ts";

export interface PreparedPlan {
  plan: PlanState;
  request: PlanRequest;
  planner: TaskSpec;
}

/** Checks a plan request and resolves it into the plan and its planner's spec, without side effects. */
export function preparePlan(env: Cloudflare.Env, body: CreatePlanBody, createdBy: string, origin: string | null): PreparedPlan {
  const config = readConfig(env);
  const repo = resolveRepo(body.repo, config.gitBaseUrl);
  const id = newTaskId();
  const maxSubtasks = body.maxSubtasks ?? PLAN_SUBTASKS.default;
  const maxCostUsd = body.maxCostUsd ?? config.defaultMaxCostUsd;
  planTask(env, { body: workerProbe(body, maxCostUsd), source: "plan", createdBy });
  const planner = planTask(env, {
    body: {
      repo: body.repo,
      prompt: plannerPrompt(body.spec, repo.slug, maxSubtasks),
      ...(body.branch ? { branch: body.branch } : {}),
      ...(body.planner?.agent ? { agent: body.planner.agent } : {}),
      ...(body.planner?.model ? { model: body.planner.model } : {}),
      isolation: "analysis",
      maxCostUsd,
      keepWorkspaceMinutes: 0,
    },
    source: "plan",
    createdBy,
    ...(origin ? { origin } : {}),
  });
  planner.plan = { id, role: "planner", maxSubtasks };
  const plan: PlanState = {
    id,
    repo: repo.slug,
    spec: body.spec,
    branch: body.branch ?? null,
    status: "planning",
    approve: body.approve ?? "manual",
    maxSubtasks,
    output: body.output ?? "diff",
    createdBy,
    createdAt: Date.now(),
    endedAt: null,
    plannerTaskId: planner.id,
    plan: null,
    approvedBy: null,
    subtasks: [],
    integration: null,
    costUsd: 0,
    maxCostUsd,
    key: body.key ?? null,
    error: null,
  };
  return { plan, request: { body, createdBy, origin }, planner };
}

/** Creates the plan and starts its planner; a plan key another live plan holds is a 409, a planner that cannot start creates nothing. */
export async function startPlan(env: Cloudflare.Env, prepared: PreparedPlan): Promise<PlanState> {
  const { plan } = prepared;
  if (plan.key) {
    const holder = await livePlanWithKey(env.DB, plan.key);
    if (holder) throw new SortieError("claim_conflict", `plan ${holder} already holds key ${plan.key}`, 409, { headers: { "x-sortie-holder": holder } });
  }
  const agent = await getAgentByName(env.PlanAgent, plan.id);
  const outcome = await agent.create(plan, prepared.request, prepared.planner);
  if ("refused" in outcome) throw new SortieError(outcome.refused.code, outcome.refused.message, outcome.refused.status);
  return outcome.plan;
}

/** A subtask's task body as the plan will build it, for checking the workers' options before anything is created. */
function workerProbe(body: CreatePlanBody, maxCostUsd: number): CreateTaskBody {
  return {
    repo: body.repo,
    prompt: "probe",
    isolation: "sandbox",
    maxCostUsd,
    ...(body.workers?.agent ? { agent: body.workers.agent } : {}),
    ...(body.workers?.model ? { model: body.workers.model } : {}),
    ...(body.workers?.runs ? { runs: body.workers.runs } : {}),
    ...(body.workers?.judge ? { judge: body.workers.judge } : {}),
    ...(body.review ? { review: body.review } : {}),
  };
}
