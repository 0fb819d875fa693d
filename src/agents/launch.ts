/**
 * Turns a validated task request, from any trigger, into a running task:
 * resolves the repo, takes the claim on its key, and hands the spec to a new
 * TaskAgent. Triggers (the API, batches, and later Slack, GitHub, schedules)
 * all come through here, so they cannot differ in how a task starts.
 */
import { getAgentByName } from "agents";
import { readConfig } from "../config.ts";
import { SortieError } from "../errors.ts";
import { newTaskId } from "../ids.ts";
import { resolveRepo } from "../repo.ts";
import { PREVIEW, REVIEW_ROUNDS, type CreateTaskBody, type TaskSpec, type TaskState } from "../schema.ts";
import { claimsOf } from "./fleet.ts";
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

/**
 * Takes the spec's claim (409 naming the holder if another live task has the
 * key; with `supersede`, the holder is cancelled), then creates the task.
 * If creation fails the claim is given back, so nothing is half-created.
 */
export async function launchTask(env: Cloudflare.Env, spec: TaskSpec, supersede = false): Promise<TaskState> {
  const claims = spec.key ? await claimsOf(env, spec.key) : null;
  if (spec.key && claims) {
    const claim = await claims.claim(spec.key, spec.id, supersede);
    if (!claim.granted) {
      throw new SortieError("claim_conflict", `task ${claim.holder} already holds key ${spec.key}; pass "supersede": true to replace it`, 409, {
        headers: { "x-sortie-holder": claim.holder },
      });
    }
    if (claim.superseded) {
      const holder = await getAgentByName(env.TaskAgent, claim.superseded);
      await holder.cancel(`superseded by task ${spec.id}`);
    }
  }
  try {
    const agent = await getAgentByName(env.TaskAgent, spec.id);
    return await agent.create(spec);
  } catch (error) {
    if (spec.key && claims) await claims.releaseClaim(spec.key, spec.id);
    throw error;
  }
}
