import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { api, createTask, liveSandboxes, getTask, readEvents, scripted, waitForPhase, waitForStatus } from "./helpers.ts";

/** Runs for a minute. (Claude Code refuses a bare `sleep N`.) */
const LONG_COMMAND = "node -e 'setTimeout(() => {}, 60000)'";

function expectContiguous(events: { seq: number }[]) {
  expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
}

describe("a task runs from queued to succeeded", () => {
  it("runs Claude Code in a sandbox, records every step, and serves the diff", async () => {
    const created = await createTask({
      prompt: scripted([
        { tool: "Write", input: { file_path: "NOTES.md", content: "# Notes\n\nhello\n" } },
        { tool: "Bash", input: { command: "printf '\\x89PNG\\x00\\x01\\xff' > pixel.bin && sed -i 's/widget/gadget/' src/widget.js" } },
        { text: "Wrote the notes." },
      ]),
    });
    expect(created.status).toBe("queued");
    expect(created.ws).toMatch(new RegExp(`^wss://sortie.test/api/tasks/${created.id}/ws\\?token=`));

    const task = await waitForStatus(created.id, ["succeeded", "failed"]);
    expect(task.status, JSON.stringify(task.error)).toBe("succeeded");
    const run = task.runs[0]!;
    expect(run).toMatchObject({ status: "succeeded", phase: null, numTurns: 3, branch: `sortie/${created.id}/0` });
    expect(run.costUsd).toBeGreaterThan(0);
    expect(run.baseCommit).toMatch(/^[0-9a-f]{40}$/);
    expect(run.diff).toMatchObject({ files: 3, additions: 4, deletions: 1 });

    const events = await readEvents(created.id);
    expectContiguous(events);
    const types = events.map((e) => e.type);
    expect(types.slice(0, 2)).toEqual(["task.created", "task.status"]);
    expect(types).toEqual(expect.arrayContaining(["agent.init", "agent.tool_call", "agent.tool_result", "agent.result", "run.diff", "sandbox.destroyed"]));
    const phases = events.filter((e) => e.type === "run.status").map((e) => e.data.phase ?? e.data.status);
    expect(phases).toEqual(["provisioning", "cloning", "agent", "diffing", "succeeded"]);
    expect(events.filter((e) => e.type === "agent.tool_call").map((e) => e.data.name)).toEqual(["Write", "Bash"]);

    const diff = await api(`/api/tasks/${created.id}/runs/0/diff`);
    expect(diff.status).toBe(200);
    expect(diff.headers.get("content-type")).toContain("text/x-diff");
    const patch = await diff.text();
    expect(patch).toContain("new file mode 100644");
    expect(patch).toContain("+++ b/NOTES.md");
    expect(patch).toContain("GIT binary patch");
    expect(patch).toContain("-export const widget = () => 'widget';");
    expect(patch).toContain("+export const gadget = () => 'widget';");
    expect(await liveSandboxes()).not.toContain(`${created.id}-0`);

    const later = await readEvents(created.id, events.length - 2);
    expect(later.map((e) => e.seq)).toEqual([events.length - 1, events.length]);
  });

  it("keeps the D1 index current and lists tasks newest first with filters and paging", async () => {
    const a = await createTask({ prompt: scripted([{ text: "nothing to do" }]) });
    const b = await createTask({ repo: "https://github.com/acme/widgets.git", prompt: scripted([{ text: "still nothing" }]) });
    await waitForStatus(a.id, ["succeeded"]);
    await waitForStatus(b.id, ["succeeded"]);
    const row = await env.DB.prepare("SELECT status, cost_usd, files FROM tasks WHERE id = ?").bind(a.id).first<{ status: string; cost_usd: number; files: number }>();
    expect(row).toMatchObject({ status: "succeeded", files: 0 });
    expect(row!.cost_usd).toBeGreaterThan(0);
    const runRow = await env.DB.prepare("SELECT status, num_turns FROM runs WHERE task_id = ? AND idx = 0").bind(a.id).first();
    expect(runRow).toMatchObject({ status: "succeeded", num_turns: 1 });

    const first = (await (await api("/api/tasks?limit=1&status=succeeded&repo=acme/widgets")).json()) as { tasks: { id: string }[]; nextCursor: string };
    expect(first.tasks.map((t) => t.id)).toEqual([b.id]);
    const second = (await (await api(`/api/tasks?limit=1&status=succeeded&repo=acme/widgets&cursor=${first.nextCursor}`)).json()) as { tasks: { id: string }[] };
    expect(second.tasks.map((t) => t.id)).toEqual([a.id]);
    const none = (await (await api("/api/tasks?status=cancelled")).json()) as { tasks: unknown[] };
    expect(none.tasks).toEqual([]);
  });

  it("brings the prompt to Claude Code byte for byte, shell metacharacters and all", async () => {
    const nasty = `--help "double" 'single' $(touch /tmp/sortie-pwned) \`id\` $HOME \\ ; | & \n second line`;
    const created = await createTask({ prompt: scripted([{ tool: "Bash", input: { command: "test ! -e /tmp/sortie-pwned && echo clean" } }], nasty) });
    const task = await waitForStatus(created.id, ["succeeded", "failed"]);
    expect(task.status).toBe("succeeded");
    const result = (await readEvents(created.id)).find((e) => e.type === "agent.tool_result");
    expect(result?.data.text).toBe("clean");
    expect(task.prompt).toBe(`${nasty}\n#!standin [{"tool":"Bash","input":{"command":"test ! -e /tmp/sortie-pwned && echo clean"}}]`);
  });

  it("checks out the requested branch", async () => {
    const created = await createTask({ branch: "develop", prompt: scripted([{ tool: "Bash", input: { command: "cat DEVELOP.md" } }]) });
    await waitForStatus(created.id, ["succeeded"]);
    const result = (await readEvents(created.id)).find((e) => e.type === "agent.tool_result");
    expect(result?.data.text).toBe("only on develop");
  });
});

