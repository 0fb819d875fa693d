/**
 * What a run does differently when it is part of a plan (`spec.plan`): a
 * planner writes the plan file outside its read-only checkout and gets one
 * more turn if the plan breaks the rules; a worker starts from its
 * dependencies' work, and its diff must stay inside the paths it owns (one
 * more turn to put it right, then the run fails `ownership_violation`).
 */
import type { AgentTurnResult } from "../runners/agent.ts";
import type { Sandbox } from "../sandbox/port.ts";
import { commitPatches, makePrivateDir, readFileCapped } from "../sandbox/files.ts";
import type { ErrorInfo, TaskSpec } from "../schema.ts";
import type { PlanFile, PlanRole } from "../plan-schema.ts";
import type { Placement } from "../sandbox/placement.ts";
import { checkPlanText, ownedBy, pathsOfPatch } from "./plan-rules.ts";

export const PLAN_FILE_VAR = "SORTIE_PLAN_FILE";
/** Where a planner run kept its plan before the log's `run.plan_file` carried it: read for a task that ran then. */
export const LEGACY_WRITTEN_PLAN_KEY = "sortie:plan-file";
/** Largest plan file read back. */
const PLAN_FILE_BYTES = 512 * 1024;


/** A turn in the run's own session, and the diff taken again after it. */
export interface SessionTurns {
  followUp(message: string): Promise<AgentTurnResult>;
  note(type: string, data: Record<string, unknown>): void;
}

/** The plan file's path: a directory of the run's user beside the read-only checkout. */
export function planFilePath(placement: Pick<Placement, "scratchDir">): string {
  return `${placement.scratchDir}/sortie-plan/plan.json`;
}

/** Makes the planner's directory (its user's) and returns the variable that names the file. */
export async function preparePlanFile(sandbox: Sandbox, placement: Placement): Promise<Record<string, string>> {
  const file = planFilePath(placement);
  const dir = file.slice(0, file.lastIndexOf("/"));
  await makePrivateDir(sandbox, dir, placement.confine);
  return { [PLAN_FILE_VAR]: file };
}

/** The plan file as the planner's own user reads it (a link it planted reaches nothing more), or null. */
async function readPlanFile(sandbox: Sandbox, placement: Placement): Promise<string | null> {
  return readFileCapped(sandbox, planFilePath(placement), PLAN_FILE_BYTES, { reader: placement.confine, plainOnly: true });
}

/**
 * Reads and checks the planner's plan; an invalid one goes back to the
 * planner once, in its session, with the problems. Returns the plan, or the
 * run's failure (`invalid_plan`, naming the problems).
 */
export async function takePlan(sandbox: Sandbox, placement: Placement, maxSubtasks: number, session: SessionTurns): Promise<{ plan: PlanFile } | { failure: ErrorInfo }> {
  let check = checkPlanText(await readPlanFile(sandbox, placement), maxSubtasks);
  if ("errors" in check) {
    session.note("run.plan_file", { valid: false, attempt: 1, errors: check.errors });
    const turn = await session.followUp(planRetryMessage(check.errors));
    check = turn.final ? checkPlanText(await readPlanFile(sandbox, placement), maxSubtasks) : check;
  }
  if ("errors" in check) {
    session.note("run.plan_file", { valid: false, attempt: 2, errors: check.errors });
    return { failure: { code: "invalid_plan", message: `the plan is invalid: ${check.errors.join("; ")}` } };
  }
  session.note("run.plan_file", { valid: true, subtasks: check.plan.subtasks.map((s) => s.key), plan: check.plan });
  return { plan: check.plan };
}

function planRetryMessage(errors: string[]): string {
  return [`Your plan could not be used. Fix these problems and write the whole plan again to $${PLAN_FILE_VAR}:`, ...errors.map((e, i) => `${i + 1}. ${e}`)].join("\n");
}

/** The paths of a patch outside `owns`. */
export function strayPaths(patch: string, owns: readonly string[]): string[] {
  return pathsOfPatch(patch).filter((path) => !ownedBy(path, owns));
}

/**
 * Holds a worker's diff to its `owns`: a diff with paths outside them goes
 * back to the worker once, in its session, naming them; the diff is taken
 * again. Returns the last turn when one was added, and the failure if the
 * diff still strays.
 */
export async function enforceOwnership(
  owns: readonly string[],
  patch: () => string,
  session: SessionTurns & { diff(): Promise<unknown> },
): Promise<{ turn: AgentTurnResult | null; failure: ErrorInfo | null }> {
  let outside = strayPaths(patch(), owns);
  if (outside.length === 0) return { turn: null, failure: null };
  session.note("run.plan_ownership", { attempt: 1, outside: outside.slice(0, 50), owns });
  const turn = await session.followUp(ownershipMessage(outside, owns));
  await session.diff();
  outside = strayPaths(patch(), owns);
  if (outside.length === 0) return { turn, failure: null };
  session.note("run.plan_ownership", { attempt: 2, outside: outside.slice(0, 50), owns });
  return { turn, failure: { code: "ownership_violation", message: `the change touches paths this subtask does not own: ${outside.slice(0, 10).join(", ")}` } };
}

function ownershipMessage(outside: string[], owns: readonly string[]): string {
  return [
    "Your change touches paths this subtask does not own. Other subtasks own them; undo every change to them (restore them as they were, delete files you added there) and keep your work inside what you own.",
    `Outside your ownership: ${outside.slice(0, 50).join(", ")}`,
    `You own: ${owns.join(", ")}`,
  ].join("\n");
}

/**
 * Applies the dependencies' changes on the checkout and commits them, so a
 * dependent subtask builds on what it depends on and its own diff is taken
 * against that commit. Returns the new base.
 */
export async function applyDependencyWork(sandbox: Sandbox, repoDir: string, role: Extract<PlanRole, { role: "worker" }>): Promise<string> {
  return commitPatches(sandbox, repoDir, role.patches, `sortie plan ${role.id}: the work ${role.subtask} depends on`);
}

/** The plan role of a task, if it has one. */
export function planRoleOf(spec: TaskSpec): PlanRole | null {
  return spec.plan ?? null;
}
