/**
 * foldPlan in plain Node: a plan's log (written as the PlanAgent writes it:
 * created, written, approved, its subtasks launched and ended, a failure
 * retried, the integration and its publication) folds into the state the
 * agent serves, and no prefix of it folds into an impossible plan. The
 * worker suite (test/worker/plans.test.ts) checks the same against real
 * plans' served logs.
 */
import { describe, expect, it } from "vitest";
import { parseEvent, type TaskEvent } from "../../src/events.ts";
import { applyPlanEvent, emptyPlanFold, foldPlan } from "../../src/plan-fold.ts";
import { PlanState, isPlanTerminal, type PlanFile } from "../../src/plan-schema.ts";

const PLAN_FILE: PlanFile = {
  summary: "An api and its docs.",
  subtasks: [
    { key: "api", title: "the api", prompt: "write the api", owns: ["src/**"], dependsOn: [], acceptance: [] },
    { key: "docs", title: "the docs", prompt: "document it", owns: ["docs/**"], dependsOn: ["api"], acceptance: ["test -f docs/api.md"] },
  ],
};

const CREATED: PlanState = {
  id: "p1",
  repo: "acme/widgets",
  spec: "an api and its docs",
  branch: null,
  status: "planning",
  approve: "manual",
  maxSubtasks: 8,
  output: "pr",
  createdBy: "ada",
  createdAt: 1_000,
  endedAt: null,
  plannerTaskId: "t-planner",
  plan: null,
  approvedBy: null,
  subtasks: [],
  integration: null,
  costUsd: 0,
  maxCostUsd: 5,
  key: null,
  error: null,
};

const diff = { files: 1, additions: 3, deletions: 0, bytes: 120 };
const check = { command: "test -f docs/api.md", exitCode: 0, subtask: "docs", output: "" };

/** A plan's whole life, as [type, data] at one second each. */
const LIFE: [string, Record<string, unknown>][] = [
  ["plan.created", { plan: CREATED }],
  ["plan.status", { status: "planning", planner: "t-planner" }],
  ["plan.cost", { task: "t-planner", totalUsd: 0.25, addedUsd: 0.25 }],
  ["plan.written", { summary: PLAN_FILE.summary, subtasks: [{ key: "api" }, { key: "docs" }], plan: PLAN_FILE }],
  ["plan.status", { status: "awaiting_approval" }],
  ["plan.approved", { by: "ada", edited: false, removed: [], subtasks: ["api", "docs"] }],
  ["plan.status", { status: "running" }],
  ["subtask.status", { key: "api", status: "running", taskId: "t-api", handoff: "You own src/**" }],
  ["plan.cost", { task: "t-api", totalUsd: 0.5, addedUsd: 0.5 }],
  ["subtask.status", { key: "api", status: "failed", taskId: "t-api", error: { code: "agent_failed", message: "it broke" }, endedAt: 9_000, diff: null, summary: null }],
  ["subtask.status", { key: "docs", status: "blocked", dependency: "api", error: { code: "dependency_failed", message: '"api" ended failed' } }],
  ["plan.status", { status: "failed", error: { code: "subtask_failed", message: 'subtask "api" failed: it broke' } }],
  ["plan.retry", { subtask: "api", by: "ada", subtasks: ["api", "docs"] }],
  ["plan.status", { status: "running" }],
  ["subtask.status", { key: "api", status: "running", taskId: "t-api2", handoff: "You own src/**" }],
  ["plan.cost", { task: "t-api2", totalUsd: 0.4, addedUsd: 0.4 }],
  ["subtask.status", { key: "api", status: "succeeded", taskId: "t-api2", endedAt: 16_500, diff, summary: "Wrote the api." }],
  ["subtask.status", { key: "docs", status: "running", taskId: "t-docs", handoff: "You own docs/**" }],
  ["subtask.status", { key: "docs", status: "succeeded", taskId: "t-docs", diff, summary: "Documented it." }],
  ["plan.status", { status: "integrating" }],
  ["integration.status", { status: "running", branch: "sortie/plan-p1", attempt: 1 }],
  ["integration.status", { status: "failed", branch: "sortie/plan-p1", error: { code: "acceptance_failed", message: "docs" }, results: [{ ...check, exitCode: 1 }], resolved: [] }],
  ["subtask.sent_back", { key: "docs", delivered: true, taskId: "t-docs" }],
  ["subtask.status", { key: "docs", status: "running", taskId: "t-docs" }],
  ["plan.cost", { task: "t-docs", totalUsd: 0.3, addedUsd: 0.3 }],
  ["plan.cost", { task: "t-docs", totalUsd: 0.35, addedUsd: 0.05 }],
  ["subtask.status", { key: "docs", status: "succeeded", taskId: "t-docs", diff, summary: "Fixed the docs." }],
  ["integration.status", { status: "running", branch: "sortie/plan-p1", attempt: 2 }],
  ["integration.status", { status: "succeeded", branch: "sortie/plan-p1", diff: { ...diff, files: 2 }, checks: 1, results: [check], resolved: ["docs"] }],
  ["integration.published", { branch: "sortie/plan-p1", commit: "abc123", pullRequest: { number: 7, url: "https://github.test/acme/widgets/pull/7" } }],
  ["plan.status", { status: "succeeded" }],
];

