import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { claimShardOf, claimsOf, fleetOf } from "../../src/agents/fleet.ts";
import { planTask, startTasks } from "../../src/agents/launch.ts";
import { CreateTaskBody, type TaskView } from "../../src/schema.ts";
import { api, countTasks, createTask, getTask, liveSandboxes, readEvents, scripted, waitForPhase, waitForSession, waitForStatus } from "./helpers.ts";

const hold = (ms: number) => ({ tool: "Bash", input: { command: `node -e 'setTimeout(() => {}, ${ms})'` } });
const script = (steps: unknown[]) => `#!standin ${JSON.stringify(steps)}`;

async function localHost(path: string, init: RequestInit = {}) {
  return fetch(`${env.LOCAL_SANDBOX_URL}${path}`, { ...init, headers: { authorization: `Bearer ${env.LOCAL_SANDBOX_TOKEN}` } });
}

/** Slots are given back just after a run ends (once its sandbox is gone): wait a moment for that. */
async function expectFleetDrained() {
  const deadline = Date.now() + 5000;
  while ((await (await fleetOf(env)).stats()).live > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  expect(await (await fleetOf(env)).stats()).toMatchObject({ live: 0, queued: 0 });
}

async function errorCode(response: Response) {
  return ((await response.json()) as { error: { code: string; message: string } }).error;
}

describe("parallel runs of one task", () => {
  it("gives each run its own sandbox, clone and branch, and N distinct diffs", async () => {
    const created = await createTask({
      prompt: "write your file",
      runs: 3,
      variants: [0, 1, 2].map((n) => ({ prompt_suffix: script([{ tool: "Write", input: { file_path: `run-${n}.txt`, content: `attempt ${n}\n` } }]) })),
    });
    expect(created.runs.map((r) => r.branch)).toEqual([0, 1, 2].map((n) => `sortie/${created.id}/${n}`));
    const task = await waitForStatus(created.id, ["succeeded", "failed"]);
    expect(task.status).toBe("succeeded");
    for (const run of task.runs) {
      expect(run).toMatchObject({ status: "succeeded", diff: { files: 1, additions: 1, deletions: 0 } });
      expect(run.costUsd).toBeGreaterThan(0);
      expect(run.durationMs).toBeGreaterThan(0);
      const patch = await (await api(`/api/tasks/${created.id}/runs/${run.index}/diff`)).text();
      expect(patch).toContain(`+++ b/run-${run.index}.txt`);
      expect(patch.match(/^diff --git/gm)).toHaveLength(1);
    }
    const events = await readEvents(created.id);
    const cwds = events.filter((e) => e.type === "agent.init").map((e) => [e.run, e.data.cwd]);
    expect(new Set(cwds.map(([run]) => run))).toEqual(new Set([0, 1, 2]));
    expect(new Set(cwds.map(([, cwd]) => cwd)).size).toBe(3);
    expect(events.filter((e) => e.type === "sandbox.destroyed").map((e) => e.data.sandbox).sort()).toEqual([0, 1, 2].map((n) => `${created.id}-${n}`));
    expect(task.costUsd).toBeCloseTo(task.runs.reduce((sum, r) => sum + r.costUsd, 0), 6);
  });

  it("has a judge rank the diffs, stores its verdict and winner, and lets a user pick another", async () => {
    const verdict = { winner: 1, ranking: [1, 0], reasons: "Run 1 also updates the README." };
    const created = await createTask({
      prompt: `improve the docs\n#!standin-judge ${JSON.stringify([{ text: JSON.stringify(verdict) }])}`,
      runs: 2,
      judge: true,
      variants: [
        { prompt_suffix: script([{ tool: "Write", input: { file_path: "DOCS.md", content: "docs\n" } }]) },
        { prompt_suffix: script([{ tool: "Bash", input: { command: "echo docs > DOCS.md && echo more >> README.md" } }]) },
      ],
    });
    const task = await waitForStatus(created.id, ["succeeded", "failed"]);
    expect(task.judge).toMatchObject({ status: "succeeded", winner: 1, ranking: [1, 0], reasons: verdict.reasons });
    expect(task.winner).toMatchObject({ run: 1, by: "judge" });
    const events = await readEvents(created.id);
    const judgeInit = events.find((e) => e.type === "judge.init");
    expect(judgeInit?.data.cwd).toMatch(/\/candidates$/);
    expect(events.filter((e) => e.type === "sandbox.destroyed").map((e) => e.data.sandbox)).toContain(`${created.id}-judge`);

    const pick = await api(`/api/tasks/${created.id}/winner`, { method: "POST", body: JSON.stringify({ run: 0 }) });
    expect(pick.status).toBe(200);
    expect(((await pick.json()) as TaskView).winner).toMatchObject({ run: 0, by: "admin" });
    const unknown = await api(`/api/tasks/${created.id}/winner`, { method: "POST", body: JSON.stringify({ run: 5 }) });
    expect(unknown.status).toBe(400);
    expect((await errorCode(unknown)).code).toBe("invalid_winner");
    expect((await api(`/api/tasks/${created.id}/winner`, { method: "POST", body: JSON.stringify({ run: "one" }) })).status).toBe(400);
  });

  it("refuses bad runs, variants and winners with a 400 and creates nothing", async () => {
    const before = await countTasks();
    for (const body of [
      { runs: 0 },
      { runs: 99 },
      { runs: 1.5 },
      { runs: 2, variants: [{ model: 5 }] },
      { runs: 2, variants: [{ colour: "red" }] },
      { runs: 1, variants: [{}, {}] },
      { variants: "fast" },
      { supersede: true },
      { key: "has space" },
    ]) {
      const response = await api("/api/tasks", { method: "POST", body: JSON.stringify({ repo: "acme/widgets", prompt: "x", ...body }) });
      expect(response.status, JSON.stringify(body)).toBe(400);
    }
    expect(await countTasks()).toBe(before);
  });
});

describe("the fleet", () => {
  it("never has more live sandboxes than the cap under a burst, and queued runs show their position", async () => {
    const cap = Number(env.MAX_SANDBOXES);
    const burst = await Promise.all(Array.from({ length: cap + 3 }, () => createTask({ prompt: scripted([hold(1200)]) })));
    const ids = new Set(burst.map((t) => t.id));
    const queued = (await Promise.all(burst.map((t) => getTask(t.id)))).flatMap((t) => t.runs).filter((r) => r.status === "queued");
    expect(queued.length).toBeGreaterThan(0);
    expect(queued.every((r) => typeof r.queuePosition === "number" && r.queuePosition > 0)).toBe(true);
    let most = 0;
    for (;;) {
      const live = (await liveSandboxes()).filter((s) => ids.has(s.replace(/-\d+$/, ""))).length;
      most = Math.max(most, live);
      const stats = await (await fleetOf(env)).stats();
      expect(stats.live).toBeLessThanOrEqual(cap);
      const tasks = await Promise.all(burst.map((t) => getTask(t.id)));
      if (tasks.every((t) => t.status === "succeeded")) break;
      expect(tasks.every((t) => !["failed", "cancelled", "timed_out"].includes(t.status))).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(most).toBeLessThanOrEqual(cap);
    expect(most).toBeGreaterThan(1);
    await expectFleetDrained();
  });

  it("gives the next free slot to the creator with the fewest live runs", async () => {
    const cap = Number(env.MAX_SANDBOXES);
    const launch = async (creator: string, prompt: string) => {
      const started = await startTasks(env, { specs: [planTask(env, { body: CreateTaskBody.parse({ repo: "acme/widgets", prompt }), source: "api", createdBy: creator })], starter: { name: creator } });
      if (!("tasks" in started)) throw new Error("a start without an idempotency key is never a replay");
      return started.tasks[0]!;
    };
    const fillers = [];
    for (let i = 0; i < cap; i++) fillers.push(await launch("alice", scripted([hold(1500 + i * 300)])));
    const aliceLater = [await launch("alice", scripted([{ text: "alice 1" }])), await launch("alice", scripted([{ text: "alice 2" }]))];
    const bob = await launch("bob", scripted([{ text: "bob" }]));
    const ends = await Promise.all([...fillers, ...aliceLater, bob].map((t) => waitForStatus(t.id, ["succeeded", "failed"])));
    expect(ends.every((t) => t.status === "succeeded")).toBe(true);
    const started = (id: string) => ends.find((t) => t.id === id)!.runs[0]!.startedAt!;
    expect(started(bob.id)).toBeLessThan(started(aliceLater[0]!.id));
    expect(started(aliceLater[0]!.id)).toBeLessThanOrEqual(started(aliceLater[1]!.id));
  });

  it("holds a claim on a key: 409 naming the holder, supersede, and release at the end", async () => {
    const key = "github:acme/widgets#123";
    const holder = await createTask({ key, prompt: scripted([hold(20_000)]) });
    const refused = await api("/api/tasks", { method: "POST", body: JSON.stringify({ repo: "acme/widgets", prompt: "again", key }) });
    expect(refused.status).toBe(409);
    expect(refused.headers.get("x-sortie-holder")).toBe(holder.id);
    const error = await errorCode(refused);
    expect(error.code).toBe("claim_conflict");
    expect(error.message).toContain(holder.id);

    const replacement = await createTask({ key, supersede: true, prompt: scripted([{ text: "replacing" }]) });
    const old = await getTask(holder.id);
    expect(old.status).toBe("cancelled");
    expect(old.error?.message).toContain(`superseded by task ${replacement.id}`);
    await waitForStatus(replacement.id, ["succeeded"]);
    const afterwards = await createTask({ key, prompt: scripted([{ text: "free again" }]) });
    await waitForStatus(afterwards.id, ["succeeded"]);
  });

  it("a batch is all or nothing, claims included: a held key on its second entry creates none and keeps no claim", async () => {
    const held = "github:acme/widgets#301";
    const free = "github:acme/widgets#302";
    const holder = await createTask({ key: held, prompt: scripted([hold(20_000)]) });
    const before = await countTasks();
    const refused = await api("/api/batches", {
      method: "POST",
      body: JSON.stringify({ tasks: [{ repo: "acme/widgets", prompt: "first", key: free }, { repo: "acme/widgets", prompt: "second", key: held }] }),
    });
    expect(refused.status).toBe(409);
    const error = await errorCode(refused);
    expect(error.code).toBe("claim_conflict");
    expect(error.message).toContain("tasks[1]");
    expect(error.message).toContain(holder.id);
    expect(await countTasks()).toBe(before);
    // The first entry's claim was given back: its key is free.
    const claims = await claimsOf(env, free);
    expect(await claims.claim(free, "probe0000000000000", false)).toEqual({ granted: true, superseded: null });
    await claims.releaseClaim(free, "probe0000000000000");
    await api(`/api/tasks/${holder.id}/cancel`, { method: "POST" });
  });

  it("frees the key of a claim whose owner stopped renewing its lease", async () => {
    const key = "github:acme/widgets#7";
    const claims = await claimsOf(env, key);
    expect(await claims.claim(key, "crashedtask00000000", false)).toEqual({ granted: true, superseded: null });
    expect((await api("/api/tasks", { method: "POST", body: JSON.stringify({ repo: "acme/widgets", prompt: "x", key }) })).status).toBe(409);
    // The owner crashed: nothing renews the lease, and its time runs out.
    await runInDurableObject(env.Fleet.get(env.Fleet.idFromName(claimShardOf(key))), (_instance, state) => {
      state.storage.sql.exec("UPDATE fleet_claims SET expires_at = ? WHERE key = ?", Date.now() - 1, key);
    });
    const task = await createTask({ key, prompt: scripted([{ text: "mine now" }]) });
    await waitForStatus(task.id, ["succeeded"]);
  });

  it("returns the same task for a repeated Idempotency-Key", async () => {
    const before = await countTasks();
    const body = JSON.stringify({ repo: "acme/widgets", prompt: scripted([{ text: "once" }]) });
    const first = await api("/api/tasks", { method: "POST", body, headers: { "idempotency-key": "abc-123" } });
    const second = await api("/api/tasks", { method: "POST", body, headers: { "idempotency-key": "abc-123" } });
    const other = await api("/api/tasks", { method: "POST", body, headers: { "idempotency-key": "abc-124" } });
    const [a, b, c] = (await Promise.all([first.json(), second.json(), other.json()])) as TaskView[];
    expect(b!.id).toBe(a!.id);
    expect(second.headers.get("idempotent-replayed")).toBe("true");
    expect(c!.id).not.toBe(a!.id);
    expect(await countTasks()).toBe(before + 2);
    await waitForStatus(a!.id, ["succeeded"]);
    await waitForStatus(c!.id, ["succeeded"]);
  });

  it("creates a batch of independent tasks together, or none if one is bad", async () => {
    const before = await countTasks();
    const bad = await api("/api/batches", { method: "POST", body: JSON.stringify({ tasks: [{ repo: "acme/widgets", prompt: "a" }, { repo: "nope", prompt: "b" }] }) });
    expect(bad.status).toBe(400);
    expect((await errorCode(bad)).message).toContain("tasks[1]");
    expect(await countTasks()).toBe(before);

    const response = await api("/api/batches", {
      method: "POST",
      body: JSON.stringify({ tasks: ["a.txt", "b.txt"].map((file) => ({ repo: "acme/widgets", prompt: scripted([{ tool: "Write", input: { file_path: file, content: "x\n" } }]) })) }),
    });
    expect(response.status).toBe(202);
    const { tasks } = (await response.json()) as { tasks: TaskView[] };
    expect(tasks).toHaveLength(2);
    const done = await Promise.all(tasks.map((t) => waitForStatus(t.id, ["succeeded", "failed"])));
    expect(done.map((t) => t.status)).toEqual(["succeeded", "succeeded"]);
  });
});

describe("self-healing", () => {
  it("retries a sandbox that failed to start, with backoff, and shows each error on the run", async () => {
    await localHost("/v1/faults", { method: "POST", body: JSON.stringify({ failOpens: 2 }) });
    const created = await createTask({ prompt: scripted([{ text: "started eventually" }]) });
    const task = await waitForStatus(created.id, ["succeeded", "failed"]);
    expect(task.status).toBe("succeeded");
    expect(task.runs[0]!.attempts).toHaveLength(2);
    expect(task.runs[0]!.attempts.every((a) => a.code === "sandbox_unavailable" && a.message.includes("injected fault"))).toBe(true);
    const retries = (await readEvents(created.id)).filter((e) => e.type === "run.retry");
    expect(retries.map((e) => e.data.attempt)).toEqual([1, 2]);
  });

  it("gives up after three retries and says why", async () => {
    await localHost("/v1/faults", { method: "POST", body: JSON.stringify({ failOpens: 4 }) });
    const created = await createTask({ prompt: scripted([{ text: "never" }]) });
    const task = await waitForStatus(created.id, ["succeeded", "failed"]);
    expect(task.status).toBe("failed");
    expect(task.error?.code).toBe("sandbox_unavailable");
    expect(task.runs[0]!.attempts).toHaveLength(3);
  });

  it("does not retry an agent that ran and failed", async () => {
    const created = await createTask({ maxTurns: 1, prompt: scripted([hold(10), hold(10)]) });
    const task = await waitForStatus(created.id, ["succeeded", "failed"]);
    expect(task.status).toBe("failed");
    expect(task.runs[0]!.attempts).toEqual([]);
    expect((await readEvents(created.id)).filter((e) => e.type === "agent.init")).toHaveLength(1);
  });

  it("fails a run whose agent process was killed, destroys its sandbox and frees its slot", async () => {
    const created = await createTask({ prompt: scripted([hold(30_000)]) });
    // The agent's own process, not one of the commands the run makes before it.
    await waitForSession(created.id);
    let process: { id: string } | undefined;
    for (let i = 0; i < 100 && !process; i++) {
      const listing = (await (await localHost("/v1/sandboxes")).json()) as { processes: { sandbox: string; id: string; done: boolean }[] };
      process = listing.processes.find((p) => p.sandbox === `${created.id}-0` && !p.done);
      if (!process) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(process).toBeDefined();
    await localHost(`/v1/sandboxes/${created.id}-0/processes/${process!.id}`, { method: "DELETE" });
    const task = await waitForStatus(created.id, ["failed", "succeeded"]);
    expect(task.status).toBe("failed");
    expect(task.error).toMatchObject({ code: "agent_no_result" });
    expect(task.error!.message).toMatch(/exited \d+ without a result/);
    expect(await liveSandboxes()).not.toContain(`${created.id}-0`);
    await expectFleetDrained();
  });
});
