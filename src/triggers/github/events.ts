/**
 * Which GitHub events start a task, and with what prompt: an issue labeled
 * `sortie` (its title and body), or a `/sortie <request>` comment on an issue
 * or a pull request by someone whose association with the repository is
 * trusted (the request, with the issue's title and body as context).
 * Pure: no I/O, so every rule is testable on a payload alone.
 */
import { validate } from "../../api/body.ts";
import { LIMITS } from "../../config.ts";
import { EventEnvelope, IssueCommentCreated, IssueLabeled, githubActor, type Issue } from "./payloads.ts";

/** The label that hands an issue to Sortie (matched without regard to case, as GitHub matches label names). */
export const SORTIE_LABEL = "sortie";

/** `/sortie` then whitespace then the request, at the start of the comment. */
const COMMAND = /^\s*\/sortie\s+(\S[\s\S]*)$/;

export type GitHubIntent =
  | { kind: "task"; repo: string; number: number; prompt: string; createdBy: string }
  | { kind: "ignored"; reason: string };

/**
 * What a verified delivery asks for. A payload of an event and action Sortie
 * acts on that lacks the fields it reads is a 400 naming them.
 *
 * @example intentOf("issues", payload, ["OWNER", "MEMBER", "COLLABORATOR"])
 */
export function intentOf(event: string, payload: unknown, trustedAssociations: string[]): GitHubIntent {
  if (event !== "issues" && event !== "issue_comment") return ignored(`event ${event} is not one Sortie acts on`);
  const envelope = EventEnvelope.safeParse(payload);
  if (!envelope.success) return ignored(`${event} without an action`);
  const action = envelope.data.action;

  if (event === "issues") {
    if (action !== "labeled") return ignored(`issues.${action} is not one Sortie acts on`);
    const labeled = validate(IssueLabeled, payload, "github_payload");
    if (labeled.label.name.toLowerCase() !== SORTIE_LABEL) return ignored(`label ${labeled.label.name} is not ${SORTIE_LABEL}`);
    const repo = labeled.repository.full_name;
    const { issue } = labeled;
    const origin = `(GitHub issue ${repo}#${issue.number}, labeled ${SORTIE_LABEL} by ${labeled.sender.login})`;
    const title = issue.title.trim() || `Issue #${issue.number}`;
    const room = LIMITS.maxPromptChars - title.length - origin.length - 4;
    const prompt = [title, cut(issue.body?.trim() ?? "", room), origin].filter(Boolean).join("\n\n");
    return { kind: "task", repo, number: issue.number, prompt, createdBy: githubActor(labeled.sender.login) };
  }

  if (action !== "created") return ignored(`issue_comment.${action} is not one Sortie acts on`);
  const created = validate(IssueCommentCreated, payload, "github_payload");
  const request = COMMAND.exec(created.comment.body)?.[1]?.trim();
  if (!request) return ignored("the comment is not a /sortie command");
  const association = created.comment.author_association.toUpperCase();
  if (!trustedAssociations.includes(association)) {
    return ignored(`${created.comment.user.login} is ${association} on the repository; only ${trustedAssociations.join(", ")} may start tasks`);
  }
  const repo = created.repository.full_name;
  return { kind: "task", repo, number: created.issue.number, prompt: commandPrompt(request, repo, created.issue), createdBy: githubActor(created.comment.user.login) };
}

/** The request first (its first line titles the pull request), then the issue or pull request it was asked on. */
function commandPrompt(request: string, repo: string, issue: Issue): string {
  const kind = issue.pull_request ? "pull request" : "issue";
  const context = `Context: this was asked in a comment on GitHub ${kind} ${repo}#${issue.number}, titled "${issue.title.trim()}".`;
  const head = cut(request, LIMITS.maxPromptChars / 2);
  const room = LIMITS.maxPromptChars - head.length - context.length - 4;
  return [head, context, cut(issue.body?.trim() ?? "", room)].filter(Boolean).join("\n\n");
}

function ignored(reason: string): GitHubIntent {
  return { kind: "ignored", reason };
}

function cut(text: string, max: number): string {
  if (max <= 0) return "";
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
