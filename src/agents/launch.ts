/**
 * Turns validated task requests, from any trigger, into running tasks:
 * `planTask` resolves each into a spec, `startTasks` counts the quota, keeps
 * the idempotency key, takes the claims and hands each spec to a new
 * TaskAgent. Every trigger comes through here, so none differs in how a task
 * starts.
 */
import { getAgentByName } from "agents";
import { readConfig } from "../config.ts";
import { SortieError } from "../errors.ts";
import { newTaskId } from "../ids.ts";
import { resolveRepo } from "../repo.ts";
import { PREVIEW, REVIEW_ROUNDS, type CreateTaskBody, type TaskSpec, type TaskState } from "../schema.ts";
import { forgetIdempotencyKey, reserveIdempotencyKey } from "../store/idempotency.ts";
import { claimsOf, fleetOf } from "./fleet.ts";
import { chooseIsolation } from "./isolation.ts";

/** How long a previewed run's workspace is kept when neither the task nor the deployment says. */
const PREVIEW_WORKSPACE_MINUTES = 15;

export interface LaunchRequest {
  body: CreateTaskBody;
  source: TaskSpec["source"];
  createdBy: string;
  /** The Worker's public origin, for links back to the task. */
  origin?: string;
}

/** Checks a request against the configured limits and resolves it into a spec, without side effects. */
export function planTask(env: Cloudflare.Env, request: LaunchRequest, id = newTaskId()): TaskSpec {
  const config = readConfig(env);
  const { body } = request;
  const repo = resolveRepo(body.repo, config.gitBaseUrl);
  const timeoutMinutes = body.timeoutMinutes ?? config.defaultTimeoutMinutes;
  if (timeoutMinutes > config.maxTimeoutMinutes) {
    throw new SortieError("limit_exceeded", `timeoutMinutes may be at most ${config.maxTimeoutMinutes}`, 422);
  }
  const runs = body.runs ?? 1;
  const isolation = chooseIsolation(body.isolation, body.prompt);
  if (isolation.level === "analysis" && (body.judge || body.review || (body.output && body.output !== "diff"))) {
    throw new SortieError(
      "isolation_conflict",
      `an analysis task answers without changing the repository, so it has nothing to ${body.judge ? "judge" : body.review ? "review" : "publish"} (isolation ${isolation.inferred ? "inferred" : "declared"}: ${isolation.reason})`,
      422,
    );
  }
  if (body.egress?.length && isolation.level !== "sandbox") {
    throw new SortieError(
      "isolation_conflict",
      `extra egress hosts need a sandbox of the task's own; the ${isolation.level} level ${isolation.level === "analysis" ? "reaches the model API only" : "shares its sandbox with other tasks"}`,
      422,
    );
  }
  if (body.preview && isolation.level === "analysis") {
    throw new SortieError("isolation_conflict", `an analysis task changes nothing, so it has no app to preview (isolation ${isolation.inferred ? "inferred" : "declared"}: ${isolation.reason})`, 422);
  }
  if (body.preview && body.keepWorkspaceMinutes === 0) {
    throw new SortieError("preview_needs_workspace", "a preview lives in the run's kept workspace: keepWorkspaceMinutes must be above 0", 400);
  }
  // A preview lives as long as the workspace: a deployment that keeps none by default keeps a previewed one for the usual window.
  const keepWorkspaceMinutes = body.keepWorkspaceMinutes ?? (body.preview && config.followUpWindowMinutes === 0 ? PREVIEW_WORKSPACE_MINUTES : config.followUpWindowMinutes);
  return {
    id,
    repo: repo.slug,
    cloneUrl: repo.cloneUrl,
    branch: body.branch ?? null,
    prompt: body.prompt,
    model: body.model ?? null,
    agent: body.agent ?? "claude-code",
    isolation,
    egress: body.egress ?? [],
    maxTurns: body.maxTurns ?? config.defaultMaxTurns,
    timeoutMinutes,
    source: request.source,
    createdBy: request.createdBy,
    runs: Array.from({ length: runs }, (_, i) => body.variants?.[i] ?? {}),
    judge: body.judge ?? false,
    review: body.review ? { agent: body.review.agent ?? null, model: body.review.model ?? null, rounds: body.review.rounds ?? REVIEW_ROUNDS.default } : null,
    key: body.key ?? null,
    maxCostUsd: body.maxCostUsd ?? config.defaultMaxCostUsd,
    keepWorkspaceMinutes,
    notify: body.notify ?? null,
    output: body.output ?? "diff",
    allowSecretFiles: body.allowSecretFiles ?? false,
    setup: body.setup ?? null,
    preview: body.preview ? { command: body.preview.command, port: body.preview.port ?? PREVIEW.defaultPort, path: body.preview.path ?? PREVIEW.defaultPath } : null,
    origin: request.origin ?? null,
  };
}

/** Who a start is counted against: its creator, and the creator's own per-minute limit (null: the deployment's). */
export interface Starter {
  name: string;
  rateLimitPerMinute?: number | null;
}

