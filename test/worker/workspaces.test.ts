/**
 * Setup once, fork N: the setup step, snapshots shared by a task's runs,
 * warm snapshots reused by later tasks, and the dependency cache.
 */
import { env } from "cloudflare:workers";
import { fleetOf } from "../../src/agents/fleet.ts";
import { describe, expect, it } from "vitest";
import { createTask, liveSandboxes, readEvents, scripted, waitForStatus } from "./helpers.ts";

const check = { tool: "Bash", input: { command: "cat node_modules/.built && ls .sortie" } };

/** Adds a commit to the fixture's bare repository, through git in a scratch sandbox (outside its walls: no sandbox may write the fixtures). */
async function pushCommit(repo: string, file = "README.md"): Promise<void> {
  const headers = { authorization: `Bearer ${env.LOCAL_SANDBOX_TOKEN}` };
  const base = `${env.LOCAL_SANDBOX_URL}/v1/sandboxes/pusher-${Math.random().toString(36).slice(2, 8)}`;
  await fetch(base, { method: "POST", headers });
  const script = 'set -e; git clone -q "$REPO" w && cd w && echo " " >> "$FILE" && git commit -qam change && git push -q origin HEAD';
  const result = (await (await fetch(`${base}/exec`, { method: "POST", headers, body: JSON.stringify({ command: script, env: { REPO: `${env.GIT_BASE_URL}/${repo}.git`, FILE: file }, bookkeeping: true }) })).json()) as { exitCode: number; stderr: string };
  await fetch(base, { method: "DELETE", headers });
  expect(result.exitCode, result.stderr).toBe(0);
}

describe("the setup step", () => {
  it("runs the repository's .sortie/setup.sh after the clone, with its output in the events", async () => {
    const created = await createTask({ repo: "acme/bootstrap", prompt: scripted([check]) });
    const task = await waitForStatus(created.id, ["succeeded", "failed"]);
    expect(task.status, JSON.stringify(task.error)).toBe("succeeded");
    const events = await readEvents(created.id);
    const phases = events.filter((e) => e.type === "run.status").map((e) => e.data.phase ?? e.data.status);
    expect(phases).toEqual(["provisioning", "cloning", "setup", "agent", "diffing", "succeeded"]);
    expect(events.filter((e) => e.type === "log" && e.data.phase === "setup").map((e) => e.data.text)).toContain("installing dependencies");
    expect(events.find((e) => e.type === "agent.tool_result")?.data.text).toMatch(/^built at \d+/);
    expect(await (await import("./helpers.ts")).api(`/api/tasks/${created.id}/runs/0/diff`).then((r) => r.text())).not.toContain("node_modules");
  });

  it("a setup that fails fails the run in phase setup, with what it printed", async () => {
    const created = await createTask({ repo: "acme/broken", prompt: "anything" });
    const task = await waitForStatus(created.id, ["failed", "succeeded"]);
    expect(task.status).toBe("failed");
    expect(task.error?.code).toBe("setup_failed");
    expect(task.error?.message).toContain("404 left-pad not found");
    const events = await readEvents(created.id);
    expect(events.find((e) => e.type === "run.status" && e.data.status === "failed")?.data.phase).toBe("setup");
    expect(events.some((e) => e.type === "agent.init")).toBe(false);
    expect((await liveSandboxes()).filter((s) => s.startsWith(created.id))).toEqual([]);
  });

  it("a task's own setup command runs instead, user input passed safely", async () => {
    const created = await createTask({ setup: "echo \"custom setup $((1+1))\" > SETUP.out", prompt: scripted([{ tool: "Bash", input: { command: "cat SETUP.out" } }]) });
    await waitForStatus(created.id, ["succeeded"]);
    const events = await readEvents(created.id);
    expect(events.find((e) => e.type === "agent.tool_result")?.data.text).toBe("custom setup 2");
  });
});

