/**
 * Who may open a preview, and what of the caller it never sees. A preview
 * answers the API's own credentials (admin token, a `tasks:read` token, a
 * viewer session) or its own cookie, which a browser gets by opening a
 * ticket URL that lasts a minute. A preview's scope is what the cookie is
 * bound to: its path locally (`/preview/<task>/<run>/`), its host on
 * Cloudflare. Its requests reach the app without the Authorization header
 * or Sortie's cookie.
 */
import { SortieError } from "../errors.ts";
import { allows, bearerOf, callerOf, signViewerToken, verifyViewerToken } from "./auth.ts";

/** The cookie a browser holds for one preview. */
export const PREVIEW_COOKIE = "sortie_preview";
/** How long a ticket may wait before the browser opens it. */
export const PREVIEW_TICKET_SECONDS = 60;
/** How long the cookie it becomes lasts; the viewer asks for a new ticket before. */
export const PREVIEW_COOKIE_SECONDS = 10 * 60;
/** The path under a preview's root where a ticket is traded for the cookie. */
export const SESSION_PATH = "__sortie/session";
/** What a sandboxed preview page may still do: run its scripts, submit forms, open popups. */
export const PREVIEW_SANDBOX = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads";

/** A ticket URL for the preview at `root` (its absolute URL, ending in `/`). */
export async function ticketUrl(admin: string, root: string): Promise<string> {
  const ticket = await signViewerToken(admin, await subjectOf("ticket", scopeOf(root)), PREVIEW_TICKET_SECONDS);
  return `${root}${SESSION_PATH}?ticket=${encodeURIComponent(ticket)}`;
}

/**
 * Trades a ticket for the preview's cookie and sends the browser to `to`.
 * Locally the cookie is scoped to the preview's path on Sortie's origin; on
 * Cloudflare to the preview's own host, across sites from the viewer
 * (`SameSite=None; Partitioned`, so it works inside the viewer's iframe).
 */
export async function tradeTicket(admin: string | undefined, url: URL, root: string, to: () => Promise<string>): Promise<Response> {
  // Without the admin token nothing is signed with a secret: no ticket is good.
  if (!admin) throw new SortieError("auth_not_configured", "SORTIE_ADMIN_TOKEN is not set, so previews refuse every request", 401);
  const scope = scopeOf(root);
  if (!(await verifyViewerToken(admin, url.searchParams.get("ticket") ?? "", await subjectOf("ticket", scope)))) {
    throw new SortieError("unauthorized", "the preview ticket is invalid or expired; ask for a new one", 401);
  }
  const cookie = await signViewerToken(admin, await subjectOf("cookie", scope), PREVIEW_COOKIE_SECONDS);
  const local = root.startsWith("/") || new URL(root).pathname !== "/";
  const where = local ? `Path=${new URL(root, url).pathname}` : "Path=/";
  const site = url.protocol === "https:" ? `Secure; SameSite=None${local ? "" : "; Partitioned"}` : "SameSite=Lax";
  return new Response(null, {
    status: 303,
    headers: { location: await to(), "set-cookie": `${PREVIEW_COOKIE}=${cookie}; ${where}; Max-Age=${PREVIEW_COOKIE_SECONDS}; HttpOnly; ${site}`, "cache-control": "no-store" },
  });
}

/** Whether `request` may open the preview at `root`: the API's credentials with tasks:read, or the preview's cookie. 401 otherwise. */
export async function requirePreviewAccess(env: Cloudflare.Env, request: Request, root: string): Promise<void> {
  const caller = await callerOf(env, bearerOf(request.headers.get("authorization") ?? undefined));
  if (caller !== null && allows(caller, "tasks:read")) return;
  const cookie = cookieOf(request.headers.get("cookie"), PREVIEW_COOKIE);
  if (cookie !== null && (await verifyViewerToken(env.SORTIE_ADMIN_TOKEN, cookie, await subjectOf("cookie", scopeOf(root))))) return;
  throw new SortieError("unauthorized", "a bearer token with tasks:read, or this preview's cookie, is required", 401, { headers: { "www-authenticate": 'Bearer realm="sortie"' } });
}

/** The caller's request as the app gets it: without the Authorization header or Sortie's cookie. */
export function withoutCredentials(request: Request, url: string): Request {
  const headers = new Headers(request.headers);
  headers.delete("authorization");
  const others = (request.headers.get("cookie") ?? "").split(";").map((part) => part.trim()).filter((part) => part && !part.startsWith(`${PREVIEW_COOKIE}=`)).join("; ");
  if (others) headers.set("cookie", others);
  else headers.delete("cookie");
  return new Request(url, { method: request.method, headers, body: request.body, redirect: "manual" });
}

/** What a ticket or cookie is bound to: the preview's path on Sortie's origin, or its own host. */
function scopeOf(root: string): string {
  const url = new URL(root, "http://local");
  return url.pathname === "/" ? url.host : url.pathname;
}

/** A signed token's subject for `scope`: a hash, since a subject holds no dots and hosts do. */
async function subjectOf(kind: "ticket" | "cookie", scope: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(scope)));
  return `preview${kind}-${[...digest.subarray(0, 16)].map((byte) => byte.toString(16).padStart(2, "0")).join("")}`;
}

function cookieOf(header: string | null, name: string): string | null {
  for (const part of (header ?? "").split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return value.join("=");
  }
  return null;
}
