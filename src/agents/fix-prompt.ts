/**
 * The prompt of a fix run on a tended pull request: what asks for the fix
 * (failing checks with their output and annotations, review comments
 * verbatim with their place in the diff, a request, a merge conflict), then
 * the original task's prompt as context; the setup step that merges the base
 * branch in for a conflict fix; and the one-line names of what a fix was
 * for, used in commit messages and comments.
 */
import { LIMITS } from "../config.ts";
import type { FixTrigger, TendedPull } from "../store/pull-requests.ts";

const CHECK_OUTPUT_CHARS = 12_000;

export function fixPrompt(pull: Pick<TendedPull, "repo" | "number" | "branch" | "prompt">, triggers: FixTrigger[]): string {
  const head = [
    `Sortie opened pull request ${pull.repo}#${pull.number} (branch \`${pull.branch}\`) for the task quoted at the end.`,
    "The checkout is that branch's head. Change it so that what follows is addressed; your changes are pushed to the same branch as a new commit.",
  ].join(" ");
  const sections = triggers.map(section);
  const original = `## The original task\n\n${pull.prompt}`;
  const room = LIMITS.maxPromptChars - head.length - original.length - 8;
  const asked = cut(sections.join("\n\n"), Math.max(room, LIMITS.maxPromptChars / 2));
  return cut([head, asked, original].join("\n\n"), LIMITS.maxPromptChars);
}

function section(trigger: FixTrigger): string {
  switch (trigger.kind) {
    case "check":
      return [
        `## Failing checks on ${trigger.headSha.slice(0, 12)}`,
        ...trigger.checks.map((check) =>
          [
            `### ${check.name} (${check.conclusion})`,
            check.title,
            cut(check.summary, CHECK_OUTPUT_CHARS),
            cut(check.text, CHECK_OUTPUT_CHARS),
            check.annotations.length ? `Annotations:\n${check.annotations.map((a) => `- ${a}`).join("\n")}` : "",
          ]
            .filter(Boolean)
            .join("\n\n"),
        ),
      ].join("\n\n");
    case "review":
      return [
        `## Review by ${trigger.by}`,
        trigger.body,
        ...trigger.comments.map((c) => [`### ${c.path}${c.line !== null ? ` line ${c.line}` : ""}`, "```diff", c.diffHunk, "```", c.body].join("\n")),
      ]
        .filter(Boolean)
        .join("\n\n");
    case "command":
      return `## Request from ${trigger.by}\n\n${trigger.request}`;
    case "conflict":
      return [
        `## Merge conflict with \`${trigger.base}\``,
        `The base branch \`${trigger.base}\` has been merged into the checkout and left conflicts (\`git status\` lists them).`,
        "Resolve every conflict so that the branch keeps both sides' intent, and remove every conflict marker. Leave the result in the working tree; do not commit.",
      ].join("\n\n");
  }
}

/** What a fix was for, in a few words: `the failing check lint`, `review comments by alice`. */
export function fixedWhat(triggers: FixTrigger[]): string {
  const parts = triggers.map((trigger) => {
    switch (trigger.kind) {
      case "check":
        return `the failing ${trigger.checks.length === 1 ? "check" : "checks"} ${trigger.checks.map((c) => `\`${c.name}\``).join(", ")}`;
      case "review":
        return `the review by ${trigger.by}${trigger.comments.length ? ` (${trigger.comments.length} ${trigger.comments.length === 1 ? "comment" : "comments"})` : ""}`;
      case "command":
        return `the request of ${trigger.by}: “${cut(trigger.request.split("\n")[0] ?? "", 80)}”`;
      case "conflict":
        return `the merge conflict with \`${trigger.base}\``;
    }
  });
  return [...new Set(parts)].join("; ");
}

function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** Base branch names a merge command may name (a strict subset of git's rules, so quoting is enough). */
const SAFE_BRANCH = /^[A-Za-z0-9._/-]{1,200}$/;

/**
 * The setup step of a conflict fix: the base branch merged into the checkout
 * (full history first: the clone is shallow), leaving the conflicts for the
 * agent; then the repository's own setup, if any.
 */
export function mergeSetup(base: string): string {
  if (!SAFE_BRANCH.test(base) || base.includes("..")) throw new Error(`the base branch ${JSON.stringify(base)} is not one Sortie merges automatically`);
  return [
    "set -u",
    "git fetch --quiet --unshallow origin 2>/dev/null || true",
    `git fetch --quiet origin '+refs/heads/${base}:refs/remotes/origin/${base}'`,
    `git -c user.name=Sortie -c user.email=sortie@users.noreply.github.com merge --no-edit --no-commit 'origin/${base}' || true`,
    "if [ -f .sortie/setup.sh ]; then bash .sortie/setup.sh; fi",
  ].join("\n");
}
