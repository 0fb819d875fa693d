/**
 * The task is the fold of its event log (src/events.ts): what the API serves
 * after the task agent is evicted mid-run is what its log says, and the run
 * goes on from there.
 */
import { abortAllDurableObjects, evictDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { api, createTask, expectServedIsFold, getTask, historyOf, readEvents, scripted, waitForPhase, waitForStatus } from "./helpers.ts";

describe("the task is the fold of its log", () => {
  it("after a hard reset mid-run, the served state is the fold, and the run goes on to the end", async () => {
    const created = await createTask({
      prompt: scripted([{ tool: "Bash", input: { command: "node -e 'setTimeout(() => {}, 12000)'" } }, { tool: "Write", input: { file_path: "EVICTED.md", content: "after\n" } }, { text: "done" }]),
    });
    await waitForPhase(created.id, "agent");
    // Evicted once the log holds some of the agent's output (its session, its usage).
    let before = await getTask(created.id);
    for (let i = 0; i < 200 && (!before.runs[0]!.sessionId || before.runs[0]!.inputTokens === 0); i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      before = await getTask(created.id);
    }
    expect(before.runs[0]!.sessionId).not.toBeNull();
    // As a crash or a deploy would: in-memory work is gone, storage stays.
    await abortAllDurableObjects();

    // The first request wakes a new instance, which knows the task only from its log.
    const served = await getTask(created.id);
    expect(served.runs[0]!).toMatchObject({ status: "running", sessionId: before.runs[0]!.sessionId, baseCommit: before.runs[0]!.baseCommit, startedAt: before.runs[0]!.startedAt });
    expect(served.runs[0]!.inputTokens).toBeGreaterThanOrEqual(before.runs[0]!.inputTokens);
    await expectServedIsFold(created.id);

    const done = await waitForStatus(created.id, ["succeeded", "failed"], 60_000);
    expect(done.status).toBe("succeeded");
    expect(done.runs[0]!.diff?.files).toBe(1);
    const types = (await readEvents(created.id)).map((event) => event.type);
    expect(types).toContain("run.reattach");
    expect(types.filter((type) => type === "task.created")).toHaveLength(1);
  });

  it("after an eviction, a kept run's state comes back from the log, and a follow-up reopens it", async () => {
    const created = await createTask({ keepWorkspaceMinutes: 5, prompt: scripted([{ tool: "Write", input: { file_path: "first.txt", content: "1\n" } }, { text: "first done" }, { tool: "Write", input: { file_path: "second.txt", content: "2\n" } }, { text: "second done" }]) });
    const first = await waitForStatus(created.id, ["succeeded", "failed"], 60_000);
    expect(first.status).toBe("succeeded");
    await evictDurableObject(env.TaskAgent.get(env.TaskAgent.idFromName(created.id)));
    const served = await getTask(created.id);
    expect(historyOf(served)).toEqual(historyOf(first));
    expect((await api(`/api/tasks/${created.id}/messages`, { method: "POST", body: JSON.stringify({ text: "now the second file" }) })).status).toBe(202);
    const second = await waitForStatus(created.id, ["succeeded", "failed"], 60_000);
    expect(second.status).toBe("succeeded");
    expect(second.runs[0]!).toMatchObject({ sessionId: first.runs[0]!.sessionId, pendingMessages: 0, diff: { files: 2 } });
    expect(second.runs[0]!.numTurns).toBeGreaterThan(first.runs[0]!.numTurns!);
  });

  it("a winner a person picks is an event, and the state follows it", async () => {
    const created = await createTask({ prompt: scripted([{ tool: "Write", input: { file_path: "A.md", content: "a\n" } }, { text: "done" }]), runs: 2, keepWorkspaceMinutes: 5 });
    await waitForStatus(created.id, ["succeeded"], 60_000);
    expect((await api(`/api/tasks/${created.id}/winner`, { method: "POST", body: JSON.stringify({ run: 1 }) })).status).toBe(200);
    await expectServedIsFold(created.id);
    const picked = await getTask(created.id);
    expect(picked.winner).toMatchObject({ run: 1, by: "admin" });
    expect(picked.runs[0]!.workspaceUntil).toBeGreaterThan(Date.now());
  });
});
