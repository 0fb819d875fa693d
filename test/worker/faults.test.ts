/**
 * Failure injection: for each fault, the task reaches a truthful terminal
 * state with its cause, its events stay contiguous, no sandbox is left
 * behind, and nothing is duplicated.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { api, createTask, liveSandboxes, readEvents, scripted, waitForPhase, waitForSession, waitForStatus } from "./helpers.ts";

const hold = (ms: number) => ({ tool: "Bash", input: { command: `node -e 'setTimeout(() => {}, ${ms})'` } });

async function expectTidy(id: string) {
  const events = await readEvents(id);
  expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
  expect(events.filter((e) => e.type === "task.status" && ["succeeded", "failed", "cancelled", "timed_out"].includes(String(e.data.status)))).toHaveLength(1);
  expect((await liveSandboxes()).filter((s) => s.startsWith(id))).toEqual([]);
  return events;
}

describe("faults", () => {
  it("the Messages API overloaded for a while, then recovering: the run retries and succeeds", async () => {
    const created = await createTask({ prompt: scripted([{ status: 529, failTimes: 2, text: "made it" }]) });
    const task = await waitForStatus(created.id, ["succeeded", "failed"], 45_000);
    expect(task.status).toBe("succeeded");
    const events = await expectTidy(created.id);
    expect(events.filter((e) => e.type === "agent.retry").length).toBeGreaterThanOrEqual(2);
    expect(events.find((e) => e.type === "agent.text")?.data.text).toBe("made it");
  });

  it("the Messages API never recovering: the task's time limit ends it, with the cause", async () => {
    const created = await createTask({ timeoutMinutes: 0.1, prompt: scripted([{ status: 529 }]) });
    const task = await waitForStatus(created.id, ["succeeded", "failed", "timed_out"], 45_000);
    expect(task.status).toBe("timed_out");
    expect(task.error?.code).toBe("timeout");
    const events = await expectTidy(created.id);
    expect(events.some((e) => e.type === "agent.retry")).toBe(true);
  });

  it("the sandbox vanishing mid-run (its host lost it): the run fails and says so", async () => {
    const created = await createTask({ prompt: scripted([hold(30_000)]) });
    // The agent's own process, not one of the commands the run makes before it.
    await waitForSession(created.id);
    await new Promise((resolve) => setTimeout(resolve, 500));
    await fetch(`${env.LOCAL_SANDBOX_URL}/v1/sandboxes/${created.id}-0`, { method: "DELETE", headers: { authorization: `Bearer ${env.LOCAL_SANDBOX_TOKEN}` } });
    const task = await waitForStatus(created.id, ["failed", "succeeded"]);
    expect(task.status).toBe("failed");
    expect(["agent_no_result", "sandbox_unavailable"]).toContain(task.error?.code);
    await expectTidy(created.id);
  });

  it("a clone that fails: no retry for a repository that is not there, and a clear cause", async () => {
    const created = await createTask({ repo: "acme/nowhere", prompt: "x" });
    const task = await waitForStatus(created.id, ["failed", "succeeded"]);
    expect(task.error?.code).toBe("clone_failed");
    expect(task.runs[0]!.attempts).toEqual([]);
    await expectTidy(created.id);
  });

  it("Claude Code exiting non-zero on a bad request: failed with the agent's cause", async () => {
    const created = await createTask({ prompt: scripted([{ status: 400 }]) });
    const task = await waitForStatus(created.id, ["failed", "succeeded"]);
    expect(task.error?.code).toBe("agent_failed");
    await expectTidy(created.id);
  });
});

describe("the D1 index failing", () => {
  it("a failed index write is retried: the listing catches up with the task's real state", async () => {
    const { runInDurableObject } = await import("cloudflare:test");
    const created = await createTask({ prompt: scripted([hold(1500), { text: "done" }]) });
    await waitForPhase(created.id, "agent");
    const stub = env.TaskAgent.get(env.TaskAgent.idFromName(created.id));
    // D1 refuses the agent's next write (the one that records the end), once.
    await runInDurableObject(stub, (instance) => {
      // `env` is protected on the agent: the test reaches past that to swap in a flaky D1.
      const agent = instance as unknown as { env: Cloudflare.Env };
      const real = agent.env.DB;
      let failed = false;
      const flaky = new Proxy(real, {
        get(target, property) {
          if (property === "batch" && !failed) {
            failed = true;
            return async () => {
              throw new Error("D1 is unavailable (injected)");
            };
          }
          const value = Reflect.get(target, property) as unknown;
          return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
        },
      });
      Object.defineProperty(agent, "env", { value: { ...agent.env, DB: flaky }, configurable: true });
    });
    const task = await waitForStatus(created.id, ["succeeded", "failed"]);
    expect(task.status).toBe("succeeded");
    const events = await readEvents(created.id);
    expect(events.some((e) => e.type === "index.error")).toBe(true);
    const deadline = Date.now() + 15_000;
    let row: { status: string } | null = null;
    while (Date.now() < deadline) {
      row = await env.DB.prepare("SELECT status FROM tasks WHERE id = ?").bind(created.id).first<{ status: string }>();
      if (row?.status === "succeeded") break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(row?.status).toBe("succeeded");
    await expectTidy(created.id);
  });
});
