/**
 * Publishing a run: its stored patch applied to a fresh clone in a publisher
 * sandbox, pushed as `sortie/<task>/<run>` with a token minted right before
 * the push, then the pull request. The agent's own sandbox is never involved,
 * so the agent never holds a token that can write.
 */
import { SortieError, messageOf } from "../errors.ts";
import type { TaskFold } from "../events.ts";
import { pushBranch } from "../publish/branch.ts";
import { defaultBranch, mintPushToken, openPullRequest, pullRequestText, reviewPullRequest } from "../publish/github.ts";
import { secretFilesIn } from "../publish/secret-files.ts";
import { taskLinks } from "../publish/slack.ts";
import type { Sandbox } from "../sandbox/port.ts";
import { isTerminal, type EventInput, type Publication, type TaskSpec, type TaskState } from "../schema.ts";
import type { DiffStore } from "../store/diff-store.ts";
import { publishFix } from "./fix-publisher.ts";
import { fixEnded, startTending } from "./tending.ts";
import { publishSlot, type Slot } from "./slot.ts";
import type { Refusal } from "./task-state.ts";


export interface PublishContext {
  env: Cloudflare.Env;
  spec: TaskSpec;
  task: TaskState;
  publication: Publication;
  sandbox: Sandbox;
  /** The run's patch, as `git apply` takes it. */
  patch: string;
  /** The agent's closing words, for the pull request body. */
  summary: string;
  viewerUrl: string;
  /** Called with each secret before anything that could echo it is recorded. */
  addSecret(secret: string): void;
  onStep(step: string, data?: Record<string, unknown>): void;
}

/** What driving a publication borrows from its task agent. */
export interface PublicationContext {
  env: Cloudflare.Env;
  /** The log's fold (src/events.ts): the published run's closing words among what it keeps. */
  fold(): TaskFold;
  diffs(): DiffStore;
  task(): TaskState;
  spec(): TaskSpec;
  record(input: EventInput): void;
  redact<T>(value: T): T;
  /** Redacts `secret` from everything recorded from now on. */
  addSecret(secret: string): void;
  openSandbox(slot: Slot, shared?: string): Promise<Sandbox>;
  destroySandbox(slot: Slot, open?: Sandbox): Promise<void>;
  /** The public origin for the task's links. */
  origin(): string;
  /** Brings the task's D1 index row up to date. */
  index(): Promise<void>;
}

/**
 * The publication asked for: of `run`, else the winner, else the first run
 * that succeeded. Refused for a run without changes, while a publication is
 * under way, or when the diff adds files that look like secrets and the task
 * did not allow them.
 */
export function publicationFor(
  ctx: Pick<PublicationContext, "diffs" | "spec">,
  task: TaskState,
  run: number | undefined,
  output: Publication["output"] | undefined,
  by: string,
): Publication | Refusal {
  const index = run ?? task.winner?.run ?? task.runs.find((r) => r.status === "succeeded" && r.diff)?.index;
  const chosen = index === undefined ? undefined : task.runs[index];
  if (index === undefined || !chosen) return { refused: { code: "invalid_run", message: "name a run: no winner is picked and no run succeeded", status: 400 } };
  if (chosen.status !== "succeeded" || !chosen.diff || chosen.diff.files === 0) {
    return { refused: { code: "nothing_to_publish", message: `run ${index} is ${chosen.status} with ${chosen.diff?.files ?? 0} changed files; only a succeeded run with changes can be published`, status: 409 } };
  }
  if (task.publication && !isTerminal(task.publication.status)) return { refused: { code: "publishing", message: "a publication of this task is under way", status: 409 } };
  const secrets = secretFilesIn(ctx.diffs().text(index, Number.POSITIVE_INFINITY));
  if (secrets.length > 0 && !ctx.spec().allowSecretFiles) {
    return { refused: { code: "secret_files", message: `run ${index} adds files that look like secrets (${secrets.join(", ")}); the task must allow them to publish`, status: 409 } };
  }
  return {
    status: "queued",
    output: output ?? (task.output === "diff" ? "pr" : task.output),
    run: index,
    // A fix of a tended pull request goes onto that pull request's branch.
    branch: ctx.spec().tending?.branch ?? chosen.branch,
    commit: null,
    pullRequest: null,
    by,
    error: null,
  };
}

/** Carries out the task's queued publication in a publisher sandbox of its own. */
export async function drivePublish(ctx: PublicationContext): Promise<void> {
  const task = ctx.task();
  const publication = task.publication!;
  ctx.record({ run: publication.run, type: "publish.status", data: { status: "running" } });
  let sandbox: Sandbox | undefined;
  try {
    sandbox = await ctx.openSandbox(publishSlot);
    const made = await publishRun({
      env: ctx.env,
      spec: ctx.spec(),
      task,
      publication,
      sandbox,
      patch: ctx.diffs().text(publication.run, Number.POSITIVE_INFINITY),
      summary: ctx.fold().summaries[publication.run] ?? "",
      viewerUrl: taskLinks(ctx.origin(), task.id).viewer,
      addSecret: (secret) => ctx.addSecret(secret),
      onStep: (step, data) => ctx.record({ run: publication.run, type: `publish.${step}`, data: data ?? {} }),
    });
    await endPublication(ctx, { status: "succeeded", ...made, error: null });
  } catch (error) {
    await endPublication(ctx, { status: "failed", error: { code: error instanceof SortieError ? error.code : "publish_failed", message: ctx.redact(messageOf(error)) } });
  } finally {
    await ctx.destroySandbox(publishSlot, sandbox);
  }
}

