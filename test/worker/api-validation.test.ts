import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { api, countTasks } from "./helpers.ts";

async function errorOf(response: Response) {
  expect(response.headers.get("content-type")).toContain("application/json");
  const body = (await response.json()) as { error: { code: string; message: string } };
  expect(typeof body.error.message).toBe("string");
  return body.error;
}

describe("bad input gets a clear JSON error and creates nothing", () => {
  const cases: [string, RequestInit, number, string][] = [
    ["malformed JSON", { body: "{not json" }, 400, "invalid_json"],
    ["an empty body", { body: "" }, 400, "invalid_json"],
    ["a JSON array", { body: "[]" }, 400, "invalid_body"],
    ["a prompt of the wrong type", { body: JSON.stringify({ repo: "acme/widgets", prompt: 42 }) }, 400, "invalid_body"],
    ["a missing prompt", { body: JSON.stringify({ repo: "acme/widgets" }) }, 400, "invalid_body"],
    ["an unknown field", { body: JSON.stringify({ repo: "acme/widgets", prompt: "x", colour: "red" }) }, 400, "invalid_body"],
    ["an unknown repo form", { body: JSON.stringify({ repo: "git@github.com:acme/widgets.git", prompt: "x" }) }, 400, "invalid_repo"],
    ["a repo on another host", { body: JSON.stringify({ repo: "https://gitlab.com/acme/widgets", prompt: "x" }) }, 400, "invalid_repo"],
    ["a path-traversing repo", { body: JSON.stringify({ repo: "acme/../etc", prompt: "x" }) }, 400, "invalid_repo"],
    ["a bad branch name", { body: JSON.stringify({ repo: "acme/widgets", prompt: "x", branch: "a..b" }) }, 400, "invalid_body"],
    ["a timeout above the limit", { body: JSON.stringify({ repo: "acme/widgets", prompt: "x", timeoutMinutes: 10_000 }) }, 422, "limit_exceeded"],
    ["an oversized body", { body: JSON.stringify({ repo: "acme/widgets", prompt: "x".repeat(70_000) }) }, 413, "body_too_large"],
    ["an egress host that is a URL", { body: JSON.stringify({ repo: "acme/widgets", prompt: "x", egress: ["https://api.stripe.com"] }) }, 400, "invalid_body"],
    ["egress hosts for an analysis task", { body: JSON.stringify({ repo: "acme/widgets", prompt: "x", isolation: "analysis", egress: ["api.stripe.com"] }) }, 422, "isolation_conflict"],
    ["egress hosts for a workspace task", { body: JSON.stringify({ repo: "acme/widgets", prompt: "x", isolation: "workspace", egress: ["api.stripe.com"] }) }, 422, "isolation_conflict"],
  ];
  for (const [name, init, status, code] of cases) {
    it(`refuses ${name} with ${status} ${code}`, async () => {
      const before = await countTasks();
      const response = await api("/api/tasks", { method: "POST", ...init });
      expect(response.status).toBe(status);
      expect((await errorOf(response)).code).toBe(code);
      expect(await countTasks()).toBe(before);
    });
  }
});

describe("auth", () => {
  it("refuses a request without a token with 401", async () => {
    const response = await exports.default.fetch(new Request("https://sortie.test/api/tasks", { method: "POST", body: "{}" }));
    expect(response.status).toBe(401);
    expect((await errorOf(response)).code).toBe("unauthorized");
    expect(response.headers.get("www-authenticate")).toContain("Bearer");
  });

  it("refuses a wrong token with 401", async () => {
    const response = await api("/api/tasks", { headers: { authorization: "Bearer test-admin-tokeN" } });
    expect(response.status).toBe(401);
  });

  it("answers /healthz without a token", async () => {
    const response = await exports.default.fetch(new Request("https://sortie.test/healthz"));
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ ok: true, backend: "local" });
  });
});

describe("unknown things are 404s", () => {
  it("an unknown task id", async () => {
    const response = await api("/api/tasks/0000000000000000000");
    expect(response.status).toBe(404);
    expect((await errorOf(response)).code).toBe("not_found");
  });

  it("a malformed task id, on every task route", async () => {
    for (const path of ["/api/tasks/NOPE", "/api/tasks/x/events", "/api/tasks/x/runs/0/diff"]) {
      expect((await api(path)).status).toBe(404);
    }
    expect((await api("/api/tasks/x/cancel", { method: "POST" })).status).toBe(404);
  });

  it("an unknown route", async () => {
    const response = await api("/api/nothing-here");
    expect(response.status).toBe(404);
    expect((await errorOf(response)).code).toBe("not_found");
  });

  it("a bad listing query is a 400", async () => {
    expect((await api("/api/tasks?status=sleeping")).status).toBe(400);
    expect((await api("/api/tasks?cursor=!!!")).status).toBe(400);
    expect((await api("/api/tasks?limit=0")).status).toBe(400);
  });
});

describe("session tokens for the viewer", () => {
  it("are minted with the admin token, work as a bearer and on the WebSocket, and cannot mint more", async () => {
    const minted = await api("/api/session", { method: "POST" });
    expect(minted.status).toBe(201);
    const { token, expiresAt } = (await minted.json()) as { token: string; expiresAt: number };
    expect(expiresAt).toBeGreaterThan(Date.now());
    const listing = await exports.default.fetch(new Request("https://sortie.test/api/tasks", { headers: { authorization: `Bearer ${token}` } }));
    expect(listing.status).toBe(200);
    const again = await exports.default.fetch(new Request("https://sortie.test/api/session", { method: "POST", headers: { authorization: `Bearer ${token}` } }));
    expect(again.status).toBe(403);
    const tampered = token.replace(/.$/, (c) => (c === "A" ? "B" : "A"));
    const refused = await exports.default.fetch(new Request("https://sortie.test/api/tasks", { headers: { authorization: `Bearer ${tampered}` } }));
    expect(refused.status).toBe(401);
  });
});
