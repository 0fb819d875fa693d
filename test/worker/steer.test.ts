import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { TaskView } from "../../src/schema.ts";
import { api, createTask, liveSandboxes, readEvents, scripted, waitForPhase, waitForStatus } from "./helpers.ts";

const write = (file: string) => ({ tool: "Write", input: { file_path: file, content: `${file}\n` } });
const hold = (ms: number) => ({ tool: "Bash", input: { command: `node -e 'setTimeout(() => {}, ${ms})'` } });

async function say(id: string, body: Record<string, unknown>) {
  return api(`/api/tasks/${id}/messages`, { method: "POST", body: JSON.stringify(body) });
}

async function diffOf(id: string, run = 0) {
  return (await api(`/api/tasks/${id}/runs/${run}/diff`)).text();
}

describe("follow-up messages", () => {
  it("continue a finished run's session in the same workspace and add to its diff", async () => {
    const created = await createTask({ keepWorkspaceMinutes: 5, prompt: scripted([write("first.txt"), { text: "first done" }, write("second.txt"), { text: "second done" }]) });
    const first = await waitForStatus(created.id, ["succeeded", "failed"]);
    expect(first.status).toBe("succeeded");
    const session = first.runs[0]!.sessionId;
    expect(session).toBeTruthy();
    expect(first.runs[0]!.workspaceUntil).toBeGreaterThan(Date.now());
    expect(await liveSandboxes()).toContain(`${created.id}-0`);

    const response = await say(created.id, { text: "now add the second file" });
    expect(response.status).toBe(202);
    expect(((await response.json()) as TaskView).status).toBe("running");
    const second = await waitForStatus(created.id, ["succeeded", "failed"]);
    expect(second.status).toBe("succeeded");
    expect(second.runs[0]!.numTurns).toBeGreaterThan(first.runs[0]!.numTurns!);
    expect(second.runs[0]!.costUsd).toBeGreaterThan(first.runs[0]!.costUsd);
    const events = await readEvents(created.id);
    const inits = events.filter((e) => e.type === "agent.init").map((e) => e.data.sessionId);
    expect(inits).toEqual([session, session]);
    expect(events.some((e) => e.type === "run.message_delivered" && e.data.text === "now add the second file")).toBe(true);
    const patch = await diffOf(created.id);
    expect(patch).toContain("+++ b/first.txt");
    expect(patch).toContain("+++ b/second.txt");
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
  });

  it("wait for the running turn to end, then are delivered", async () => {
    const created = await createTask({ prompt: scripted([hold(2500), { text: "first done" }, write("later.txt"), { text: "second done" }]) });
    await waitForPhase(created.id, "agent");
    const response = await say(created.id, { text: "also add later.txt", run: 0 });
    expect(response.status).toBe(202);
    expect(((await response.json()) as TaskView).runs[0]!.pendingMessages).toBe(1);
    const task = await waitForStatus(created.id, ["succeeded", "failed"]);
    expect(task.status).toBe("succeeded");
    expect(task.runs[0]!.pendingMessages).toBe(0);
    expect(await diffOf(created.id)).toContain("+++ b/later.txt");
  });

  it("are refused once the workspace is gone, for a cancelled run, and for an unknown run", async () => {
    const created = await createTask({ prompt: scripted([{ text: "done" }]) });
    await waitForStatus(created.id, ["succeeded"]);
    const expired = await say(created.id, { text: "more" });
    expect(expired.status).toBe(409);
    expect(((await expired.json()) as { error: { code: string } }).error.code).toBe("workspace_expired");
    expect((await say(created.id, { text: "more", run: 3 })).status).toBe(400);
    expect((await say(created.id, { text: "" })).status).toBe(400);

    const long = await createTask({ prompt: scripted([hold(30_000)]) });
    await waitForPhase(long.id, "agent");
    await api(`/api/tasks/${long.id}/cancel`, { method: "POST" });
    expect((await say(long.id, { text: "more" })).status).toBe(409);
  });
});

