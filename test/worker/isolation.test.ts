/**
 * Isolation levels, enforced and recorded: an analysis run cannot change the
 * repository or reach the network beyond the model API; a workspace run
 * cannot see another run's worktree; the level shows on the task and its runs.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { api, createTask, liveSandboxes, readEvents, scripted, waitForPhase, waitForStatus } from "./helpers.ts";

/** Prints what node's fetch makes of `url`: `reached <status>` or `blocked <code>`. */
const probe = (url: string) =>
  `node -e "fetch(process.argv[1]).then(r => console.log('reached', r.status), e => console.log('blocked', e.cause?.code ?? e.message))" ${url}`;

describe("analysis runs", () => {
  it("read a read-only checkout, reach only the model API, and hand back an answer instead of a diff", async () => {
    const created = await createTask({
      isolation: "analysis",
      prompt: scripted([
        { tool: "Write", input: { file_path: "NOTES.md", content: "changed\n" } },
        { tool: "Bash", input: { command: "echo changed >> README.md; touch new-file; id -u" } },
        { tool: "Bash", input: { command: probe(env.LOCAL_SANDBOX_URL) } },
        { tool: "Bash", input: { command: "cat README.md | head -1" } },
        { text: "The README describes widgets." },
      ]),
    });
    expect(created.isolation).toEqual({ level: "analysis", inferred: false, reason: "declared by the task" });
    const task = await waitForStatus(created.id, ["succeeded", "failed"]);
    expect(task.status, JSON.stringify(task.error)).toBe("succeeded");
    expect(task.runs[0]!.isolation).toBe("analysis");
    expect(task.runs[0]!.diff).toBeNull();

    const results = (await readEvents(created.id)).filter((e) => e.type === "agent.tool_result");
    // Claude Code refuses the edit tool outright; the shell's writes hit file permissions.
    expect(results[0]!.data.isError).toBe(true);
    expect(results[1]!.data.text).toMatch(/Permission denied/);
    expect(results[1]!.data.text).toMatch(/\b10001\b/);
    // The sandbox host answers on loopback: reachable from the host, not from the run's network
    // (no connection at all, or the walls' proxy refusing it with 403).
    expect(results[2]!.data.text).toMatch(/^(blocked |reached 403)/m);
    expect(results[3]!.data.text).not.toBe("");
    const events = await readEvents(created.id);
    expect(events.some((e) => e.type === "run.diff")).toBe(false);
    expect(events.find((e) => e.type === "agent.result")?.data.text).toBe("The README describes widgets.");
  });

  it("cannot be judged or published: it has no change to offer", async () => {
    for (const extra of [{ judge: true, runs: 2 }, { output: "pr" }]) {
      const response = await api("/api/tasks", { method: "POST", body: JSON.stringify({ repo: "acme/widgets", prompt: "review it", isolation: "analysis", ...extra }) });
      expect(response.status).toBe(422);
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe("isolation_conflict");
    }
  });

  it("an unknown level is refused with the levels there are", async () => {
    const response = await api("/api/tasks", { method: "POST", body: JSON.stringify({ repo: "acme/widgets", prompt: "x", isolation: "vm" }) });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { message: string } }).error.message).toMatch(/analysis.*workspace.*sandbox/);
  });

  it("is inferred from a read-only question under `auto`", async () => {
    const created = await createTask({ isolation: "auto", prompt: "Explain how the widget registry works" });
    expect(created.isolation).toMatchObject({ level: "analysis", inferred: true });
    expect(created.runs[0]!.isolation).toBe("analysis");
    await waitForStatus(created.id, ["succeeded", "failed"]);
  });
});

describe("a task's own egress hosts", () => {
  it("are accepted for a sandbox of the task's own and the run goes ahead", async () => {
    const created = await createTask({ egress: ["api.stripe.com", "*.example.org"], prompt: scripted([{ text: "fine" }]) });
    const task = await waitForStatus(created.id, ["succeeded", "failed"]);
    expect(task.status, JSON.stringify(task.runs[0]!.error)).toBe("succeeded");
  });
});

