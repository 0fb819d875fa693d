/**
 * The one place a task decides what happens next, from its folded state
 * (src/events.ts) and nothing else: whether the judge is queued, whether
 * the task ends and how, whether it publishes; how a run ends after its last
 * turn; whether a failure is tried again; what becomes of a run this agent
 * was driving when it went away. Pure: the TaskAgent and the run job carry
 * the decisions out, none of them is made where it is carried out.
 */
import { LIMITS } from "../config.ts";
import type { AgentTurnResult } from "../runners/agent.ts";
import type { TaskEvent } from "../events.ts";
import { isTerminal, type ErrorInfo, type EventInput, type RunView, type TaskState, type TaskStatus } from "../schema.ts";
import { classifyFailure } from "./failures.ts";
import { taskOutcome } from "./task-state.ts";

/**
 * Whether an event still applies to the task as folded: a run that has
 * ended takes no more status (a cancel and the run's own end may race), a
 * phase the run is in is not entered again, and only a finished run is
 * reopened. What is not admitted is not recorded.
 */
export function admits(task: TaskState, input: EventInput): boolean {
  // Only a finished run is reopened: two follow-ups close together reopen it once, and never a run under way.
  if (input.type === "run.reopened") return input.run !== null && task.runs[input.run] !== undefined && isTerminal(task.runs[input.run]!.status);
  if (input.type !== "run.status" || input.run === null) return true;
  const run = task.runs[input.run];
  if (!run || isTerminal(run.status)) return false;
  const { status, phase } = input.data as { status: TaskStatus; phase?: string | null };
  return !(status === "running" && run.phase === (phase ?? null));
}

/**
 * What must be recorded before `input`, so that no state of the log is
 * impossible: a run reopened on an ended task (a follow-up in its kept
 * workspace) finds the task running again first.
 */
export function preludeOf(task: TaskState, input: EventInput): EventInput[] {
  if (input.type === "run.reopened" && isTerminal(task.status)) return [{ run: null, type: "task.status", data: { status: "running", reason: "follow-up" } }];
  return [];
}

/** What follows from an event once it is recorded. */
export type Reaction =
  /** The task's first run started: the task runs, and its time limit counts from now. */
  | "start_clock"
  /** An ended task runs again (a follow-up): its time limit counts again from now. */
  | "restart_clock"
  /** A finished run was reopened for a follow-up: its workspace no longer expires, and it waits in the fleet's queue. */
  | "requeue"
  /** A run ended: the task takes its next step (`nextStep`). */
  | "advance"
  /** A finished run's workspace is kept: it goes when its window closes. */
  | "expire_workspace";

/** What the task does after `event` moved it from `before`. */
export function reactionsTo(before: TaskState, event: TaskEvent): Reaction[] {
  if (event.type === "run.workspace_kept") return ["expire_workspace"];
  if (event.type === "run.reopened") return ["requeue"];
  if (event.type === "task.status") return event.data.status === "running" && isTerminal(before.status) ? ["restart_clock"] : [];
  if (event.type !== "run.status") return [];
  if (isTerminal(event.data.status)) return ["advance"];
  return event.data.status === "running" && before.status === "queued" ? ["start_clock"] : [];
}

/** What the task does next. */
export type NextStep =
  /** Every run has ended and the judge waits: it is queued with the succeeded runs' diffs. */
  | { kind: "judge"; candidates: number[] }
  /** Every run has ended and none left a diff: the judge fails for want of candidates. */
  | { kind: "judge_fails"; error: ErrorInfo }
  /** Every run (and the judge) has ended: the task ends with what they add up to, and publishes if its output asks. */
  | { kind: "finish"; status: TaskStatus; error: ErrorInfo | null; publish: Exclude<TaskState["output"], "diff"> | null }
  /** Something is still going (or the task has ended): nothing to do. */
  | { kind: "wait" };

export function nextStep(task: TaskState): NextStep {
  if (isTerminal(task.status) || !task.runs.every((run) => isTerminal(run.status))) return { kind: "wait" };
  // A cancel or a timeout ends the judge before its runs, so a judge still queued here is due.
  if (task.judge?.status === "queued") {
    const candidates = task.runs.filter((run) => run.status === "succeeded" && run.diff).map((run) => run.index);
    return candidates.length > 0 ? { kind: "judge", candidates } : { kind: "judge_fails", error: { code: "no_candidates", message: "no run produced a diff to judge" } };
  }
  if (task.judge && !isTerminal(task.judge.status)) return { kind: "wait" };
  const outcome = taskOutcome(task);
  const publish = outcome.status === "succeeded" && task.output !== "diff" && !task.publication ? task.output : null;
  return { kind: "finish", ...outcome, publish };
}

/** How a run ends after its last turn (the agent's result, its turn budget, its exit). */
export function turnOutcome(turn: AgentTurnResult, agent: string, maxTurns: number): [TaskStatus, ErrorInfo | null] {
  if (!turn.final) return ["failed", { code: "agent_no_result", message: `${agent} exited ${turn.exitCode} without a result` }];
  if (turn.final.subtype === "error_max_turns") return ["failed", { code: "budget", message: `the run used its ${maxTurns} turns` }];
  if (turn.final.isError || turn.exitCode !== 0) return ["failed", { code: "agent_failed", message: turn.final.text || `${agent} ended ${turn.final.subtype} (exit ${turn.exitCode})` }];
  return ["succeeded", null];
}

/** Another try, or none: for a failure of the infrastructure, within the run's budget of retries. */
export type Retry = { retry: true; failure: ErrorInfo } | { retry: false; failure: ErrorInfo };

/**
 * Whether a failure is tried again. While the sandbox is provisioned, a
 * failure of the infrastructure (the sandbox did not start, the network cut
 * the clone) is, up to LIMITS.maxInfraRetries; a wrong repository or branch
 * is not. Once the agent runs, only a sandbox that went away under a first
 * turn is, from a fresh sandbox, counted against the same budget: a
 * follow-up's session lives in the sandbox that was lost.
 */
export function retryOf(error: unknown, at: { stage: "provision"; attempt: number } | { stage: "turn"; run: RunView; followUp: boolean }): Retry {
  const failure = classifyFailure(error);
  const { code, message } = failure;
  if (!failure.retryable) return { retry: false, failure: { code, message } };
  const retry = at.stage === "provision" ? at.attempt < LIMITS.maxInfraRetries : code === "sandbox_unavailable" && !at.followUp && at.run.attempts.length < LIMITS.maxInfraRetries;
  return { retry, failure: { code, message } };
}

/** What becomes of a run that was live when the task agent went away. */
export type Recovery =
  /** Its agent process still runs: re-attach where the log ends. */
  | { kind: "reattach" }
  /** Its change is stored and only its review was going: the run ends with the change, the review says why it stopped. */
  | { kind: "end_review"; reason: string }
  /** Nothing of the agent's has happened yet: start it over in a fresh sandbox. */
  | { kind: "restart" }
  /** A step that cannot be resumed. */
  | { kind: "fail"; error: ErrorInfo };

export function recoveryOf(run: RunView, hasProgress: boolean): Recovery {
  if (run.phase === "agent" && hasProgress) return { kind: "reattach" };
  if (run.phase === "reviewing" && run.diff && run.review) return { kind: "end_review", reason: "the task agent restarted during the review" };
  if ((run.phase === "provisioning" || run.phase === "cloning") && run.sessionId === null) return { kind: "restart" };
  return { kind: "fail", error: { code: "orchestrator_restarted", message: `the task agent restarted while the run was ${run.phase ?? run.status}; that step cannot be resumed` } };
}
