/** Builds Sortie's HTTP surface: routes, the body limit, and the one place errors become JSON. */
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { requestId } from "hono/request-id";
import { secureHeaders } from "hono/secure-headers";
import { readConfig } from "../config.ts";
import { SortieError, errorBody } from "../errors.ts";
import { writeLog } from "../log.ts";
import { scrubText, secretValues } from "../redact.ts";
import { githubRoutes } from "../triggers/github/routes.ts";
import { slackRoutes } from "../triggers/slack/routes.ts";
import type { AuthVariables } from "./auth.ts";
import { requireScope, signSessionToken } from "./auth.ts";
import { limitBody } from "./body.ts";
import { memoryRoutes } from "./memory.ts";
import { previewApiRoutes, previewProxy } from "./previews.ts";
import { tokenRoutes } from "./tokens.ts";
import { batchRoutes } from "./batches.ts";
import { planRoutes } from "./plans.ts";
import { reportRoutes } from "./reports.ts";
import { scheduleRoutes } from "./schedules.ts";
import { taskRoutes } from "./tasks.ts";

/** How long a viewer's session lasts before it asks for the admin token again. */
const SESSION_TTL_SECONDS = 12 * 60 * 60;

type Env = { Bindings: Cloudflare.Env; Variables: AuthVariables };

export function buildApp() {
  const app = new Hono<Env>();
  app.use(requestId());
  app.use(secureHeaders());
  app.use("/api/*", limitBody());

  app.get("/healthz", (c) => c.json({ ok: true, backend: readConfig(c.env).sandboxBackend }));
  app.route("/api/tasks", taskRoutes);
  // Under the task routes' auth (their `*` middleware covers every /api/tasks path).
  app.route("/api/tasks", previewApiRoutes);
  // Authenticates itself: a bearer token or the preview's own cookie.
  app.route("/preview", previewProxy);
  app.route("/api/batches", batchRoutes);
  app.route("/api/plans", planRoutes);
  app.route("/slack", slackRoutes);
  app.route("/github", githubRoutes);
  app.route("/api/schedules", scheduleRoutes);
  // Before the admin-only reports, whose middleware covers every path under /api.
  app.route("/api/repos", memoryRoutes);
  app.route("/api", reportRoutes);
  app.route("/api/tokens", tokenRoutes);
  app.post("/api/session", requireScope("admin"), async (c) => c.json(await signSessionToken(c.env.SORTIE_ADMIN_TOKEN, SESSION_TTL_SECONDS), 201));

  app.notFound((c) => c.json(errorBody("not_found", `no route ${c.req.method} ${new URL(c.req.url).pathname}`), 404));
  app.onError((error, c) => {
    if (error instanceof SortieError) {
      return c.json(errorBody(error.code, scrubText(error.message, secretValues(c.env))), error.status, error.headers);
    }
    if (error instanceof HTTPException) {
      return c.json(errorBody(`http_${error.status}`, error.message || "request refused"), error.status);
    }
    writeLog("error", { event: "api.error", path: c.req.path, message: error.message, requestId: c.var.requestId }, c.env);
    return c.json(errorBody("internal", "internal error; the request id is in the x-request-id header"), 500);
  });
  return app;
}
