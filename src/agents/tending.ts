/**
 * Tending a pull request Sortie opened: deciding whether a trigger (a red
 * check, a review, a request, a conflict) starts a fix run, and starting it.
 * One attempt budget per pull request is shared by every trigger; one fix
 * runs at a time (its claim key is the pull request's), and a trigger that
 * comes meanwhile waits behind it and is folded into the next run. Every
 * decision is an audit entry and an event `tending.<decision>` on the task
 * that opened the pull request.
 */
import { getAgentByName } from "agents";
import { readConfig } from "../config.ts";
import { messageOf } from "../errors.ts";
import { newTaskId } from "../ids.ts";
import { writeLog } from "../log.ts";
import { validate } from "../api/body.ts";
import { commentOnIssue } from "../publish/github.ts";
import { mintTendingToken, readPullRequest, type PullRequestNow } from "../publish/github-pulls.ts";
import { CreateTaskBody, type FollowUp, type TaskState } from "../schema.ts";
import { appendAudit } from "../store/audit.ts";
import {
  endFix,
  findTendedPull,
  giveBackAttempt,
  queueTrigger,
  recordTendedPull,
  releaseTendingKey,
  stopTending,
  takeAttempt,
  type FixRequest,
  type FixTrigger,
  type StopReason,
  type TendedPull,
} from "../store/pull-requests.ts";
import type { TENDING_DECISIONS } from "../events.ts";
import { fixPrompt, fixedWhat, mergeSetup } from "./fix-prompt.ts";
import { planTask, startTasks } from "./launch.ts";

export type Decision = (typeof TENDING_DECISIONS)[number];

export interface TendingOutcome {
  decision: Decision;
  reason: string;
  task?: string;
}

/** What the task that opened a pull request is told about its tending (TaskAgent.noteTending). */
export interface TendingNote {
  decision: Decision;
  data: Record<string, unknown>;
  followUp?: FollowUp;
}

/** The claim key of a pull request's fix runs: two triggers never fix the same pull request at once. */
export function pullKey(repo: string, number: number): string {
  return `github:${repo}#pull/${number}`;
}

/** The name of the PullRequestAgent that polls a tended pull request. */
export function watcherName(repo: string, number: number): string {
  return `${repo.toLowerCase()}#${number}`;
}

/** Starts tending a pull request a publication just opened: its row, and the poll for merge conflicts. */
export async function startTending(env: Cloudflare.Env, pull: Parameters<typeof recordTendedPull>[1]): Promise<void> {
  await recordTendedPull(env.DB, pull);
  const watcher = await getAgentByName(env.PullRequestAgent, watcherName(pull.repo, pull.number));
  await watcher.watch(pull.repo, pull.number);
}

/** Records a decision: an audit entry and an event on the task that opened the pull request. */
export async function recordDecision(
  env: Cloudflare.Env,
  pull: Pick<TendedPull, "repo" | "number" | "taskId">,
  actor: string,
  decision: Decision,
  detail: Record<string, unknown>,
  followUp?: FollowUp,
): Promise<void> {
  const data = { repo: pull.repo, number: pull.number, ...detail };
  try {
    await appendAudit(env.DB, { actor, action: `pull_request.${decision}`, taskId: pull.taskId, detail: data });
  } catch (error) {
    // The decision stands (a task may already have started); the event below still records it.
    writeLog("error", { event: "tending.audit_failed", task: pull.taskId, decision, message: messageOf(error) }, env);
  }
  try {
    const parent = await getAgentByName(env.TaskAgent, pull.taskId);
    await parent.noteTending({ decision, data: { ...data, by: actor }, ...(followUp ? { followUp } : {}) });
  } catch (error) {
    // The audit entry stands; the event is what a viewer of the original task would have seen.
    writeLog("error", { event: "tending.note_failed", task: pull.taskId, decision, message: messageOf(error) }, env);
  }
}

/**
 * Does `work` for dedupe keys just claimed; if it fails they are given back
 * before the error goes on, so GitHub's redelivery of a failed delivery is
 * acted on rather than deduplicated.
 */
