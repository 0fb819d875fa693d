/**
 * `/api/repos/:owner/:name/memory`: a repository's memory, reviewed by
 * people. Reading takes `memory:read` (or `tasks:read`: whoever reads a
 * repository's tasks reads what its runs were given); everything else takes
 * `memory:write` (or admin).
 */
import { Hono } from "hono";
import { factOf, memoryRepoKey } from "../agents/memory.ts";
import { publishMemory } from "../agents/memory-publisher.ts";
import { readConfig } from "../config.ts";
import { deploymentRedactor } from "../redact.ts";
import { SortieError } from "../errors.ts";
import { resolveRepo } from "../repo.ts";
import { ListMemoryQuery, MemoryTextBody } from "../schema.ts";
import { appendAudit } from "../store/audit.ts";
import { addPersonEntry, decideMemoryEntry, deleteMemoryEntry, expireMemory, listMemory, supersedeMemoryEntry } from "../store/memory.ts";
import { requireScope, type AuthVariables } from "./auth.ts";
import { jsonBody, validate } from "./body.ts";

type Env = { Bindings: Cloudflare.Env; Variables: AuthVariables };

export const memoryRoutes = new Hono<Env>();

memoryRoutes.use("*", requireScope((method) => (method === "GET" || method === "HEAD" ? ["memory:read", "tasks:read"] : "memory:write")));

memoryRoutes.get("/:owner/:name/memory", async (c) => {
  const repo = repoOf(c.req.param("owner"), c.req.param("name"));
  const { status } = validate(ListMemoryQuery, c.req.query(), "query");
  // Entries nobody was given for MEMORY_TTL_DAYS read as what they are: expired.
  await expireMemory(c.env.DB, repo, readConfig(c.env).memoryTtlDays * 86_400_000);
  return c.json({ entries: await listMemory(c.env.DB, repo, status) });
});

memoryRoutes.post("/:owner/:name/memory", async (c) => {
  const repo = repoOf(c.req.param("owner"), c.req.param("name"));
  const { text } = await jsonBody(c, MemoryTextBody);
  const entry = await addPersonEntry(c.env.DB, repo, personFact(c.env, text), c.var.caller.name);
  await audit(c.env.DB, c.var.caller.name, "memory.add", { repo, id: entry.id });
  return c.json(entry, 201);
});

memoryRoutes.post("/:owner/:name/memory/publish", async (c) => {
  const repo = repoOf(c.req.param("owner"), c.req.param("name"));
  const published = await publishMemory(c.env, { repo, by: c.var.caller.name });
  await audit(c.env.DB, c.var.caller.name, "memory.publish", { repo, entries: published.entries.length, pullRequest: published.pullRequest });
  return c.json(published, 201);
});

memoryRoutes.post("/:owner/:name/memory/:id/approve", async (c) => {
  const repo = repoOf(c.req.param("owner"), c.req.param("name"));
  const entry = await decideMemoryEntry(c.env.DB, repo, c.req.param("id"), "approved", c.var.caller.name);
  await audit(c.env.DB, c.var.caller.name, "memory.approve", { repo, id: entry.id });
  return c.json(entry);
});

memoryRoutes.post("/:owner/:name/memory/:id/reject", async (c) => {
  const repo = repoOf(c.req.param("owner"), c.req.param("name"));
  const entry = await decideMemoryEntry(c.env.DB, repo, c.req.param("id"), "rejected", c.var.caller.name);
  await audit(c.env.DB, c.var.caller.name, "memory.reject", { repo, id: entry.id });
  return c.json(entry);
});

memoryRoutes.post("/:owner/:name/memory/:id/supersede", async (c) => {
  const repo = repoOf(c.req.param("owner"), c.req.param("name"));
  const id = c.req.param("id");
  const { text } = await jsonBody(c, MemoryTextBody);
  const entry = await supersedeMemoryEntry(c.env.DB, repo, id, personFact(c.env, text), c.var.caller.name);
  await audit(c.env.DB, c.var.caller.name, "memory.supersede", { repo, id, by: entry.id });
  return c.json(entry, 201);
});

memoryRoutes.delete("/:owner/:name/memory/:id", async (c) => {
  const repo = repoOf(c.req.param("owner"), c.req.param("name"));
  const entry = await deleteMemoryEntry(c.env.DB, repo, c.req.param("id"));
  await audit(c.env.DB, c.var.caller.name, "memory.delete", { repo, id: entry.id });
  return c.json(entry);
});

/** A path under /api/repos that names no repository as `owner/name` is a bad repository, not a missing route. */
memoryRoutes.all("/*", (c) => {
  const parts = new URL(c.req.url).pathname.split("/").slice(3);
  const at = parts.indexOf("memory");
  if (at !== -1 && at !== 2) throw new SortieError("invalid_repo", `the repository must be named as owner/name, got ${JSON.stringify(parts.slice(0, Math.max(at, 0)).join("/").slice(0, 200))}`);
  throw new SortieError("not_found", `no route ${c.req.method} ${new URL(c.req.url).pathname}`, 404);
});

/** The repository of the path, in the form memory is kept under (400 for anything but `owner/name`). */
function repoOf(owner: string, name: string): string {
  return memoryRepoKey(resolveRepo(`${owner}/${name}`, "").slug);
}

/** A person's text, kept on one line, with the deployment's secrets and anything shaped like a credential taken out. */
function personFact(env: Cloudflare.Env, text: string) {
  const fact = factOf(deploymentRedactor(env)(text));
  if (!fact.norm) throw new SortieError("invalid_body", "text: must say something");
  return fact;
}

function audit(db: D1Database, actor: string, action: string, detail: Record<string, unknown>): Promise<void> {
  return appendAudit(db, { actor, action, taskId: null, detail });
}