/** Tasks to start together: all of them or none. */
export interface StartRequest {
  specs: TaskSpec[];
  starter: Starter;
  /** A key the starter sends again on a retry (an `Idempotency-Key`, a Slack trigger id, a GitHub delivery): the retry gets the first task. */
  idempotency?: { owner: string; key: string };
  /** A key already held by a live task: cancel that task and take the key (a single task only). */
  supersede?: boolean;
}

/** A start the quota and idempotency let through: `launch` takes the claims and creates the tasks. */
export type Admission = { replayed: string } | { launch(): Promise<TaskState[]> };

/**
 * The one way every trigger (the API, batches, Slack, GitHub, schedules,
 * tending) starts tasks: the starter's rate quota, the idempotency key, every
 * claim, then every task. All or nothing: a claim conflict on any spec gives
 * back the claims already taken and creates none; a failure to create one
 * cancels those created before it. A repeated idempotency key returns the
 * task it started first.
 */
export async function startTasks(env: Cloudflare.Env, request: StartRequest): Promise<{ tasks: TaskState[] } | { replayed: string }> {
  const admitted = await admitTasks(env, request);
  return "replayed" in admitted ? admitted : { tasks: await admitted.launch() };
}

/**
 * The quick half of `startTasks`, for a trigger that must answer before the
 * tasks exist (Slack's three seconds): the quota is taken and the
 * idempotency key reserved now; `launch` does the rest, and forgets the key
 * if it fails.
 */
export async function admitTasks(env: Cloudflare.Env, request: StartRequest): Promise<Admission> {
  const { specs, idempotency } = request;
  if (specs.length === 0) throw new SortieError("invalid_body", "there is no task to start");
  if (request.supersede && specs.length > 1) throw new SortieError("invalid_body", "supersede is for a single task");
  const keys = specs.map((spec) => spec.key).filter((key) => key !== null);
  if (new Set(keys).size !== keys.length) throw new SortieError("invalid_body", "two tasks share a key");
  await takeTaskQuota(env, request.starter, specs.length);
  if (idempotency) {
    const earlier = await reserveIdempotencyKey(env.DB, idempotency.owner, idempotency.key, specs[0]!.id);
    if (earlier) return { replayed: earlier };
  }
  return {
    launch: async () => {
      try {
        return await launchAll(env, specs, request.supersede ?? false);
      } catch (error) {
        if (idempotency) await forgetIdempotencyKey(env.DB, idempotency.owner, idempotency.key, specs[0]!.id);
        throw error;
      }
    },
  };
}

/** Counts `count` task creations against the starter's per-minute limit; over it, a 429 with Retry-After. */
async function takeTaskQuota(env: Cloudflare.Env, starter: Starter, count: number): Promise<void> {
  const limit = starter.rateLimitPerMinute ?? readConfig(env).taskRateLimitPerMinute;
  const outcome = await (await fleetOf(env)).takeRate(`tasks:${starter.name}`, count, limit);
  if (!outcome.allowed) {
    throw new SortieError("rate_limited", `${starter.name} may create ${limit} tasks a minute; try again in ${outcome.retryAfterSeconds} s`, 429, {
      headers: { "retry-after": String(outcome.retryAfterSeconds) },
    });
  }
}

/** Takes every spec's claim (409 naming the holder, the claims taken so far given back), then creates every task. */
async function launchAll(env: Cloudflare.Env, specs: TaskSpec[], supersede: boolean): Promise<TaskState[]> {
  const claimed: TaskSpec[] = [];
  const giveBack = (taken: TaskSpec[]) => Promise.all(taken.map(async (spec) => (await claimsOf(env, spec.key!)).releaseClaim(spec.key!, spec.id)));
  try {
    for (const [index, spec] of specs.entries()) {
      if (!spec.key) continue;
      const claim = await (await claimsOf(env, spec.key)).claim(spec.key, spec.id, supersede);
      if (!claim.granted) {
        const which = specs.length > 1 ? `tasks[${index}]: ` : "";
        throw new SortieError("claim_conflict", `${which}task ${claim.holder} already holds key ${spec.key}${specs.length > 1 ? "" : '; pass "supersede": true to replace it'}`, 409, {
          headers: { "x-sortie-holder": claim.holder },
        });
      }
      claimed.push(spec);
      if (claim.superseded) await (await getAgentByName(env.TaskAgent, claim.superseded)).cancel(`superseded by task ${spec.id}`);
    }
  } catch (error) {
    await giveBack(claimed);
    throw error;
  }
  const created: TaskState[] = [];
  for (const [index, spec] of specs.entries()) {
    try {
      created.push(await (await getAgentByName(env.TaskAgent, spec.id)).create(spec));
    } catch (error) {
      // The tasks before it exist already: they end cancelled, and every claim of the request is given back.
      for (const task of created) await (await getAgentByName(env.TaskAgent, task.id)).cancel(`task ${index} of its batch could not be created`);
      await giveBack(claimed);
      throw error;
    }
  }
  return created;
}