describe("workspace runs", () => {
  // Each run prints its own README's first line, then tries the other run's worktree and the worktree list.
  const peek = {
    tool: "Bash",
    input: { command: 'n=${PWD##*/}; t=${n%-*}; echo "me=$n"; head -c 12 README.md; echo; for i in 0 1; do [ "$t-$i" = "$n" ] || cat "../$t-$i/README.md"; done; ls ..; id -u' },
  };

  it("work in worktrees of one shared sandbox, each closed to the others", async () => {
    const created = await createTask({
      isolation: "workspace",
      runs: 2,
      prompt: scripted([peek, { tool: "Write", input: { file_path: "MINE.md", content: "mine\n" } }, { text: "done" }]),
    });
    const task = await waitForStatus(created.id, ["succeeded", "failed"]);
    expect(task.status, JSON.stringify(task.error)).toBe("succeeded");
    expect(task.runs.map((r) => [r.isolation, r.workspace])).toEqual([["workspace", "worktree"], ["workspace", "worktree"]]);

    const events = await readEvents(created.id);
    const outputs = events.filter((e) => e.type === "agent.tool_result" && String(e.data.text).startsWith("me=")).map((e) => String(e.data.text));
    expect(outputs).toHaveLength(2);
    for (const output of outputs) {
      expect(output).toMatch(/Permission denied/);
      // Their own README reads fine; the other run's and the list of worktrees do not.
      expect(output.split("\n")[1]).not.toBe("");
      expect(output.match(/Permission denied/g)!.length).toBe(2);
    }
    const users = new Set(events.filter((e) => e.type === "run.worktree").map((e) => e.data.uid));
    expect(users.size).toBe(2);
    const worktreeSandboxes = new Set(events.filter((e) => e.type === "run.worktree").map((e) => e.data.sandbox));
    expect(worktreeSandboxes.size).toBe(1);

    // Each diff holds its own run's file only.
    for (const run of [0, 1]) {
      const diff = await (await api(`/api/tasks/${created.id}/runs/${run}/diff`)).text();
      expect(diff).toContain("+++ b/MINE.md");
      expect(task.runs[run]!.diff?.files).toBe(1);
    }
    // The worktrees are gone; the shared sandbox stays warm for the repository's next run.
    expect(events.filter((e) => e.type === "sandbox.worktree_removed")).toHaveLength(2);
    expect(await liveSandboxes()).toContain([...worktreeSandboxes][0]);
  });

  it("a later task on the repository starts in the warm shared sandbox without a clone", async () => {
    const first = await createTask({ isolation: "workspace", prompt: scripted([{ text: "one" }]) });
    await waitForStatus(first.id, ["succeeded"]);
    const second = await createTask({ isolation: "workspace", prompt: scripted([{ tool: "Bash", input: { command: "git log --oneline | wc -l" } }, { text: "two" }]) });
    const task = await waitForStatus(second.id, ["succeeded", "failed"]);
    expect(task.status, JSON.stringify(task.error)).toBe("succeeded");
    const [a, b] = await Promise.all([readEvents(first.id), readEvents(second.id)]);
    expect(b.find((e) => e.type === "run.worktree")?.data.sandbox).toBe(a.find((e) => e.type === "run.worktree")?.data.sandbox);
    expect(b.some((e) => e.type === "run.cloned")).toBe(false);
  });

  it("a later task on the same commit starts from the first one's template: no checkout, no setup", async () => {
    const check = { tool: "Bash", input: { command: "cat node_modules/.built && id -u" } };
    const write = { tool: "Write", input: { file_path: "TEMPLATE.md", content: "mine\n" } };
    const first = await createTask({ repo: "acme/bootstrap", isolation: "workspace", prompt: scripted([check, write, { text: "one" }]) });
    const one = await waitForStatus(first.id, ["succeeded", "failed"]);
    expect(one.status, JSON.stringify(one.runs[0]!.error)).toBe("succeeded");
    expect(one.runs[0]!.workspace).toBe("worktree");
    const second = await createTask({ repo: "acme/bootstrap", isolation: "workspace", prompt: scripted([check, write, { text: "two" }]) });
    const two = await waitForStatus(second.id, ["succeeded", "failed"]);
    expect(two.status, JSON.stringify(two.runs[0]!.error)).toBe("succeeded");
    expect(two.runs[0]!.workspace).toBe("warm");
    const [a, b] = await Promise.all([readEvents(first.id), readEvents(second.id)]);
    expect(a.some((e) => e.type === "run.setup")).toBe(true);
    expect(b.some((e) => e.type === "run.setup")).toBe(false);
    expect(b.find((e) => e.type === "run.restored")?.data.source).toBe("template");
    // The same prepared files, each worktree its own user's, and a diff of this run's change only.
    const output = (events: typeof a) => String(events.find((e) => e.type === "agent.tool_result" && String(e.data.text).startsWith("built"))?.data.text).split("\n");
    expect(output(b)[0]).toBe(output(a)[0]);
    expect(output(b)[1]).toMatch(/^\d+$/);
    const diff = await (await api(`/api/tasks/${second.id}/runs/0/diff`)).text();
    expect(diff).toContain("+++ b/TEMPLATE.md");
    expect(diff).not.toContain("node_modules");
    expect(two.runs[0]!.diff?.files).toBe(1);
  });

  it("a cancelled run's agent is stopped, not left running in the shared sandbox", async () => {
    const created = await createTask({
      isolation: "workspace",
      prompt: scripted([{ tool: "Bash", input: { command: "node -e 'setTimeout(() => {}, 60000)'" } }, { text: "never" }]),
    });
    await waitForPhase(created.id, "agent");
    await expect.poll(async () => (await readEvents(created.id)).some((e) => e.type === "agent.tool_call"), { timeout: 20_000 }).toBe(true);
    const sandbox = (await readEvents(created.id)).find((e) => e.type === "run.worktree")!.data.sandbox as string;
    expect((await api(`/api/tasks/${created.id}/cancel`, { method: "POST" })).status).toBe(200);
    await waitForStatus(created.id, ["cancelled"]);
    const running = async () => {
      const listed = (await (await fetch(`${env.LOCAL_SANDBOX_URL}/v1/sandboxes`, { headers: { authorization: `Bearer ${env.LOCAL_SANDBOX_TOKEN}` } })).json()) as { processes: { sandbox: string; done: boolean }[] };
      return listed.processes.filter((p) => p.sandbox === sandbox && !p.done).length;
    };
    await expect.poll(running, { timeout: 15_000 }).toBe(0);
    expect((await readEvents(created.id)).some((e) => e.type === "sandbox.worktree_removed")).toBe(true);
  });

  it("a process the agent leaves behind cannot turn its patch into a link to a file only root reads", async () => {
    // Waits for Sortie to write the patch, then swaps it for a link to the host's /etc/shadow.
    const swap = [
      "const fs = require('fs'); const path = require('path');",
      "const patch = path.resolve(process.cwd(), '../../scratch', path.basename(process.cwd()), 'sortie.diff');",
      "const deadline = Date.now() + 20000;",
      "const tick = () => { try { if (fs.statSync(patch).size > 0) { fs.rmSync(patch); fs.symlinkSync('/etc/shadow', patch); return; } } catch {} if (Date.now() < deadline) setTimeout(tick, 5); };",
      "tick();",
    ].join(" ");
    const created = await createTask({
      isolation: "workspace",
      prompt: scripted([
        { tool: "Write", input: { file_path: "swap.cjs", content: `${swap}\n` } },
        { tool: "Bash", input: { command: "nohup node swap.cjs > /dev/null 2>&1 &" } },
        { text: "left something running" },
      ]),
    });
    const task = await waitForStatus(created.id, ["succeeded", "failed"]);
    if (task.status === "succeeded") {
      const diff = await (await api(`/api/tasks/${created.id}/runs/0/diff`)).text();
      expect(diff).toContain("+++ b/swap.cjs");
      expect(diff).not.toMatch(/^root:/m);
    } else {
      expect(task.runs[0]!.error?.message ?? "").not.toMatch(/root:/);
    }
  });
});
