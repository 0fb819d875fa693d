/** `POST/GET/DELETE /api/tokens`: scoped API tokens, made and revoked by the admin. */
import { Hono } from "hono";
import { z } from "zod";
import { appendAudit } from "../store/audit.ts";
import { SCOPES, createToken, listTokens, revokeToken } from "../store/tokens.ts";
import { requireScope, type AuthVariables } from "./auth.ts";
import { jsonBody } from "./body.ts";

const CreateTokenBody = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, "name must be 1 to 64 letters, digits, dots, dashes or underscores"),
    scopes: z.array(z.enum(SCOPES)).min(1).max(SCOPES.length),
    expiresInDays: z.number().positive().max(366).optional(),
    rateLimitPerMinute: z.int().min(1).max(10_000).optional(),
  })
  .strict();

export const tokenRoutes = new Hono<{ Bindings: Cloudflare.Env; Variables: AuthVariables }>();

tokenRoutes.use("*", requireScope("admin"));

tokenRoutes.post("/", async (c) => {
  const body = await jsonBody(c, CreateTokenBody);
  const { token, record } = await createToken(c.env.DB, {
    name: body.name,
    scopes: [...new Set(body.scopes)],
    expiresAt: body.expiresInDays ? Date.now() + body.expiresInDays * 86_400_000 : null,
    rateLimitPerMinute: body.rateLimitPerMinute ?? null,
    createdBy: c.var.caller.name,
  });
  await appendAudit(c.env.DB, { actor: c.var.caller.name, action: "token.create", taskId: null, detail: { id: record.id, name: record.name, scopes: record.scopes } });
  // The token itself is in this answer only: Sortie keeps its hash.
  return c.json({ ...record, token }, 201);
});

tokenRoutes.get("/", async (c) => c.json({ tokens: await listTokens(c.env.DB) }));

tokenRoutes.delete("/:id", async (c) => {
  const record = await revokeToken(c.env.DB, c.req.param("id"));
  await appendAudit(c.env.DB, { actor: c.var.caller.name, action: "token.revoke", taskId: null, detail: { id: record.id, name: record.name } });
  return c.json(record);
});
