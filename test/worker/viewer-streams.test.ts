/**
 * Fan-out of a fast stream over real WebSockets: batched frames, each event
 * once and in order at every viewer, and a viewer that stops reading holding
 * up nobody. The agent's output is simulated by recording events straight
 * into the TaskAgent (runInDurableObject), as a CLI printing as fast as it
 * can would: the public surface cannot print 3,000 lines in a moment.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { TaskAgent } from "../../src/agents/task-agent.ts";
import { LIMITS } from "../../src/config.ts";
import type { LoggedEvent } from "../../src/schema.ts";
import { ADMIN, createTask, readEvents, scripted, waitForStatus, watch } from "./helpers.ts";

const LINES = 3000;
/** About 600 bytes a line: 3,000 lines are well past one viewer's backlog cap. */
const line = (i: number) => `line ${i} ${"x".repeat(580)}`;

/** What the test reaches into: how the agent records a parsed output line, and its viewer registry. */
interface Inside {
  record(input: { run: number | null; type: string; data: Record<string, unknown> }, options: { batched: boolean }): void;
  viewers: { counts(): { viewers: number; behind: number } };
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A finished task with viewers on it, and a way to make its agent print `LINES` lines at once. */
async function watchedTask(viewers: number, deflating = 0) {
  const task = await createTask({ prompt: scripted([{ text: "quick" }]) });
  await waitForStatus(task.id, ["succeeded"]);
  // The first `deflating` ask for deflated events frames, as the web viewer and the CLI do.
  const list = await Promise.all(Array.from({ length: viewers }, (_, i) => watch(`/api/tasks/${task.id}/ws${i < deflating ? "?frames=deflate" : ""}`, { authorization: `Bearer ${ADMIN}` })));
  const before = (await readEvents(task.id)).length;
  await until(() => list.every((viewer) => viewer.events.length === before));
  const stub = env.TaskAgent.get(env.TaskAgent.idFromName(task.id));
  const inside = <T,>(fn: (agent: Inside) => T) => runInDurableObject(stub, (instance: TaskAgent) => fn(instance as unknown as Inside));
  const print = () =>
    inside((agent) => {
      for (let i = 0; i < LINES; i++) agent.record({ run: 0, type: "log", data: { stream: "stdout", text: line(i) } }, { batched: true });
    });
  return { task, list, before, inside, print };
}

const seqsOf = (events: LoggedEvent[]) => events.map((event) => event.seq);

describe("a fast stream to several viewers", () => {
  it("reaches every viewer in batched frames, deflated or not, each event exactly once and in order, equal to GET /events", async () => {
    const { task, list, before, print } = await watchedTask(4, 2);
    const framesBefore = list.map((viewer) => viewer.frames.length);
    await print();
    const log = await readEvents(task.id);
    expect(log).toHaveLength(before + LINES);
    await until(() => list.every((viewer) => viewer.events.length === log.length));
    for (const [i, viewer] of list.entries()) {
      expect(seqsOf(viewer.events)).toEqual(seqsOf(log));
      expect(viewer.events).toEqual(log);
      // Batched: 3,000 events came in a handful of frames, not one each.
      expect(viewer.frames.length - framesBefore[i]!).toBeLessThanOrEqual(Math.ceil(LINES / LIMITS.viewerCatchUpPage) + 2);
    }
    // The deflating ones got every events frame deflated, in fewer bytes than the text ones.
    expect(list.map((viewer) => viewer.deflated > 0)).toEqual([true, true, false, false]);
    expect(list[0]!.bytes).toBeLessThan(list[2]!.bytes / 2);
    for (const viewer of list) viewer.close();
  });

  it("a viewer that stops reading holds up nobody, gets no more than its backlog cap, and catches up by seq", async () => {
    const { task, list, before, inside, print } = await watchedTask(3);
    const [reader, stalled, other] = list as [Awaited<ReturnType<typeof watch>>, Awaited<ReturnType<typeof watch>>, Awaited<ReturnType<typeof watch>>];
    stalled.stall();
    const stalledBytes = stalled.bytes;
    await print();
    const log = await readEvents(task.id);
    expect(log).toHaveLength(before + LINES);

    // The readers get everything while the stalled viewer still reads nothing.
    await until(() => reader.events.length === log.length && other.events.length === log.length);
    expect(reader.events).toEqual(log);
    expect(other.events).toEqual(log);
    expect(await inside((agent) => agent.viewers.counts())).toEqual({ viewers: 3, behind: 1 });
    // Bounded: what was sent to it unread is the cap plus at most one frame (what waited, up to LIMITS.viewerFrameBytes,
    // and the batch that made it go: LIMITS.eventBatchMax events of ~600 bytes).
    const sentWhileStalled = stalled.bytes - stalledBytes;
    expect(sentWhileStalled).toBeLessThanOrEqual(LIMITS.viewerBacklogBytes + LIMITS.viewerFrameBytes + LIMITS.eventBatchMax * 700);
    expect(stalled.events.length).toBeLessThan(log.length);

    stalled.resume();
    await until(() => stalled.events.length === log.length);
    expect(stalled.events).toEqual(log);
    expect(await inside((agent) => agent.viewers.counts())).toEqual({ viewers: 3, behind: 0 });

    // Once caught up it is live again: the next event reaches it like the others.
    await inside((agent) => agent.record({ run: null, type: "log", data: { stream: "stdout", text: "after" } }, { batched: false }));
    await until(() => list.every((viewer) => viewer.events.at(-1)?.data.text === "after"));
    expect(seqsOf(stalled.events)).toEqual([...seqsOf(log), log.length + 1]);
    for (const viewer of list) viewer.close();
  });
});
