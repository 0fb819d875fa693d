/**
 * The task's decisions (src/agents/decide.ts), in plain Node: each made from
 * the folded state alone, and each outcome a task can reach.
 */
import { describe, expect, it } from "vitest";
import { admits, nextStep, preludeOf, reactionsTo, recoveryOf, retryOf, turnOutcome } from "../../src/agents/decide.ts";
import { newTask, runEnded, runPhase, runReopened, workspaceKept } from "../../src/agents/task-state.ts";
import { applyEvent, emptyFold, parseEvent, type TaskFold } from "../../src/events.ts";
import { LIMITS } from "../../src/config.ts";
import type { AgentTurnResult } from "../../src/runners/agent.ts";
import { CloneError } from "../../src/sandbox/checkout.ts";
import { SandboxUnavailableError } from "../../src/sandbox/port.ts";
import type { RunView, TaskSpec, TaskState } from "../../src/schema.ts";

const diff = { files: 1, additions: 1, deletions: 0, bytes: 40 };

function task(runs: Partial<RunView>[], extra: Partial<TaskSpec> = {}, state: Partial<TaskState> = {}): TaskState {
  const spec = {
    id: "t1",
    repo: "acme/widgets",
    branch: null,
    prompt: "p",
    model: null,
    maxTurns: 10,
    timeoutMinutes: 30,
    source: "api",
    createdBy: "ada",
    key: null,
    maxCostUsd: 5,
    isolation: { level: "sandbox" },
    runs: runs.map(() => ({})),
    judge: false,
    agent: "claude-code",
    output: "diff",
    ...extra,
  } as unknown as TaskSpec;
  const created = newTask(spec, "p");
  return { ...created, status: "running", ...state, runs: created.runs.map((run, index) => ({ ...run, ...runs[index] })) };
}

const turn = (final: Partial<NonNullable<AgentTurnResult["final"]>> | null, exitCode = 0): AgentTurnResult => ({
  exitCode,
  sessionId: "s",
  final: final && { isError: false, subtype: "success", numTurns: 1, costUsd: 0, durationMs: 1, text: "done", sessionId: "s", ...final },
});

describe("nextStep", () => {
  it("waits while a run is going, and once the task has ended", () => {
    expect(nextStep(task([{ status: "succeeded", diff }, { status: "running" }]))).toEqual({ kind: "wait" });
    expect(nextStep(task([{ status: "succeeded", diff }], {}, { status: "succeeded" }))).toEqual({ kind: "wait" });
  });

  it("queues the judge with the runs that left a diff, or fails it when none did", () => {
    const judged = task([{ status: "succeeded", diff }, { status: "failed" }, { status: "succeeded", diff }], { judge: true });
    expect(nextStep(judged)).toEqual({ kind: "judge", candidates: [0, 2] });
    const none = task([{ status: "failed" }, { status: "succeeded", diff: null }], { judge: true });
    expect(nextStep(none)).toMatchObject({ kind: "judge_fails", error: { code: "no_candidates" } });
    expect(nextStep({ ...judged, judge: { ...judged.judge!, status: "running" } })).toEqual({ kind: "wait" });
  });

  it("ends the task with what its runs add up to, publishing when its output asks and nothing was published", () => {
    expect(nextStep(task([{ status: "failed", error: { code: "agent_failed", message: "x" } }, { status: "succeeded", diff }], { output: "pr" }))).toEqual({ kind: "finish", status: "succeeded", error: null, publish: "pr" });
    expect(nextStep(task([{ status: "succeeded", diff }]))).toMatchObject({ kind: "finish", status: "succeeded", publish: null });
    const failed = nextStep(task([{ status: "failed", error: { code: "agent_failed", message: "x" } }], { output: "pr" }));
    expect(failed).toEqual({ kind: "finish", status: "failed", error: { code: "agent_failed", message: "x" }, publish: null });
    const published = task([{ status: "succeeded", diff }], { output: "branch" }, { publication: { status: "succeeded", output: "branch", run: 0, branch: "b", commit: "c", pullRequest: null, by: "ada", error: null } });
    expect(nextStep(published)).toMatchObject({ kind: "finish", publish: null });
    const judged = task([{ status: "succeeded", diff }], { judge: true, output: "pr" });
    expect(nextStep({ ...judged, judge: { ...judged.judge!, status: "succeeded", winner: 0 } })).toMatchObject({ kind: "finish", status: "succeeded", publish: "pr" });
  });
});