export async function onClaimed<T>(env: Cloudflare.Env, pull: Pick<TendedPull, "repo" | "number">, keys: string[], work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    for (const key of keys) await releaseTendingKey(env.DB, pull.repo, pull.number, key);
    throw error;
  }
}

/** Comments on the pull request. */
export async function commentOnPull(env: Cloudflare.Env, pull: Pick<TendedPull, "repo" | "number">, body: string): Promise<void> {
  const { token } = await mintTendingToken(env, pull.repo);
  await commentOnIssue(env, token, { repo: pull.repo, number: pull.number, body });
}

/**
 * Stops tending for `reason`, once: the call that stops it records the
 * decision and, when `comment` is given, says so on the pull request.
 */
export async function stop(env: Cloudflare.Env, pull: TendedPull, reason: StopReason, actor: string, comment?: string): Promise<TendingOutcome> {
  if (!(await stopTending(env.DB, pull.repo, pull.number, reason))) return { decision: "stopped", reason: `tending had already stopped (${pull.stopReason ?? reason})` };
  await recordDecision(env, pull, actor, reason === "budget" ? "budget_spent" : "stopped", { reason });
  if (comment) await commentOnPull(env, pull, comment);
  const watcher = await getAgentByName(env.PullRequestAgent, watcherName(pull.repo, pull.number));
  await watcher.unwatch();
  return { decision: reason === "budget" ? "budget_spent" : "stopped", reason };
}

/**
 * Whether the pull request is still Sortie's to tend, read from GitHub:
 * closed or merged stops tending; a head other than the commit Sortie pushed
 * means a person took over (said once on the pull request).
 */
export async function stillOurs(env: Cloudflare.Env, pull: TendedPull): Promise<{ now: PullRequestNow } | { outcome: TendingOutcome }> {
  const { token } = await mintTendingToken(env, pull.repo);
  const now = await readPullRequest(env, token, pull.repo, pull.number);
  if (now.merged) return { outcome: await stop(env, pull, "merged", "sortie") };
  if (now.state === "closed") return { outcome: await stop(env, pull, "closed", "sortie") };
  if (now.headSha !== pull.headSha && !pull.fixTaskId) {
    const comment = `Someone other than Sortie pushed to \`${pull.branch}\` (head \`${now.headSha.slice(0, 12)}\`, Sortie's last commit was \`${pull.headSha.slice(0, 12)}\`), so Sortie has stopped tending this pull request: it will not fix checks, reviews or conflicts here any more.`;
    return { outcome: await stop(env, pull, "human_push", "sortie", comment) };
  }
  return { now };
}

/** A trigger that passed the gates: a fix run now, or queued behind the running one, or refused by the budget. */
export async function requestFix(env: Cloudflare.Env, pull: TendedPull, trigger: FixTrigger, actor: string): Promise<TendingOutcome> {
  if (pull.fixTaskId) return queueBehind(env, pull, trigger, actor);
  return launchFix(env, pull, [trigger], actor);
}

async function queueBehind(env: Cloudflare.Env, pull: TendedPull, trigger: FixTrigger, actor: string): Promise<TendingOutcome> {
  await queueTrigger(env.DB, pull.repo, pull.number, trigger);
  await recordDecision(env, pull, actor, "queued", { trigger: trigger.kind, behind: pull.fixTaskId });
  return { decision: "queued", reason: `fix task ${pull.fixTaskId} is running; this waits behind it`, task: pull.fixTaskId ?? undefined };
}