describe("budgets", () => {
  it("stop a run whose spending crosses maxCostUsd, as failed with reason budget", async () => {
    const created = await createTask({ maxCostUsd: 0.002, prompt: scripted([hold(10), hold(10), hold(10), hold(10), hold(10), hold(10)]) });
    const task = await waitForStatus(created.id, ["failed", "succeeded"]);
    expect(task.status).toBe("failed");
    expect(task.error?.code).toBe("budget");
    expect(task.runs[0]!.inputTokens).toBeGreaterThan(0);
    expect(await liveSandboxes()).not.toContain(`${created.id}-0`);
    const calls = (await readEvents(created.id)).filter((e) => e.type === "agent.tool_call");
    expect(calls.length).toBeLessThan(6);
  });
});

describe("audit trail and usage", () => {
  it("records who created, messaged, picked and cancelled, append-only", async () => {
    const task = await createTask({ prompt: scripted([hold(30_000)]) });
    await waitForPhase(task.id, "agent");
    await api(`/api/tasks/${task.id}/cancel`, { method: "POST" });
    const response = await api(`/api/audit?task=${task.id}`);
    expect(response.status).toBe(200);
    const { entries } = (await response.json()) as { entries: { action: string; actor: string; source: string; taskId: string }[] };
    expect(entries.map((e) => e.action)).toEqual(["task.cancel", "task.create"]);
    expect(entries.every((e) => e.actor === "admin" && e.source === "api" && e.taskId === task.id)).toBe(true);
    await expect(env.DB.prepare("UPDATE audit_log SET actor = 'mallory'").run()).rejects.toThrow(/append-only/);
    await expect(env.DB.prepare("DELETE FROM audit_log").run()).rejects.toThrow(/append-only/);
  });

  it("reports cost, tokens, runs and minutes by creator and by repo", async () => {
    const from = Date.now();
    const tasks = await Promise.all([0, 1].map(() => createTask({ prompt: scripted([{ text: "counted" }]) })));
    const done = await Promise.all(tasks.map((t) => waitForStatus(t.id, ["succeeded"])));
    const response = await api(`/api/usage?from=${from}&to=${Date.now() + 1000}`);
    expect(response.status).toBe(200);
    const usage = (await response.json()) as { total: { runs: number; costUsd: number; inputTokens: number }; byCreator: { name: string; runs: number }[]; byRepo: { name: string; runs: number }[] };
    expect(usage.total.runs).toBe(2);
    expect(usage.total.costUsd).toBeCloseTo(done.reduce((sum, t) => sum + t.costUsd, 0), 6);
    expect(usage.total.inputTokens).toBeGreaterThan(0);
    expect(usage.byCreator).toEqual([expect.objectContaining({ name: "admin", runs: 2 })]);
    expect(usage.byRepo).toEqual([expect.objectContaining({ name: "acme/widgets", runs: 2 })]);
    expect((await api("/api/usage?from=soon")).status).toBe(400);
  });
});

describe("notify on finish", () => {
  it("posts the outcome to a webhook and a Slack channel", async () => {
    const standin = env.SLACK_API_URL.replace(/\/api$/, "");
    const hook = `${standin}/respond/notify-${Math.random().toString(36).slice(2)}`;
    const created = await createTask({ notify: { webhook: hook, slackChannel: "C0NOTIFY1" }, prompt: scripted([{ text: "notified" }]) });
    await waitForStatus(created.id, ["succeeded"]);
    const deadline = Date.now() + 10_000;
    type Call = { method: string; path: string; body: Record<string, unknown> };
    let calls: Call[] = [];
    while (Date.now() < deadline) {
      calls = ((await (await fetch(`${standin}/_calls`)).json()) as { calls: Call[] }).calls;
      if (calls.some((c) => c.path === new URL(hook).pathname) && calls.some((c) => c.method === "chat.postMessage" && c.body.channel === "C0NOTIFY1")) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const webhook = calls.find((c) => c.path === new URL(hook).pathname);
    expect(webhook?.body).toMatchObject({ id: created.id, status: "succeeded", repo: "acme/widgets" });
    const slack = calls.find((c) => c.method === "chat.postMessage" && c.body.channel === "C0NOTIFY1");
    expect(String(slack?.body.text)).toContain(created.id);
    const events = await readEvents(created.id);
    expect(events.filter((e) => e.type === "notify.sent")).toHaveLength(2);
  });

  it("refuses a notify without a target", async () => {
    const response = await api("/api/tasks", { method: "POST", body: JSON.stringify({ repo: "acme/widgets", prompt: "x", notify: {} }) });
    expect(response.status).toBe(400);
  });
});
