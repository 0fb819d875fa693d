/**
 * The stand-in agent CLI the load benchmarks put on the sandbox PATH
 * (bench/standin-claude/claude): run through the agent command Sortie
 * builds, its output must parse into the events a real Claude Code turn
 * gives (init, then one `log` event per plain line, then a successful
 * result), or the benchmarks would measure something else.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { claudeCodeInvocation, parseClaudeStreamLine } from "../../src/runners/claude-code.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const PATH = [path.join(ROOT, "bench/standin-claude"), path.join(ROOT, "node_modules/.bin"), process.env.PATH].join(":");

/** Runs Sortie's agent command with the stand-in first on PATH, as the local sandbox host does with LOCAL_SANDBOX_EXTRA_PATH. */
function runAgentCommand(prompt: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const { command, env } = claudeCodeInvocation({ prompt, cwd: ROOT, maxTurns: 5, model: null, credentials: {} });
  return new Promise((resolve, reject) => {
    const child = spawn("bash", ["-c", command], { env: { ...env, PATH } as unknown as NodeJS.ProcessEnv, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("the stand-in agent CLI", () => {
  it("plays a turn: init, the asked lines as log events in order, a successful result", async () => {
    const before = Date.now();
    const run = await runAgentCommand('bench\n#!standin-claude {"lines":50,"rate":1000}');
    expect(run.code).toBe(0);
    const events = run.stdout.split("\n").filter((line) => line.trim()).flatMap(parseClaudeStreamLine);
    expect(events[0]!.type).toBe("agent.init");
    expect(events.at(-1)).toMatchObject({ type: "agent.result", data: { isError: false, subtype: "success", text: "done" } });
    expect(events.at(-1)!.data.sessionId).toBe(events[0]!.data.sessionId);
    const lines = events.slice(1, -1);
    expect(lines.map((event) => event.type)).toEqual(Array(50).fill("log"));
    lines.forEach((event, i) => {
      const [, n, stamp] = /^line (\d+) (\d+\.\d+)$/.exec(String(event.data.text))!;
      expect(Number(n)).toBe(i + 1);
      expect(Number(stamp)).toBeGreaterThanOrEqual(before);
    });
    // 50 lines at 1,000 a second take at least 49 ms.
    const stamps = lines.map((event) => Number(String(event.data.text).split(" ")[2]));
    expect(stamps.at(-1)! - stamps[0]!).toBeGreaterThanOrEqual(45);
  });

  it("refuses a prompt that does not script it, instead of passing for Claude Code", async () => {
    const run = await runAgentCommand("add a CONTRIBUTING.md");
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/not Claude Code/);
  });
});
