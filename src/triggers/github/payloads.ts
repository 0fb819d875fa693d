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
