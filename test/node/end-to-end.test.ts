/**
 * The README's session, for real: `npm run dev`, a task over HTTP, the real
 * Claude Code CLI in a local sandbox against the stand-in model, and the
 * diff from the API applied with `git apply`.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDevServer, type DevServer } from "../support/dev-server.ts";

let server: DevServer;

beforeAll(async () => {
  // A preview domain, so the last test can ask for a viewer's file on a preview host.
  server = await startDevServer({ PREVIEW_HOSTNAME: "previews.test" });
});

afterAll(async () => {
  await server?.stop();
});

async function call(pathname: string, init: RequestInit = {}) {
  return fetch(`${server.url}${pathname}`, { ...init, headers: { authorization: `Bearer ${server.token}`, ...(init.headers as Record<string, string>) } });
}

async function waitForEnd(id: string) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const task = (await (await call(`/api/tasks/${id}`)).json()) as { status: string; error: unknown; runs: { diff: unknown }[] };
    if (["succeeded", "failed", "cancelled", "timed_out"].includes(task.status)) return task;
    if (Date.now() > deadline) throw new Error(`task ${id} did not end`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe("npm run dev, end to end", () => {
  it("runs a task and serves a diff that git apply takes, binary files included", async () => {
    const firstLine = `add a CONTRIBUTING.md that says "hello" 'there' $(whoami) \`id\` $HOME; done`;
    const steps = [
      { tool: "Write", input: { file_path: "CONTRIBUTING.md", content: `${firstLine}\n` } },
      { tool: "Bash", input: { command: "printf '\\x00\\x01\\x02\\xff' > data.bin && rm logo.png && printf 'more\\n' >> README.md" } },
      { text: "Done." },
    ];
    const prompt = `${firstLine}\nsecond line\n#!standin ${JSON.stringify(steps)}`;
    // curl -d sends form encoding: the API reads JSON whatever the content type says.
    const created = await call("/api/tasks", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: JSON.stringify({ repo: "acme/widgets", prompt, keepWorkspaceMinutes: 0 }) });
    expect(created.status).toBe(202);
    const task = (await created.json()) as { id: string; status: string; ws: string; url: string };
    expect(task).toMatchObject({ status: "queued", url: `${server.url}/api/tasks/${task.id}` });
    expect(task.ws).toMatch(/^ws:\/\//);

    const done = await waitForEnd(task.id);
    expect(done.status, JSON.stringify(done.error)).toBe("succeeded");

    const diff = await call(`/api/tasks/${task.id}/runs/0/diff`);
    expect(diff.headers.get("content-type")).toContain("text/x-diff");
    const patch = await diff.text();

    const work = fs.mkdtempSync(path.join(os.tmpdir(), "sortie-apply-"));
    execFileSync("git", ["clone", "-q", `${server.gitBaseUrl}/acme/widgets.git`, work]);
    execFileSync("git", ["apply", "--index", "-"], { cwd: work, input: patch });
    expect(fs.readFileSync(path.join(work, "CONTRIBUTING.md"), "utf8")).toBe(`${firstLine}\n`);
    expect([...fs.readFileSync(path.join(work, "data.bin"))]).toEqual([0, 1, 2, 255]);
    expect(fs.existsSync(path.join(work, "logo.png"))).toBe(false);
    expect(fs.readFileSync(path.join(work, "README.md"), "utf8")).toMatch(/more\n$/);
    const status = execFileSync("git", ["status", "--porcelain"], { cwd: work, encoding: "utf8" }).trim().split("\n").sort();
    expect(status).toEqual(["A  CONTRIBUTING.md", "A  data.bin", "D  logo.png", "M  README.md"]);

    const events = (await (await call(`/api/tasks/${task.id}/events`)).text()).trim().split("\n").map((line) => JSON.parse(line) as { seq: number; type: string });
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    // The sandbox is gone before the run reads as ended.
    const types = events.map((e) => e.type);
    expect(types.slice(-3)).toEqual(["sandbox.destroyed", "run.status", "task.status"]);
  });

  it("refuses the API without the token", async () => {
    const response = await fetch(`${server.url}/api/tasks`);
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ error: { code: "unauthorized" } });
  });

  it("serves the viewer's files on its own host, and none of them on a preview host", async () => {
    const index = await fetch(`${server.url}/tasks/some-task`);
    expect(index.status).toBe(200);
    const html = await index.text();
    const script = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    expect(script).toBeDefined();
    expect((await fetch(`${server.url}${script}`)).headers.get("content-type")).toMatch(/javascript/);
    // The same paths on a run's preview host are the run's app: behind its credentials, never the viewer.
    const previewHost = "8080-task1-0-abcdefgh12345678.previews.test";
    for (const pathname of [script!, "/", "/tasks/some-task"]) {
      const response = await getOnHost(`${server.url}${pathname}`, previewHost);
      expect(response.status, pathname).toBe(401);
      expect(JSON.parse(response.body)).toMatchObject({ error: { code: "unauthorized" } });
    }
  });
});

/** A GET naming another host than the server's address (fetch keeps its own Host header). */
function getOnHost(url: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get(url, { headers: { host } }, (response) => {
      let body = "";
      response.on("data", (chunk: Buffer) => (body += chunk.toString()));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
    }).on("error", reject);
  });
}
