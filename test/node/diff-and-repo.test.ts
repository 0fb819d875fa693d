/**
 * What a task names and what a run hands back: the repository a user typed,
 * the branch they asked for, and the counts of the diff a run produced.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SortieError } from "../../src/errors.ts";
import { parseNumstat } from "../../src/publish/diff.ts";
import { isValidBranchName, resolveRepo } from "../../src/repo.ts";

describe("parseNumstat", () => {
  it("adds up the lines of text files and counts every file", () => {
    const output = ["3\t1\tREADME.md", "12\t0\tsrc/new file.ts", "0\t4\tsrc/old.js", "1\t1\tsrc/{a => b}.js", ""].join("\n");
    expect(parseNumstat(output)).toEqual({ files: 4, additions: 16, deletions: 6, bytes: 0 });
  });

  it("counts a binary file as a file with no lines", () => {
    const output = ["-\t-\tlogo.png", "2\t0\tnotes.md"].join("\n");
    expect(parseNumstat(output)).toEqual({ files: 2, additions: 2, deletions: 0, bytes: 0 });
  });

  it("reads the patch size from the SORTIE_BYTES line, padded or not", () => {
    expect(parseNumstat("1\t0\ta.txt\nSORTIE_BYTES=4821\n").bytes).toBe(4821);
    expect(parseNumstat("SORTIE_BYTES=     97\n")).toEqual({ files: 0, additions: 0, deletions: 0, bytes: 97 });
  });

  it("gives zeros for an empty diff and ignores stray lines", () => {
    expect(parseNumstat("")).toEqual({ files: 0, additions: 0, deletions: 0, bytes: 0 });
    expect(parseNumstat("warning: LF will be replaced by CRLF\n")).toEqual({ files: 0, additions: 0, deletions: 0, bytes: 0 });
  });
});

describe("resolveRepo", () => {
  const base = "https://git.example.test";
  const accepted: [string, string][] = [
    ["acme/widgets", "acme/widgets"],
    ["  acme/widgets  ", "acme/widgets"],
    ["acme/widgets.git", "acme/widgets"],
    ["acme/my.repo_name-2", "acme/my.repo_name-2"],
    ["https://github.com/acme/widgets", "acme/widgets"],
    ["https://github.com/acme/widgets.git", "acme/widgets"],
    ["https://github.com/acme/widgets/", "acme/widgets"],
    ["https://github.com/acme/widgets.git/", "acme/widgets"],
    ["https://www.github.com/acme/widgets", "acme/widgets"],
  ];
  for (const [input, slug] of accepted) {
    it(`resolves ${JSON.stringify(input)} to ${slug} under GIT_BASE_URL`, () => {
      expect(resolveRepo(input, base)).toEqual({ slug, cloneUrl: `${base}/${slug}.git` });
    });
  }

  const refused: [string, string][] = [
    ["the ssh form", "git@github.com:acme/widgets.git"],
    ["an ssh URL", "ssh://git@github.com/acme/widgets.git"],
    ["plain http", "http://github.com/acme/widgets"],
    ["another host", "https://gitlab.com/acme/widgets"],
    ["a look-alike host", "https://github.com.evil.test/acme/widgets"],
    ["credentials in the URL", "https://user:pw@github.com/acme/widgets"],
    ["a file URL", "file:///etc/passwd"],
    ["an absolute path", "/srv/git/acme/widgets"],
    ["traversal in the middle", "acme/../etc"],
    ["traversal as the name", "acme/.."],
    ["traversal as the owner", "../widgets"],
    ["a three-part path", "acme/widgets/extra"],
    ["a three-part URL", "https://github.com/acme/widgets/tree"],
    ["a lone name", "widgets"],
    ["an empty string", ""],
    ["an owner starting with a dash", "-acme/widgets"],
    ["a name with a space", "acme/wid gets"],
    ["a query string", "https://github.com/acme/widgets?tab=readme"],
    ["a .lock name", "acme/widgets.lock"],
  ];
  for (const [what, input] of refused) {
    it(`refuses ${what} as invalid_repo`, () => {
      let thrown: unknown;
      try {
        resolveRepo(input, base);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(SortieError);
      expect(thrown).toMatchObject({ code: "invalid_repo", status: 400 });
    });
  }
});

describe("isValidBranchName agrees with git check-ref-format --branch", () => {
  const repo = fs.mkdtempSync(path.join(os.tmpdir(), "sortie-refs-"));
  execFileSync("git", ["init", "-q", repo]);
  afterAll(() => fs.rmSync(repo, { recursive: true, force: true }));

  const gitAccepts = (name: string) => {
    try {
      execFileSync("git", ["check-ref-format", "--branch", name], { cwd: repo, stdio: "pipe" });
      return true;
    } catch {
      return false;
    }
  };

  const names = [
    "main", "develop", "feature/login", "fix/issue-42", "release/v1.2.3", "user/alice/wip", "refs/heads/x", "a/-b",
    "ünïcödé", "x{y}", "a,b", "a#b", "a'b", 'a"b', "a!b", "a@b", "x@", "@", "a/@", "@/a", "a.lock.b", "v1.0",
    "a..b", "-x", "-", "x/", "/x", "x.", "a/.", "a/..", ".", "..", ".x", "x/.y", "x.lock", "x.lock/y", "a/b.lock",
    "a//b", "a b", "a\tb", "a\x7fb", "a\x01b", "a~b", "a^b", "a:b", "a?b", "a*b", "a[b", "a\\b",
    "a@{b", "@{-1}", "@{u}", "HEAD", "", " ", "feature/", "trailing.",
  ];

  it("the list covers names git accepts and names it refuses", () => {
    const verdicts = names.map(gitAccepts);
    expect(verdicts.filter(Boolean).length).toBeGreaterThan(10);
    expect(verdicts.filter((ok) => !ok).length).toBeGreaterThan(10);
  });

  for (const name of names) {
    it(`${JSON.stringify(name)}: same verdict as git`, () => {
      expect(isValidBranchName(name)).toBe(gitAccepts(name));
    });
  }

  it("refuses names past 200 characters, which git alone would take", () => {
    const long = `feature/${"a".repeat(200)}`;
    expect(gitAccepts(long)).toBe(true);
    expect(isValidBranchName(long)).toBe(false);
    expect(isValidBranchName("a".repeat(200))).toBe(true);
  });
});
