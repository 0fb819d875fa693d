/**
 * Publishing a run: its stored patch applied to a fresh clone in a publisher
 * sandbox, pushed as `sortie/<task>/<run>` with a token minted right before
 * the push, then the pull request. The agent's own sandbox is never involved,
 * so the agent never holds a token that can write.
 */
import { pushBranch } from "../publish/branch.ts";
import { defaultBranch, mintPushToken, openPullRequest, pullRequestText } from "../publish/github.ts";
import type { Sandbox } from "../sandbox/port.ts";
import type { Publication, TaskSpec, TaskState } from "../schema.ts";

/** The fleet slot a task's publisher occupies. */
export const PUBLISH_SLOT = 2000;

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

/** Pushes the branch and, for `pr`/`draft-pr`, opens the pull request; returns what was made. */
export async function publishRun(ctx: PublishContext): Promise<Pick<Publication, "commit" | "pullRequest">> {
  const { env, spec, task, publication, sandbox } = ctx;
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
  const access = minted && /^https?:/.test(spec.cloneUrl) ? await sandbox.grantGitAccess(spec.cloneUrl, minted.token) : null;
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
  return { commit, pullRequest };
}