const log = (entries: [string, Record<string, unknown>][]): TaskEvent[] =>
  entries.map(([type, data], index) => parseEvent({ seq: index + 1, ts: (index + 1) * 1_000, run: null, type, data }));

/** What no plan may say: each a sentence naming what is wrong, empty when the plan is possible. */
function impossibilities(plan: PlanState): string[] {
  const wrong: string[] = [];
  for (const s of plan.subtasks) {
    if (s.status === "running" && (s.taskId === null || s.startedAt === null || s.endedAt !== null)) wrong.push(`subtask ${s.key} runs with task ${s.taskId}, startedAt ${s.startedAt}, endedAt ${s.endedAt}`);
    if (s.status === "succeeded" && s.startedAt === null) wrong.push(`subtask ${s.key} succeeded but never started`);
    if (s.status === "pending" && (s.taskId !== null || s.endedAt !== null)) wrong.push(`subtask ${s.key} pending with a task or an end`);
    if (isPlanTerminal(plan.status) && s.status === "running") wrong.push(`plan ${plan.status} with subtask ${s.key} running`);
  }
  if (plan.status === "succeeded" && plan.integration?.status !== "succeeded") wrong.push("plan succeeded without a succeeded integration");
  if (plan.status === "integrating" && !plan.subtasks.every((s) => s.status === "succeeded" || s.status === "running")) wrong.push("plan integrating with a subtask that did not succeed");
  if (isPlanTerminal(plan.status) !== (plan.endedAt !== null)) wrong.push(`plan ${plan.status} with endedAt ${plan.endedAt}`);
  const subtaskCost = plan.subtasks.reduce((sum, s) => sum + s.costUsd, 0);
  if (subtaskCost > plan.costUsd + 1e-9 || plan.costUsd < 0) wrong.push(`plan spent ${plan.costUsd} but its subtasks ${subtaskCost}`);
  return wrong;
}

