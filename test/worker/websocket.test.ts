import { abortAllDurableObjects } from "cloudflare:test";
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { signViewerToken } from "../../src/api/auth.ts";
import type { LoggedEvent } from "../../src/schema.ts";
import { foldTask, parseEvent } from "../../src/events.ts";
import { ADMIN, createTask, liveSandboxes, readEvents, scripted, waitForPhase, waitForStatus, watch } from "./helpers.ts";

async function until(check: () => boolean, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const steps = (n: number) =>
  Array.from({ length: n }, (_, i) => ({ tool: "Bash", input: { command: `echo step-${i} && node -e 'setTimeout(() => {}, 150)'` } }));

describe("the task WebSocket", () => {
  it("a reconnecting viewer gets every event exactly once", async () => {
    const task = await createTask({ prompt: scripted(steps(6)) });
    const first = await watch(new URL(task.ws).pathname + new URL(task.ws).search);
    expect(first.status).toBe(101);
    await until(() => first.events.some((e) => e.type === "agent.tool_result"));
    first.close();
    const lastSeen = first.events.at(-1)!.seq;

    const second = await watch(`/api/tasks/${task.id}/ws?after=${lastSeen}`, { authorization: `Bearer ${ADMIN}` });
    expect(second.status).toBe(101);
    await waitForStatus(task.id, ["succeeded", "failed"]);
    const all = await readEvents(task.id);
    await until(() => second.events.at(-1)?.seq === all.at(-1)!.seq);
    second.close();

    const seen = [...first.events.filter((e) => e.seq <= lastSeen), ...second.events].map((e) => e.seq);
    expect(seen).toEqual(all.map((e) => e.seq));
    expect(second.events[0]!.seq).toBe(lastSeen + 1);
  });

  it("a viewer that connects late replays the whole log", async () => {
    const task = await createTask({ prompt: scripted([{ text: "quick" }]) });
    await waitForStatus(task.id, ["succeeded"]);
    const viewer = await watch(`/api/tasks/${task.id}/ws`, { authorization: `Bearer ${ADMIN}` });
    const all = await readEvents(task.id);
    await until(() => viewer.events.length === all.length);
    expect(viewer.events.map((e) => e.seq)).toEqual(all.map((e) => e.seq));
    viewer.close();
  });

  it("refuses an unauthenticated, wrong-task, expired or forged upgrade with 401", async () => {
    const task = await createTask({ prompt: scripted([{ text: "quick" }]) });
    const other = await createTask({ prompt: scripted([{ text: "other" }]) });
    const otherToken = new URL(other.ws).searchParams.get("token")!;
    const expired = await signViewerToken(ADMIN, task.id, 60, Date.now() - 3_600_000);
    const forged = await signViewerToken("not-the-admin-token", task.id, 600);
    expect((await watch(`/api/tasks/${task.id}/ws`)).status).toBe(401);
    expect((await watch(`/api/tasks/${task.id}/ws?token=${encodeURIComponent(otherToken)}`)).status).toBe(401);
    expect((await watch(`/api/tasks/${task.id}/ws?token=${encodeURIComponent(expired)}`)).status).toBe(401);
    expect((await watch(`/api/tasks/${task.id}/ws?token=${encodeURIComponent(forged)}`)).status).toBe(401);
    expect((await watch(`/api/tasks/${task.id}/ws`, { authorization: "Bearer wrong" })).status).toBe(401);
    const valid = new URL(task.ws);
    expect((await watch(valid.pathname + valid.search)).status).toBe(101);
    await waitForStatus(task.id, ["succeeded"]);
    await waitForStatus(other.id, ["succeeded"]);
  });

  it("state changes reach viewers as agent state messages", async () => {
    const task = await createTask({ prompt: scripted([{ text: "quick" }]) });
    const response = await exports.default.fetch(new Request(`https://sortie.test/api/tasks/${task.id}/ws`, { headers: { upgrade: "websocket", authorization: `Bearer ${ADMIN}` } }));
    const socket = response.webSocket!;
    socket.accept();
    const statuses: string[] = [];
    const seqs: number[] = [];
    socket.addEventListener("message", (message) => {
      const parsed = JSON.parse(message.data as string) as { type: string; seq?: number; state?: { status: string } };
      if (parsed.type === "cf_agent_state" && parsed.state) {
        statuses.push(parsed.state.status);
        seqs.push(parsed.seq!);
      }
    });
    await waitForStatus(task.id, ["succeeded"]);
    await until(() => statuses.at(-1) === "succeeded");
    socket.close();
    // Each state is the fold of the log up to its `seq`: the last one is the whole log's.
    expect(seqs.every((seq, i) => Number.isInteger(seq) && seq >= (seqs[i - 1] ?? 1))).toBe(true);
    const events = await readEvents(task.id);
    expect(foldTask(events.slice(0, seqs.at(-1)!).map((event) => parseEvent(event))).status).toBe("succeeded");
  });
});

describe("a task agent reset mid-run", () => {
  it("re-attaches to the running agent process and finishes with a contiguous log", async () => {
    const task = await createTask({ prompt: scripted(steps(8)) });
    await waitForPhase(task.id, "agent");
    await new Promise((resolve) => setTimeout(resolve, 700));
    // A hard reset, as a crash or deploy would do: in-memory work is gone, storage stays.
    await abortAllDurableObjects();
    const done = await waitForStatus(task.id, ["succeeded", "failed"]);
    expect(done.status, JSON.stringify(done.error)).toBe("succeeded");
    const events = await readEvents(task.id);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    expect(events.some((e) => e.type === "run.reattach")).toBe(true);
    const outputs = events.filter((e) => e.type === "agent.tool_result").map((e) => e.data.text);
    expect(outputs).toEqual(Array.from({ length: 8 }, (_, i) => `step-${i}`));
    expect(events.filter((e) => e.type === "agent.result")).toHaveLength(1);
    await until(() => events.length > 0);
    const deadline = Date.now() + 5000;
    while ((await liveSandboxes()).includes(`${task.id}-0`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(await liveSandboxes()).not.toContain(`${task.id}-0`);
  });
});
