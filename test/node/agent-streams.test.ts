/**
 * The adapters of the other agent CLIs, proved on streams those CLIs really
 * printed (test/fixtures/streams/<cli>/, recorded against the stand-ins; each
 * folder's README says how) and on the command lines they build.
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import type { AgentAdapter, AgentEvent, AgentTurnOptions } from "../../src/runners/agent.ts";
import { codex } from "../../src/runners/codex.ts";
import { adapterFor } from "../../src/runners/index.ts";
import { gemini } from "../../src/runners/gemini.ts";
import { openCode } from "../../src/runners/opencode.ts";

const STREAMS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../fixtures/streams");

/** Every event an adapter's parser makes of a recorded stream, the process having exited `exitCode`. */
function parse(adapter: AgentAdapter, file: string, exitCode = 0): AgentEvent[] {
  const parser = adapter.parser();
  const lines = fs.readFileSync(path.join(STREAMS, file), "utf8").split("\n").filter((line) => line.trim());
  return [...lines.flatMap((line) => parser.line(line)), ...(parser.finish?.(exitCode) ?? [])];
}

const of = (events: AgentEvent[], type: string) => events.filter((event) => event.type === type).map((event) => event.data);
const PROMPT = `it's "quoted" $(touch pwned) \`x\`\n-n`;
const options = (extra: Partial<AgentTurnOptions> = {}): AgentTurnOptions => ({ prompt: PROMPT, cwd: "/workspace/repo", maxTurns: 10, model: null, credentials: {}, ...extra });

describe("codex exec --json", () => {
  it("reads a turn that ran a command and added a file: the thread, both tools, the answer and the usage", () => {
    const events = parse(codex, "codex/edit.jsonl");
    expect(of(events, "agent.init")).toEqual([{ agent: "codex", sessionId: "01a22bdc-bf81-7072-b3b7-6597aca81647", model: null, cwd: null, tools: 0 }]);
    expect(of(events, "agent.tool_call").map((call) => [call.name, call.summary])).toEqual([
      ["shell", "ls -a"],
      ["apply_patch", "add /tmp/cli-codex/rec/repo/notes.md"],
    ]);
    expect(of(events, "agent.tool_result").map((result) => [result.isError, result.text])).toEqual([
      [false, ".\n..\n.git\nREADME.md\n"],
      [false, "add /tmp/cli-codex/rec/repo/notes.md"],
    ]);
    expect(of(events, "agent.reasoning")).toEqual([{ text: "Look around before writing." }]);
    expect(of(events, "agent.usage")).toEqual([expect.objectContaining({ cumulative: true, inputTokens: 360, outputTokens: 120 })]);
    const [result] = of(events, "agent.result");
    expect(result).toMatchObject({ isError: false, subtype: "success", numTurns: 1, costUsd: null, text: "Added notes.md with a greeting.", sessionId: "01a22bdc-bf81-7072-b3b7-6597aca81647" });
  });

  it("reads a resumed turn in the same thread, its usage the thread's running total", () => {
    const events = parse(codex, "codex/resume.jsonl");
    expect(of(events, "agent.init")[0]!.sessionId).toBe("01a22bdc-bf81-7072-b3b7-6597aca81647");
    expect(of(events, "agent.usage")[0]).toMatchObject({ cumulative: true, inputTokens: 720, outputTokens: 240 });
    expect(of(events, "agent.result")[0]!.text).toBe("Appended a line to notes.md.");
  });

  it("reads the model API's failures as retries, then a failed result with Codex's words", () => {
    const events = parse(codex, "codex/error.jsonl", 1);
    expect(of(events, "agent.retry").map((retry) => [retry.attempt, retry.maxRetries])).toEqual([[1, 5], [2, 5], [3, 5], [4, 5], [5, 5]]);
    expect(of(events, "agent.result")).toEqual([expect.objectContaining({ isError: true, subtype: "error", text: "We’re currently experiencing high demand, which may cause temporary errors." })]);
  });

  it("reads a read-only turn whose write the shell refused", () => {
    const events = parse(codex, "codex/read-only.jsonl");
    expect(of(events, "agent.tool_result")[0]!.text).toContain("Read-only file system");
    expect(events.some((event) => event.type === "agent.tool_call" && event.data.name === "apply_patch")).toBe(false);
  });

  it("passes the prompt, model and session in variables, never in the command", () => {
    const first = codex.invocation(options({ model: "gpt-5.5", credentials: { OPENAI_API_KEY: "sk-x", OPENAI_BASE_URL: "http://127.0.0.1:9/v1" } }));
    expect(first.command).not.toContain("pwned");
    expect(first.env).toMatchObject({ SORTIE_PROMPT: PROMPT, SORTIE_MODEL: "gpt-5.5", SORTIE_OPENAI_BASE_URL: "http://127.0.0.1:9/v1", OPENAI_API_KEY: "sk-x" });
    expect(first.command).toContain("-s danger-full-access");
    expect(first.command).toMatch(/ -$/);
    const resumed = codex.invocation(options({ resumeSessionId: "thread-1", readOnly: true }));
    expect(resumed.command).toMatch(/-s read-only .*resume "\$SORTIE_RESUME" -$/);
    expect(resumed.env.SORTIE_RESUME).toBe("thread-1");
    expect(resumed.env.SORTIE_OPENAI_BASE_URL).toBe("https://api.openai.com/v1");
  });
});