describe("turnOutcome", () => {
  it("reads the run's end from its last turn", () => {
    expect(turnOutcome(turn({}), "claude-code", 10)).toEqual(["succeeded", null]);
    expect(turnOutcome(turn(null, 137), "codex", 10)).toEqual(["failed", { code: "agent_no_result", message: "codex exited 137 without a result" }]);
    expect(turnOutcome(turn({ subtype: "error_max_turns", isError: true }), "claude-code", 10)).toEqual(["failed", { code: "budget", message: "the run used its 10 turns" }]);
    expect(turnOutcome(turn({ isError: true, text: "it broke" }), "claude-code", 10)).toEqual(["failed", { code: "agent_failed", message: "it broke" }]);
    expect(turnOutcome(turn({ text: "" }, 2), "gemini", 10)).toEqual(["failed", { code: "agent_failed", message: "gemini ended success (exit 2)" }]);
  });
});

describe("retryOf", () => {
  const run = task([{ status: "running" }]).runs[0]!;
  it("tries a failure of the infrastructure again while provisioning, within the budget; never the work's", () => {
    expect(retryOf(new CloneError("connection reset", "network"), { stage: "provision", attempt: 0 })).toEqual({ retry: true, failure: { code: "clone_failed", message: "connection reset" } });
    expect(retryOf(new CloneError("connection reset", "network"), { stage: "provision", attempt: LIMITS.maxInfraRetries }).retry).toBe(false);
    expect(retryOf(new CloneError("no such branch", "other"), { stage: "provision", attempt: 0 }).retry).toBe(false);
    expect(retryOf(new SandboxUnavailableError("no container"), { stage: "provision", attempt: 1 }).retry).toBe(true);
    expect(retryOf(new Error("boom"), { stage: "provision", attempt: 0 })).toEqual({ retry: false, failure: { code: "internal", message: "boom" } });
  });

  it("once the agent runs, tries again only a lost sandbox under a first turn, counted against the run's retries", () => {
    const lost = new SandboxUnavailableError("no process 42");
    expect(retryOf(lost, { stage: "turn", run, followUp: false })).toEqual({ retry: true, failure: { code: "sandbox_unavailable", message: "no process 42" } });
    expect(retryOf(lost, { stage: "turn", run, followUp: true }).retry).toBe(false);
    const spent = { ...run, attempts: Array.from({ length: LIMITS.maxInfraRetries }, () => ({ at: 1, code: "sandbox_unavailable", message: "x" })) };
    expect(retryOf(lost, { stage: "turn", run: spent, followUp: false }).retry).toBe(false);
    expect(retryOf(new CloneError("reset", "network"), { stage: "turn", run, followUp: false }).retry).toBe(false);
  });
});

describe("recoveryOf", () => {
  const base = task([{ status: "running" }]).runs[0]!;
  it("re-attaches, ends a review, starts over or fails, by where the run stood", () => {
    expect(recoveryOf({ ...base, phase: "agent" }, true)).toEqual({ kind: "reattach" });
    expect(recoveryOf({ ...base, phase: "agent" }, false)).toMatchObject({ kind: "fail", error: { code: "orchestrator_restarted" } });
    expect(recoveryOf({ ...base, phase: "reviewing", diff, review: { status: "running", rounds: [], reason: null } }, false)).toMatchObject({ kind: "end_review" });
    expect(recoveryOf({ ...base, phase: "cloning" }, false)).toEqual({ kind: "restart" });
    expect(recoveryOf({ ...base, phase: "cloning", sessionId: "s" }, false)).toMatchObject({ kind: "fail" });
    expect(recoveryOf({ ...base, phase: "diffing" }, true)).toMatchObject({ kind: "fail", error: { message: expect.stringContaining("while the run was diffing") } });
  });
});

