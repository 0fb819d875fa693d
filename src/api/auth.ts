/**
 * Who may call the API: the admin bearer token (compared in constant time), a
 * session token signed with it, or a scoped API token stored hashed in D1.
 * With no token configured the API refuses every request; it never runs open.
 * Browsers cannot set headers on a WebSocket, so the create call also hands
 * out a short-lived signed viewer token, bound to one task, for the `ws` URL.
 */
import type { MiddlewareHandler } from "hono";
import { SortieError } from "../errors.ts";
import { findToken, isApiToken, type Scope } from "../store/tokens.ts";

export type Caller = { name: string; scopes: readonly Scope[]; rateLimitPerMinute: number | null };
export type AuthVariables = { caller: Caller };

const encoder = new TextEncoder();
const EVERY_SCOPE: readonly Scope[] = ["tasks:read", "tasks:write", "memory:read", "memory:write", "admin"];
/** A viewer session: the tasks, and reviewing repository memory (the person signed in with the admin token). */
const SESSION_SCOPES: readonly Scope[] = ["tasks:read", "tasks:write", "memory:read", "memory:write"];

/**
 * Who is calling, from `Authorization: Bearer …`: the admin token (every
 * scope), a session token minted from it for the web viewer (tasks and memory), or
 * a scoped API token from D1. Null when none of them matches.
 */
export async function callerOf(env: Cloudflare.Env, bearer: string | null): Promise<Caller | null> {
  const admin = env.SORTIE_ADMIN_TOKEN;
  if (!admin) throw new SortieError("auth_not_configured", "SORTIE_ADMIN_TOKEN is not set, so the API refuses every request", 401);
  if (!bearer) return null;
  if (await sameSecret(bearer, admin)) return { name: "admin", scopes: EVERY_SCOPE, rateLimitPerMinute: null };
  if (await verifySessionToken(admin, bearer)) return { name: "viewer", scopes: SESSION_SCOPES, rateLimitPerMinute: null };
  if (isApiToken(bearer)) {
    const token = await findToken(env.DB, bearer);
    if (token) return { name: `token:${token.name}`, scopes: token.scopes, rateLimitPerMinute: token.rateLimitPerMinute };
  }
  return null;
}

/** Whether a caller holds `scope` (`admin` holds them all). */
export function allows(caller: Caller, scope: Scope): boolean {
  return caller.scopes.includes("admin") || caller.scopes.includes(scope);
}

/** One scope, or any one of several. */
type Needed = Scope | readonly Scope[];

/**
 * Requires a caller with `scope` (any of a list; a function of the request
 * when reads and writes share a route); sets `c.var.caller`. 401 for no or a
 * bad token, 403 for a token without the scope.
 */
export function requireScope(
  scope: Needed | ((method: string) => Needed),
): MiddlewareHandler<{ Bindings: Cloudflare.Env; Variables: AuthVariables }> {
  return async (c, next) => {
    const caller = await callerOf(c.env, bearerOf(c.req.header("authorization")));
    if (!caller) throw new SortieError("unauthorized", "a valid bearer token is required", 401, { headers: { "www-authenticate": 'Bearer realm="sortie"' } });
    const needed = typeof scope === "function" ? scope(c.req.method) : scope;
    const anyOf: readonly Scope[] = typeof needed === "string" ? [needed] : needed;
    if (!anyOf.some((one) => allows(caller, one))) throw new SortieError("forbidden", `this token lacks the ${anyOf.join(" or ")} scope`, 403);
    c.set("caller", caller);
    await next();
  };
}

/** Reads need tasks:read, everything else tasks:write. */
export const taskScope = (method: string): Scope => (method === "GET" || method === "HEAD" ? "tasks:read" : "tasks:write");

export function bearerOf(header: string | undefined): string | null {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  return match?.[1] ?? null;
}

/** Constant-time equality of two secrets of any length: both are hashed first. */
export async function sameSecret(a: string, b: string): Promise<boolean> {
  const [ha, hb] = await Promise.all([digest(a), digest(b)]);
  return crypto.subtle.timingSafeEqual(ha, hb);
}

async function digest(text: string): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", encoder.encode(text));
}

/** A viewer token: `<taskId>.<expiry seconds>.<hmac>`, valid for one task until it expires. */
export async function signViewerToken(secret: string, taskId: string, ttlSeconds: number, now = Date.now()): Promise<string> {
  const expires = Math.floor(now / 1000) + ttlSeconds;
  const payload = `${taskId}.${expires}`;
  return `${payload}.${await hmac(secret, payload)}`;
}

/** Whether `token` was signed with `secret` for `taskId` and has not expired. */
export async function verifyViewerToken(secret: string, token: string, taskId: string, now = Date.now()): Promise<boolean> {
  const parts = token.split(".");
  if (parts.length !== 3) return false;
  const [id, expires, signature] = parts as [string, string, string];
  if (id !== taskId || !/^\d{1,12}$/.test(expires) || Number(expires) * 1000 < now) return false;
  return sameSecret(signature, await hmac(secret, `${id}.${expires}`));
}

async function hmac(secret: string, payload: string): Promise<string> {
  // The signing key is derived from the admin token, so rotating that token revokes every viewer token.
  const key = await crypto.subtle.importKey("raw", encoder.encode(`sortie-viewer:${secret}`), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const signature = new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode(payload)));
  return btoa(String.fromCharCode(...signature)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

const SESSION = "session";

/** A session token: `session.<expiry seconds>.<hmac>`: the task scopes, for a few hours, without the admin token. */
export async function signSessionToken(secret: string, ttlSeconds: number, now = Date.now()): Promise<{ token: string; expiresAt: number }> {
  const expires = Math.floor(now / 1000) + ttlSeconds;
  const payload = `${SESSION}.${expires}`;
  return { token: `${payload}.${await hmac(secret, payload)}`, expiresAt: expires * 1000 };
}

export function verifySessionToken(secret: string, token: string, now = Date.now()): Promise<boolean> {
  return verifyViewerToken(secret, token, SESSION, now);
}
