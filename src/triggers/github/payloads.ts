/**
 * What GitHub posts to Sortie's webhook, as zod schemas: the fields the
 * handler reads are required, everything else GitHub sends passes through
 * unchecked.
 */
import { z } from "zod";

/** Every event Sortie reads carries an `action`; events it does not read are never parsed further. */
export const EventEnvelope = z.object({ action: z.string() });

const Login = z.string().min(1).max(100);
const User = z.object({ login: Login });

const Repository = z.object({
  full_name: z.string().regex(/^[^/\s]+\/[^/\s]+$/, "owner/name"),
});

const Issue = z.object({
  number: z.int().positive(),
  title: z.string().max(1000),
  body: z.string().nullable().optional(),
  html_url: z.string().optional(),
  /** Present when the issue is a pull request. */
  pull_request: z.looseObject({}).nullable().optional(),
});
export type Issue = z.infer<typeof Issue>;

/** `issues` with action `labeled`. */
export const IssueLabeled = z.object({
  action: z.literal("labeled"),
  label: z.object({ name: z.string() }),
  issue: Issue,
  repository: Repository,
  sender: User,
});
export type IssueLabeled = z.infer<typeof IssueLabeled>;

/** `issue_comment` with action `created`, on an issue or a pull request. */
export const IssueCommentCreated = z.object({
  action: z.literal("created"),
  issue: Issue,
  comment: z.object({
    id: z.int().optional(),
    body: z.string(),
    user: User,
    /** The commenter's relation to the repository: OWNER, MEMBER, COLLABORATOR, CONTRIBUTOR, FIRST_TIMER, FIRST_TIME_CONTRIBUTOR, MANNEQUIN, NONE. */
    author_association: z.string(),
  }),
  repository: Repository,
});
export type IssueCommentCreated = z.infer<typeof IssueCommentCreated>;

/** Who started a task from GitHub: the name `createdBy` carries. */
export function githubActor(login: string): string {
  return `github:${login}`;
}

/** The claim key of an issue or pull request: one live task per issue. */
export function issueKey(repo: string, number: number): string {
  return `github:${repo}#${number}`;
}

/** A pull request as check and workflow events name it (empty for a branch of a fork). */
const PullRef = z.object({ number: z.int().positive() });

const Sha = z.string().regex(/^[0-9a-f]{40}$/, "a commit SHA");

/** `check_run` with action `completed`. */
export const CheckRunCompleted = z.object({
  action: z.literal("completed"),
  check_run: z.object({
    id: z.int(),
    name: z.string().min(1).max(500),
    head_sha: Sha,
    conclusion: z.string().nullable(),
    output: z.object({ title: z.string().nullish(), summary: z.string().nullish(), text: z.string().nullish() }).nullish(),
    pull_requests: z.array(PullRef).default([]),
    check_suite: z.object({ head_branch: z.string().nullish() }).nullish(),
  }),
  repository: Repository,
  sender: User,
});

/** `check_suite` with action `completed`: its failing runs are read from the REST API. */
export const CheckSuiteCompleted = z.object({
  action: z.literal("completed"),
  check_suite: z.object({ id: z.int(), head_sha: Sha, head_branch: z.string().nullish(), conclusion: z.string().nullable(), pull_requests: z.array(PullRef).default([]) }),
  repository: Repository,
  sender: User,
});

/** `workflow_run` with action `completed`: its jobs are the check runs of its check suite. */
export const WorkflowRunCompleted = z.object({
  action: z.literal("completed"),
  workflow_run: z.object({
    id: z.int(),
    name: z.string().nullish(),
    head_sha: Sha,
    head_branch: z.string().nullish(),
    conclusion: z.string().nullable(),
    check_suite_id: z.int(),
    pull_requests: z.array(PullRef).default([]),
  }),
  repository: Repository,
  sender: User,
});

const Author = z.object({ user: User, author_association: z.string() });

/** `pull_request_review` with action `submitted`. */
export const ReviewSubmitted = z.object({
  action: z.literal("submitted"),
  review: Author.extend({ id: z.int(), body: z.string().nullish(), state: z.string() }),
  pull_request: z.object({ number: z.int().positive() }),
  repository: Repository,
});

/** `pull_request_review_comment` with action `created`. */
export const ReviewCommentCreated = z.object({
  action: z.literal("created"),
  comment: Author.extend({ id: z.int(), pull_request_review_id: z.int().nullish(), body: z.string() }),
  pull_request: z.object({ number: z.int().positive() }),
  repository: Repository,
});

/** `pull_request` with action `closed` (merged or not). */
export const PullRequestClosed = z.object({
  action: z.literal("closed"),
  pull_request: z.object({ number: z.int().positive(), merged: z.boolean().nullish() }),
  repository: Repository,
});

/** `pull_request` with action `synchronize`: its head branch moved to `after`. */
export const PullRequestSynchronized = z.object({
  action: z.literal("synchronize"),
  after: Sha,
  pull_request: z.object({ number: z.int().positive() }),
  repository: Repository,
  sender: User,
});
