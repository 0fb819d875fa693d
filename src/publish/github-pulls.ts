/**
 * What tending a pull request reads from and says to GitHub: the pull
 * request's head, base and mergeable state, check runs and their
 * annotations, a review's comments, and replies in review threads.
 */
import { scrubText, secretValues } from "../redact.ts";
import { client, github, mintToken, splitRepo, type GitHubPermissions, type GitHubToken } from "./github.ts";

/** Reading checks and pull requests, commenting and replying; never pushing. */
export const TENDING_PERMISSIONS = { checks: "read", contents: "read", issues: "write", pull_requests: "write" } as const satisfies GitHubPermissions;

/** A token that may read a repository's checks and pull requests and comment on them. */
export function mintTendingToken(env: Cloudflare.Env, repo: string): Promise<GitHubToken> {
  return mintToken(env, repo, TENDING_PERMISSIONS);
}

export interface PullRequestNow {
  state: "open" | "closed";
  merged: boolean;
  headSha: string;
  headRef: string;
  baseRef: string;
  /** `clean`, `dirty` (conflicts), `unknown` (GitHub is still computing), `blocked`, `behind`, `unstable`, … */
  mergeableState: string;
}

/** The pull request as it is now. */
export async function readPullRequest(env: Cloudflare.Env, token: string, repo: string, number: number): Promise<PullRequestNow> {
  const { owner, name } = splitRepo(repo);
  const { data } = await github(`reading pull request ${owner}/${name}#${number}`, [token], () => client(env, token).rest.pulls.get({ owner, repo: name, pull_number: number }));
  return {
    state: data.state === "closed" ? "closed" : "open",
    merged: data.merged === true,
    headSha: data.head.sha,
    headRef: data.head.ref,
    baseRef: data.base.ref,
    mergeableState: data.mergeable_state ?? "unknown",
  };
}

/** The newest conclusion of check `checkName` on `ref` (a branch or a commit), or null if it never ran there. */
export async function checkConclusionOn(env: Cloudflare.Env, token: string, repo: string, ref: string, checkName: string): Promise<string | null> {
  const { owner, name } = splitRepo(repo);
  const { data } = await github(`listing check runs of ${ref} on ${owner}/${name}`, [token], () =>
    client(env, token).rest.checks.listForRef({ owner, repo: name, ref, check_name: checkName, filter: "latest", per_page: 10 }),
  );
  const run = data.check_runs.find((candidate) => candidate.name === checkName);
  return run ? (run.conclusion ?? run.status) : null;
}

/** The annotations of check run `id`, as `path:line: message` lines (at most 50). */
export async function checkAnnotations(env: Cloudflare.Env, token: string, repo: string, id: number): Promise<string[]> {
  const { owner, name } = splitRepo(repo);
  const { data } = await github(`listing annotations of check run ${id} on ${owner}/${name}`, [token], () =>
    client(env, token).rest.checks.listAnnotations({ owner, repo: name, check_run_id: id, per_page: 50 }),
  );
  return data.map((a) => `${a.path}:${a.start_line}: ${a.annotation_level ?? "failure"}: ${a.title ? `${a.title}: ` : ""}${a.message ?? ""}`.trim());
}

/** The check runs of a check suite that failed (for `check_suite` deliveries, which name no check). */
export async function failedRunsOfSuite(env: Cloudflare.Env, token: string, repo: string, suiteId: number): Promise<{ id: number; name: string; conclusion: string; title: string; summary: string; text: string }[]> {
  const { owner, name } = splitRepo(repo);
  const { data } = await github(`listing check runs of suite ${suiteId} on ${owner}/${name}`, [token], () =>
    client(env, token).rest.checks.listForSuite({ owner, repo: name, check_suite_id: suiteId, per_page: 100 }),
  );
  return data.check_runs
    .filter((run) => run.conclusion !== null && FAILING.has(run.conclusion))
    .map((run) => ({ id: run.id, name: run.name, conclusion: run.conclusion ?? "failure", title: run.output.title ?? "", summary: run.output.summary ?? "", text: run.output.text ?? "" }));
}

/** Conclusions that ask for a fix. */
export const FAILING: ReadonlySet<string> = new Set(["failure", "timed_out", "action_required"]);

export interface ReviewCommentRow {
  id: number;
  path: string;
  line: number | null;
  diffHunk: string;
  body: string;
  inReplyTo: number | null;
}

/** The comments of review `reviewId`. */
export async function reviewComments(env: Cloudflare.Env, token: string, repo: string, number: number, reviewId: number): Promise<ReviewCommentRow[]> {
  const { owner, name } = splitRepo(repo);
  const { data } = await github(`reading the comments of review ${reviewId} on ${owner}/${name}#${number}`, [token], () =>
    client(env, token).rest.pulls.listCommentsForReview({ owner, repo: name, pull_number: number, review_id: reviewId, per_page: 100 }),
  );
  return data.map((c) => ({ id: c.id, path: c.path, line: c.line ?? c.original_line ?? null, diffHunk: c.diff_hunk, body: c.body, inReplyTo: c.in_reply_to_id ?? null }));
}

/** Replies in the thread of review comment `commentId`. */
export async function replyToReviewComment(env: Cloudflare.Env, token: string, repo: string, number: number, commentId: number, body: string): Promise<void> {
  const { owner, name } = splitRepo(repo);
  await github(`replying to review comment ${commentId} on ${owner}/${name}#${number}`, [token], () =>
    client(env, token).rest.pulls.createReplyForReviewComment({ owner, repo: name, pull_number: number, comment_id: commentId, body: scrubText(body, secretValues(env)) }),
  );
}