describe("setup once, fork N", () => {
  it("sets up once for a task's runs: the others restore the snapshot", async () => {
    await pushCommit("acme/bootstrap");
    const created = await createTask({ repo: "acme/bootstrap", runs: 3, prompt: scripted([check]) });
    const task = await waitForStatus(created.id, ["succeeded", "failed"]);
    expect(task.status, JSON.stringify(task.runs.map((r) => r.error))).toBe("succeeded");
    const sources = task.runs.map((r) => r.workspace).sort();
    expect(sources).toEqual(["clone", "snapshot", "snapshot"]);
    const events = await readEvents(created.id);
    expect(events.filter((e) => e.type === "run.setup")).toHaveLength(1);
    const built = events.filter((e) => e.type === "agent.tool_result").map((e) => e.data.text);
    expect(new Set(built).size).toBe(1);
    const cwds = events.filter((e) => e.type === "agent.init").map((e) => e.data.cwd);
    expect(new Set(cwds).size).toBe(3);
  });

  it("reuses a warm snapshot for a later task on the same commit, and drops it when the commit moves", async () => {
    await pushCommit("acme/bootstrap");
    const first = await createTask({ repo: "acme/bootstrap", prompt: scripted([check]) });
    await waitForStatus(first.id, ["succeeded"]);
    const second = await createTask({ repo: "acme/bootstrap", prompt: scripted([check]) });
    const warm = await waitForStatus(second.id, ["succeeded"]);
    expect(warm.runs[0]!.workspace).toBe("warm");
    const events = await readEvents(second.id);
    expect(events.some((e) => e.type === "run.cloned" || e.type === "run.setup")).toBe(false);
    const phases = events.filter((e) => e.type === "run.status").map((e) => e.data.phase ?? e.data.status);
    expect(phases).not.toContain("setup");

    await pushCommit("acme/bootstrap");
    const third = await createTask({ repo: "acme/bootstrap", prompt: scripted([check]) });
    const cold = await waitForStatus(third.id, ["succeeded"]);
    expect(cold.runs[0]!.workspace).toBe("clone");
    expect(cold.runs[0]!.baseCommit).not.toBe(warm.runs[0]!.baseCommit);
  });

  it("keeps dependency caches per repository and lockfile: a second setup is a cache hit", async () => {
    await pushCommit("acme/bootstrap");
    const first = await createTask({ repo: "acme/bootstrap", prompt: scripted([check]) });
    await waitForStatus(first.id, ["succeeded"]);
    await pushCommit("acme/bootstrap");
    const second = await createTask({ repo: "acme/bootstrap", prompt: scripted([check]) });
    await waitForStatus(second.id, ["succeeded"]);
    const events = await readEvents(second.id);
    const logs = events.filter((e) => e.type === "log" && e.data.phase === "setup").map((e) => e.data.text);
    expect(logs).toContain("cache hit");
    // What the last setup with this lockfile installed is back before setup runs.
    expect(events.find((e) => e.type === "run.dependencies_restored")?.data.dirs).toEqual(["node_modules"]);

    await pushCommit("acme/bootstrap", "package-lock.json");
    const third = await createTask({ repo: "acme/bootstrap", prompt: scripted([check]) });
    await waitForStatus(third.id, ["succeeded"]);
    const fresh = await readEvents(third.id);
    expect(fresh.some((e) => e.type === "run.dependencies_restored")).toBe(false);
    expect(fresh.filter((e) => e.type === "log" && e.data.phase === "setup").map((e) => e.data.text)).not.toContain("cache hit");
  });
});

describe("the warm snapshots' caps", () => {
  it("drop a repository's snapshot when one of a newer commit (or lockfile) replaces it, and keep other branches'", async () => {
    const fleet = await fleetOf(env);
    await fleet.putWarm("acme/x@main#s@c1", "snap-c1", 1, "acme/x@main#s");
    await fleet.putWarm("acme/x@dev#s@c1", "snap-dev", 1, "acme/x@dev#s");
    expect(await fleet.putWarm("acme/x@main#s@c2", "snap-c2", 1, "acme/x@main#s")).toEqual(["snap-c1"]);
    expect(await fleet.findWarm("acme/x@main#s@c1")).toBeNull();
    expect(await fleet.findWarm("acme/x@dev#s@c1")).toBe("snap-dev");
  });

  it("drop the oldest when their total size passes WARM_SNAPSHOT_MAX_BYTES, never the one just kept", async () => {
    const fleet = await fleetOf(env);
    const gib = 2 ** 30;
    expect(await fleet.putWarm("cap:a", "snap-cap-a", 4 * gib)).toEqual([]);
    expect(await fleet.putWarm("cap:b", "snap-cap-b", 4 * gib)).toEqual([]);
    // 12 GiB would pass the 10 GiB default: the oldest goes.
    expect(await fleet.putWarm("cap:c", "snap-cap-c", 4 * gib)).toEqual(["snap-cap-a"]);
    expect(await fleet.findWarm("cap:a")).toBeNull();
    expect(await fleet.findWarm("cap:c")).toBe("snap-cap-c");
    // One larger than the whole cap is still kept (it is the newest); everything older goes, the earlier tests' snapshots too.
    const dropped = await fleet.putWarm("cap:d", "snap-cap-d", 11 * gib);
    expect(dropped).toEqual(expect.arrayContaining(["snap-cap-b", "snap-cap-c"]));
    expect(dropped).not.toContain("snap-cap-d");
    expect(await fleet.findWarm("cap:d")).toBe("snap-cap-d");
  });
});