export async function endPublication(ctx: PublicationContext, patch: Partial<Publication> & Pick<Publication, "status" | "error">): Promise<void> {
  const task = ctx.task();
  if (!task.publication) return;
  const publication = { ...task.publication, ...patch };
  ctx.record({
    run: publication.run,
    type: "publish.status",
    data: { status: publication.status, commit: publication.commit, pullRequest: publication.pullRequest, ...(publication.error ? { error: publication.error } : {}) },
  });
  await ctx.index();
  const fix = ctx.spec().tending;
  if (fix) {
    const status = publication.status === "succeeded" ? "pushed" : "failed";
    await fixEnded(ctx.env, fix, task.id, { status, commit: status === "pushed" ? publication.commit : null, ...(publication.error ? { message: publication.error.message } : {}) }).catch((error: unknown) =>
      ctx.record({ run: null, type: "tending.error", data: { message: ctx.redact(messageOf(error)) } }),
    );
  }
}

/** Pushes the branch and, for `pr`/`draft-pr`, opens the pull request; returns what was made. */
export async function publishRun(ctx: PublishContext): Promise<Pick<Publication, "commit" | "pullRequest">> {
  const { env, spec, task, publication, sandbox } = ctx;
  if (spec.tending) return publishFix(ctx, spec.tending);
  const patchPath = `${sandbox.workdir}/change.patch`;
  const messagePath = `${sandbox.workdir}/message.txt`;
  const text = pullRequestText(task, publication.run, { viewer: ctx.viewerUrl }, ctx.summary);
  await sandbox.writeFile(patchPath, ctx.patch);
  await sandbox.writeFile(messagePath, `${text.title}\n\n${text.body}\n`);
  // A local remote (a file:// base in development and tests) takes no token.
  const needsToken = /^https?:/.test(spec.cloneUrl) || publication.output !== "branch";
  const minted = needsToken ? await mintPushToken(env, spec.repo) : null;
  if (minted) ctx.addSecret(minted.token);
  ctx.onStep("token_minted", minted ? { kind: minted.kind, expiresAt: minted.expiresAt } : { kind: "none" });
  // The token is lent to the publisher's git for this push alone; on Cloudflare it never enters the container.
  // A local remote is written, not reached: the grant opens its directory to this sandbox's git instead.
  const access = /^https?:/.test(spec.cloneUrl) ? (minted ? await sandbox.grantGitAccess(spec.cloneUrl, minted.token) : null) : await sandbox.grantGitAccess(spec.cloneUrl, "");
  let commit: string;
  try {
    ({ commit } = await pushBranch(sandbox, { repoUrl: spec.cloneUrl, baseBranch: spec.branch, branch: publication.branch, patchPath, messagePath, gitEnv: access?.env ?? {} }));
  } finally {
    await access?.revoke();
  }
  ctx.onStep("pushed", { branch: publication.branch, commit });
  if (publication.output === "branch" || !minted) return { commit, pullRequest: null };
  const base = spec.branch ?? (await defaultBranch(env, minted.token, spec.repo));
  const pullRequest = await openPullRequest(env, minted.token, {
    repo: spec.repo,
    head: publication.branch,
    base,
    title: text.title,
    body: text.body,
    draft: publication.output === "draft-pr",
  });
  ctx.onStep("pull_request", pullRequest);
  await postReviewFindings(ctx, minted.token, pullRequest.number);
  await startTending(env, { repo: spec.repo, number: pullRequest.number, url: pullRequest.url, branch: publication.branch, base, taskId: task.id, prompt: task.prompt, createdBy: task.createdBy, origin: new URL(ctx.viewerUrl).origin, headSha: commit });
  return { commit, pullRequest };
}

/**
 * A reviewed run's last round of findings goes on its pull request as one
 * review, each finding with a line as a comment on that line; the rest, or
 * all of them if GitHub will not place a line, in the review's body. Posting
 * them is best effort: the pull request stands either way.
 */
async function postReviewFindings(ctx: PublishContext, token: string, number: number): Promise<void> {
  const review = ctx.task.runs[ctx.publication.run]?.review;
  const last = review?.rounds.at(-1);
  if (!review || !last || last.findings.length === 0) return;
  const header = `Sortie's reviewer (${last.reviewer.agent}${last.reviewer.model ? `, ${last.reviewer.model}` : ""}) left ${last.findings.length} finding${last.findings.length === 1 ? "" : "s"} in round ${review.rounds.length} (review ${review.status.replace("_", " ")}).`;
  const listed = (findings: typeof last.findings) => findings.map((f) => `- \`${f.path}${f.line ? `:${f.line}` : ""}\`${f.severity ? ` (${f.severity})` : ""}: ${f.body}`).join("\n");
  const onLines = last.findings.filter((f) => f.line !== undefined).map((f) => ({ path: f.path, line: f.line!, body: f.severity ? `**${f.severity}**: ${f.body}` : f.body }));
  const unplaced = last.findings.filter((f) => f.line === undefined);
  const repo = ctx.spec.repo;
  try {
    const posted = await reviewPullRequest(ctx.env, token, { repo, number, body: unplaced.length ? `${header}\n\n${listed(unplaced)}` : header, comments: onLines });
    ctx.onStep("review_posted", { review: posted.id, comments: onLines.length, inBody: unplaced.length });
  } catch (error) {
    try {
      const posted = await reviewPullRequest(ctx.env, token, { repo, number, body: `${header}\n\n${listed(last.findings)}`, comments: [] });
      ctx.onStep("review_posted", { review: posted.id, comments: 0, inBody: last.findings.length, linesRefused: messageOf(error) });
    } catch (again) {
      ctx.onStep("review_failed", { message: messageOf(again) });
    }
  }
}