async function launchFix(env: Cloudflare.Env, pull: TendedPull, triggers: FixTrigger[], actor: string): Promise<TendingOutcome> {
  const max = readConfig(env).prFixMaxAttempts;
  const id = newTaskId();
  if (!(await takeAttempt(env.DB, pull.repo, pull.number, id, max))) {
    const current = (await findTendedPull(env.DB, pull.repo, pull.number)) ?? pull;
    if (current.fixTaskId) {
      for (const trigger of triggers) await queueBehind(env, current, trigger, actor);
      return { decision: "queued", reason: `fix task ${current.fixTaskId} is running; this waits behind it`, task: current.fixTaskId };
    }
    if (current.state !== "tending") return { decision: "stopped", reason: `tending has stopped (${current.stopReason})` };
    const used = current.attempts;
    return stop(
      env,
      current,
      "budget",
      actor,
      `Sortie has used its ${used} fix ${used === 1 ? "attempt" : "attempts"} on this pull request (PR_FIX_MAX_ATTEMPTS is ${max}), so it did not start a run for ${fixedWhat(triggers)}. Nothing more runs here until a maintainer comments \`/sortie retry\`, which grants one more.`,
    );
  }
  const conflict = triggers.find((t) => t.kind === "conflict");
  try {
    const body = validate(
      CreateTaskBody,
      {
        repo: pull.repo,
        prompt: fixPrompt(pull, triggers),
        branch: pull.branch,
        key: pullKey(pull.repo, pull.number),
        output: "branch",
        ...(conflict ? { setup: mergeSetup(conflict.base) } : {}),
      },
      "body",
    );
    const planned = planTask(env, { body, source: "github", createdBy: actor, origin: pull.origin }, id);
    const fix: FixRequest = { repo: pull.repo, number: pull.number, url: pull.url, branch: pull.branch, base: pull.base, head: pull.headSha, parentTask: pull.taskId, triggers };
    await startTasks(env, { specs: [{ ...planned, tending: fix }], starter: { name: actor } });
  } catch (error) {
    await giveBackAttempt(env.DB, pull.repo, pull.number, id);
    throw error;
  }
  const followUp: FollowUp = { task: id, trigger: triggers[0]!.kind, by: actor, at: Date.now(), status: "running", commit: null };
  await recordDecision(env, pull, actor, "started", { task: id, triggers: triggers.map((t) => t.kind), attempt: pull.attempts + 1, of: max + pull.granted }, followUp);
  return { decision: "started", reason: `fix task ${id} started for ${fixedWhat(triggers)}`, task: id };
}

/**
 * A fix task has ended, with a pushed `commit` or without: the pull request
 * is free for the next fix, the original task's follow-up is brought up to
 * date, and triggers that waited behind it start one run together.
 */
export async function fixEnded(
  env: Cloudflare.Env,
  fix: FixRequest,
  taskId: string,
  result: { status: FollowUp["status"]; commit: string | null; message?: string },
): Promise<void> {
  const waiting = await endFix(env.DB, fix.repo, fix.number, taskId, result.commit);
  if (waiting === null) return;
  const pull = await findTendedPull(env.DB, fix.repo, fix.number);
  if (!pull) return;
  const followUp: FollowUp = { task: taskId, trigger: fix.triggers[0]!.kind, by: "sortie", at: Date.now(), status: result.status, commit: result.commit };
  await recordDecision(env, pull, "sortie", "fix_ended", { task: taskId, status: result.status, commit: result.commit, ...(result.message ? { message: result.message } : {}) }, followUp);
  if (result.status !== "pushed" && pull.state === "tending") {
    const why = result.message ? `: ${result.message}` : "";
    await commentOnPull(env, pull, `Sortie's fix run for ${fixedWhat(fix.triggers)} ended without a commit (${result.status})${why}. [The run in Sortie's viewer](${pull.origin}/tasks/${taskId})`);
  }
  if (waiting.length > 0 && pull.state === "tending") await launchFix(env, pull, waiting, "sortie");
}

/** A fix task has ended without a publication: it changed nothing, failed, or was refused for secret-looking files. */
export async function fixEndedUnpublished(env: Cloudflare.Env, fix: FixRequest, task: TaskState): Promise<void> {
  if (task.publication) return;
  const secretFiles = task.runs.flatMap((run) => run.secretFiles ?? []);
  const result =
    task.status !== "succeeded"
      ? { status: "failed" as const, message: task.error?.message ?? task.status }
      : secretFiles.length
        ? { status: "failed" as const, message: `the change adds files that look like secrets (${secretFiles.join(", ")})` }
        : { status: "no_change" as const, message: "the run changed nothing" };
  await fixEnded(env, fix, task.id, { ...result, commit: null });
}
