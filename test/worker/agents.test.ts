/**
 * Any agent CLI: a task (or each of its runs) picks `agent`. OpenCode runs
 * here for real against the same scripted Messages API stand-in as Claude
 * Code, and the Gemini CLI against a scripted Gemini API stand-in, so one
 * task can race them.
 */
import { describe, expect, it } from "vitest";
import { api, createTask, readEvents, scripted, waitForStatus } from "./helpers.ts";

const edit = [
  { tool: "Bash", input: { command: "ls && echo from-the-agent" } },
  { tool: "Write", input: { file_path: "AGENT.md", content: "written by the agent\n" } },
  { text: "Wrote AGENT.md." },
];

describe("OpenCode", () => {
  it("runs a task end to end: its stream becomes Sortie's events and its edit the diff", async () => {
    const created = await createTask({ agent: "opencode", prompt: scripted(edit) });
    expect(created.runs[0]!.agent).toBe("opencode");
    const task = await waitForStatus(created.id, ["succeeded", "failed"], 60_000);
    expect(task.status, JSON.stringify(task.runs[0]!.error)).toBe("succeeded");
    const events = await readEvents(created.id);
    expect(events.find((e) => e.type === "agent.init")?.data).toMatchObject({ agent: "opencode" });
    expect(events.filter((e) => e.type === "agent.tool_call").map((e) => e.data.name)).toEqual(["bash", "write"]);
    expect(events.find((e) => e.type === "agent.tool_result")?.data.text).toContain("from-the-agent");
    expect(events.find((e) => e.type === "agent.result")?.data).toMatchObject({ isError: false, text: "Wrote AGENT.md." });
    expect(task.runs[0]!.sessionId).toMatch(/^ses_/);
    expect(task.runs[0]!.inputTokens).toBeGreaterThan(0);
    const diff = await (await api(`/api/tasks/${created.id}/runs/0/diff`)).text();
    expect(diff).toContain("+written by the agent");
  });

  it("races Claude Code in one task: each run uses its own CLI, and both diffs come back", async () => {
    const created = await createTask({ runs: 2, variants: [{ agent: "claude-code" }, { agent: "opencode" }], prompt: scripted(edit) });
    const task = await waitForStatus(created.id, ["succeeded", "failed"], 60_000);
    expect(task.status, JSON.stringify(task.runs.map((r) => r.error))).toBe("succeeded");
    expect(task.runs.map((r) => r.agent)).toEqual(["claude-code", "opencode"]);
    const events = await readEvents(created.id);
    const names = (run: number) => events.filter((e) => e.run === run && e.type === "agent.tool_call").map((e) => e.data.name);
    expect(names(0)).toEqual(["Bash", "Write"]);
    expect(names(1)).toEqual(["bash", "write"]);
    for (const run of [0, 1]) expect(task.runs[run]!.diff?.files).toBe(1);
  });

  it("an analysis run under OpenCode answers, with edits and shell denied", async () => {
    const created = await createTask({ agent: "opencode", isolation: "analysis", prompt: scripted([{ tool: "Write", input: { file_path: "NOPE.md", content: "x\n" } }, { text: "Read only." }]) });
    const task = await waitForStatus(created.id, ["succeeded", "failed"], 60_000);
    expect(task.status, JSON.stringify(task.runs[0]!.error)).toBe("succeeded");
    expect(task.runs[0]!.diff).toBeNull();
    const events = await readEvents(created.id);
    // Write is not offered to a read-only OpenCode: the call fails as unavailable.
    expect(events.find((e) => e.type === "agent.tool_result")?.data).toMatchObject({ isError: true, text: expect.stringContaining("unavailable tool") });
  });

  it("an agent Sortie does not know is refused, naming the ones it does", async () => {
    const response = await api("/api/tasks", { method: "POST", body: JSON.stringify({ repo: "acme/widgets", prompt: "x", agent: "aider" }) });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { message: string } }).error.message).toMatch(/claude-code.*codex.*opencode.*gemini/);
  });
});

describe("the Gemini CLI", () => {
  const geminiEdit = [
    { tool: "run_shell_command", input: { command: "ls && echo from-gemini", description: "look around" } },
    { tool: "write_file", input: { file_path: "GEMINI.md", content: "written by gemini\n" } },
    { text: "Wrote GEMINI.md." },
  ];

  it("runs a task end to end with the Gemini API's key and endpoint, its edit the diff", async () => {
    const created = await createTask({ agent: "gemini", model: "gemini-2.5-flash", prompt: scripted(geminiEdit) });
    const task = await waitForStatus(created.id, ["succeeded", "failed"], 60_000);
    expect(task.status, JSON.stringify(task.runs[0]!.error)).toBe("succeeded");
    const events = await readEvents(created.id);
    expect(events.find((e) => e.type === "agent.init")?.data).toMatchObject({ agent: "gemini", model: "gemini-2.5-flash" });
    expect(events.filter((e) => e.type === "agent.tool_call").map((e) => e.data.name)).toEqual(["run_shell_command", "write_file"]);
    expect(events.find((e) => e.type === "agent.tool_result")?.data.text).toContain("from-gemini");
    expect(events.find((e) => e.type === "agent.result")?.data).toMatchObject({ isError: false, text: "Wrote GEMINI.md." });
    // No cost from the CLI: the estimate from its token counts stands.
    expect(task.runs[0]!.costUsd).toBeGreaterThan(0);
    const diff = await (await api(`/api/tasks/${created.id}/runs/0/diff`)).text();
    expect(diff).toContain("+written by gemini");
  });

  it("an analysis run under the Gemini CLI gets no shell and no write tool, and only the model API for a network", async () => {
    const created = await createTask({ agent: "gemini", model: "gemini-2.5-flash", isolation: "analysis", prompt: scripted(geminiEdit) });
    const task = await waitForStatus(created.id, ["succeeded", "failed"], 60_000);
    expect(task.status, JSON.stringify(task.runs[0]!.error)).toBe("succeeded");
    expect(task.runs[0]!.diff).toBeNull();
    const results = (await readEvents(created.id)).filter((e) => e.type === "agent.tool_result");
    expect(results.map((e) => e.data.isError)).toEqual([true, true]);
  });
});
