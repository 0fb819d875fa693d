/**
 * Redaction everywhere anything leaves Sortie. A task's agent prints one
 * credential of each known shape and every secret value the deployment is
 * configured with; the task is published as a pull request and notifies a
 * Slack channel and a webhook. None of those values comes back out of the
 * event log (NDJSON and WebSocket), the task views, D1, the pull request,
 * Slack or the notification.
 */
import { env, exports } from "cloudflare:workers";
import { inject } from "vitest";
import { describe, expect, it } from "vitest";
import { secretValues } from "../../src/redact.ts";
import { SHAPED, inContext } from "../support/planted.ts";
import { api, createTask, readEvents, scripted, waitForStatus } from "./helpers.ts";

const SLACK = inject("slackUrl");

async function waitForPublication(id: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const task = (await (await api(`/api/tasks/${id}`)).json()) as { publication?: { status: string } };
    if (task.publication && ["succeeded", "failed"].includes(task.publication.status)) return;
    if (Date.now() > deadline) throw new Error(`publication of ${id} did not end`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function websocketFrames(id: string, count: number): Promise<string> {
  const socket = (await exports.default.fetch(new Request(`https://sortie.test/api/tasks/${id}/ws`, { headers: { upgrade: "websocket", authorization: "Bearer test-admin-token" } }))).webSocket!;
  const frames: string[] = [];
  socket.accept();
  socket.addEventListener("message", (m) => frames.push(m.data as string));
  const deadline = Date.now() + 5000;
  while (frames.join("\n").split('"seq":').length - 1 < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  socket.close();
  return frames.join("\n");
}

describe("redaction", () => {
  // Every secret this deployment holds (vitest.worker.config.ts), the GitHub App key line by line included.
  const configured = secretValues(env).filter((value) => !value.includes("\n"));

  it("no configured secret and no credential shape comes back out of anything Sortie sends", async () => {
    const shaped = Object.entries(SHAPED).map(([kind, value]) => inContext(kind, value).replace(/\n/g, " "));
    const printed = [...shaped, ...configured.map((value) => `configured: ${value}`)];
    const command = printed.map((line) => `echo '${line.replace(/'/g, "")}'`).join("; ");
    const steps = [
      { tool: "Bash", input: { command } },
      { tool: "Write", input: { file_path: "NOTES.md", content: "notes\n" } },
      { text: `Done. For the record: ${SHAPED.openaiProject} and ${SHAPED.google} and ${configured[0]}` },
    ];
    const created = await createTask({
      output: "pr",
      notify: { slackChannel: "C0REDACT01", webhook: `${SLACK}/respond/notify-redaction` },
      prompt: scripted(steps, `add notes (my key is ${SHAPED.anthropic})`),
    });
    await waitForStatus(created.id, ["succeeded", "failed"]);
    await waitForPublication(created.id);
    const events = await readEvents(created.id);
    expect(events.some((e) => e.type === "agent.tool_result")).toBe(true);

    const github = ((await (await fetch(`${env.GITHUB_API_URL}/__calls`)).json()) as { calls: { path: string; body?: unknown }[] }).calls;
    const pull = github.find((call) => call.path === "/repos/acme/widgets/pulls");
    expect(pull, "the pull request was opened").toBeDefined();
    const slack = ((await (await fetch(`${SLACK}/_calls`)).json()) as { calls: { path: string; body: { channel?: string } }[] }).calls;
    const ours = slack.filter((call) => call.body.channel === "C0REDACT01" || call.path.endsWith("notify-redaction"));
    expect(ours.some((call) => call.path.endsWith("notify-redaction")), "the webhook was notified").toBe(true);
    expect(ours.some((call) => call.body.channel === "C0REDACT01"), "the Slack channel was told").toBe(true);

    const outputs = {
      events: await (await api(`/api/tasks/${created.id}/events`)).text(),
      task: await (await api(`/api/tasks/${created.id}`)).text(),
      list: await (await api("/api/tasks")).text(),
      d1: JSON.stringify([
        await env.DB.prepare("SELECT * FROM tasks WHERE id = ?").bind(created.id).first(),
        (await env.DB.prepare("SELECT * FROM runs WHERE task_id = ?").bind(created.id).all()).results,
        (await env.DB.prepare("SELECT * FROM audit_log WHERE task_id = ?").bind(created.id).all()).results,
      ]),
      websocket: await websocketFrames(created.id, events.length),
      pullRequest: JSON.stringify(pull),
      slack: JSON.stringify(ours),
    };
    expect(outputs.events).toContain("[REDACTED]");
    expect(outputs.pullRequest).toContain("[REDACTED]");
    for (const [where, text] of Object.entries(outputs)) {
      for (const [kind, value] of Object.entries(SHAPED)) expect(text, `${kind} in ${where}`).not.toContain(value.split("\n")[0]);
      for (const value of configured) expect(text, `a configured secret in ${where}`).not.toContain(value);
    }
  });
});
