/**
 * The plan commands of `sortie` as a user runs them, against a stub of the
 * API that records what it was sent and refuses anything it was not told to
 * expect.
 */
import { spawn } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../cli/sortie.mjs");
const requests: { method: string; url: string; body: unknown }[] = [];
let reads = 0;
let server: http.Server;
let url = "";

const subtask = (key: string, status: string, dependsOn: string[] = []) => ({ key, title: key, status, taskId: status === "pending" ? null : `task-${key}`, dependsOn, owns: [`${key}/**`], acceptance: [], handoff: null, diff: null, summary: null, sentBack: 0, costUsd: 0, startedAt: null, endedAt: null, error: null });
const planAt = (status: string, subtasks: ReturnType<typeof subtask>[]) => ({ id: "plan0000000000000001", repo: "acme/widgets", spec: "split it", status, plan: { summary: "Two parts.", subtasks: [] }, subtasks, integration: null, costUsd: 0.5, error: null, url: `${url}/api/plans/plan0000000000000001` });

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let text = "";
    req.on("data", (chunk) => (text += chunk));
    req.on("end", () => {
      requests.push({ method: req.method!, url: req.url!, body: text ? JSON.parse(text) : null });
      const send = (status: number, value: unknown) => res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(value));
      if (req.headers.authorization !== "Bearer tok") return send(401, { error: { code: "unauthorized", message: "no" } });
      if (req.method === "POST" && req.url === "/api/plans") return send(202, planAt("planning", []));
      if (req.method === "GET" && req.url === "/api/plans/plan0000000000000001") {
        reads += 1;
        return send(200, reads < 2 ? planAt("running", [subtask("api", "running"), subtask("docs", "pending", ["api"])]) : planAt("succeeded", [subtask("api", "succeeded"), subtask("docs", "succeeded", ["api"])]));
      }
      if (req.method === "POST" && req.url === "/api/plans/plan0000000000000001/approve") return send(409, { error: { code: "not_awaiting_approval", message: "plan is running, not awaiting approval" } });
      if (req.method === "GET" && req.url?.startsWith("/api/plans")) return send(200, { plans: [{ id: "plan0000000000000001", repo: "acme/widgets", spec: "split it", status: "succeeded", subtasks: 2, createdBy: "admin", createdAt: 0, endedAt: 1, costUsd: 0.5, error: null }] });
      send(500, { error: { code: "unexpected", message: `${req.method} ${req.url}` } });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

function sortie(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const env = { PATH: process.env.PATH ?? "", HOME: os.tmpdir(), XDG_CONFIG_HOME: os.tmpdir(), SORTIE_URL: url, SORTIE_TOKEN: "tok", NO_COLOR: "1" };
    const child = spawn(process.execPath, [cli, ...args], { env: env as unknown as NodeJS.ProcessEnv, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("sortie plan, plans, approve", () => {
  it("plan --approve --follow sends an auto-approved plan and follows it to its end, exit 0 on success", async () => {
    const result = await sortie(["plan", "acme/widgets", "split it", "--approve", "--follow"]);
    expect(result.code, result.stderr).toBe(0);
    expect(requests.find((r) => r.method === "POST" && r.url === "/api/plans")?.body).toEqual({ repo: "acme/widgets", spec: "split it", approve: "auto" });
    expect(result.stdout).toMatch(/api\s+running/);
    expect(result.stdout).toMatch(/docs\s+succeeded\s+owns docs\/\*\* after api/);
  }, 30_000);

  it("plans lists them; approve shows the API's refusal and exits 1", async () => {
    const listed = await sortie(["plans"]);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/plan0000000000000001\s+succeeded\s+acme\/widgets\s+2 subtasks/);
    const refused = await sortie(["approve", "plan0000000000000001"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("not_awaiting_approval");
  });
});
