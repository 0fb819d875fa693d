/**
 * The Claude Code runner's pure parts: the command line it builds and the
 * parser that turns stream-json into Sortie's events. The parser is proven
 * against a stream recorded from the real Claude Code (2.1.330) driven by the
 * stand-in model; the command line is proven by running it.
 */
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LIMITS } from "../../src/config.ts";
import type { AgentEvent, AgentTurnOptions as ClaudeTurnOptions } from "../../src/runners/agent.ts";
import { claudeCodeInvocation, parseClaudeStreamLine, summarizeToolInput } from "../../src/runners/claude-code.ts";
import { LineSplitter } from "../../src/runners/lines.ts";
import { startAnthropicStandin, type AnthropicStandin } from "../standins/anthropic.mjs";

const RECORDING = fs.readFileSync(new URL("../fixtures/claude-code-2.1.330.stream.jsonl", import.meta.url), "utf8");
const BIN = path.resolve(import.meta.dirname, "../../node_modules/.bin");

function eventsOfRecording(): AgentEvent[] {
  return RECORDING.split("\n").filter((line) => line.trim()).flatMap(parseClaudeStreamLine);
}

function ofType(events: AgentEvent[], type: string) {
  return events.filter((event) => event.type === type);
}

function options(overrides: Partial<ClaudeTurnOptions> = {}): ClaudeTurnOptions {
  return { prompt: "Fix the bug.", cwd: "/workspace/repo", maxTurns: 10, model: null, credentials: {}, ...overrides };
}

