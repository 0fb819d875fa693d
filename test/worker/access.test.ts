import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { api, countTasks, scripted, waitForStatus } from "./helpers.ts";

function as(token: string, path: string, init: RequestInit = {}) {
  return exports.default.fetch(new Request(`https://sortie.test${path}`, { ...init, headers: { authorization: `Bearer ${token}`, ...(init.headers as Record<string, string>) } }));
}

async function mint(body: Record<string, unknown>) {
  const response = await api("/api/tokens", { method: "POST", body: JSON.stringify(body) });
  expect(response.status).toBe(201);
  return (await response.json()) as { id: string; token: string; scopes: string[] };
}

const task = (prompt = scripted([{ text: "ok" }])) => ({ method: "POST", body: JSON.stringify({ repo: "acme/widgets", prompt }) });

describe("scoped API tokens", () => {
  it("are stored hashed and shown once", async () => {
    const { id, token } = await mint({ name: "ci-bot", scopes: ["tasks:read"] });
    expect(token).toMatch(/^srt_[A-Za-z0-9]{12}_[A-Za-z0-9]{40}$/);
    const row = await env.DB.prepare("SELECT * FROM api_tokens WHERE id = ?").bind(id).first<Record<string, unknown>>();
    expect(JSON.stringify(row)).not.toContain(token);
    expect(row!.hash).toMatch(/^[0-9a-f]{64}$/);
    const listed = (await (await api("/api/tokens")).json()) as { tokens: Record<string, unknown>[] };
    expect(JSON.stringify(listed)).not.toContain(token);
    expect(listed.tokens.map((t) => t.name)).toContain("ci-bot");
  });

  it("see only what their scopes allow, on every endpoint and the WebSocket", async () => {
    const reader = (await mint({ name: "reader", scopes: ["tasks:read"] })).token;
    const writer = (await mint({ name: "writer", scopes: ["tasks:write"] })).token;
    expect((await as(reader, "/api/tasks")).status).toBe(200);
    expect((await as(reader, "/api/tasks", task())).status).toBe(403);
    expect((await as(reader, "/api/audit")).status).toBe(403);
    expect((await as(reader, "/api/tokens", { method: "POST", body: "{}" })).status).toBe(403);
    expect((await as(writer, "/api/tasks")).status).toBe(403);
    const created = await as(writer, "/api/tasks", task());
    expect(created.status).toBe(202);
    const { id } = (await created.json()) as { id: string };
    expect((await as(writer, "/api/schedules")).status).toBe(403);
    const socket = await exports.default.fetch(new Request(`https://sortie.test/api/tasks/${id}/ws`, { headers: { upgrade: "websocket", authorization: `Bearer ${reader}` } }));
    expect(socket.status).toBe(101);
    socket.webSocket!.accept();
    socket.webSocket!.close();
    const refused = await exports.default.fetch(new Request(`https://sortie.test/api/tasks/${id}/ws`, { headers: { upgrade: "websocket", authorization: `Bearer ${writer}` } }));
    expect(refused.status).toBe(401);
    await waitForStatus(id, ["succeeded"]);
    const audit = (await (await api(`/api/audit?task=${id}`)).json()) as { entries: { actor: string }[] };
    expect(audit.entries[0]!.actor).toBe("token:writer");
  });

  it("stop working when revoked or expired", async () => {
    const { id, token } = await mint({ name: "temp", scopes: ["tasks:read"] });
    expect((await as(token, "/api/tasks")).status).toBe(200);
    expect((await api(`/api/tokens/${id}`, { method: "DELETE" })).status).toBe(200);
    expect((await as(token, "/api/tasks")).status).toBe(401);
    const short = await mint({ name: "short", scopes: ["tasks:read"], expiresInDays: 1 });
    await env.DB.prepare("UPDATE api_tokens SET expires_at = ? WHERE id = ?").bind(Date.now() - 1, short.id).run();
    expect((await as(short.token, "/api/tasks")).status).toBe(401);
    const forged = token.replace(/.$/, (c) => (c === "a" ? "b" : "a"));
    expect((await as(forged, "/api/tasks")).status).toBe(401);
  });

  it("refuse bad token requests with a 400", async () => {
    for (const body of [{ name: "x", scopes: [] }, { name: "x", scopes: ["root"] }, { name: "has space", scopes: ["admin"] }, { scopes: ["admin"] }]) {
      expect((await api("/api/tokens", { method: "POST", body: JSON.stringify(body) })).status).toBe(400);
    }
  });
});

describe("rate limits on task creation", () => {
  it("answer 429 with Retry-After past a token's limit, and create nothing", async () => {
    const { token } = await mint({ name: "limited", scopes: ["tasks:write"], rateLimitPerMinute: 2 });
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const response = await as(token, "/api/tasks", task());
      expect(response.status).toBe(202);
      ids.push(((await response.json()) as { id: string }).id);
    }
    const before = await countTasks();
    const limited = await as(token, "/api/tasks", task());
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(((await limited.json()) as { error: { code: string } }).error.code).toBe("rate_limited");
    expect(await countTasks()).toBe(before);
    const batch = await as(token, "/api/batches", { method: "POST", body: JSON.stringify({ tasks: [{ repo: "acme/widgets", prompt: "x" }] }) });
    expect(batch.status).toBe(429);
    for (const id of ids) await waitForStatus(id, ["succeeded"]);
  });
});
