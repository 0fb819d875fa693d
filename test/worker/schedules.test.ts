import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { api, countTasks, getTask, scripted, waitForPhase, waitForStatus } from "./helpers.ts";

interface ScheduleView {
  id: string;
  cron: string;
  nextAt: number;
  lastTaskId: string | null;
  ticks: number;
  skipped: number;
}

async function createSchedule(body: unknown): Promise<Response> {
  return api("/api/schedules", { method: "POST", body: JSON.stringify(body) });
}

async function schedule(id: string): Promise<ScheduleView> {
  const response = await api(`/api/schedules/${id}`);
  expect(response.status).toBe(200);
  return (await response.json()) as ScheduleView;
}

/** Makes the schedule's cron tick due now and runs the Durable Object's alarm, as the platform would at the minute. */
async function tick(id: string): Promise<void> {
  const stub = env.ScheduleAgent.get(env.ScheduleAgent.idFromName(id));
  await runInDurableObject(stub, (_agent, state) => {
    state.storage.sql.exec("UPDATE cf_agents_jobs SET time = ? WHERE fn = 'tick'", Date.now() - 1);
  });
  expect(await runDurableObjectAlarm(stub)).toBe(true);
}

describe("schedules", () => {
  it("refuse an invalid cron or task with a 400 that says why, and create nothing", async () => {
    const task = { repo: "acme/widgets", prompt: "nightly" };
    for (const [cron, reason] of [["every day", "5 fields"], ["61 * * * *", "invalid cron"], ["* * * * * *", "5 fields"]] as const) {
      const response = await createSchedule({ cron, task });
      expect(response.status).toBe(400);
      const { error } = (await response.json()) as { error: { code: string; message: string } };
      expect(error.code).toBe("invalid_cron");
      expect(error.message).toContain(reason);
    }
    expect((await createSchedule({ cron: "0 3 * * *", task: { repo: "nope", prompt: "x" } })).status).toBe(400);
    expect((await createSchedule({ cron: "0 3 * * *", task: { repo: "acme/widgets" } })).status).toBe(400);
    expect(((await (await api("/api/schedules")).json()) as { schedules: unknown[] }).schedules).toEqual([]);
  });

  it("create a task at each tick through the alarm, and skip a tick while the last task runs", async () => {
    const before = await countTasks();
    const created = await createSchedule({ cron: "*/5 * * * *", task: { repo: "acme/widgets", prompt: scripted([{ tool: "Bash", input: { command: "node -e 'setTimeout(() => {}, 30000)'" } }]) } });
    expect(created.status).toBe(201);
    const { id, nextAt } = (await created.json()) as ScheduleView;
    expect(nextAt).toBeGreaterThan(Date.now());
    expect((await schedule(id)).ticks).toBe(0);

    await tick(id);
    const first = await schedule(id);
    expect(first).toMatchObject({ ticks: 1, skipped: 0 });
    const task = await getTask(first.lastTaskId!);
    expect(task.source).toBe("schedule");
    expect(task.createdBy).toBe(`schedule:${id}`);
    await waitForPhase(task.id, "agent");

    await tick(id);
    expect(await schedule(id)).toMatchObject({ ticks: 2, skipped: 1, lastTaskId: task.id });
    expect(await countTasks()).toBe(before + 1);

    await api(`/api/tasks/${task.id}/cancel`, { method: "POST" });
    await tick(id);
    const third = await schedule(id);
    expect(third).toMatchObject({ ticks: 3, skipped: 1 });
    expect(third.lastTaskId).not.toBe(task.id);
    await api(`/api/tasks/${third.lastTaskId}/cancel`, { method: "POST" });
    await waitForStatus(third.lastTaskId!, ["cancelled"]);
  });

  it("stop ticking once deleted", async () => {
    const created = (await (await createSchedule({ cron: "0 3 * * 1", task: { repo: "acme/widgets", prompt: "weekly" } })).json()) as ScheduleView;
    expect(((await (await api("/api/schedules")).json()) as { schedules: ScheduleView[] }).schedules.map((s) => s.id)).toContain(created.id);
    const deleted = await api(`/api/schedules/${created.id}`, { method: "DELETE" });
    expect(deleted.status).toBe(200);
    expect((await api(`/api/schedules/${created.id}`)).status).toBe(404);
    const stub = env.ScheduleAgent.get(env.ScheduleAgent.idFromName(created.id));
    expect(await runDurableObjectAlarm(stub)).toBe(false);
  });
});
