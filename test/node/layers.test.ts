/**
 * The layers stay apart: the orchestration (src/agents) decides, the sandbox
 * port executes. No module of src/agents composes a shell command; what it
 * needs done in a sandbox is a typed operation of src/sandbox.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const SRC = join(import.meta.dirname, "../../src");
const AGENTS = join(SRC, "agents");

/** SQL written or run in `text`: statements, `sql.exec(` and D1's `.prepare(`. */
function sqlIn(text: string): string[] {
  return [...text.matchAll(/\b(?:SELECT .+ FROM|INSERT (?:OR \w+ )?INTO|UPDATE \w+ SET|DELETE FROM|CREATE (?:TABLE|INDEX)|ALTER TABLE)\b|\bsql\.exec\(|\.prepare\(/g)].map((hit) => hit[0]);
}

/** Every TypeScript file under `dir`. */
function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? sourceFiles(path) : entry.name.endsWith(".ts") ? [path] : [];
  });
}

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

  it("every query and table is src/store's: no other module of src writes SQL, runs it, or makes a table", () => {
    const found = sourceFiles(SRC)
      .filter((file) => !file.startsWith(join(SRC, "store")))
      .flatMap((file) => sqlIn(readFileSync(file, "utf8")).map((hit) => `${file.slice(SRC.length + 1)}: ${hit}`));
    expect(found).toEqual([]);
    // The check sees SQL where it is.
    expect(sqlIn(readFileSync(join(SRC, "store/fleet.ts"), "utf8")).length).toBeGreaterThan(20);
  });

  it("the check finds a shell command written in place, and lets SQL be", () => {
    expect(shellCalls(`await sandbox.exec('git -C "$X" status', {}); this.sql.exec("SELECT 1"); sql.exec(\`CREATE TABLE t (a)\`)`)).toEqual([`sandbox.exec('`]);
  });
});
