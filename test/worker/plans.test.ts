/**
 * Plans: a spec becomes a plan (the planner writes $SORTIE_PLAN_FILE), a
 * person approves it, its subtasks run as ordinary tasks in dependency order
 * under enforced ownership, and the integrator combines them into one diff.
 * Real Claude Code plays the planner and every worker against the scripted
 * model: each subtask's prompt carries its own `#!standin` script.
 */
import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { parseEvent } from "../../src/events.ts";
import { foldPlan } from "../../src/plan-fold.ts";
import type { PlanFile, PlanState, PlanView } from "../../src/plan-schema.ts";
import type { PlanAgent } from "../../src/agents/plan-agent.ts";
import type { EventLog } from "../../src/store/event-log.ts";
import type { LoggedEvent, TaskView } from "../../src/schema.ts";
import { fleetOf } from "../../src/agents/fleet.ts";
import { api, createTask, getTask, readEvents, remoteBranch, scripted, waitForStatus, watch } from "./helpers.ts";

const write = (file: string, content: string) => ({ tool: "Write", input: { file_path: file, content } });
const bash = (command: string) => ({ tool: "Bash", input: { command } });
/** The planner's step that writes `plan` to its plan file. */
const writePlan = (plan: unknown) => bash(`cat > "$SORTIE_PLAN_FILE" <<'JSON'\n${JSON.stringify(plan)}\nJSON`);
/** A spec whose planner plays `steps`. */
const plannerSpec = (steps: unknown[]) => scripted(steps, "split this work into subtasks");

type Subtask = PlanFile["subtasks"][number];
const subtask = (key: string, owns: string[], steps: unknown[], extra: Partial<Subtask> = {}): Subtask => ({
  key,
  title: `the ${key} part`,
  prompt: scripted(steps, `do the ${key} part`),
  owns,
  dependsOn: [],
  acceptance: [],
  ...extra,
});

async function createPlan(body: Record<string, unknown>): Promise<PlanView> {
  const response = await api("/api/plans", { method: "POST", body: JSON.stringify({ repo: "acme/widgets", ...body }) });
  expect(response.status, await response.clone().text()).toBe(202);
  return (await response.json()) as PlanView;
}

async function getPlan(id: string): Promise<PlanView> {
  const response = await api(`/api/plans/${id}`);
  expect(response.status).toBe(200);
  return (await response.json()) as PlanView;
}

async function waitForPlan(id: string, statuses: string[], timeoutMs = 200_000): Promise<PlanView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const plan = await getPlan(id);
    if (statuses.includes(plan.status)) return expectFolded(id);
    if (Date.now() > deadline) throw new Error(`plan ${id} still ${plan.status} after ${timeoutMs} ms: ${JSON.stringify(plan.subtasks.map((s) => [s.key, s.status, s.error]))}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function planEvents(id: string): Promise<LoggedEvent[]> {
  const response = await api(`/api/plans/${id}/events?after=0`);
  expect(response.status).toBe(200);
  return (await response.text()).split("\n").filter(Boolean).map((line) => JSON.parse(line) as LoggedEvent);
}

/**
 * The plan as served, checked against the fold of its log as served: the
 * PlanAgent keeps nothing beside its events. Read between two reads of the
 * log that agree, so no event lands between the state and the log it is
 * compared with.
 */
async function expectFolded(id: string): Promise<PlanView> {
  for (let attempt = 0; ; attempt++) {
    const before = await planEvents(id);
    const plan = await getPlan(id);
    const after = await planEvents(id);
    if (after.length !== before.length && attempt < 20) continue;
    const { url: _url, ws: _ws, ...served } = plan;
    expect(foldPlan(after.map((event) => parseEvent(event)))).toEqual(served);
    return plan;
  }
}

async function planTasks(id: string): Promise<{ id: string; source: string }[]> {
  const { results } = await env.DB.prepare("SELECT id, source FROM tasks WHERE source = 'plan' AND created_at >= ?").bind(0).all<{ id: string; source: string }>();
  const plan = await getPlan(id);
  const mine = new Set([plan.plannerTaskId, ...plan.subtasks.map((s) => s.taskId)]);
  return results.filter((row) => mine.has(row.id));
}

/**
 * Two subtasks over one lockfile: "first"'s acceptance fails once and goes back to it, so "second"'s change (made
 * on first's first version) no longer applies and the integrator resolves it. The repository's test, which "first"
 * writes, fails until lock.ok exists, and what it prints scripts the integrator's repair turn (`repair`): the
 * integrator agent plays the first script line of its prompt, which quotes the plan's summary and the handoffs.
 */
function conflictingPlan(repair: unknown[]) {
  const integrator = [bash("printf 'line1\\nA-fixed+B\\n' > lock.txt && rm -f lock.txt.rej"), { text: "Resolved lock.txt." }];
  const testScript = `test -f lock.ok || { echo 'lock.ok is missing'; echo '#!standin ${JSON.stringify(repair)}'; exit 1; }\n`;
  return {
    summary: `A lockfile both parts touch.\n#!standin ${JSON.stringify(integrator)}`,
    subtasks: [
      subtask(
        "first",
        ["lock.txt", "a/**", ".sortie/**"],
        [write("lock.txt", "line1\nA\n"), write("a/a.txt", "a\n"), write(".sortie/test.sh", testScript), { text: "Wrote the lock." }, write("a/fixed.txt", "fixed\n"), write("lock.txt", "line1\nA-fixed\n"), { text: "Fixed." }],
        { acceptance: ["test -f a/fixed.txt"] },
      ),
      subtask("second", ["lock.txt", "b/**"], [bash("sed -i 's/^A$/A+B/' lock.txt && mkdir -p b && echo b > b/b.txt"), { text: "Extended the lock." }], { dependsOn: ["first"] }),
    ],
  };
}