describe("admits and reactionsTo", () => {
  const logged = (input: ReturnType<typeof runPhase>) => parseEvent({ seq: 9, ts: 9, ...input });
  it("records a run's phase once and its end once: an ended run takes no more status", () => {
    const running = task([{ status: "running", phase: "agent" }]);
    expect(admits(running, runPhase(0, "agent"))).toBe(false);
    expect(admits(running, runPhase(0, "diffing"))).toBe(true);
    expect(admits(running, runEnded(running.runs[0]!, "succeeded", null))).toBe(true);
    const ended = task([{ status: "cancelled" }]);
    expect(admits(ended, runEnded(ended.runs[0]!, "failed", { code: "budget", message: "x" }))).toBe(false);
    expect(admits(ended, runPhase(0, "agent"))).toBe(false);
    expect(admits(ended, { run: 3, type: "run.status", data: { status: "running", phase: "agent" } })).toBe(false);
    expect(admits(ended, { run: 0, type: "run.diff", data: diff })).toBe(true);
  });

  it("starts the task's clock with its first run's first phase, and takes the next step after a run's end", () => {
    const queued = task([{ status: "queued" }], {}, { status: "queued" });
    expect(reactionsTo(queued, logged(runPhase(0, "provisioning")))).toEqual(["start_clock"]);
    expect(reactionsTo({ ...queued, status: "running" }, logged(runPhase(0, "agent")))).toEqual([]);
    expect(reactionsTo(queued, logged(runEnded(queued.runs[0]!, "failed", { code: "x", message: "y" })))).toEqual(["advance"]);
    expect(reactionsTo(queued, logged({ run: 0, type: "run.diff", data: diff }))).toEqual([]);
    expect(reactionsTo(queued, logged(workspaceKept(0, 30)))).toEqual(["expire_workspace"]);
  });

  it("a follow-up reopens a finished run: an ended task runs again first, then the run waits in the queue", () => {
    const ended = task([{ status: "succeeded", sessionId: "s1", workspaceUntil: Date.now() + 60_000 }], {}, { status: "succeeded", endedAt: 5 });
    const [again, ...more] = preludeOf(ended, runReopened(0));
    expect(more).toEqual([]);
    expect(again).toEqual({ run: null, type: "task.status", data: { status: "running", reason: "follow-up" } });
    expect(preludeOf({ ...ended, status: "running" }, runReopened(0))).toEqual([]);
    expect(preludeOf(ended, { run: 0, type: "run.message", data: { text: "more", by: "ada" } })).toEqual([]);
    expect(reactionsTo(ended, logged(again!))).toEqual(["restart_clock"]);
    expect(reactionsTo(task([{ status: "queued" }], {}, { status: "queued" }), logged(again!))).toEqual([]);
    expect(reactionsTo({ ...ended, status: "running" }, logged(runReopened(0)))).toEqual(["requeue"]);
    // Only a finished run is reopened: a second follow-up close behind the first does not send a run under way back to the queue.
    expect(admits(ended, runReopened(0))).toBe(true);
    expect(admits(task([{ status: "queued" }]), runReopened(0))).toBe(false);
    expect(admits(task([{ status: "running", phase: "agent" }]), runReopened(0))).toBe(false);
    expect(admits(ended, runReopened(4))).toBe(false);
    // In that order, no state of the log has an ended task with a run waiting.
    let fold: TaskFold = { ...emptyFold(), task: ended };
    for (const input of [again!, runReopened(0)]) {
      fold = applyEvent(fold, logged(input));
      expect(fold.task!.runs.some((run) => run.status === "queued") && fold.task!.status === "succeeded").toBe(false);
    }
    expect(fold.task!.status).toBe("running");
    expect(fold.task!.runs[0]!.status).toBe("queued");
  });

  it("a failed run's end names the phase it failed in", () => {
    const run = { ...task([{ status: "running", phase: "cloning" }]).runs[0]! };
    expect(runEnded(run, "failed", { code: "clone_failed", message: "x" }).data).toEqual({ status: "failed", error: { code: "clone_failed", message: "x" }, phase: "cloning" });
    expect(runEnded(run, "succeeded", null).data).toEqual({ status: "succeeded" });
  });
});