describe("opencode run --format json", () => {
  it("reads a run that used bash and write: the session, both tools with their results, the answer, usage and cost", () => {
    const events = parse(openCode, "opencode/edit.jsonl");
    expect(of(events, "agent.init")).toEqual([{ agent: "opencode", sessionId: "ses_dd4212597ffeSvY83A5gijWSDS", model: null, cwd: null, tools: 0 }]);
    expect(of(events, "agent.tool_call").map((call) => [call.name, call.summary])).toEqual([
      ["bash", "echo hello-from-bash > bash-out.txt && ls -1"],
      ["write", "notes.md"],
    ]);
    expect(of(events, "agent.tool_result").map((result) => [result.isError, result.text])).toEqual([
      [false, "README.md\nbash-out.txt\n"],
      [false, "Wrote file successfully."],
    ]);
    expect(of(events, "agent.usage")).toHaveLength(3);
    const [result] = of(events, "agent.result");
    expect(result).toMatchObject({ isError: false, subtype: "success", numTurns: 3, text: "All done: ran a command and wrote notes.md.", sessionId: "ses_dd4212597ffeSvY83A5gijWSDS" });
    expect(result!.costUsd).toBeCloseTo(0.00288, 6);
  });

  it("reads a resumed run in its session", () => {
    const events = parse(openCode, "opencode/resume.jsonl");
    expect(of(events, "agent.result")[0]).toMatchObject({ isError: false, text: "Resumed and appended to resumed.txt.", sessionId: "ses_dd4200e04ffeQw4AT0jPhiwo7i" });
  });

  it("reads a failed model API as a failed result carrying the error", () => {
    const events = parse(openCode, "opencode/error.jsonl", 1);
    expect(of(events, "agent.result")).toEqual([expect.objectContaining({ isError: true, subtype: "error", text: "APIError: scripted failure (HTTP 500)" })]);
  });

  it("a run that ends without a final step is not a success, even with exit 0", () => {
    const parser = openCode.parser();
    const lines = fs.readFileSync(path.join(STREAMS, "opencode/edit.jsonl"), "utf8").trim().split("\n").slice(0, 3);
    for (const line of lines) parser.line(line);
    expect(parser.finish!(0)[0]!.data).toMatchObject({ isError: true });
  });

  it("configures the endpoint, keeps the project's config out, and denies edits and shell in read-only runs", () => {
    const { command, env } = openCode.invocation(options({ model: "claude-haiku-4-5", credentials: { ANTHROPIC_API_KEY: "k", ANTHROPIC_BASE_URL: "http://127.0.0.1:9/" } }));
    expect(command).not.toContain("pwned");
    expect(env.SORTIE_PROMPT).toBe(PROMPT);
    expect(env.OPENCODE_DISABLE_PROJECT_CONFIG).toBe("1");
    const config = JSON.parse(env.SORTIE_OPENCODE_CONFIG!);
    expect(config.model).toBe("anthropic/claude-haiku-4-5");
    expect(config.provider.anthropic.options.baseURL).toBe("http://127.0.0.1:9/v1");
    expect(config.permission).toMatchObject({ edit: "allow", bash: "allow", question: "deny" });
    const readOnly = JSON.parse(openCode.invocation(options({ readOnly: true })).env.SORTIE_OPENCODE_CONFIG!);
    expect(readOnly.permission).toMatchObject({ edit: "deny", bash: "deny", webfetch: "deny" });
    expect(openCode.invocation(options({ resumeSessionId: "ses_1" })).command).toContain('--session "$SORTIE_RESUME"');
  });
});

