/**
 * Previews on the local backend: each run's app, started in its kept
 * workspace inside its own walls, served at `/preview/<task>/<run>/` by the
 * Worker (HTTP and WebSocket), behind the API's credentials or a preview's
 * own cookie, stopped on request or when the workspace window closes.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { TaskView } from "../../src/schema.ts";
import { builds } from "../support/preview-app.ts";
import { api, auth, createTask, getTask, liveSandboxes, readEvents, scripted, waitForStatus } from "./helpers.ts";

const preview = { command: "node serve.mjs" };

/** Calls the Worker without the API's credentials (a browser would). */
function anonymous(url: string, init: RequestInit = {}): Promise<Response> {
  return exports.default.fetch(new Request(url, { redirect: "manual", ...init }));
}

function withAuth(url: string, init: RequestInit = {}): Promise<Response> {
  return exports.default.fetch(new Request(url, { ...init, headers: { ...auth, ...(init.headers as Record<string, string>) } }));
}

/** Polls until every run's preview has left `starting`. */
async function waitForPreviews(id: string, timeoutMs = 30_000): Promise<TaskView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const task = await getTask(id);
    if (task.runs.every((run) => run.preview && run.preview.status !== "starting")) return task;
    if (Date.now() > deadline) throw new Error(`previews of ${id} still ${JSON.stringify(task.runs.map((r) => r.preview?.status ?? null))}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe("previews", () => {
  it("refuses a port out of range or an empty command with a 400 that says why", async () => {
    for (const [bad, field] of [
      [{ command: "npm start", port: 80 }, "preview.port"],
      [{ command: "npm start", port: 70_000 }, "preview.port"],
      [{ command: "   " }, "preview.command"],
      [{ port: 8080 }, "preview.command"],
    ] as const) {
      const response = await api("/api/tasks", { method: "POST", body: JSON.stringify({ repo: "acme/widgets", prompt: "x", preview: bad }) });
      expect(response.status).toBe(400);
      const { error } = (await response.json()) as { error: { code: string; message: string } };
      expect(error.message).toContain(field);
    }
  });

  it("two runs of one task each serve their own page on port 8080, at URLs of their own, behind credentials", async () => {
    const created = await createTask({
      prompt: "build the page",
      runs: 2,
      variants: [{ prompt_suffix: `#!standin ${JSON.stringify(builds("page of run zero"))}` }, { prompt_suffix: `#!standin ${JSON.stringify(builds("page of run one"))}` }],
      preview,
      keepWorkspaceMinutes: 5,
    });
    const ended = await waitForStatus(created.id, ["succeeded", "failed"]);
    expect(ended.status, JSON.stringify(ended.runs.map((r) => r.error))).toBe("succeeded");
    const task = await waitForPreviews(created.id);
    const [zero, one] = task.runs.map((run) => run.preview!);
    expect(zero!.status, JSON.stringify(zero!.error)).toBe("ready");
    expect(one!.status, JSON.stringify(one!.error)).toBe("ready");
    expect(zero!.url).toBe(`https://sortie.test/preview/${created.id}/0/`);
    expect(one!.url).toBe(`https://sortie.test/preview/${created.id}/1/`);

    const pageZero = await withAuth(zero!.url);
    expect(pageZero.status).toBe(200);
    expect(await pageZero.text()).toBe("<h1>page of run zero</h1>");
    expect(await (await withAuth(one!.url)).text()).toBe("<h1>page of run one</h1>");
    // Sandboxed, and the app sets no cookie on Sortie's origin.
    expect(pageZero.headers.get("content-security-policy")).toMatch(/^sandbox /);
    expect(pageZero.headers.get("set-cookie")).toBeNull();

    // Path and query pass through; the caller's credentials do not.
    const echoed = (await (await withAuth(`${zero!.url}echo/deep?q=1&r=two`, { headers: { cookie: "mine=kept" } })).json()) as { url: string; authorization: string | null; cookie: string | null };
    expect(echoed).toEqual({ url: "/echo/deep?q=1&r=two", authorization: null, cookie: "mine=kept" });

    // Without credentials, or with a wrong token: 401.
    expect((await anonymous(zero!.url)).status).toBe(401);
    expect((await anonymous(one!.url, { headers: { authorization: "Bearer wrong" } })).status).toBe(401);

    // The WebSocket (a dev server's hot reload) goes through to the run's own app.
    const upgraded = await withAuth(one!.url, { headers: { upgrade: "websocket" } });
    expect(upgraded.status).toBe(101);
    const socket = upgraded.webSocket!;
    socket.accept();
    const reply = new Promise<string>((resolve) => socket.addEventListener("message", (message) => resolve(String(message.data))));
    socket.send("hello");
    expect(await reply).toBe("page of run one echoes hello");
    socket.close(1000, "done");

    // A browser trades a minute's ticket for a cookie scoped to that one preview.
    const session = await api(`/api/tasks/${created.id}/runs/0/preview/session`, { method: "POST" });
    expect(session.status).toBe(201);
    const { ticketUrl } = (await session.json()) as { ticketUrl: string };
    expect(ticketUrl).not.toContain("test-admin-token");
    const traded = await anonymous(ticketUrl);
    expect(traded.status).toBe(303);
    expect(traded.headers.get("location")).toBe(`/preview/${created.id}/0/`);
    const cookie = traded.headers.get("set-cookie")!;
    expect(cookie).toContain(`Path=/preview/${created.id}/0/`);
    expect(cookie).toContain("HttpOnly");
    const pair = cookie.split(";")[0]!;
    const byCookie = await anonymous(zero!.url, { headers: { cookie: pair } });
    expect(await byCookie.text()).toBe("<h1>page of run zero</h1>");
    expect((await anonymous(`${zero!.url}echo`, { headers: { cookie: pair } }).then((r) => r.json())) as { cookie: string | null }).toMatchObject({ cookie: null });
    expect((await anonymous(one!.url, { headers: { cookie: pair } })).status).toBe(401);
    expect((await anonymous(ticketUrl.replace(/ticket=[^&]+/, "ticket=forged"))).status).toBe(401);

    const events = await readEvents(created.id);
    expect(events.filter((e) => e.type === "preview.ready").map((e) => e.run).sort()).toEqual([0, 1]);
    expect(events.filter((e) => e.type === "preview.output").map((e) => String(e.data.text))).toContain("listening on 8080\n");

    // Stopping one leaves the other serving.
    const stopped = await api(`/api/tasks/${created.id}/runs/1/preview`, { method: "DELETE" });
    expect(stopped.status).toBe(200);
    expect(((await stopped.json()) as TaskView).runs[1]!.preview!.status).toBe("stopped");
    expect((await withAuth(one!.url)).status).toBe(404);
    expect((await withAuth(zero!.url)).status).toBe(200);
    expect((await api(`/api/tasks/${created.id}/runs/1/preview`, { method: "DELETE" })).status).toBe(409);
  });

  it("the judge is given a PNG screenshot of each ready preview, named by run, and the task keeps them", async () => {
    const look = 'cd "$SORTIE_SCREENSHOTS_DIR" && for f in *; do printf "%s " "$f"; head -c 8 "$f" | od -An -tx1 | tr -d " \\n"; echo; done';
    const verdict = { winner: 1, ranking: [1, 0], reasons: "run 1's page reads better" };
    const created = await createTask({
      prompt: `build the page\n#!standin-judge ${JSON.stringify([{ tool: "Bash", input: { command: look } }, { text: JSON.stringify(verdict) }])}`,
      runs: 2,
      variants: [{ prompt_suffix: `#!standin ${JSON.stringify(builds("the first page"))}` }, { prompt_suffix: `#!standin ${JSON.stringify(builds("the second page"))}` }],
      preview,
      judge: true,
      keepWorkspaceMinutes: 5,
    });
    const task = await waitForStatus(created.id, ["succeeded", "failed"], 50_000);
    expect(task.judge?.status, JSON.stringify(task.judge?.error)).toBe("succeeded");
    expect(task.judge?.winner).toBe(1);
    const events = await readEvents(created.id);
    const seen = String(events.find((e) => e.type === "judge.tool_result")?.data.text ?? "");
    // Claude Code may add a line of its own (the shell's cwd put back).
    expect(seen.split("\n").filter((line) => line.includes(".png")).sort()).toEqual(["run-0.png 89504e470d0a1a0a", "run-1.png 89504e470d0a1a0a"]);
    expect(events.find((e) => e.type === "judge.status" && e.data.status === "running")).toBeDefined();
    const shots = await Promise.all([0, 1].map(async (run) => {
      const response = await api(`/api/tasks/${created.id}/runs/${run}/screenshot`);
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toBe("image/png");
      return new Uint8Array(await response.arrayBuffer());
    }));
    for (const png of shots) expect([...png.subarray(0, 4)]).toEqual([0x89, 0x50, 0x4e, 0x47]);
    // Each is its own run's page.
    expect(shots[0]!.length === shots[1]!.length && shots[0]!.every((byte, i) => byte === shots[1]![i])).toBe(false);
    expect(task.runs.map((run) => run.screenshot)).toEqual([true, true]);
    expect((await anonymous(`https://sortie.test/api/tasks/${created.id}/runs/0/screenshot`)).status).toBe(401);
  });

  it("a follow-up turn restarts the preview after the turn, serving what the turn changed", async () => {
    const steps = [...builds("the first draft"), { tool: "Write", input: { file_path: "index.html", content: "<h1>the second draft</h1>\n" } }, { text: "Changed." }];
    const created = await createTask({ prompt: scripted(steps, "build the page"), preview, keepWorkspaceMinutes: 5 });
    await waitForStatus(created.id, ["succeeded"]);
    const first = (await waitForPreviews(created.id)).runs[0]!.preview!;
    expect(first.status).toBe("ready");
    expect(await (await withAuth(first.url)).text()).toBe("<h1>the first draft</h1>");
    expect((await api(`/api/tasks/${created.id}/messages`, { method: "POST", body: JSON.stringify({ text: "make it the second draft" }) })).status).toBe(202);
    const deadline = Date.now() + 30_000;
    let again = first;
    while (Date.now() < deadline) {
      const task = await getTask(created.id);
      again = task.runs[0]!.preview!;
      if (task.status === "succeeded" && again.status === "ready" && again.startedAt > first.startedAt) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(again.status).toBe("ready");
    expect(again.startedAt).toBeGreaterThan(first.startedAt);
    expect(await (await withAuth(again.url)).text()).toBe("<h1>the second draft</h1>");
    const events = await readEvents(created.id);
    const order = events.filter((e) => e.type.startsWith("preview.") && e.type !== "preview.output" || e.type === "run.message_delivered").map((e) => (e.type === "preview.stopped" ? `${e.type}:${e.data.reason}` : e.type));
    expect(order).toEqual(["preview.starting", "preview.ready", "preview.stopped:follow_up", "run.message_delivered", "preview.starting", "preview.ready"]);
  });

  it("a workspace run's preview runs as the run's own user, in its worktree", async () => {
    const created = await createTask({ prompt: "build it", isolation: "workspace", variants: [{ prompt_suffix: `#!standin ${JSON.stringify(builds("a worktree's page"))}` }], preview: { command: "id -u > whoami.txt; node serve.mjs" }, keepWorkspaceMinutes: 5 });
    await waitForStatus(created.id, ["succeeded"]);
    const ready = (await waitForPreviews(created.id)).runs[0]!.preview!;
    expect(ready.status, JSON.stringify(ready.error)).toBe("ready");
    expect(await (await withAuth(ready.url)).text()).toBe("<h1>a worktree's page</h1>");
    const events = await readEvents(created.id);
    const uid = Number(events.find((e) => e.type === "run.worktree")?.data.uid);
    expect(uid).toBeGreaterThan(20000);
    // The worktree is the run's user's: what the preview wrote there is that user's too.
    const stub = env.TaskAgent.get(env.TaskAgent.idFromName(created.id));
    await runInDurableObject(stub, async (instance) => {
      const agent = instance as unknown as { previewTarget(run: number): { sandboxId: string; place: { cwd: string } } | null };
      const target = agent.previewTarget(0)!;
      const answer = await fetch(`${env.LOCAL_SANDBOX_URL}/v1/sandboxes/${target.sandboxId}/exec`, { method: "POST", headers: { authorization: `Bearer ${env.LOCAL_SANDBOX_TOKEN}` }, body: JSON.stringify({ command: 'cat "$F"', env: { F: `${target.place.cwd}/whoami.txt` }, bookkeeping: true }) });
      expect(((await answer.json()) as { stdout: string }).stdout.trim()).toBe(String(uid));
    });
    await api(`/api/tasks/${created.id}/runs/0/preview`, { method: "DELETE" });
  });

  it("a command that never listens ends failed, with its output", async () => {
    const created = await createTask({
      prompt: scripted([{ text: "Nothing to build." }]),
      preview: { command: "echo 'starting the server'; echo 'missing config' >&2; node -e 'setTimeout(() => {}, 600000)'", port: 9090 },
      keepWorkspaceMinutes: 5,
    });
    await waitForStatus(created.id, ["succeeded"]);
    const task = await waitForPreviews(created.id);
    const failed = task.runs[0]!.preview!;
    expect(failed.status).toBe("failed");
    expect(failed.error?.code).toBe("preview_not_listening");
    expect(failed.error?.message).toContain("port 9090");
    expect(failed.error?.message).toContain("starting the server");
    expect(failed.error?.message).toContain("missing config");
    const events = await readEvents(created.id);
    expect(events.find((e) => e.type === "preview.failed")?.data.output).toContain("missing config");
    expect((await withAuth(failed.url)).status).toBe(404);
  });

  it("a command that exits before listening ends failed at once, with its output", async () => {
    const created = await createTask({ prompt: scripted([{ text: "Nothing to build." }]), preview: { command: "echo 'no such script: dev' >&2; exit 3" }, keepWorkspaceMinutes: 5 });
    await waitForStatus(created.id, ["succeeded"]);
    const failed = (await waitForPreviews(created.id)).runs[0]!.preview!;
    expect(failed.status).toBe("failed");
    expect(failed.error?.code).toBe("preview_exited");
    expect(failed.error?.message).toContain("no such script: dev");
  });

  it("stops when the workspace window closes", async () => {
    const created = await createTask({ prompt: "build it", variants: [{ prompt_suffix: `#!standin ${JSON.stringify(builds("short-lived page"))}` }], preview, keepWorkspaceMinutes: 1 });
    await waitForStatus(created.id, ["succeeded"]);
    const ready = (await waitForPreviews(created.id)).runs[0]!.preview!;
    expect(ready.status).toBe("ready");
    expect(await (await withAuth(ready.url)).text()).toBe("<h1>short-lived page</h1>");
    // The window's alarm, brought forward to now.
    const stub = env.TaskAgent.get(env.TaskAgent.idFromName(created.id));
    await runInDurableObject(stub, (_agent, state) => {
      state.storage.sql.exec("UPDATE cf_agents_jobs SET time = ? WHERE fn = 'expireWorkspace'", Date.now() - 1);
    });
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    const after = await getTask(created.id);
    expect(after.runs[0]!.preview!.status).toBe("stopped");
    expect(after.runs[0]!.workspaceUntil).toBeNull();
    expect((await withAuth(ready.url)).status).toBe(404);
    expect((await liveSandboxes()).filter((s) => s.startsWith(created.id))).toEqual([]);
    const events = await readEvents(created.id);
    expect(events.find((e) => e.type === "preview.stopped")?.data.reason).toBe("workspace_released");
  });
});
