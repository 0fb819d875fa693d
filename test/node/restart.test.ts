/**
 * The local sandbox host across restarts of `npm run dev`, on the same
 * persisted state: a clean stop keeps warm snapshots (the next task starts
 * warm), and a kill -9 in the middle of a run leaves nothing of the dead host
 * behind once it starts again, while the run is retried and succeeds.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startDevServer, type DevServer } from "../support/dev-server.ts";
import { createFixtureRepos } from "../support/fixtures.ts";

const state = fs.mkdtempSync(path.join(os.tmpdir(), "sortie-restart-state-"));
const gitBase = createFixtureRepos(fs.mkdtempSync(path.join(os.tmpdir(), "sortie-restart-git-")), ["acme/widgets"]);
const env = { GIT_BASE_URL: gitBase, SORTIE_ADMIN_TOKEN: `restart-${Math.random().toString(36).slice(2)}` };
const sandboxes = path.join(state, "sandboxes");
let server: DevServer | undefined;

afterAll(async () => {
  await server?.stop();
  fs.rmSync(state, { recursive: true, force: true });
  fs.rmSync(new URL(gitBase).pathname, { recursive: true, force: true });
});

async function call(pathname: string, init: RequestInit = {}) {
  return fetch(`${server!.url}${pathname}`, { ...init, headers: { authorization: `Bearer ${env.SORTIE_ADMIN_TOKEN}`, ...(init.headers as Record<string, string>) } });
}

interface TaskBody {
  id: string;
  status: string;
  error: unknown;
  runs: { phase: string | null; workspace: string | null; attempts: unknown[] }[];
}

async function waitFor(id: string, done: (task: TaskBody) => boolean, timeoutMs = 120_000): Promise<TaskBody> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const task = (await (await call(`/api/tasks/${id}`)).json()) as TaskBody;
    if (done(task)) return task;
    if (Date.now() > deadline) throw new Error(`task ${id} still ${task.status} (phase ${task.runs[0]?.phase})`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** The attempts' markers under the host's sandboxes. */
function markers(): string[] {
  if (!fs.existsSync(sandboxes)) return [];
  return fs.readdirSync(sandboxes).flatMap((sandbox) => {
    const home = path.join(sandboxes, sandbox, "home");
    return fs.existsSync(home) ? fs.readdirSync(home).filter((name) => name.startsWith("marker-")).map((name) => path.join(home, name)) : [];
  });
}

const ended = (task: TaskBody) => ["succeeded", "failed", "cancelled", "timed_out"].includes(task.status);

async function run(steps: unknown[]): Promise<string> {
  const response = await call("/api/tasks", { method: "POST", body: JSON.stringify({ repo: "acme/widgets", prompt: `restart test\n#!standin ${JSON.stringify(steps)}`, keepWorkspaceMinutes: 0 }) });
  expect(response.status).toBe(202);
  return ((await response.json()) as { id: string }).id;
}

describe("npm run dev, restarted on the same state", () => {
  it("starts the next task warm after a clean restart", async () => {
    server = await startDevServer(env, { persistTo: state });
    const first = await waitFor(await run([{ tool: "Bash", input: { command: "echo one > ONE.md" } }, { text: "done" }]), ended);
    expect(first.status, JSON.stringify(first.error)).toBe("succeeded");
    await server.stop();

    server = await startDevServer(env, { persistTo: state });
    const second = await waitFor(await run([{ tool: "Bash", input: { command: "echo two > TWO.md" } }, { text: "done" }]), ended);
    expect(second.status, JSON.stringify(second.error)).toBe("succeeded");
    expect(second.runs[0]!.workspace).toBe("warm");
  });

  it("after a kill -9 mid-run, retries the run and keeps nothing of the dead host", async () => {
    server ??= await startDevServer(env, { persistTo: state });
    // Each attempt leaves a marker of its own in its sandbox's home.
    const id = await run([{ tool: "Bash", input: { command: 'touch "$HOME/marker-$(date +%s%N)"; sleep 8; echo three > THREE.md' } }, { text: "done" }]);
    // Killed once the agent is in the middle of its work: its marker is there, its sleep not over.
    const deadline = Date.now() + 60_000;
    while (markers().length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
    const dead = [...markers(), ...fs.readdirSync(sandboxes).filter((name) => name.startsWith(".spare-")).map((name) => path.join(sandboxes, name))];
    expect(markers().length).toBe(1);
    await server.kill();

    server = await startDevServer(env, { persistTo: state });
    // Nothing of the dead host: its sandbox went as the new host started.
    expect(dead.filter((file) => fs.existsSync(file))).toEqual([]);
    const task = await waitFor(id, ended);
    expect(task.status, JSON.stringify(task.error)).toBe("succeeded");
    expect(task.runs[0]!.attempts.length).toBeGreaterThan(0);
    // The retried run's own sandbox goes when it ends (no workspace kept): nothing is left under the root but the
    // live host's spare (the dead host's went with the rest of it at the restart).
    await waitFor(id, () => fs.readdirSync(sandboxes).filter((name) => !name.startsWith(".spare-")).length === 0, 20_000);
  });
});
