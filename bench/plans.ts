/**
 * A plan's orchestration overhead: a 6-subtask plan (3 independent, 3 each
 * depending on one of them) against the same 6 tasks run by hand through the
 * API in the right order (the 3 independent ones together, then the 3 after
 * them). Real Claude Code against the stand-in model, each worker holding
 * for HOLD_MS so the comparison is of orchestration, not of typing speed.
 * Also checks that the plan's independent subtasks really overlap in time.
 */
import type { PlanView } from "../src/plan-schema.ts";
import { hold, scriptedPrompt, sleep, type Api } from "./api.ts";
import { round, type Figure } from "./report.ts";
import type { BenchResult } from "./result.ts";

export const PLAN_OVERHEAD_GOAL = 1.15;
/** How long each worker holds; BENCH_PLAN_HOLD_MS shortens it for a smoke run. */
const HOLD_MS = Number(process.env.BENCH_PLAN_HOLD_MS ?? 5000);
const KEYS = ["a", "b", "c"] as const;

const workerSteps = (key: string) => [{ tool: "Write", input: { file_path: `${key}/${key}.txt`, content: `${key}\n` } }, hold(HOLD_MS), { text: `Wrote ${key}.` }];
const prompt = (key: string) => scriptedPrompt(`bench: plan part ${key}`, workerSteps(key));

/** The plan the planner writes: a, b, c and a2, b2, c2 after each. */
function planFile() {
  const part = (key: string, dependsOn: string[]) => ({ key, title: `part ${key}`, prompt: prompt(key), owns: [`${key}/**`], dependsOn, acceptance: [] });
  return { summary: "Six parts: three, and one after each.", subtasks: [...KEYS.map((k) => part(k, [])), ...KEYS.map((k) => part(`${k}2`, [k]))] };
}

async function planOf(api: Api, id: string): Promise<PlanView> {
  const response = await api.call(`/api/plans/${id}`);
  if (!response.ok) throw new Error(`GET /api/plans/${id} answered ${response.status}`);
  return (await response.json()) as PlanView;
}

async function byHand(api: Api): Promise<number> {
  const t0 = Date.now();
  for (const wave of [KEYS.map((k) => k as string), KEYS.map((k) => `${k}2`)]) {
    const tasks = await Promise.all(wave.map((key) => api.create({ repo: "acme/widgets", prompt: prompt(key) })));
    const ended = await Promise.all(tasks.map((task) => api.waitForEnd(task, 300_000)));
    if (ended.some((e) => e.status !== "succeeded")) throw new Error("plans bench: a hand-run task did not succeed");
  }
  return Date.now() - t0;
}

export async function benchPlans(api: Api): Promise<BenchResult> {
  const handMs = await byHand(api);
  const writePlan = { tool: "Bash", input: { command: `cat > "$SORTIE_PLAN_FILE" <<'JSON'\n${JSON.stringify(planFile())}\nJSON` } };
  const t0 = Date.now();
  const response = await api.call("/api/plans", { method: "POST", body: JSON.stringify({ repo: "acme/widgets", spec: scriptedPrompt("bench: a six-part plan", [writePlan, { text: "Planned." }]), approve: "auto" }) });
  if (response.status !== 202) throw new Error(`POST /api/plans answered ${response.status}: ${await response.text()}`);
  const created = (await response.json()) as PlanView;
  let plan = created;
  const deadline = Date.now() + 600_000;
  while (!["succeeded", "failed", "cancelled"].includes(plan.status)) {
    if (Date.now() > deadline) throw new Error(`plans bench: plan ${plan.id} still ${plan.status}`);
    await sleep(250);
    plan = await planOf(api, created.id);
  }
  const totalMs = Date.now() - t0;
  if (plan.status !== "succeeded") throw new Error(`plans bench: plan ${plan.id} ended ${plan.status}: ${plan.error?.message}`);
  const planner = await api.task(plan.plannerTaskId!);
  const firstStart = Math.min(...plan.subtasks.map((s) => s.startedAt ?? Infinity));
  const workMs = (plan.endedAt ?? Date.now()) - firstStart;
  const runs = await Promise.all(KEYS.map(async (key) => (await api.task(plan.subtasks.find((s) => s.key === key)!.taskId!)).runs[0]!));
  const overlap = Math.max(...runs.map((r) => r.startedAt ?? Infinity)) < Math.min(...runs.map((r) => r.endedAt ?? 0));
  const ratio = workMs / handMs;
  const figures: Figure[] = [
    { name: "6 tasks by hand in dependency order (3, then 3)", value: round(handMs / 1000, 2), unit: "s" },
    { name: "the plan from its first subtask's start to integrated", value: round(workMs / 1000, 2), unit: "s" },
    { name: "plan ÷ by hand", value: round(ratio, 2), unit: "×", goal: `≤ ${PLAN_OVERHEAD_GOAL}×`, met: ratio <= PLAN_OVERHEAD_GOAL },
    { name: "the 3 independent subtasks' runs overlap in time", value: overlap ? "yes" : "no", unit: "", goal: "yes", met: overlap },
    { name: "the whole plan, planner and integration included", value: round(totalMs / 1000, 2), unit: "s" },
  ];
  return {
    figures,
    notes: [
      `planner task ${planner.id}: ${round(((planner.endedAt ?? 0) - planner.createdAt) / 1000, 2)} s; integration on ${plan.integration?.branch}, ${plan.integration?.diff?.files ?? 0} files`,
      await timeline(api, plan, firstStart),
    ],
    details: { handMs, workMs, totalMs, ratio, overlap, plan: plan.id },
  };
}

/** Where the plan's time went, in seconds from its first subtask's start: each subtask's task, then the integration. */
async function timeline(api: Api, plan: PlanView, firstStart: number): Promise<string> {
  const at = (ts: number | null | undefined) => (ts ? round((ts - firstStart) / 1000, 2) : "?");
  const parts = await Promise.all(plan.subtasks.map(async (s) => {
    const task = await api.task(s.taskId!);
    const run = task.runs[0]!;
    return `${s.key} ${at(s.startedAt)}→run ${at(run.startedAt)}–${at(run.endedAt)}→${at(s.endedAt)}`;
  }));
  const response = await api.call(`/api/plans/${plan.id}/events?after=0`);
  const events = (await response.text()).split("\n").filter(Boolean).map((line) => JSON.parse(line) as { ts: number; type: string; data: Record<string, unknown> });
  const integration = events.filter((e) => e.type === "integration.status");
  return `timeline (s): ${parts.join("; ")}; integration ${at(integration[0]?.ts)}–${at(integration.at(-1)?.ts)}; ended ${at(plan.endedAt)}`;
}