describe("foldPlan", () => {
  it("folds a plan's whole life into the state the agent serves", () => {
    const plan = foldPlan(log(LIFE));
    PlanState.parse(plan);
    expect(plan.status).toBe("succeeded");
    expect(plan.endedAt).toBe(LIFE.length * 1_000);
    expect(plan.error).toBeNull();
    expect(plan.approvedBy).toBe("ada");
    expect(plan.plan).toEqual(PLAN_FILE);
    // Spending: the planner's, the failed first attempt's (its subtask started over, the plan's total keeps it), and what was new in each report.
    expect(plan.costUsd).toBeCloseTo(0.25 + 0.5 + 0.4 + 0.35, 10);
    const [api, docs] = plan.subtasks;
    expect(api).toMatchObject({ status: "succeeded", taskId: "t-api2", endedAt: 16_500, diff, summary: "Wrote the api.", error: null, startedAt: 15_000 });
    // A subtask's spending is every task it ran as: the failed first one and the retry.
    expect(api!.costUsd).toBeCloseTo(0.9, 10);
    expect(docs).toMatchObject({ status: "succeeded", taskId: "t-docs", sentBack: 1, summary: "Fixed the docs.", handoff: "You own docs/**", startedAt: 18_000, endedAt: 27_000 });
    expect(docs!.costUsd).toBeCloseTo(0.35, 10);
    expect(plan.integration).toEqual({
      status: "succeeded",
      branch: "sortie/plan-p1",
      diff: { ...diff, files: 2 },
      checks: [check],
      resolved: ["docs"],
      attempts: 2,
      commit: "abc123",
      pullRequest: { number: 7, url: "https://github.test/acme/widgets/pull/7" },
      error: null,
    });
  });

  it("a retry starts the failed subtask and its dependents over, and the plan runs again", () => {
    const upToRetry = LIFE.findIndex(([type]) => type === "plan.retry") + 1;
    const plan = foldPlan(log(LIFE.slice(0, upToRetry)));
    expect(plan).toMatchObject({ status: "running", endedAt: null, error: null, integration: null });
    expect(plan.subtasks.map((s) => [s.key, s.status, s.taskId, s.endedAt, s.error])).toEqual([
      ["api", "pending", null, null, null],
      ["docs", "pending", null, null, null],
    ]);
  });

  it("an edited plan at approval replaces the written one", () => {
    const edited: PlanFile = { ...PLAN_FILE, subtasks: [PLAN_FILE.subtasks[0]!] };
    const upToWritten = LIFE.findIndex(([type]) => type === "plan.written") + 1;
    const plan = foldPlan(log([...LIFE.slice(0, upToWritten), ["plan.approved", { by: "bob", edited: true, removed: ["docs"], subtasks: ["api"], plan: edited }]]));
    expect(plan.approvedBy).toBe("bob");
    expect(plan.plan).toEqual(edited);
    expect(plan.subtasks.map((s) => s.key)).toEqual(["api"]);
  });

  it("every prefix of the log folds into a possible plan", () => {
    let fold = emptyPlanFold();
    for (const [index, event] of log(LIFE).entries()) {
      fold = applyPlanEvent(fold, event);
      expect(fold.plan, `after event ${index + 1}`).not.toBeNull();
      PlanState.parse(fold.plan);
      expect(impossibilities(fold.plan!), `after event ${index + 1} (${event.type})`).toEqual([]);
    }
  });

  it("the impossibility check finds an impossible plan", () => {
    const plan = foldPlan(log(LIFE));
    expect(impossibilities({ ...plan, status: "succeeded", integration: null })).toEqual(["plan succeeded without a succeeded integration"]);
    expect(impossibilities({ ...plan, subtasks: [{ ...plan.subtasks[0]!, status: "running", endedAt: 5 }] })).toHaveLength(2);
  });

  it("a log without the plan's creation folds to no plan and says so; events that change nothing leave the fold as it was", () => {
    const [, ...rest] = log(LIFE);
    expect(() => foldPlan(rest)).toThrow(/plan\.created/);
    const fold = applyPlanEvent(emptyPlanFold(), log(LIFE)[0]!);
    const same = applyPlanEvent(fold, parseEvent({ seq: 2, ts: 2, run: null, type: "plan.error", data: { message: "x" } }));
    expect(same).toBe(fold);
  });

  it("refuses plan events of the wrong shape", () => {
    expect(() => parseEvent({ seq: 1, ts: 1, run: null, type: "subtask.status", data: { key: "api", status: "exploded" } })).toThrow(/subtask\.status/);
    expect(() => parseEvent({ seq: 1, ts: 1, run: null, type: "plan.cost", data: { task: "t" } })).toThrow(/plan\.cost/);
  });
});