describe("parsing a recorded Claude Code stream", () => {
  const events = eventsOfRecording();

  it("reports the session once, at the start", () => {
    const inits = ofType(events, "agent.init");
    expect(inits).toHaveLength(1);
    expect(events[0]).toBe(inits[0]);
    expect(inits[0]!.data.sessionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(inits[0]!.data.cwd).toBe("/workspace/repo");
    expect(inits[0]!.data.tools).toBeGreaterThan(0);
  });

  it("shows each tool call with a one-line summary of what it does", () => {
    const calls = ofType(events, "agent.tool_call").map((event) => ({ name: event.data.name, summary: event.data.summary }));
    expect(calls).toEqual([
      { name: "Write", summary: "/workspace/repo/notes.md" },
      { name: "Bash", summary: "wc -l notes.md && echo recorded" },
    ]);
  });

  it("pairs every tool result with the call it answers", () => {
    const callIds = ofType(events, "agent.tool_call").map((event) => event.data.id);
    const results = ofType(events, "agent.tool_result");
    expect(results.map((event) => event.data.toolUseId)).toEqual(callIds);
    expect(results.every((event) => event.data.isError === false)).toBe(true);
    expect(results[1]!.data.text).toBe("3 notes.md\nrecorded");
  });

  it("keeps the agent's words in order", () => {
    expect(ofType(events, "agent.text").map((event) => event.data.text)).toEqual(["Writing the notes.", "Wrote notes.md and counted its lines."]);
  });

  it("ends with one successful result carrying turns, cost and the session", () => {
    const results = ofType(events, "agent.result");
    expect(results).toHaveLength(1);
    expect(events.at(-1)).toBe(results[0]);
    const final = results[0]!.data;
    expect(final).toMatchObject({ isError: false, subtype: "success", numTurns: 3, text: "Wrote notes.md and counted its lines." });
    expect(final.costUsd).toBeGreaterThan(0);
    expect(final.durationMs).toBeGreaterThan(0);
    expect(final.sessionId).toBe(ofType(events, "agent.init")[0]!.data.sessionId);
  });

  it("understands every line: nothing falls through to a plain log", () => {
    expect(events.filter((event) => event.type === "log" || event.type === "agent.other")).toEqual([]);
  });

  it("gives the same events when the stream arrives in arbitrary pieces", () => {
    const splitter = new LineSplitter();
    const lines: string[] = [];
    for (let at = 0; at < RECORDING.length; at += 7) lines.push(...splitter.push(RECORDING.slice(at, at + 7)));
    lines.push(...splitter.flush());
    expect(lines.filter((line) => line.trim()).flatMap(parseClaudeStreamLine)).toEqual(events);
  });
});

describe("parsing lines that are not ordinary stream-json", () => {
  it("turns a non-JSON line into a log event with its text", () => {
    expect(parseClaudeStreamLine("npm warn something odd")).toEqual([{ type: "log", data: { stream: "stdout", text: "npm warn something odd" } }]);
  });

  it("turns JSON that is not an object into a log event", () => {
    expect(parseClaudeStreamLine("[1,2,3]")).toEqual([{ type: "log", data: { stream: "stdout", text: "[1,2,3]" } }]);
  });

  it("cuts an over-long tool result and says it did", () => {
    const huge = "x".repeat(LIMITS.eventTextChars + 500);
    const line = JSON.stringify({ type: "user", message: { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_1", content: huge }] } });
    const [event] = parseClaudeStreamLine(line);
    expect(event!.type).toBe("agent.tool_result");
    expect(event!.data.text).toBe(huge.slice(0, LIMITS.eventTextChars));
    expect(event!.data.truncated).toBe(true);
  });

  it("does not flag a tool result that fits", () => {
    const line = JSON.stringify({ type: "user", message: { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_1", content: [{ type: "text", text: "a" }, { type: "text", text: "b" }] }] } });
    expect(parseClaudeStreamLine(line)).toEqual([{ type: "agent.tool_result", data: { toolUseId: "toolu_1", isError: false, text: "a\nb" } }]);
  });

  it("cuts an over-long tool input and says it did", () => {
    const content = "y".repeat(LIMITS.eventTextChars * 2);
    const line = JSON.stringify({ type: "assistant", message: { content: [{ type: "tool_use", id: "toolu_2", name: "Write", input: { file_path: "/w/big.txt", content } }] } });
    const [event] = parseClaudeStreamLine(line);
    expect(event!.data).toMatchObject({ name: "Write", summary: "/w/big.txt", truncated: true });
    expect((event!.data.input as string).length).toBe(LIMITS.eventTextChars);
  });

  it("reports an API retry with its attempt and delay", () => {
    const line = JSON.stringify({ type: "system", subtype: "api_retry", attempt: 2, max_retries: 10, retry_delay_ms: 1200, error_status: 529, error: "overloaded" });
    expect(parseClaudeStreamLine(line)).toEqual([{ type: "agent.retry", data: { attempt: 2, maxRetries: 10, delayMs: 1200, error: "overloaded" } }]);
  });
});

describe("summarizeToolInput", () => {
  it("prefers the command over anything else", () => {
    expect(summarizeToolInput({ description: "List files", command: "ls -la" })).toBe("ls -la");
  });

  it("names the file a file tool touches", () => {
    expect(summarizeToolInput({ file_path: "/workspace/repo/src/a.ts", content: "…" })).toBe("/workspace/repo/src/a.ts");
  });

  it("folds a multi-line command onto one line", () => {
    expect(summarizeToolInput({ command: "cd src &&\n  npm test\n" })).toBe("cd src && npm test");
  });

  it("cuts a long summary to 200 characters ending in an ellipsis", () => {
    const summary = summarizeToolInput({ command: "a".repeat(500) });
    expect(summary).toHaveLength(200);
    expect(summary.endsWith("…")).toBe(true);
  });

  it("falls back to the first string field, and to nothing", () => {
    expect(summarizeToolInput({ count: 3, todo: "write tests" })).toBe("write tests");
    expect(summarizeToolInput({ count: 3 })).toBe("");
  });
});

describe("LineSplitter", () => {
  it("holds a partial line until its newline arrives", () => {
    const splitter = new LineSplitter();
    expect(splitter.push('{"type":')).toEqual([]);
    expect(splitter.push('"result"}\n{"ty')).toEqual(['{"type":"result"}']);
    expect(splitter.push('pe":"x"}\n')).toEqual(['{"type":"x"}']);
    expect(splitter.flush()).toEqual([]);
  });

  it("drops the carriage return of CRLF lines", () => {
    expect(new LineSplitter().push("one\r\ntwo\r\n")).toEqual(["one", "two"]);
  });

  it("gives back an unterminated last line on flush, once", () => {
    const splitter = new LineSplitter();
    splitter.push("done\nno newline");
    expect(splitter.flush()).toEqual(["no newline"]);
    expect(splitter.flush()).toEqual([]);
  });
});

const NASTY_PROMPT = (marker: string) =>
  [
    `--help "double" 'single' $(touch ${marker}) \`touch ${marker}\` \${HOME} %s %d \\n \\`,
    "second line\twith a tab; rm -rf / # not really",
    "'; echo injected; '",
  ].join("\n");

describe("claudeCodeInvocation", () => {
  it("never puts the prompt in the command: it travels in SORTIE_PROMPT", () => {
    const prompt = NASTY_PROMPT("/tmp/pwned-never");
    const { command, env } = claudeCodeInvocation(options({ prompt }));
    expect(env.SORTIE_PROMPT).toBe(prompt);
    expect(command).toBe(claudeCodeInvocation(options({ prompt: "x" })).command);
    expect(command).not.toContain("pwned");
    expect(command).toContain('printf \'%s\' "$SORTIE_PROMPT" | claude -p');
  });

  it("passes max turns and credentials as variables, not text", () => {
    const { command, env } = claudeCodeInvocation(options({ maxTurns: 7, credentials: { ANTHROPIC_API_KEY: "sk-ant-secret" } }));
    expect(command).toContain('--max-turns "$SORTIE_MAX_TURNS"');
    expect(env).toMatchObject({ SORTIE_MAX_TURNS: "7", ANTHROPIC_API_KEY: "sk-ant-secret", IS_SANDBOX: "1" });
    expect(command).not.toContain("sk-ant-secret");
  });

  it("adds --model and --resume only when asked, through variables", () => {
    const plain = claudeCodeInvocation(options());
    expect(plain.command).not.toContain("--model");
    expect(plain.command).not.toContain("--resume");
    expect(plain.env).not.toHaveProperty("SORTIE_MODEL");
    expect(plain.env).not.toHaveProperty("SORTIE_RESUME");

    const model = "opus; touch /tmp/x";
    const session = "$(id)-session";
    const { command, env } = claudeCodeInvocation(options({ model, resumeSessionId: session }));
    expect(command).toContain('--model "$SORTIE_MODEL"');
    expect(command).toContain('--resume "$SORTIE_RESUME"');
    expect(command).not.toContain(model);
    expect(command).not.toContain(session);
    expect(env).toMatchObject({ SORTIE_MODEL: model, SORTIE_RESUME: session });
  });
});

describe("running the built command against the stand-in model", () => {
  let standin: AnthropicStandin;
  let scratch: string;

  beforeAll(async () => {
    standin = await startAnthropicStandin();
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), "sortie-invocation-"));
  });
  afterAll(async () => {
    await standin.close();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  it("delivers a hostile prompt byte for byte and runs none of it", async () => {
    const marker = `/tmp/pwned-${randomUUID()}`;
    const prompt = NASTY_PROMPT(marker);
    const home = path.join(scratch, "home");
    const cwd = path.join(scratch, "repo");
    fs.mkdirSync(home);
    fs.mkdirSync(cwd);
    const { command, env } = claudeCodeInvocation(
      options({ prompt, cwd, credentials: { ANTHROPIC_API_KEY: "sk-ant-test", ANTHROPIC_BASE_URL: standin.url } }),
    );

    const run = await runBash(command, cwd, { PATH: `${BIN}:/usr/bin:/bin`, HOME: home, ...env });

    expect(run.exitCode).toBe(0);
    expect(standin.prompts()).toEqual([prompt]);
    expect(fs.existsSync(marker)).toBe(false);
    const final = run.stdout.split("\n").filter((line) => line.trim()).flatMap(parseClaudeStreamLine).find((event) => event.type === "agent.result");
    expect(final?.data.isError).toBe(false);
  });
});

/** Runs `command` with bash asynchronously: a blocking spawn would stall the stand-in in this same process. */
function runBash(command: string, cwd: string, env: Record<string, string>): Promise<{ exitCode: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // worker-configuration.d.ts widens ProcessEnv with the Worker's bindings; this child gets exactly `env`.
    const child = spawn("bash", ["-c", command], { cwd, env: env as NodeJS.ProcessEnv, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (data: string) => (stdout += data));
    child.stderr.setEncoding("utf8").on("data", (data: string) => (stderr += data));
    child.on("error", reject);
    child.on("close", (exitCode) => resolve({ exitCode, stdout, stderr }));
  });
}
