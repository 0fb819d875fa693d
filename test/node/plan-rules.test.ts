/** The rules every plan obeys (the planner's and a person's edit alike), and the ownership a worker's diff is held to. */
import { describe, expect, it } from "vitest";
import { checkPlan, findCycle, globToRegExp, overlappingGlobs, ownedBy, pathsOfPatch } from "../../src/agents/plan-rules.ts";
import { strayPaths } from "../../src/agents/plan-roles.ts";

const part = (key: string, owns: string[], dependsOn: string[] = []) => ({ key, title: key, prompt: `do ${key}`, owns, dependsOn, acceptance: [] });
const errorsOf = (value: unknown, max = 8) => {
  const check = checkPlan(value, max);
  return "errors" in check ? check.errors : [];
};

describe("plan rules", () => {
  it("accepts a valid plan, a one-subtask plan included, and fills in defaults", () => {
    const check = checkPlan({ summary: "s", subtasks: [{ key: "only", title: "t", prompt: "p", owns: ["**"] }] }, 8);
    expect("plan" in check && check.plan.subtasks[0]).toMatchObject({ dependsOn: [], acceptance: [] });
    expect(errorsOf({ summary: "s", subtasks: [part("api", ["src/api/**"]), part("web", ["web/**"]), part("docs", ["docs/**", "src/api/README.md"], ["api"])] })).toEqual([]);
  });

  it("names what is wrong: keys, unknown dependencies, the limit, empty owns, globs outside the repository", () => {
    expect(errorsOf({ summary: "s", subtasks: [part("Bad Key", ["a"])] }).join()).toMatch(/slug/);
    expect(errorsOf({ summary: "s", subtasks: [part("a", ["a"]), part("a", ["b"], [])] })).toContain('subtask key "a" is used twice');
    expect(errorsOf({ summary: "s", subtasks: [part("a", ["a"], ["ghost"])] })).toContain('subtask "a" depends on "ghost", which is not in the plan');
    expect(errorsOf({ summary: "s", subtasks: [part("a", ["a"]), part("b", ["b"]), part("c", ["c"])] }, 2)).toContain("the plan has 3 subtasks; at most 2 are allowed");
    expect(errorsOf({ summary: "s", subtasks: [part("a", [])] }).join()).toMatch(/owns must list at least one glob/);
    expect(errorsOf({ summary: "s", subtasks: [part("a", ["../etc/**"])] }).join()).toMatch(/repository-relative/);
    expect(errorsOf({ summary: "s", subtasks: [] }).join()).toMatch(/at least one subtask/);
  });

  it("names the keys of a cycle", () => {
    expect(findCycle([part("a", ["a"], ["c"]), part("b", ["b"], ["a"]), part("c", ["c"], ["b"])])).toEqual(["a", "c", "b", "a"]);
    expect(errorsOf({ summary: "s", subtasks: [part("x", ["x"], ["y"]), part("y", ["y"], ["x"])] })[0]).toMatch(/cycle: x -> y -> x/);
    expect(findCycle([part("a", ["a"]), part("b", ["b"], ["a"])])).toBeNull();
  });

  it("refuses overlapping ownership only between subtasks with no dependency path", () => {
    expect(errorsOf({ summary: "s", subtasks: [part("a", ["src/**"]), part("b", ["src/api/**"])] })[0]).toMatch(/"a" and "b" may run side by side but both own "src\/\*\*" and "src\/api\/\*\*"/);
    expect(errorsOf({ summary: "s", subtasks: [part("a", ["package-lock.json"]), part("b", ["package-lock.json"])] })[0]).toMatch(/both own "package-lock.json"/);
    // Through a chain of dependencies, sharing is handoff, not a concurrent edit.
    expect(errorsOf({ summary: "s", subtasks: [part("a", ["lock"]), part("m", ["m/**"], ["a"]), part("b", ["lock"], ["m"])] })).toEqual([]);
    expect(overlappingGlobs(["src/api/**"], ["src/web/**"])).toBeNull();
    expect(overlappingGlobs(["src/*.ts"], ["src/app.js"])).toBeNull();
    expect(overlappingGlobs(["*.md"], ["docs/x.md"])).toBeNull();
    expect(overlappingGlobs(["**/*.md"], ["docs/x.md"])).toEqual(["**/*.md", "docs/x.md"]);
    expect(overlappingGlobs(["**/*.md"], ["docs/**"])).toEqual(["**/*.md", "docs/**"]);
  });

  it("matches globs the way owns reads them", () => {
    expect(ownedBy("src/api/a/b.ts", ["src/api/**"])).toBe(true);
    expect(ownedBy("src/apis.ts", ["src/api/**"])).toBe(false);
    expect(ownedBy("src/a.ts", ["src/*.ts"])).toBe(true);
    expect(ownedBy("src/x/a.ts", ["src/*.ts"])).toBe(false);
    expect(ownedBy("deep/down/README.md", ["**/README.md"])).toBe(true);
    expect(ownedBy("README.md", ["**/README.md"])).toBe(true);
    expect(ownedBy("docs/guide.md", ["docs/"])).toBe(true);
    expect(globToRegExp("a.b").test("axb")).toBe(false);
  });

  it("finds every path of a patch, renames included, and the ones outside what is owned", () => {
    const patch = [
      "diff --git a/src/api.js b/src/api.js",
      "index 1..2 100644",
      "--- a/src/api.js",
      "+++ b/src/api.js",
      "diff --git a/old name.txt b/docs/new name.txt",
      "similarity index 100%",
      "rename from old name.txt",
      "rename to docs/new name.txt",
      "",
    ].join("\n");
    expect(pathsOfPatch(patch).sort()).toEqual(["docs/new name.txt", "old name.txt", "src/api.js"]);
    expect(strayPaths(patch, ["src/**", "docs/**"])).toEqual(["old name.txt"]);
  });
});
