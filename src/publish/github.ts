/**
 * Everything Sortie says to GitHub: the short-lived tokens it pushes and
 * comments with, pull requests, issue comments, and the text of a pull
 * request. Tokens are minted right before use and scoped to one repository;
 * no error that leaves this module carries a token.
 */
import { createAppAuth } from "@octokit/auth-app";
import { Octokit } from "@octokit/rest";
import { readConfig } from "../config.ts";
import { SortieError, messageOf } from "../errors.ts";
import { scrubText, secretValues } from "../redact.ts";
import { resolveRepo } from "../repo.ts";
import type { TaskState } from "../schema.ts";
import { toPkcs8Pem } from "./pem.ts";

/** What a token may do, in the shape of GitHub's `permissions` object. */
export type GitHubPermissions = Partial<Record<"contents" | "pull_requests" | "issues" | "checks", "read" | "write">>;

/** Pushing a branch and opening its pull request. */
export const PUSH_PERMISSIONS = { contents: "write", pull_requests: "write" } as const satisfies GitHubPermissions;
/** Commenting on an issue or a pull request (GitHub wants issues:write for an issue, pull_requests:write for a pull request). */
export const COMMENT_PERMISSIONS = { issues: "write", pull_requests: "write" } as const satisfies GitHubPermissions;

export interface GitHubToken {
  token: string;
  /** When GitHub lets the token lapse (epoch ms); null for a personal token. */
  expiresAt: number | null;
  /** `app`: an installation token of the GitHub App, for one repository; `pat`: the personal token GITHUB_TOKEN. */
  kind: "app" | "pat";
}

/**
 * A token that may push to `repo` and open its pull request: an installation
 * token of the GitHub App (GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY) scoped to
 * that one repository with contents:write and pull_requests:write, or else
 * the personal token GITHUB_TOKEN. A fresh one on every call: installation
 * tokens lapse after an hour, so mint it right before the push.
 *
 * @example const { token } = await mintPushToken(env, "acme/widgets")
 */
export function mintPushToken(env: Cloudflare.Env, repo: string): Promise<GitHubToken> {
  return mintToken(env, repo, PUSH_PERMISSIONS);
}

/** Like `mintPushToken`, for commenting on the repository's issues and pull requests (no push). */
export function mintCommentToken(env: Cloudflare.Env, repo: string): Promise<GitHubToken> {
  return mintToken(env, repo, COMMENT_PERMISSIONS);
}

/** Like `mintPushToken`, with the permissions given. */
export async function mintToken(env: Cloudflare.Env, repo: string, permissions: GitHubPermissions): Promise<GitHubToken> {
  const { owner, name } = splitRepo(repo);
  const appId = env.GITHUB_APP_ID?.trim() ?? "";
  const privateKey = env.GITHUB_APP_PRIVATE_KEY?.trim() ?? "";
  const personal = env.GITHUB_TOKEN?.trim() ?? "";
  if (!appId || !privateKey) {
    if (personal) return { token: personal, expiresAt: null, kind: "pat" };
    const missing = !appId && !privateKey ? "GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY" : !appId ? "GITHUB_APP_ID" : "GITHUB_APP_PRIVATE_KEY";
    throw new SortieError("github_not_configured", `Sortie cannot act on GitHub: set ${missing} (a GitHub App), or GITHUB_TOKEN (a personal token)`, 422);
  }
  const app = new Octokit({
    baseUrl: readConfig(env).githubApiUrl,
    authStrategy: createAppAuth,
    auth: { appId, privateKey: toPkcs8Pem(privateKey, "GITHUB_APP_PRIVATE_KEY") },
  });
  const installation = await github(`finding the GitHub App's installation on ${owner}/${name}`, [], () =>
    app.rest.apps.getRepoInstallation({ owner, repo: name }),
  ).catch((error: unknown) => {
    if (error instanceof SortieError && error.status === 404) {
      throw new SortieError("github_app_not_installed", `the GitHub App ${appId} is not installed on ${owner}/${name} (or cannot see it)`, 422);
    }
    throw error;
  });
  const { data } = await github(`minting a token for ${owner}/${name}`, [], () =>
    app.rest.apps.createInstallationAccessToken({ installation_id: installation.data.id, repositories: [name], permissions }),
  );
  return { token: data.token, expiresAt: Date.parse(data.expires_at), kind: "app" };
}

