/** `GET /api/audit` and `GET /api/usage`: the audit trail and spending, from D1. */
import { Hono } from "hono";
import { z } from "zod";
import { listAudit, usageReport } from "../store/audit.ts";
import { requireScope, type AuthVariables } from "./auth.ts";
import { validate } from "./body.ts";

const Range = {
  from: z.coerce.number().int().min(0).optional(),
  to: z.coerce.number().int().min(0).optional(),
};
const AuditQuery = z.object({ ...Range, task: z.string().max(40).optional(), limit: z.coerce.number().int().min(1).max(200).default(50), cursor: z.string().max(20).optional() }).strict();
const UsageQuery = z.object(Range).strict();

export const reportRoutes = new Hono<{ Bindings: Cloudflare.Env; Variables: AuthVariables }>();

reportRoutes.use("*", requireScope("admin"));

reportRoutes.get("/audit", async (c) => c.json(await listAudit(c.env.DB, validate(AuditQuery, c.req.query(), "query"))));

reportRoutes.get("/usage", async (c) => {
  const query = validate(UsageQuery, c.req.query(), "query");
  const to = query.to ?? Date.now();
  const from = query.from ?? to - 30 * 24 * 60 * 60 * 1000;
  return c.json(await usageReport(c.env.DB, from, to));
});