describe("a task that cannot run ends truthfully", () => {
  it("fails with clone_failed for a repository that does not exist", async () => {
    const created = await createTask({ repo: "acme/missing", prompt: "anything" });
    const task = await waitForStatus(created.id, ["failed", "succeeded"]);
    expect(task.status).toBe("failed");
    expect(task.error?.code).toBe("clone_failed");
    expect(task.runs[0]!.error?.message).toMatch(/does not exist|not found|repository/i);
    expect(await liveSandboxes()).not.toContain(`${created.id}-0`);
    expect((await api(`/api/tasks/${created.id}/runs/0/diff`)).status).toBe(409);
  });

  it("fails when the agent reports an error result", async () => {
    const created = await createTask({ prompt: scripted([{ status: 400 }]) });
    const task = await waitForStatus(created.id, ["failed", "succeeded"]);
    expect(task.status).toBe("failed");
    expect(task.error?.code).toBe("agent_failed");
  });

  it("ends a run that used up its turns with reason budget", async () => {
    const created = await createTask({ maxTurns: 1, prompt: scripted([{ tool: "Bash", input: { command: "true" } }, { tool: "Bash", input: { command: "true" } }]) });
    const task = await waitForStatus(created.id, ["failed", "succeeded"]);
    expect(task.status).toBe("failed");
    expect(task.error).toMatchObject({ code: "budget", message: "the run used its 1 turns" });
  });
});

describe("cancel and timeout stop the run and destroy its sandbox", () => {
  it("cancels a running task", async () => {
    const created = await createTask({ prompt: scripted([{ tool: "Bash", input: { command: LONG_COMMAND } }]) });
    await waitForPhase(created.id, "agent");
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const response = await api(`/api/tasks/${created.id}/cancel`, { method: "POST" });
    expect(response.status).toBe(200);
    const task = (await response.json()) as Awaited<ReturnType<typeof getTask>>;
    expect(task.status).toBe("cancelled");
    expect(task.runs[0]).toMatchObject({ status: "cancelled", error: { code: "cancelled" } });
    expect(await liveSandboxes()).not.toContain(`${created.id}-0`);

    const again = await api(`/api/tasks/${created.id}/cancel`, { method: "POST" });
    expect(again.status).toBe(409);
    expect(((await again.json()) as { error: { code: string } }).error.code).toBe("task_finished");
    const events = await readEvents(created.id);
    expectContiguous(events);
    expect(events.at(-1)?.type).toBe("sandbox.destroyed");
    expect((await getTask(created.id)).status).toBe("cancelled");
  });

  it("times a task out by alarm", async () => {
    const created = await createTask({ timeoutMinutes: 0.05, prompt: scripted([{ tool: "Bash", input: { command: LONG_COMMAND } }]) });
    const task = await waitForStatus(created.id, ["timed_out", "succeeded", "failed"], 20_000);
    expect(task.status).toBe("timed_out");
    expect(task.error?.code).toBe("timeout");
    expect(await liveSandboxes()).not.toContain(`${created.id}-0`);
    const row = await env.DB.prepare("SELECT status FROM tasks WHERE id = ?").bind(created.id).first();
    expect(row).toMatchObject({ status: "timed_out" });
  });
});
