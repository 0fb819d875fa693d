/**
 * A plan's output leaving Sortie: the integrated diff pushed as
 * `sortie/plan-<id>` from a publisher sandbox of its own (never the
 * integration's, where the plan's acceptance commands ran), with a token
 * minted right before the push, then for `pr`/`draft-pr` the pull request,
 * which lists the subtasks. The same steps as a task's publication
 * (src/agents/publisher.ts), from the same publish modules.
 */
import { pushBranch } from "../publish/branch.ts";
import { defang, defaultBranch, mintPushToken, openPullRequest } from "../publish/github.ts";
import type { PlanState } from "../plan-schema.ts";
import type { Sandbox } from "../sandbox/port.ts";

export interface PlanPublishContext {
  env: Cloudflare.Env;
  plan: PlanState;
  cloneUrl: string;
  sandbox: Sandbox;
  patch: string;
  viewerUrl: string | null;
  addSecret(secret: string): void;
}

/** The pull request's text: the plan's summary and one line per subtask, with links to their tasks. */
export function planPullRequestText(plan: PlanState, viewerUrl: string | null): { title: string; body: string } {
  const firstLine = plan.spec.split("\n").map((line) => line.trim()).find(Boolean) ?? `plan ${plan.id}`;
  const title = `Sortie plan: ${firstLine.replace(/\s+/g, " ").slice(0, 80)}`;
  const subtasks = plan.subtasks.map((s) => `- **${s.key}** (${defang(s.title)})${s.diff ? `: ${s.diff.files} files, +${s.diff.additions} −${s.diff.deletions}` : ""}${s.taskId ? ` · task \`${s.taskId}\`` : ""}`);
  const parts = [defang(plan.plan?.summary ?? ""), `### Subtasks\n\n${subtasks.join("\n")}`, `Integrated by Sortie on \`sortie/plan-${plan.id}\`, cost $${plan.costUsd.toFixed(2)}.${viewerUrl ? ` [The plan in Sortie's viewer](${viewerUrl})` : ""}`];
  return { title, body: parts.join("\n\n") };
}

/** Pushes the plan's branch and, for `pr`/`draft-pr`, opens its pull request. */
export async function publishPlan(ctx: PlanPublishContext): Promise<{ commit: string; pullRequest: { number: number; url: string } | null }> {
  const { env, plan, sandbox } = ctx;
  const branch = `sortie/plan-${plan.id}`;
  const patchPath = `${sandbox.workdir}/plan.patch`;
  const messagePath = `${sandbox.workdir}/message.txt`;
  const text = planPullRequestText(plan, ctx.viewerUrl);
  await sandbox.writeFile(patchPath, ctx.patch);
  await sandbox.writeFile(messagePath, `${text.title}\n\n${text.body}\n`);
  const remote = /^https?:/.test(ctx.cloneUrl);
  // A local remote (a file:// base in development and tests) takes no token for a branch.
  const minted = remote || plan.output !== "branch" ? await mintPushToken(env, plan.repo) : null;
  if (minted) ctx.addSecret(minted.token);
  const access = remote ? (minted ? await sandbox.grantGitAccess(ctx.cloneUrl, minted.token) : null) : await sandbox.grantGitAccess(ctx.cloneUrl, "");
  let commit: string;
  try {
    ({ commit } = await pushBranch(sandbox, { repoUrl: ctx.cloneUrl, baseBranch: plan.branch, branch, patchPath, messagePath, gitEnv: access?.env ?? {} }));
  } finally {
    await access?.revoke();
  }
  if (plan.output === "branch" || !minted) return { commit, pullRequest: null };
  const base = plan.branch ?? (await defaultBranch(env, minted.token, plan.repo));
  const pullRequest = await openPullRequest(env, minted.token, { repo: plan.repo, head: branch, base, title: text.title, body: text.body, draft: plan.output === "draft-pr" });
  return { commit, pullRequest };
}
