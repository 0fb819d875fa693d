/**
 * The pure side of one task: the keys its agent stores things under, a new
 * task's state, and the outcome its runs add up to. Nothing here reads
 * storage or touches a sandbox.
 */
import type { StreamOffsets } from "../sandbox/port.ts";
import type { ErrorInfo, EventInput, RunPhase, RunVariant, RunView, TaskSpec, TaskState, TaskStatus } from "../schema.ts";
import { slotNumber, type Slot } from "./slot.ts";

/** Where a run's agent process stands, persisted so a restarted agent can re-attach to it. */
export interface RunProgress {
  processId: string;
  offsets: StreamOffsets;
}

export interface PendingMessage {
  text: string;
  by: string;
}

export type Refusal = { refused: ErrorInfo & { status: 400 | 409 } };

export const SPEC_KEY = "sortie:spec";
export const progressKey = (slot: Slot) => `sortie:progress:${slotNumber(slot)}`;
/** Set while a slot's sandbox may exist; cleared once it is destroyed, so none outlives a restart. */
export const sandboxKey = (slot: Slot) => `sortie:sandbox:${slotNumber(slot)}`;
/** Set while a slot holds a fleet grant that has not been given back. */
export const grantKey = (slot: Slot) => `sortie:grant:${slotNumber(slot)}`;
/** Follow-up messages waiting for a run's current turn to end. */
export const pendingKey = (slot: number) => `sortie:pending:${slot}`;

/** The event of a run entering `phase`. */
export function runPhase(index: number, phase: RunPhase): EventInput {
  return { run: index, type: "run.status", data: { status: "running", phase } };
}

/** The event of a run's end: its status and, for a failure, the reason and the phase it failed in. */
export function runEnded(run: RunView, status: TaskStatus, error: ErrorInfo | null): EventInput {
  return { run: run.index, type: "run.status", data: { status, ...(error ? { error, phase: run.phase } : {}) } };
}

/** The event of a finished run reopened for a follow-up in its kept workspace (decide.ts `preludeOf`, `requeue`). */
export function runReopened(index: number): EventInput {
  return { run: index, type: "run.reopened", data: {} };
}

/** The event of a finished run's workspace kept for follow-ups, for `minutes` from now. */
export function workspaceKept(index: number, minutes: number): EventInput {
  return { run: index, type: "run.workspace_kept", data: { until: Date.now() + minutes * 60_000 } };
}

/** A task as it is created: queued, none of its runs started. `prompt` is what the task shows. */
export function newTask(spec: TaskSpec, prompt: string): TaskState {
  return {
    id: spec.id,
    repo: spec.repo,
    branch: spec.branch,
    prompt,
    model: spec.model,
    maxTurns: spec.maxTurns,
    timeoutMinutes: spec.timeoutMinutes,
    source: spec.source,
    createdBy: spec.createdBy,
    status: "queued",
    createdAt: Date.now(),
    startedAt: null,
    endedAt: null,
    costUsd: 0,
    error: null,
    key: spec.key,
    maxCostUsd: spec.maxCostUsd,
    isolation: spec.isolation,
    runs: spec.runs.map((variant, index) => newRun(spec, index, variant)),
    judge: spec.judge ? { status: "queued", winner: null, ranking: [], reasons: "", costUsd: 0, error: null } : null,
    winner: null,
    output: spec.output ?? "diff",
    publication: null,
  };
}

function newRun(spec: TaskSpec, index: number, variant: RunVariant): RunView {
  return {
    index,
    status: "queued",
    agent: variant.agent ?? spec.agent,
    model: variant.model ?? null,
    isolation: spec.isolation.level,
    promptSuffix: variant.prompt_suffix ?? null,
    attempts: [],
    phase: null,
    branch: `sortie/${spec.id}/${index}`,
    sessionId: null,
    baseCommit: null,
    startedAt: null,
    endedAt: null,
    durationMs: null,
    numTurns: null,
    costUsd: 0,
    diff: null,
    error: null,
    inputTokens: 0,
    outputTokens: 0,
    pendingMessages: 0,
    workspaceUntil: null,
  };
}

/** A task succeeds if any run did; otherwise it carries the first run's reason. */
export function taskOutcome(task: TaskState): { status: TaskStatus; error: ErrorInfo | null } {
  if (task.runs.some((run) => run.status === "succeeded")) return { status: "succeeded", error: null };
  for (const status of ["timed_out", "cancelled"] as const) {
    const run = task.runs.find((r) => r.status === status);
    if (run) return { status, error: run.error };
  }
  const failed = task.runs.find((run) => run.status === "failed");
  return { status: "failed", error: failed?.error ?? { code: "failed", message: "every run failed" } };
}