export interface PullRequestRequest {
  repo: string;
  /** The branch holding the change. */
  head: string;
  /** The branch to merge into. */
  base: string;
  title: string;
  body: string;
  draft?: boolean;
}

/**
 * Opens a pull request of `head` into `base`; returns its number and web URL.
 *
 * @example await openPullRequest(env, token, { repo, head: run.branch, base, ...pullRequestText(task, run.index, links, summary) })
 */
export async function openPullRequest(env: Cloudflare.Env, token: string, request: PullRequestRequest): Promise<{ number: number; url: string }> {
  const { owner, name } = splitRepo(request.repo);
  const { data } = await github(`opening a pull request of ${request.head} into ${request.base} on ${owner}/${name}`, [token], () =>
    client(env, token).rest.pulls.create({
      owner,
      repo: name,
      head: request.head,
      base: request.base,
      title: scrubText(request.title, secretValues(env)),
      body: scrubText(request.body, secretValues(env)),
      draft: request.draft ?? false,
    }),
  );
  return { number: data.number, url: data.html_url };
}

/** The repository's default branch (the base of a pull request when the task named none). */
export async function defaultBranch(env: Cloudflare.Env, token: string, repo: string): Promise<string> {
  const { owner, name } = splitRepo(repo);
  const { data } = await github(`reading ${owner}/${name}`, [token], () => client(env, token).rest.repos.get({ owner, repo: name }));
  return data.default_branch;
}

/** Posts a comment on an issue or a pull request; returns its id and web URL. */
export async function commentOnIssue(env: Cloudflare.Env, token: string, comment: { repo: string; number: number; body: string }): Promise<{ id: number; url: string }> {
  const { owner, name } = splitRepo(comment.repo);
  const { data } = await github(`commenting on ${owner}/${name}#${comment.number}`, [token], () =>
    client(env, token).rest.issues.createComment({ owner, repo: name, issue_number: comment.number, body: scrubText(comment.body, secretValues(env)) }),
  );
  return { id: data.id, url: data.html_url };
}