describe("the adapters", () => {
  it("every agent a task may name has one, pinned to a version", () => {
    for (const name of ["claude-code", "codex", "opencode", "gemini"] as const) {
      const adapter = adapterFor(name);
      expect(adapter.name).toBe(name);
      expect(adapter.install.version).toMatch(/^\d+\.\d+\.\d+$/);
    }
  });

  it("every parser keeps a line that is not its JSON as a log line", () => {
    for (const name of ["claude-code", "codex", "opencode", "gemini"] as const) {
      expect(adapterFor(name).parser().line("npm warn something odd")).toEqual([{ type: "log", data: { stream: "stdout", text: "npm warn something odd" } }]);
    }
  });
});

describe("gemini --output-format stream-json", () => {
  it("reads a run that used the shell and wrote a file: the session, the tools, the text gathered from its deltas, the stats", () => {
    const events = parse(gemini, "gemini/edit.jsonl");
    expect(of(events, "agent.init")).toEqual([{ agent: "gemini", sessionId: "e79b04c8-6fa1-4f03-9586-f29e3d3b23b0", model: "auto", cwd: null, tools: 0 }]);
    expect(of(events, "agent.text").map((text) => text.text)).toEqual(["Looking around first.", "Wrote notes.md after checking the repo."]);
    expect(of(events, "agent.tool_call").map((call) => [call.name, call.summary])).toEqual([
      ["run_shell_command", "echo shell-ran | tee shell-proof.txt && git status --short"],
      ["write_file", "/tmp/cli-gemini/runs/edit/repo/notes.md"],
    ]);
    expect(of(events, "agent.tool_result").map((result) => [result.isError, result.text])).toEqual([
      [false, "shell-ran\n?? shell-proof.txt"],
      [false, ""],
    ]);
    expect(of(events, "agent.usage")).toEqual([expect.objectContaining({ inputTokens: 480, outputTokens: 160 })]);
    expect(of(events, "agent.result")).toEqual([expect.objectContaining({ isError: false, subtype: "success", numTurns: 3, costUsd: null, text: "Wrote notes.md after checking the repo.", sessionId: "e79b04c8-6fa1-4f03-9586-f29e3d3b23b0" })]);
  });

  it("reads a resumed session, and a read-only run whose shell and write were not registered", () => {
    expect(of(parse(gemini, "gemini/resume.jsonl"), "agent.result")[0]).toMatchObject({ isError: false, sessionId: "3f0b6c1e-2a8d-4c57-9e1a-5d7c0b9a1f42" });
    const results = of(parse(gemini, "gemini/read-only.jsonl"), "agent.tool_result");
    expect(results.slice(0, 2).map((result) => [result.isError, String(result.text).slice(0, 30)])).toEqual([
      [true, 'Tool "run_shell_command" not f'],
      [true, 'Tool "write_file" not found. D'],
    ]);
  });

  it("reads a failed API as a failed result with the API's error", () => {
    const [result] = of(parse(gemini, "gemini/error.jsonl", 244), "agent.result");
    expect(result).toMatchObject({ isError: true, subtype: "unknown" });
    expect(result!.text).toContain("scripted failure");
  });

  it("excludes every tool that could write or escape in read-only runs, and passes everything in variables", () => {
    const plain = gemini.invocation(options({ model: "gemini-2.5-flash", credentials: { GEMINI_API_KEY: "k", GOOGLE_GEMINI_BASE_URL: "http://127.0.0.1:9" } }));
    expect(plain.command).toContain("--yolo");
    expect(plain.command).not.toContain("pwned");
    expect(plain.env).toMatchObject({ SORTIE_PROMPT: PROMPT, SORTIE_MODEL: "gemini-2.5-flash", GOOGLE_GEMINI_BASE_URL: "http://127.0.0.1:9", GEMINI_CLI_TRUST_WORKSPACE: "true" });
    expect(JSON.parse(plain.env.SORTIE_GEMINI_SETTINGS!).security.auth.selectedType).toBe("gemini-api-key");
    const readOnly = gemini.invocation(options({ readOnly: true, resumeSessionId: "s-1" }));
    expect(readOnly.command).not.toContain("--yolo");
    expect(readOnly.command).toContain('--resume "$SORTIE_RESUME"');
    expect(JSON.parse(readOnly.env.SORTIE_GEMINI_SETTINGS!).tools.exclude).toEqual(expect.arrayContaining(["run_shell_command", "write_file", "replace", "exit_plan_mode"]));
  });
});
