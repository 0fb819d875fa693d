/**
 * What a fix run of a tended pull request is for, carried in its task spec
 * and queued in D1 while another fix runs: the triggers (red checks, a
 * review, a request, a merge conflict) and the pull request it fixes.
 */

/** A failing check, as the fix run's prompt shows it. */
export interface FailedCheck {
  name: string;
  conclusion: string;
  title: string;
  summary: string;
  text: string;
  /** `path:line: message` of each annotation the REST API lists. */
  annotations: string[];
}

/** A review comment, verbatim, with where it was left. */
export interface ReviewComment {
  id: number;
  path: string;
  line: number | null;
  diffHunk: string;
  body: string;
}

/** What asks for a fix run. */
export type FixTrigger =
  | { kind: "check"; by: string; headSha: string; checks: FailedCheck[] }
  | { kind: "review"; by: string; reviewId: number; body: string; comments: ReviewComment[] }
  | { kind: "command"; by: string; request: string }
  | { kind: "conflict"; by: string; base: string };

/** What a fix task carries in its spec: the pull request, the head it starts from, and why it runs. */
export interface FixRequest {
  repo: string;
  number: number;
  url: string;
  branch: string;
  base: string;
  /** The branch head the fix starts from; the push is refused if the branch has moved since. */
  head: string;
  /** The task whose publication opened the pull request. */
  parentTask: string;
  triggers: FixTrigger[];
}
