/**
 * Previews over HTTP: stopping one, a browser's way in (a short-lived ticket
 * that becomes a cookie scoped to that one preview), the screenshot the judge
 * was shown, and the local backend's proxy at `/preview/<task>/<run>/…`.
 *
 * A preview is the run's app, code Sortie did not write: it never sees the
 * caller's credentials (the Authorization header and Sortie's cookie are
 * taken off every request), it sets no cookie on Sortie's origin, and its
 * pages are served sandboxed (`Content-Security-Policy: sandbox`), an opaque
 * origin that cannot read the viewer's storage, whether framed or in a tab.
 */
import { getAgentByName } from "agents";
import { Hono } from "hono";
import { readConfig } from "../config.ts";
import { isTaskId } from "../ids.ts";
import { SortieError } from "../errors.ts";
import { sandboxPortFor } from "../sandbox/index.ts";
import type { AuthVariables } from "./auth.ts";
import { PREVIEW_COOKIE_SECONDS, PREVIEW_SANDBOX, SESSION_PATH, requirePreviewAccess, ticketUrl, tradeTicket, withoutCredentials } from "./preview-auth.ts";
import { loadTask, present } from "./tasks.ts";

type Env = { Bindings: Cloudflare.Env; Variables: AuthVariables };

/** `/api/tasks/:id/runs/:n/…` routes of previews; mounted under the task routes' auth (reads tasks:read, the rest tasks:write). */
export const previewApiRoutes = new Hono<Env>();

previewApiRoutes.delete("/:id/runs/:n/preview", async (c) => {
  const { id, run } = await knownRun(c.env, c.req.param("id"), c.req.param("n"));
  const agent = await getAgentByName(c.env.TaskAgent, id);
  const outcome = await agent.stopPreview(run, c.var.caller.name);
  if ("refused" in outcome) throw new SortieError(outcome.refused.code, outcome.refused.message, outcome.refused.status);
  return c.json(await present(c.req.url, c.env, outcome.task));
});

/** A ticket URL for a browser: opened (in an iframe or a tab) within a minute, it sets the preview's cookie and goes to its page. */
previewApiRoutes.post("/:id/runs/:n/preview/session", async (c) => {
  const { run, task } = await knownRun(c.env, c.req.param("id"), c.req.param("n"));
  const preview = task.runs[run]!.preview;
  if (!preview || preview.status !== "ready") throw new SortieError("preview_not_ready", `run ${run} has no ready preview${preview ? ` (it is ${preview.status})` : ""}`, 409);
  const root = new URL(preview.url, c.req.url).toString();
  return c.json({ url: root, ticketUrl: await ticketUrl(c.env.SORTIE_ADMIN_TOKEN, root), expiresAt: Date.now() + PREVIEW_COOKIE_SECONDS * 1000 }, 201);
});

previewApiRoutes.get("/:id/runs/:n/screenshot", async (c) => {
  const { id, run } = await knownRun(c.env, c.req.param("id"), c.req.param("n"));
  const png = await (await getAgentByName(c.env.TaskAgent, id)).screenshot(run);
  if (!png) throw new SortieError("not_found", `run ${run} has no screenshot`, 404);
  return new Response(png, { headers: { "content-type": "image/png", "cache-control": "private, max-age=300" } });
});

/** The local backend's previews: `/preview/<task>/<run>/<path>` to the run's port, HTTP and WebSocket, path and query passed through. */
export const previewProxy = new Hono<Env>();

previewProxy.all("/:task/:run{[0-9]+}", (c) => c.redirect(`${new URL(c.req.url).pathname}/`, 308));

previewProxy.all("/:task/:run{[0-9]+}/*", async (c) => {
  const id = c.req.param("task");
  const run = Number(c.req.param("run"));
  const url = new URL(c.req.url);
  const root = `/preview/${id}/${run}/`;
  const rest = url.pathname.slice(root.length - 1);
  const agent = async () => {
    if (!isTaskId(id)) throw new SortieError("not_found", `no task ${id}`, 404);
    return getAgentByName(c.env.TaskAgent, id);
  };
  if (rest === `/${SESSION_PATH}`) {
    return tradeTicket(c.env.SORTIE_ADMIN_TOKEN, url, url.origin + root, async () => `${root}${((await (await agent()).previewTarget(run))?.path ?? "/").slice(1)}`);
  }
  await requirePreviewAccess(c.env, c.req.raw, url.origin + root);
  const target = await (await agent()).previewTarget(run);
  if (!target) throw new SortieError("preview_not_found", `run ${run} of task ${id} has no live preview`, 404);
  const forwarded = withoutCredentials(c.req.raw, `http://preview${rest}${url.search}`);
  const answer = await sandboxPortFor(c.env, readConfig(c.env)).fetchPort(target.sandboxId, target.port, forwarded);
  if (answer.webSocket) return new Response(null, { status: answer.status, headers: new Headers(answer.headers), webSocket: answer.webSocket });
  return new Response(answer.body, { status: answer.status, statusText: answer.statusText, headers: previewHeaders(answer.headers, root) });
});

/** The app's headers, made safe to serve from Sortie's origin: sandboxed, no cookies of its own, redirects kept under its root. */
export function previewHeaders(from: Headers, root: string): Headers {
  const headers = new Headers(from);
  headers.delete("set-cookie");
  headers.set("content-security-policy", PREVIEW_SANDBOX);
  headers.set("referrer-policy", "no-referrer");
  const location = headers.get("location");
  // An app redirecting to its own absolute path means its root, which here is the preview's.
  if (location?.startsWith("/") && !location.startsWith("//") && !location.startsWith(root)) headers.set("location", `${root}${location.slice(1)}`);
  return headers;
}

async function knownRun(env: Cloudflare.Env, id: string, n: string) {
  const task = await loadTask(env, id);
  const run = Number(n);
  if (!Number.isInteger(run) || !task.runs[run]) throw new SortieError("not_found", `task ${id} has no run ${n}`, 404);
  return { id, run, task };
}
