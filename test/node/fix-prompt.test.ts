/** The prompt of a fix run on a tended pull request, and the merge step of a conflict fix. */
import { describe, expect, it } from "vitest";
import { fixPrompt, fixedWhat, mergeSetup } from "../../src/agents/fix-prompt.ts";
import { LIMITS } from "../../src/config.ts";
import type { FixTrigger } from "../../src/fix-request.ts";

const pull = { repo: "acme/widgets", number: 7, branch: "sortie/abc/0", prompt: "make the widget blue" };

describe("the fix prompt", () => {
  it("puts what asks for the fix first and the original task last, every trigger of a folded run included", () => {
    const triggers: FixTrigger[] = [
      { kind: "check", by: "ci", headSha: "a".repeat(40), checks: [{ name: "lint", conclusion: "failure", title: "Lint failed", summary: "1 error", text: "src/a.js:1 no-var", annotations: ["src/a.js:1: failure: no-var"] }] },
      { kind: "review", by: "maria", reviewId: 1, body: "Two things.", comments: [{ id: 9, path: "src/a.js", line: 3, diffHunk: "@@ -1 +1 @@\n-a\n+b", body: "Rename `a`." }] },
      { kind: "command", by: "olga", request: "also update the README" },
      { kind: "conflict", by: "sortie", base: "main" },
    ];
    const prompt = fixPrompt(pull, triggers);
    const order = ["### lint (failure)", "Lint failed", "src/a.js:1: failure: no-var", "## Review by maria", "### src/a.js line 3\n```diff\n@@ -1 +1 @@\n-a\n+b\n```\nRename `a`.", "## Request from olga", "## Merge conflict with `main`", "## The original task\n\nmake the widget blue"];
    let at = -1;
    for (const part of order) {
      const found = prompt.indexOf(part);
      expect(found, part).toBeGreaterThan(at);
      at = found;
    }
    expect(fixedWhat(triggers)).toBe("the failing check `lint`; the review by maria (1 comment); the request of olga: “also update the README”; the merge conflict with `main`");
  });

  it("stays within the prompt limit and keeps the original task whole when a check prints too much", () => {
    const huge = "x".repeat(LIMITS.maxPromptChars);
    const prompt = fixPrompt(pull, [{ kind: "check", by: "ci", headSha: "b".repeat(40), checks: Array.from({ length: 20 }, (_, i) => ({ name: `c${i}`, conclusion: "failure", title: "", summary: huge, text: huge, annotations: [] })) }]);
    expect(prompt.length).toBeLessThanOrEqual(LIMITS.maxPromptChars);
    expect(prompt.endsWith("## The original task\n\nmake the widget blue")).toBe(true);
  });
});

describe("the merge step of a conflict fix", () => {
  it("names the base branch only in single quotes, and refuses a name that could break out of them", () => {
    expect(mergeSetup("release/2.x")).toContain("merge --no-edit --no-commit 'origin/release/2.x'");
    for (const base of ["main'; rm -rf / #", "$(touch pwned)", "a..b", "semi;colon"]) expect(() => mergeSetup(base)).toThrow(/not one Sortie merges/);
  });
});
