/**
 * The layers stay apart: the orchestration (src/agents) decides, the sandbox
 * port executes. No module of src/agents composes a shell command; what it
 * needs done in a sandbox is a typed operation of src/sandbox.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const AGENTS = join(import.meta.dirname, "../../src/agents");

/** Calls that hand a sandbox a command written in place (`x.exec("…")`, `` x.startProcess(`…`) ``); SQL is not a shell. */
function shellCalls(text: string): string[] {
  return [...text.matchAll(/\b([\w.]+)\.(exec|startProcess)\(\s*(["'`])/g)].filter((match) => !/(^|\.)sql_?$/.test(match[1]!)).map((match) => match[0]);
}

describe("the layers", () => {
  it("no module of src/agents runs shell commands itself", () => {
    const found = readdirSync(AGENTS)
      .filter((file) => file.endsWith(".ts"))
      .flatMap((file) => shellCalls(readFileSync(join(AGENTS, file), "utf8")).map((call) => `${file}: ${call}`));
    expect(found).toEqual([]);
  });

  it("the Fleet's queries and tables are src/store's: the Fleet agent writes no SQL and makes no table", () => {
    const fleet = readFileSync(join(AGENTS, "fleet.ts"), "utf8");
    expect(fleet.match(/\b(SELECT|INSERT|UPDATE|DELETE FROM|CREATE TABLE|ALTER TABLE)\b/g)).toBeNull();
    expect(fleet).not.toMatch(/\.sql\.exec\(|sql_/);
  });

  it("the check finds a shell command written in place, and lets SQL be", () => {
    expect(shellCalls(`await sandbox.exec('git -C "$X" status', {}); this.sql.exec("SELECT 1"); sql.exec(\`CREATE TABLE t (a)\`)`)).toEqual([`sandbox.exec('`]);
  });
});