/** The issue a task was started from, when its key is `github:<task.repo>#N` (Sortie's GitHub trigger sets it so). */
export function linkedIssue(task: Pick<TaskState, "key" | "repo">): number | null {
  const match = /^github:([^#\s]+)#(\d+)$/.exec(task.key ?? "");
  if (!match || match[1]!.toLowerCase() !== task.repo.toLowerCase()) return null;
  return Number(match[2]);
}

/** One comment of a review, on a line of the pull request's new file. */
export interface ReviewComment {
  path: string;
  line: number;
  body: string;
}

/**
 * Posts a review (event COMMENT: it neither approves nor blocks) with
 * `comments` on their lines of the pull request's diff.
 *
 * @example await reviewPullRequest(env, token, { repo, number: 7, body: "Sortie's reviewer said:", comments })
 */
export async function reviewPullRequest(env: Cloudflare.Env, token: string, review: { repo: string; number: number; body: string; comments: ReviewComment[] }): Promise<{ id: number }> {
  const { owner, name } = splitRepo(review.repo);
  const secrets = secretValues(env);
  const { data } = await github(`reviewing ${owner}/${name}#${review.number}`, [token], () =>
    client(env, token).rest.pulls.createReview({
      owner,
      repo: name,
      pull_number: review.number,
      event: "COMMENT",
      body: scrubText(review.body, secrets),
      comments: review.comments.map((c) => ({ path: c.path, line: c.line, side: "RIGHT" as const, body: scrubText(c.body, secrets) })),
    }),
  );
  return { id: data.id };
}

const TITLE_CHARS = 72;
const PROMPT_CHARS = 3000;
const SUMMARY_CHARS = 20_000;

/**
 * The title and body of run `run`'s pull request: the prompt's first line as
 * the title; the agent's final `summary`, the prompt, diff stats, cost and the
 * viewer link as the body, and `Fixes #N` when the task came from an issue of
 * the same repository. Text from the prompt and the agent cannot mention
 * people or close other issues.
 *
 * @example const { title, body } = pullRequestText(task, 0, { viewer: `${origin}/tasks/${task.id}` }, summary)
 */
export function pullRequestText(task: TaskState, run: number, links: { viewer: string }, summary: string): { title: string; body: string } {
  const firstLine = task.prompt.split("\n").map((line) => line.trim()).find(Boolean) ?? `task ${task.id}`;
  const title = `Sortie: ${cut(firstLine.replace(/\s+/g, " "), TITLE_CHARS)}`;
  const view = task.runs[run];
  const parts: string[] = [];
  parts.push(summary.trim() ? defang(cut(summary.trim(), SUMMARY_CHARS)) : "_The agent left no summary._");
  parts.push(`### Task\n\n${fenced(cut(task.prompt, PROMPT_CHARS))}`);
  const facts: string[] = [];
  if (view?.diff) facts.push(`${view.diff.files} ${view.diff.files === 1 ? "file" : "files"} changed, +${view.diff.additions} −${view.diff.deletions}`);
  if (view) facts.push(`cost ${dollars(view.costUsd)}${task.runs.length > 1 ? ` (task ${dollars(task.costUsd)})` : ""}`);
  if (view?.numTurns) facts.push(`${view.numTurns} turns`);
  facts.push(`run ${run} of task \`${task.id}\``);
  parts.push(`${facts.join(" · ")}\n\n[Watch the run in Sortie's viewer](${links.viewer})`);
  const issue = linkedIssue(task);
  if (issue !== null) parts.push(`Fixes #${issue}`);
  return { title: scrubText(title), body: scrubText(parts.join("\n\n")) };
}

/** An Octokit for GitHub's REST API with `token`. */
export function client(env: Cloudflare.Env, token: string): Octokit {
  return new Octokit({ baseUrl: readConfig(env).githubApiUrl, auth: token });
}

/** Runs one GitHub call; a failure becomes a SortieError naming what failed and GitHub's answer, with every credential removed. */
export async function github<T>(what: string, secrets: string[], call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    const status = statusOf(error);
    let message = messageOf(error);
    message = cut(scrubText(message, secrets.filter(Boolean)), 500);
    const code = status === 401 || status === 403 ? "github_auth_failed" : status === 404 ? "github_not_found" : status === 422 ? "github_refused" : "github_api_error";
    const ours = status === 404 ? 404 : status === 422 ? 422 : 502;
    // The original error is not kept as the cause: its request and response may carry the credential.
    throw new SortieError(code, `${what} failed${status ? ` (GitHub answered ${status})` : ""}: ${message}`, ours);
  }
}

function statusOf(error: unknown): number | null {
  if (error instanceof Error && "status" in error && typeof error.status === "number") return error.status;
  return null;
}

export function splitRepo(repo: string): { owner: string; name: string } {
  const [owner, name] = resolveRepo(repo, "").slug.split("/") as [string, string];
  return { owner, name };
}

/** Breaks @-mentions and closing keywords ("fixes #3") so quoted text cannot ping people or close issues. */
export function defang(text: string): string {
  return text
    .replace(/@(?=[A-Za-z0-9])/g, "@\u200b")
    .replace(/\b(close[sd]?|fix(?:e[sd])?|resolve[sd]?)(:?\s+[\w./-]*)#(\d)/gi, "$1$2#\u200b$3");
}

/** A fenced code block longer than any backtick run inside, so the text shows verbatim (no mentions, no references). */
function fenced(text: string): string {
  const longest = Math.max(2, ...Array.from(text.matchAll(/`+/g), (m) => m[0].length));
  const fence = "`".repeat(longest + 1);
  return `${fence}text\n${text}\n${fence}`;
}

function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

function dollars(usd: number): string {
  return `$${usd < 0.01 && usd > 0 ? usd.toFixed(4) : usd.toFixed(2)}`;
}
