/**
 * Publishing a fix run of a tended pull request: its patch pushed onto the
 * pull request's own branch as a new commit (a merge commit for a resolved
 * conflict), fast-forward only, then a comment naming what it fixed with a
 * link to the run, and a reply in each review thread it answered. If the
 * branch moved since the fix started, a person has taken over: nothing is
 * pushed and tending stops.
 */
import { SortieError } from "../errors.ts";
import { pushFixCommit } from "../publish/branch.ts";
import { commentOnIssue, defang, mintPushToken } from "../publish/github.ts";
import { mintTendingToken, replyToReviewComment } from "../publish/github-pulls.ts";
import type { Publication } from "../schema.ts";
import { findTendedPull, type FixRequest } from "../store/pull-requests.ts";
import { fixedWhat } from "./fix-prompt.ts";
import type { PublishContext } from "./publisher.ts";
import { stop } from "./tending.ts";

const SUMMARY_CHARS = 4000;

export async function publishFix(ctx: PublishContext, fix: FixRequest): Promise<Pick<Publication, "commit" | "pullRequest">> {
  const { env, spec, sandbox } = ctx;
  const what = fixedWhat(fix.triggers);
  const summary = ctx.summary.trim() ? defang(cut(ctx.summary.trim(), SUMMARY_CHARS)) : "";
  const patchPath = `${sandbox.workdir}/change.patch`;
  const messagePath = `${sandbox.workdir}/message.txt`;
  await sandbox.writeFile(patchPath, ctx.patch);
  await sandbox.writeFile(messagePath, `Sortie: fix ${stripTicks(what)}\n\n${summary ? `${summary}\n\n` : ""}Run: ${ctx.viewerUrl}\n`);
  const remote = /^https?:/.test(spec.cloneUrl);
  const minted = remote ? await mintPushToken(env, spec.repo) : null;
  if (minted) ctx.addSecret(minted.token);
  ctx.onStep("token_minted", minted ? { kind: minted.kind, expiresAt: minted.expiresAt } : { kind: "none" });
  // A local remote (a file:// base) takes no token, but the walls keep it read-only until it is granted.
  const access = minted ? await sandbox.grantGitAccess(spec.cloneUrl, minted.token) : remote ? null : await sandbox.grantGitAccess(spec.cloneUrl, "");
  let pushed: Awaited<ReturnType<typeof pushFixCommit>>;
  try {
    pushed = await pushFixCommit(sandbox, {
      repoUrl: spec.cloneUrl,
      branch: fix.branch,
      expectHead: fix.head,
      mergeBranch: fix.triggers.find((t) => t.kind === "conflict")?.base ?? null,
      patchPath,
      messagePath,
      gitEnv: access?.env ?? {},
    });
  } finally {
    await access?.revoke();
  }
  if ("moved" in pushed) {
    const pull = await findTendedPull(env.DB, fix.repo, fix.number);
    if (pull) {
      await stop(env, pull, "human_push", "sortie",
        `Someone other than Sortie pushed to \`${fix.branch}\` (now at \`${pushed.moved.slice(0, 12)}\`) while Sortie was fixing ${what}, so Sortie did not push its fix and has stopped tending this pull request.`);
    }
    throw new SortieError("branch_moved", `${fix.branch} moved to ${pushed.moved} while the fix ran; nothing was pushed`, 409);
  }
  const { commit } = pushed;
  ctx.onStep("pushed", { branch: fix.branch, commit });

  const { token } = await mintTendingToken(env, fix.repo);
  ctx.addSecret(token);
  const body = [
    `Sortie pushed \`${commit.slice(0, 12)}\` to \`${fix.branch}\`, fixing ${what}.`,
    summary,
    `[The run in Sortie's viewer](${ctx.viewerUrl})`,
  ]
    .filter(Boolean)
    .join("\n\n");
  const comment = await commentOnIssue(env, token, { repo: fix.repo, number: fix.number, body });
  for (const trigger of fix.triggers) {
    if (trigger.kind !== "review") continue;
    for (const threadComment of trigger.comments) {
      const reply = `Changed in \`${commit.slice(0, 12)}\`: ${summary || `Sortie addressed this in its fix for ${what}.`}\n\n[The run](${ctx.viewerUrl})`;
      await replyToReviewComment(env, token, fix.repo, fix.number, threadComment.id, reply);
    }
  }
  ctx.onStep("commented", { url: comment.url });
  return { commit, pullRequest: { number: fix.number, url: fix.url } };
}

function stripTicks(text: string): string {
  return text.replace(/`/g, "");
}

function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
