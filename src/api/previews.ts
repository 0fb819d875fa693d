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
import { allows, bearerOf, callerOf, signViewerToken, verifyViewerToken, type AuthVariables } from "./auth.ts";
import { loadTask, present } from "./tasks.ts";

type Env = { Bindings: Cloudflare.Env; Variables: AuthVariables };

/** The cookie a browser holds for one preview. */
export const PREVIEW_COOKIE = "sortie_preview";
/** How long a ticket may wait before the browser opens it, and how long the cookie it becomes lasts (the viewer asks again before). */
export const PREVIEW_TICKET_SECONDS = 60;
export const PREVIEW_COOKIE_SECONDS = 10 * 60;
/** The path under a preview's root where a ticket is traded for the cookie. */
const SESSION_PATH = "__sortie/session";
/** What a sandboxed preview page may still do: run its scripts, submit forms, open popups. */
export const PREVIEW_SANDBOX = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads";

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
  const { id, run, task } = await knownRun(c.env, c.req.param("id"), c.req.param("n"));
  const preview = task.runs[run]!.preview;
  if (!preview || preview.status !== "ready") throw new SortieError("preview_not_ready", `run ${run} has no ready preview${preview ? ` (it is ${preview.status})` : ""}`, 409);
  const root = absolute(preview.url, c.req.url);
  const ticket = await signViewerToken(c.env.SORTIE_ADMIN_TOKEN, ticketSubject(id, run), PREVIEW_TICKET_SECONDS);
  return c.json({ url: root, ticketUrl: `${root}${SESSION_PATH}?ticket=${encodeURIComponent(ticket)}`, expiresAt: Date.now() + PREVIEW_COOKIE_SECONDS * 1000 }, 201);
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
  const admin = c.env.SORTIE_ADMIN_TOKEN;
  if (rest === `/${SESSION_PATH}`) {
    // The ticket is a minute's credential for this preview alone; the cookie it becomes never reaches the app.
    const ticket = url.searchParams.get("ticket") ?? "";
    if (!(await verifyViewerToken(admin, ticket, ticketSubject(id, run)))) throw new SortieError("unauthorized", "the preview ticket is invalid or expired; ask for a new one", 401);
    const cookie = await signViewerToken(admin, cookieSubject(id, run), PREVIEW_COOKIE_SECONDS);
    const secure = url.protocol === "https:";
    c.header("set-cookie", `${PREVIEW_COOKIE}=${cookie}; Path=${root}; Max-Age=${PREVIEW_COOKIE_SECONDS}; HttpOnly; ${secure ? "Secure; SameSite=None" : "SameSite=Lax"}`);
    c.header("cache-control", "no-store");
    return c.redirect(`${root}${(await previewPath(c.env, id, run)).slice(1)}`, 303);
  }
  const caller = await callerOf(c.env, bearerOf(c.req.header("authorization")));
  const cookie = cookieOf(c.req.header("cookie"), PREVIEW_COOKIE);
  const allowed = (caller !== null && allows(caller, "tasks:read")) || (cookie !== null && (await verifyViewerToken(admin, cookie, cookieSubject(id, run))));
  if (!allowed) throw new SortieError("unauthorized", "a bearer token with tasks:read, or this preview's cookie, is required", 401, { headers: { "www-authenticate": 'Bearer realm="sortie"' } });
  if (!isTaskId(id)) throw new SortieError("not_found", `no task ${id}`, 404);
  const target = await (await getAgentByName(c.env.TaskAgent, id)).previewTarget(run);
  if (!target) throw new SortieError("preview_not_found", `run ${run} of task ${id} has no live preview`, 404);
  const headers = new Headers(c.req.raw.headers);
  headers.delete("authorization");
  const others = withoutCookie(c.req.header("cookie"), PREVIEW_COOKIE);
  if (others) headers.set("cookie", others);
  else headers.delete("cookie");
  const forwarded = new Request(`http://preview${rest}${url.search}`, { method: c.req.method, headers, body: c.req.raw.body, redirect: "manual" });
  const answer = await sandboxPortFor(c.env, readConfig(c.env)).fetchPort(target.sandboxId, target.port, forwarded);
  if (answer.webSocket) return new Response(null, { status: answer.status, headers: new Headers(answer.headers), webSocket: answer.webSocket });
  return new Response(answer.body, { status: answer.status, statusText: answer.statusText, headers: previewHeaders(answer.headers, root) });
});

/** The app's headers, made safe to serve from Sortie's origin: sandboxed, no cookies of its own, redirects kept under its root. */
function previewHeaders(from: Headers, root: string): Headers {
  const headers = new Headers(from);
  headers.delete("set-cookie");
  headers.set("content-security-policy", PREVIEW_SANDBOX);
  headers.set("referrer-policy", "no-referrer");
  const location = headers.get("location");
  // An app redirecting to its own absolute path means its root, which here is the preview's.
  if (location?.startsWith("/") && !location.startsWith("//") && !location.startsWith(root)) headers.set("location", `${root}${location.slice(1)}`);
  return headers;
}

async function previewPath(env: Cloudflare.Env, id: string, run: number): Promise<string> {
  const target = await (await getAgentByName(env.TaskAgent, id)).previewTarget(run);
  return target?.path ?? "/";
}

const ticketSubject = (id: string, run: number) => `previewticket-${id}-${run}`;
const cookieSubject = (id: string, run: number) => `preview-${id}-${run}`;

function cookieOf(header: string | undefined, name: string): string | null {
  for (const part of (header ?? "").split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return value.join("=");
  }
  return null;
}

function withoutCookie(header: string | undefined, name: string): string {
  return (header ?? "").split(";").map((part) => part.trim()).filter((part) => part && !part.startsWith(`${name}=`)).join("; ");
}

/** A preview URL as stored (absolute, or relative when the task knew no origin) made absolute against the request. */
function absolute(url: string, requestUrl: string): string {
  return new URL(url, requestUrl).toString();
}

async function knownRun(env: Cloudflare.Env, id: string, n: string) {
  const task = await loadTask(env, id);
  const run = Number(n);
  if (!Number.isInteger(run) || !task.runs[run]) throw new SortieError("not_found", `task ${id} has no run ${n}`, 404);
  return { id, run, task };
}
