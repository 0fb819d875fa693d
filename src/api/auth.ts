/**
 * Who may call the API: the admin bearer token (compared in constant time) or
 * a session token signed with it.
 * With no token configured the API refuses every request; it never runs open.
 * Browsers cannot set headers on a WebSocket, so the create call also hands
 * out a short-lived signed viewer token, bound to one task, for the `ws` URL.
 */
import type { MiddlewareHandler } from "hono";
import { SortieError } from "../errors.ts";

export type Caller = { name: string };
export type AuthVariables = { caller: Caller };

const encoder = new TextEncoder();

/**
 * Requires `Authorization: Bearer <SORTIE_ADMIN_TOKEN>`, or (unless
 * `adminOnly`) a session token minted from it by `POST /api/session`, which is
 * what the web viewer holds instead of the admin token. Sets `c.var.caller`.
 */
export function requireAdmin(options: { adminOnly?: boolean } = {}): MiddlewareHandler<{ Bindings: Cloudflare.Env; Variables: AuthVariables }> {
  return async (c, next) => {
    const configured = c.env.SORTIE_ADMIN_TOKEN;
    if (!configured) throw new SortieError("auth_not_configured", "SORTIE_ADMIN_TOKEN is not set, so the API refuses every request", 401);
    const given = bearerOf(c.req.header("authorization"));
    if (given && (await sameSecret(given, configured))) {
      c.set("caller", { name: "admin" });
    } else if (given && !options.adminOnly && (await verifySessionToken(configured, given))) {
      c.set("caller", { name: "viewer" });
    } else {
      throw new SortieError("unauthorized", "a valid bearer token is required", 401, { headers: { "www-authenticate": 'Bearer realm="sortie"' } });
    }
    await next();
  };
}

const SESSION = "session";

/** A session token: `session.<expiry seconds>.<hmac>`: the admin's rights, for a few hours, without the admin token. */
export async function signSessionToken(secret: string, ttlSeconds: number, now = Date.now()): Promise<{ token: string; expiresAt: number }> {
  const expires = Math.floor(now / 1000) + ttlSeconds;
  const payload = `${SESSION}.${expires}`;
  return { token: `${payload}.${await hmac(secret, payload)}`, expiresAt: expires * 1000 };
}

export function verifySessionToken(secret: string, token: string, now = Date.now()): Promise<boolean> {
  return verifyViewerToken(secret, token, SESSION, now);
}

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