const approve = (id: string, body?: unknown) => api(`/api/plans/${id}/approve`, { method: "POST", ...(body === undefined ? {} : { body: JSON.stringify(body) }) });

describe("plans", { timeout: 300_000 }, () => {
  it("a three-subtask plan is held for approval, runs its dependent on its dependency's work, and integrates into one diff", async () => {
    const plan = {
      summary: "An api module, a web page, and docs of the api.",
      subtasks: [
        subtask("api", ["src/api.js"], [write("src/api.js", "export const api = 'from-api';\n"), { text: "Wrote src/api.js." }]),
        subtask("web", ["web/**"], [write("web/index.html", "<h1>web</h1>\n"), { text: "Wrote the page." }]),
        subtask("docs", ["docs/**"], [bash("mkdir -p docs && cat src/api.js > docs/api.md"), { text: "Documented the api." }], { dependsOn: ["api"], acceptance: ["grep -q from-api docs/api.md"] }),
      ],
    };
    const created = await createPlan({ spec: plannerSpec([writePlan(plan), { text: "Planned." }]) });
    expect(created.status).toBe("planning");
    expect(created.ws).toContain(`/api/plans/${created.id}/ws?token=`);
    const waiting = await waitForPlan(created.id, ["awaiting_approval", "failed"]);
    expect(waiting.status, JSON.stringify(waiting.error)).toBe("awaiting_approval");
    expect(waiting.plan?.subtasks.map((s) => s.key)).toEqual(["api", "web", "docs"]);
    // Held: nothing but the planner has run, and nothing starts while it waits.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const held = await getPlan(created.id);
    expect(held.status).toBe("awaiting_approval");
    // Its state is its log's: an evicted PlanAgent serves the same plan from the log alone.
    await evictDurableObject(env.PlanAgent.get(env.PlanAgent.idFromName(created.id)));
    expect(await getPlan(created.id)).toEqual(held);
    expect(held.subtasks.map((s) => [s.key, s.status, s.taskId])).toEqual([["api", "pending", null], ["web", "pending", null], ["docs", "pending", null]]);
    expect((await planTasks(created.id)).map((t) => t.id)).toEqual([held.plannerTaskId]);
    expect((await (await api(`/api/plans/${created.id}/diff`)).json())).toMatchObject({ error: { code: "diff_not_ready" } });

    const approved = await approve(created.id);
    expect(approved.status, await approved.clone().text()).toBe(202);
    const done = await waitForPlan(created.id, ["succeeded", "failed"]);
    expect(done.status, JSON.stringify({ error: done.error, subtasks: done.subtasks.map((s) => [s.key, s.status, s.error]) })).toBe("succeeded");
    expect(done.subtasks.every((s) => s.status === "succeeded" && s.taskId)).toBe(true);
    // The dependent started after its dependency ended, from its work.
    const api_ = done.subtasks.find((s) => s.key === "api")!;
    const docs = done.subtasks.find((s) => s.key === "docs")!;
    expect(docs.startedAt!).toBeGreaterThanOrEqual(api_.endedAt!);
    expect(docs.handoff).toContain('"api" (the api part; 1 files, +1 -0): Wrote src/api.js.');
    expect(docs.handoff).toContain("You own these paths, and only these: docs/**");
    // Each subtask is an ordinary task of source `plan`, with its claim key.
    const docsTask = await getTask(docs.taskId!);
    expect(docsTask.source).toBe("plan");
    expect(docsTask.key).toBe(`plan:${created.id}:docs`);
    expect(done.integration).toMatchObject({ status: "succeeded", branch: `sortie/plan-${created.id}`, checks: [{ command: "grep -q from-api docs/api.md", exitCode: 0, subtask: "docs" }] });

    const diff = await (await api(`/api/plans/${created.id}/diff`)).text();
    expect(diff).toContain("+++ b/src/api.js");
    expect(diff).toContain("+++ b/web/index.html");
    expect(diff).toContain("+++ b/docs/api.md");
    expect(diff.match(/\+export const api = 'from-api';/g)).toHaveLength(2);
    expect(done.integration?.diff?.files).toBe(3);

    const types = (await planEvents(created.id)).map((e) => e.type);
    for (const type of ["plan.status", "plan.written", "plan.approved", "subtask.status", "integration.status", "integration.check"]) expect(types).toContain(type);
    const listed = (await (await api("/api/plans")).json()) as { plans: { id: string; status: string }[] };
    expect(listed.plans.find((p) => p.id === created.id)?.status).toBe("succeeded");
  });

  it("a cyclic plan goes back to the planner once, then the plan fails invalid_plan naming the keys of the cycle", async () => {
    const cyclic = {
      summary: "Two parts that wait for each other.",
      subtasks: [subtask("alpha", ["a/**"], [], { dependsOn: ["beta"] }), subtask("beta", ["b/**"], [], { dependsOn: ["alpha"] })],
    };
    const created = await createPlan({ spec: plannerSpec([writePlan(cyclic), { text: "Planned." }, writePlan(cyclic), { text: "Planned again." }]) });
    const failed = await waitForPlan(created.id, ["failed", "awaiting_approval"]);
    expect(failed.status).toBe("failed");
    expect(failed.error?.code, JSON.stringify(failed.error)).toBe("invalid_plan");
    expect(failed.error?.message).toMatch(/cycle: (alpha -> beta -> alpha|beta -> alpha -> beta)/);
    // The planner was told what was wrong, in its own session.
    const events = await readEvents(failed.plannerTaskId!);
    const checks = events.filter((e) => e.type === "run.plan_file");
    expect(checks.map((e) => e.data.attempt)).toEqual([1, 2]);
    const inits = events.filter((e) => e.type === "agent.init");
    expect(new Set(inits.map((e) => e.data.sessionId)).size).toBe(1);
    expect(failed.subtasks).toEqual([]);
    // The plan's own stream replays its events to a viewer holding the plan's viewer token, and refuses one without.
    const path = new URL(created.ws).pathname + new URL(created.ws).search;
    const viewer = await watch(path, { authorization: "" });
    expect(viewer.status).toBe(101);
    const deadline = Date.now() + 10_000;
    while (!viewer.events.some((e) => e.type === "plan.status" && e.data.status === "failed") && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    viewer.close();
    expect(viewer.events.map((e) => e.seq)).toEqual(viewer.events.map((_, i) => i + 1));
    expect(viewer.events.find((e) => e.type === "plan.status" && e.data.status === "failed")?.data.error).toMatchObject({ code: "invalid_plan" });
    expect((await watch(`/api/plans/${created.id}/ws`, { authorization: "" })).status).toBe(401);
  });

  it("a worker that strays outside what it owns is sent back once, then fails ownership_violation; the honest one's work stands, nothing is integrated", async () => {
    const plan = {
      summary: "Two independent parts.",
      subtasks: [
        subtask("honest", ["honest/**"], [write("honest/ok.txt", "mine\n"), { text: "Done." }]),
        subtask("stray", ["stray/**"], [write("stray/s.txt", "mine\n"), write("src/widget.js", "export const widget = () => 'taken';\n"), { text: "Done." }, { text: "I keep my change to widget.js." }]),
      ],
    };
    const created = await createPlan({ spec: plannerSpec([writePlan(plan), { text: "Planned." }]), approve: "auto" });
    const done = await waitForPlan(created.id, ["succeeded", "failed"]);
    expect(done.status).toBe("failed");
    expect(done.error?.code).toBe("ownership_violation");
    const honest = done.subtasks.find((s) => s.key === "honest")!;
    const stray = done.subtasks.find((s) => s.key === "stray")!;
    expect(honest.status).toBe("succeeded");
    expect(honest.diff?.files).toBe(1);
    expect(stray.status).toBe("failed");
    expect(stray.error?.code).toBe("ownership_violation");
    expect(stray.error?.message).toContain("src/widget.js");
    const events = await readEvents(stray.taskId!);
    expect(events.filter((e) => e.type === "run.plan_ownership").map((e) => e.data.attempt)).toEqual([1, 2]);
    expect(done.integration).toBeNull();
    expect((await api(`/api/plans/${created.id}/diff`)).status).toBe(409);
    // The honest worker's change is still there on its own task.
    const honestDiff = await (await api(`/api/tasks/${honest.taskId}/runs/0/diff`)).text();
    expect(honestDiff).toContain("+++ b/honest/ok.txt");
  });

  it("an edited plan at approval runs as edited: a subtask the person removed never runs", async () => {
    const plan = {
      summary: "Two parts.",
      subtasks: [subtask("keep", ["keep/**"], [write("keep/k.txt", "kept\n"), { text: "Kept." }]), subtask("drop", ["drop/**"], [write("drop/d.txt", "dropped\n"), { text: "Dropped." }])],
    };
    const created = await createPlan({ spec: plannerSpec([writePlan(plan), { text: "Planned." }]) });
    const waiting = await waitForPlan(created.id, ["awaiting_approval", "failed"]);
    expect(waiting.status).toBe("awaiting_approval");
    // An edit that breaks the rules is refused, and the plan still waits.
    const bad = await approve(created.id, { plan: { ...waiting.plan, subtasks: [{ ...waiting.plan!.subtasks[0], dependsOn: ["nowhere"] }] } });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: "invalid_plan", message: expect.stringContaining("nowhere") });
    expect((await getPlan(created.id)).status).toBe("awaiting_approval");
    const edited = { ...waiting.plan!, subtasks: [{ ...waiting.plan!.subtasks[0]!, title: "keep, as edited" }] };
    const response = await approve(created.id, { plan: edited });
    expect(response.status, await response.clone().text()).toBe(202);
    expect((await approve(created.id)).status).toBe(409);
    const done = await waitForPlan(created.id, ["succeeded", "failed"]);
    expect(done.status, JSON.stringify(done.error)).toBe("succeeded");
    expect(done.subtasks.map((s) => [s.key, s.title])).toEqual([["keep", "keep, as edited"]]);
    expect(done.approvedBy).toBeTruthy();
    // Handoffs begin with the subtask's own prompt; only the planner's prompt (the spec) mentions the dropped one.
    const dropped = await env.DB.prepare("SELECT COUNT(*) AS n FROM tasks WHERE prompt LIKE ?").bind("do the drop part%").first<{ n: number }>();
    expect(dropped?.n).toBe(0);
    const diff = await (await api(`/api/plans/${created.id}/diff`)).text();
    expect(diff).toContain("+++ b/keep/k.txt");
    expect(diff).not.toContain("drop/d.txt");
    const approvedEvent = (await planEvents(created.id)).find((e) => e.type === "plan.approved")!;
    expect(approvedEvent.data).toMatchObject({ edited: true, removed: ["drop"] });
  });

  it("a failing acceptance command goes back to its owner's session; the dependent's change that no longer applies is resolved by the integrator, and the test its resolution broke goes back to the integrator", async () => {
    const plan = conflictingPlan([bash("echo ok > lock.ok"), { text: "Added lock.ok." }]);
    const created = await createPlan({ spec: plannerSpec([writePlan(plan), { text: "Planned." }]), approve: "auto" });
    const done = await waitForPlan(created.id, ["succeeded", "failed"]);
    expect(done.status, JSON.stringify({ error: done.error, integration: done.integration, subtasks: done.subtasks.map((s) => [s.key, s.status, s.error]) })).toBe("succeeded");
    const first = done.subtasks.find((s) => s.key === "first")!;
    expect(first.sentBack).toBe(1);
    // The failure went to the owner's own session: the same task, one session, the message delivered.
    const events = await readEvents(first.taskId!);
    expect(new Set(events.filter((e) => e.type === "agent.init").map((e) => e.data.sessionId)).size).toBe(1);
    expect(events.some((e) => e.type === "run.message" && String(e.data.text).includes("`test -f a/fixed.txt` exited 1"))).toBe(true);
    expect(done.integration).toMatchObject({ status: "succeeded", attempts: 2, resolved: ["second"] });
    const logged = await planEvents(created.id);
    const types = logged.map((e) => e.type);
    for (const type of ["subtask.sent_back", "integration.conflict", "integration.agent", "integration.resolved"]) expect(types).toContain(type);
    // The failing test followed the integrator's resolution: it went back to the integrator, not to an owner, once.
    expect(logged.filter((e) => e.type === "integration.repair").map((e) => e.data)).toEqual([{ command: "bash .sortie/test.sh", exitCode: 1, subtask: null, ok: true }]);
    expect(logged.filter((e) => e.type === "integration.agent").map((e) => e.data.repair ?? null)).toEqual([null, "bash .sortie/test.sh"]);
    expect(logged.filter((e) => e.type === "subtask.sent_back")).toHaveLength(1);
    expect(done.integration!.checks.map((c) => [c.command, c.exitCode])).toEqual([["test -f a/fixed.txt", 0], ["bash .sortie/test.sh", 0]]);
    const diff = await (await api(`/api/plans/${created.id}/diff`)).text();
    expect(diff).toContain("+++ b/lock.ok");
    expect(diff).toContain("+A-fixed+B");
    expect(diff).toContain("+++ b/a/fixed.txt");
    expect(diff).toContain("+++ b/b/b.txt");
    expect(diff).not.toContain(".rej");
  });

  it("a fix of the integrator's that rewrites the repository's own test is refused and undone: the plan fails with the failing check", async () => {
    const plan = conflictingPlan([bash("printf 'exit 0\\n' > .sortie/test.sh && echo ok > lock.ok"), { text: "Made the test pass." }]);
    const created = await createPlan({ spec: plannerSpec([writePlan(plan), { text: "Planned." }]), approve: "auto" });
    const done = await waitForPlan(created.id, ["succeeded", "failed"]);
    expect(done.status).toBe("failed");
    expect(done.error).toMatchObject({ code: "check_failed", message: expect.stringContaining("was refused") });
    expect(done.integration!.checks.at(-1)).toMatchObject({ command: "bash .sortie/test.sh", exitCode: 1 });
    const repairs = (await planEvents(created.id)).filter((e) => e.type === "integration.repair").map((e) => e.data);
    expect(repairs).toEqual([expect.objectContaining({ ok: false, refused: expect.stringContaining(".sortie/test.sh") })]);
    // Not an owner's to answer: the one send-back is the first attempt's acceptance failure.
    expect(done.subtasks.find((s) => s.key === "first")!.sentBack).toBe(1);
    expect((await api(`/api/plans/${created.id}/diff`)).status).toBe(409);
  });

  it("cancel mid-plan ends every subtask and its task", async () => {
    const slow = (key: string) => subtask(key, [`${key}/**`], [bash("sleep 60"), { text: "Slept." }]);
    const created = await createPlan({ spec: plannerSpec([writePlan({ summary: "Two slow parts and one after them.", subtasks: [slow("one"), slow("two"), { ...slow("three"), dependsOn: ["one"] }] }), { text: "Planned." }]), approve: "auto" });
    const deadline = Date.now() + 120_000;
    let plan = await getPlan(created.id);
    const started = (p: PlanView) => p.subtasks.length === 3 && p.subtasks.filter((s) => s.key !== "three").every((s) => s.taskId && s.status === "running");
    while (!started(plan)) {
      if (Date.now() > deadline) throw new Error(`subtasks never started: ${JSON.stringify(plan.subtasks.map((s) => [s.key, s.status]))}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
      plan = await getPlan(created.id);
    }
    const response = await api(`/api/plans/${created.id}/cancel`, { method: "POST" });
    expect(response.status, await response.clone().text()).toBe(200);
    const cancelled = (await response.json()) as PlanView;
    expect(cancelled.status).toBe("cancelled");
    expect(cancelled.subtasks.map((s) => s.status)).toEqual(["cancelled", "cancelled", "cancelled"]);
    for (const s of cancelled.subtasks.filter((v) => v.taskId)) expect((await getTask(s.taskId!)).status).toBe("cancelled");
    expect(cancelled.subtasks.find((s) => s.key === "three")!.taskId).toBeNull();
    expect((await api(`/api/plans/${created.id}/cancel`, { method: "POST" })).status).toBe(409);
  });

  it("output branch pushes the integrated change of a one-subtask plan as sortie/plan-<id>", async () => {
    const plan = { summary: "One part: nothing to split.", subtasks: [subtask("only", ["only/**"], [write("only/o.txt", "only\n"), { text: "Done." }])] };
    const created = await createPlan({ spec: plannerSpec([writePlan(plan), { text: "Planned." }]), output: "branch", approve: "auto" });
    const done = await waitForPlan(created.id, ["succeeded", "failed"]);
    expect(done.status, JSON.stringify({ error: done.error, integration: done.integration })).toBe("succeeded");
    expect(done.integration?.commit).toMatch(/^[0-9a-f]{40}$/);
    expect(await remoteBranch(`sortie/plan-${created.id}`)).toBe(done.integration!.commit);
    expect((await planEvents(created.id)).some((e) => e.type === "integration.published")).toBe(true);
  });

  it("the integrator and the publisher take fleet slots like any run: with the fleet full, the integration waits for a run to end", async () => {
    const cap = Number(env.MAX_SANDBOXES);
    const plan = { summary: "One part: nothing to split.", subtasks: [subtask("only", ["only/**"], [bash("sleep 4"), write("only/o.txt", "only\n"), { text: "Done." }])] };
    const created = await createPlan({ spec: plannerSpec([writePlan(plan), { text: "Planned." }]), output: "branch", approve: "auto" });
    const deadline = Date.now() + 60_000;
    let current = await getPlan(created.id);
    // The plan names its subtask's task just before it creates it: until then the task is not found.
    const running = async (id: string) => {
      const response = await api(`/api/tasks/${id}`);
      return response.status === 200 && ((await response.json()) as TaskView).runs[0]?.status === "running";
    };
    while (!(current.subtasks[0]?.taskId && (await running(current.subtasks[0].taskId)))) {
      if (Date.now() > deadline) throw new Error(`the subtask never ran: ${JSON.stringify(current.subtasks)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
      current = await getPlan(created.id);
    }
    // Every other slot, and the subtask's once it ends, goes to a slow task's runs.
    const blocker = await createTask({ prompt: scripted([bash("sleep 12"), { text: "Slept." }], "hold the fleet"), runs: cap });
    const done = await waitForPlan(created.id, ["succeeded", "failed"]);
    expect(done.status, JSON.stringify({ error: done.error, integration: done.integration })).toBe("succeeded");
    const logged = await planEvents(created.id);
    expect(logged.find((e) => e.type === "plan.queued")?.data).toMatchObject({ slot: "integrator", position: expect.any(Number) });
    // The integration ended only after one of the slow runs gave its slot back (it takes a few seconds, they twelve).
    const blocked = await waitForStatus(blocker.id, ["succeeded", "failed"], 90_000);
    const firstFreed = Math.min(...blocked.runs.map((run) => run.endedAt ?? Number.POSITIVE_INFINITY));
    const integrated = logged.find((e) => e.type === "integration.status" && e.data.status === "succeeded")!;
    expect(integrated.ts).toBeGreaterThanOrEqual(firstFreed);
    expect(await remoteBranch(`sortie/plan-${created.id}`)).toBe(done.integration!.commit);
    // Every slot went back: the integrator's, the publisher's and the runs'.
    await expect.poll(async () => (await fleetOf(env)).stats(), { timeout: 10_000 }).toMatchObject({ live: 0, queued: 0 });
  });

  it("retry runs a failed subtask again as a new task, and what depends on it", async () => {
    const plan = {
      summary: "A part that strays, and one after it.",
      subtasks: [
        subtask("base", ["base/**"], [write("base/b.txt", "base\n"), write("README.md", "taken\n"), { text: "Done." }, { text: "Keeping it." }]),
        subtask("top", ["top/**"], [write("top/t.txt", "top\n"), { text: "Done." }], { dependsOn: ["base"] }),
      ],
    };
    const created = await createPlan({ spec: plannerSpec([writePlan(plan), { text: "Planned." }]), approve: "auto" });
    const failed = await waitForPlan(created.id, ["succeeded", "failed"]);
    expect(failed.status).toBe("failed");
    expect(failed.subtasks.map((s) => s.status)).toEqual(["failed", "blocked"]);
    expect(failed.subtasks[1]!.error?.code).toBe("dependency_failed");
    expect(failed.subtasks[1]!.taskId).toBeNull();
    const firstTask = failed.subtasks[0]!.taskId;
    expect((await api(`/api/plans/${created.id}/retry`, { method: "POST", body: JSON.stringify({ subtask: "nope" }) })).status).toBe(400);
    const retried = await api(`/api/plans/${created.id}/retry`, { method: "POST", body: JSON.stringify({ subtask: "base" }) });
    expect(retried.status, await retried.clone().text()).toBe(202);
    const restarted = (await retried.json()) as PlanView;
    expect(restarted.status).toBe("running");
    expect(["pending", "running"]).toContain(restarted.subtasks[0]!.status);
    expect(restarted.subtasks[1]!.status).toBe("pending");
    // The same script strays again: the new task fails the same way, and the dependent is blocked again.
    const again = await waitForPlan(created.id, ["succeeded", "failed"]);
    expect(again.subtasks[0]!.taskId).not.toBe(firstTask);
    expect(again.subtasks.map((s) => s.status)).toEqual(["failed", "blocked"]);
    expect(again.error?.code).toBe("ownership_violation");
    expect((await planEvents(created.id)).filter((e) => e.type === "plan.retry")).toHaveLength(1);
  });

  it("the integration runs the repository's setup on the combined change before the acceptance commands", async () => {
    const plan = { summary: "One part of a repository with a setup step.", subtasks: [subtask("only", ["only/**"], [write("only/o.txt", "o\n"), { text: "Done." }], { acceptance: ["test -f node_modules/.built"] })] };
    const created = await createPlan({ repo: "acme/bootstrap", spec: plannerSpec([writePlan(plan), { text: "Planned." }]), approve: "auto" });
    const done = await waitForPlan(created.id, ["succeeded", "failed"]);
    expect(done.status, JSON.stringify({ error: done.error, integration: done.integration })).toBe("succeeded");
    expect(done.integration?.checks).toMatchObject([{ command: "test -f node_modules/.built", exitCode: 0 }]);
    expect((await planEvents(created.id)).some((e) => e.type === "integration.setup")).toBe(true);
    // What setup made is not part of the change.
    expect(await (await api(`/api/plans/${created.id}/diff`)).text()).not.toContain("node_modules");
  });

  it("a plan's budget covers its planner: a plan over maxCostUsd fails budget", async () => {
    const created = await createPlan({ spec: plannerSpec([bash("sleep 1"), writePlan({ summary: "x", subtasks: [subtask("only", ["x/**"], [{ text: "ok" }])] }), { text: "Planned." }]), maxCostUsd: 0.000001 });
    const done = await waitForPlan(created.id, ["failed", "awaiting_approval"]);
    expect(done.status).toBe("failed");
    expect(done.error?.code).toBe("budget");
  });

  it("a plan stored before its log held its creation goes on from its saved state, and what follows survives an eviction", async () => {
    const id = `legacy${Date.now()}`;
    const legacy: PlanState = {
      id, repo: "acme/widgets", spec: "an old plan", branch: null, status: "awaiting_approval", approve: "manual", maxSubtasks: 8, output: "diff",
      createdBy: "ada", createdAt: 1, endedAt: null, plannerTaskId: null, plan: null, approvedBy: null, subtasks: [], integration: null,
      costUsd: 0.5, maxCostUsd: 5, key: null, error: null,
    };
    const stub = env.PlanAgent.get(env.PlanAgent.idFromName(id));
    // As the PlanAgent kept a plan before its state was its log's fold: the state saved, its events beside it.
    await runInDurableObject(stub, (agent: PlanAgent) => {
      agent.setState(legacy);
      const events = (agent as unknown as { events: EventLog }).events;
      events.append({ run: null, type: "plan.status", data: { status: "awaiting_approval" } });
      events.flush();
    });
    await evictDurableObject(stub);
    expect(await stub.view()).toEqual(legacy);
    expect(await stub.cancel("ada")).toMatchObject({ plan: { status: "cancelled" } });
    await evictDurableObject(stub);
    expect(await stub.view()).toMatchObject({ ...legacy, status: "cancelled", endedAt: expect.any(Number), error: { code: "cancelled" } });
    const { ndjson } = await stub.readEvents(0, 100);
    const types = ndjson.trim().split("\n").map((line) => (JSON.parse(line) as { type: string }).type);
    expect(types.slice(0, 2)).toEqual(["plan.status", "plan.created"]);
    expect(types.filter((type) => type === "plan.created")).toHaveLength(1);
  });

  it("refuses bad input with a 400 and creates nothing", async () => {
    const before = await env.DB.prepare("SELECT COUNT(*) AS n FROM plans").first<{ n: number }>();
    for (const body of [{ repo: "acme/widgets" }, { repo: "acme/widgets", spec: "" }, { repo: "acme/widgets", spec: "x", maxSubtasks: 13 }, { repo: "acme/widgets", spec: "x", extra: 1 }]) {
      const response = await api("/api/plans", { method: "POST", body: JSON.stringify(body) });
      expect(response.status, JSON.stringify(body)).toBe(400);
      const error = ((await response.json()) as { error: { code: string; message: string } }).error;
      expect(error.code).toBeTruthy();
    }
    const missing = await api("/api/plans", { method: "POST", body: JSON.stringify({ repo: "acme/widgets" }) });
    expect(((await missing.json()) as { error: { message: string } }).error.message).toMatch(/spec/);
    const after = await env.DB.prepare("SELECT COUNT(*) AS n FROM plans").first<{ n: number }>();
    expect(after?.n).toBe(before?.n);
    expect((await api("/api/plans/nosuchplan000000000")).status).toBe(404);
  });

  it("a retried POST with the same Idempotency-Key gets the same plan and starts no second planner", async () => {
    const body = JSON.stringify({ repo: "acme/widgets", spec: plannerSpec([{ text: "No plan from me." }]) });
    const headers = { "idempotency-key": `plan-test-${Date.now()}` };
    const first = await api("/api/plans", { method: "POST", body, headers });
    expect(first.status).toBe(202);
    const again = await api("/api/plans", { method: "POST", body, headers });
    expect(again.status).toBe(202);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    const [a, b] = [(await first.json()) as PlanView, (await again.json()) as PlanView];
    expect(b.id).toBe(a.id);
    expect(b.plannerTaskId).toBe(a.plannerTaskId);
    // A planner that writes no plan, even when told, ends the plan invalid_plan.
    const failed = await waitForPlan(a.id, ["failed", "awaiting_approval"]);
    expect(failed.error).toMatchObject({ code: "invalid_plan", message: expect.stringContaining("no plan file was written") });
  });
});

