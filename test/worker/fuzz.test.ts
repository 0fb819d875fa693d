/**
 * Every public endpoint, fed random JSON shapes, wrong types, huge strings,
 * bad UTF-8 and unknown fields: only 4xx answers, never a 5xx, and nothing
 * is created.
 */
import { env, exports } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { ADMIN, createTask, scripted, waitForStatus } from "./helpers.ts";

/** A small seeded generator (mulberry32), so a failure can be replayed. */
function random(seed: number) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FIELDS = ["repo", "prompt", "runs", "variants", "judge", "key", "text", "run", "cron", "task", "tasks", "name", "scopes", "output", "branch", "timeoutMinutes", "__proto__", "constructor", "😀", ""];

function value(next: () => number, depth = 0): unknown {
  const pick = Math.floor(next() * (depth > 2 ? 7 : 10));
  switch (pick) {
    case 0: return null;
    case 1: return next() < 0.5;
    case 2: return [0, -1, 1.5, 1e308, -0, 99, Number.MAX_SAFE_INTEGER + 2][Math.floor(next() * 7)];
    case 3: return "x".repeat(Math.floor(next() * 3) === 0 ? 70_000 : Math.floor(next() * 40));
    case 4: return ["acme/widgets", "../../etc", "a".repeat(300), "\u0000\uffff\ud800", "* * * * *", "github:acme/widgets#1", "<script>", "$(id)"][Math.floor(next() * 8)];
    case 5: return "";
    case 6: return Math.floor(next() * 10);
    case 7: return Array.from({ length: Math.floor(next() * 4) }, () => value(next, depth + 1));
    default: {
      const object: Record<string, unknown> = {};
      for (let i = Math.floor(next() * 5); i > 0; i--) object[FIELDS[Math.floor(next() * FIELDS.length)]!] = value(next, depth + 1);
      return object;
    }
  }
}

let finished = "";

beforeAll(async () => {
  const task = await createTask({ prompt: scripted([{ text: "done" }]) });
  await waitForStatus(task.id, ["succeeded"]);
  finished = task.id;
});

async function counts() {
  const tables = ["tasks", "schedules", "api_tokens", "idempotency_keys", "memory_entries", "plans"];
  const rows = await Promise.all(tables.map((table) => env.DB.prepare(`SELECT COUNT(*) AS n FROM ${table}`).first<{ n: number }>()));
  return rows.map((row) => row!.n);
}

describe("fuzzing the public endpoints", () => {
  it("answers random bodies with 4xx only and creates nothing", async () => {
    const next = random(20261123);
    const targets = [
      ["POST", "/api/tasks"],
      ["POST", "/api/batches"],
      ["POST", `/api/tasks/${finished}/messages`],
      ["POST", `/api/tasks/${finished}/winner`],
      ["POST", `/api/tasks/${finished}/publish`],
      ["POST", "/api/schedules"],
      ["POST", "/api/tokens"],
      ["POST", "/api/tasks/0000000000000000000/cancel"],
      ["POST", "/slack/commands"],
      ["POST", "/slack/interactions"],
      ["POST", "/github/webhook"],
      // A valid body would create an entry here, so the repository or the id is always wrong: only the body varies.
      ["POST", "/api/repos/ac!me/widgets/memory"],
      ["POST", "/api/repos/acme/widgets/memory/m000000000000000/supersede"],
      ["POST", "/api/repos/acme/widgets/memory/m000000000000000/approve"],
      ["POST", "/api/repos/acme/nothing/memory/publish"],
      ["POST", "/api/plans"],
      ["POST", "/api/plans/0000000000000000000/approve"],
      ["POST", "/api/plans/0000000000000000000/retry"],
      ["POST", "/api/plans/0000000000000000000/cancel"],
    ] as const;
    const before = await counts();
    const seen = new Map<number, number>();
    for (let i = 0; i < 400; i++) {
      const [method, path] = targets[i % targets.length]!;
      const body = i % 13 === 0 ? new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0xc3, 0x28, 0x22, 0x3a, 0x31, 0x7d]) : JSON.stringify(value(next));
      const headers: Record<string, string> = { authorization: `Bearer ${ADMIN}` };
      if (i % 7 === 0) headers["content-type"] = "application/x-www-form-urlencoded";
      const response = await exports.default.fetch(new Request(`https://sortie.test${path}`, { method, body, headers }));
      seen.set(response.status, (seen.get(response.status) ?? 0) + 1);
      expect(response.status, `${method} ${path} ${typeof body === "string" ? body.slice(0, 200) : "bad utf-8"}`).toBeGreaterThanOrEqual(400);
      expect(response.status).toBeLessThan(500);
      expect(((await response.json()) as { error: { code: string } }).error.code).toBeTruthy();
    }
    expect(await counts()).toEqual(before);
    expect([...seen.keys()].every((status) => status >= 400 && status < 500)).toBe(true);
  });

  it("answers random query strings and ids with 4xx only", async () => {
    const next = random(7);
    const paths = ["/api/tasks?", `/api/tasks/${finished}/events?`, "/api/audit?", "/api/usage?", `/api/tasks/${finished}/runs/`, "/api/schedules/", "/api/tasks/", "/api/repos/acme/widgets/memory?", "/api/repos/acme/widgets/memory/", "/api/plans?", "/api/plans/"];
    for (let i = 0; i < 140; i++) {
      const base = paths[i % paths.length]!;
      // Percent-encoded bytes, including sequences that are not UTF-8 at all.
      const bytes = i % 5 === 0 ? [0xe0, 0xa4] : [...new TextEncoder().encode(String(value(next)))].slice(0, 300);
      const junk = bytes.map((b) => `%${b.toString(16).padStart(2, "0")}`).join("") || "%FF";
      const query = base.endsWith("?") ? `${["status", "repo", "limit", "cursor", "after", "from", "to", "task", "zzz"][i % 9]}=${junk}` : `${junk}${base.includes("runs") ? "/diff" : ""}`;
      const response = await exports.default.fetch(new Request(`https://sortie.test${base}${query}`, { headers: { authorization: `Bearer ${ADMIN}` } }));
      expect(response.status, `${base}${query}`).toBeLessThan(500);
      if (response.status >= 300) expect(response.status).toBeGreaterThanOrEqual(400);
    }
  });
});
