/** How a plan's planner and workers report back to their PlanAgent when their task ends. */
import { getAgentByName } from "agents";
import type { TaskState } from "../schema.ts";

/** A plan task's end: its state, the run chosen (winner or first with a change), that run's diff and closing words, and a planner's plan. */
export interface PlanReport {
  task: TaskState;
  run: number | null;
  diff: string | null;
  summary: string | null;
  plan: unknown;
}

export async function reportToPlan(env: Cloudflare.Env, planId: string, report: PlanReport): Promise<void> {
  const agent = await getAgentByName(env.PlanAgent, planId);
  await agent.taskEnded(report);
}
