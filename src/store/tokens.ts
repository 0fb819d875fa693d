/** Scoped API tokens in D1: stored as hashes, checked in constant time, revocable. */
import { SortieError } from "../errors.ts";

export const SCOPES = ["tasks:read", "tasks:write", "memory:read", "memory:write", "admin"] as const;
export type Scope = (typeof SCOPES)[number];

export interface ApiToken {
  id: string;
  name: string;
  scopes: Scope[];
  rateLimitPerMinute: number | null;
  createdBy: string;
  createdAt: number;
  expiresAt: number | null;
  revokedAt: number | null;
  lastUsedAt: number | null;
}

const PREFIX = "srt_";

/** Makes a token; returns it (shown once) and its stored record. */
export async function createToken(
  db: D1Database,
  input: { name: string; scopes: Scope[]; expiresAt: number | null; rateLimitPerMinute: number | null; createdBy: string },
  now = Date.now(),
): Promise<{ token: string; record: ApiToken }> {
  const id = randomString(12);
  const token = `${PREFIX}${id}_${randomString(40)}`;
  await db
    .prepare("INSERT INTO api_tokens (id, name, hash, scopes, rate_limit_per_minute, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
    .bind(id, input.name, await hashOf(token), JSON.stringify(input.scopes), input.rateLimitPerMinute, input.createdBy, now, input.expiresAt)
    .run();
  return { token, record: { id, name: input.name, scopes: input.scopes, rateLimitPerMinute: input.rateLimitPerMinute, createdBy: input.createdBy, createdAt: now, expiresAt: input.expiresAt, revokedAt: null, lastUsedAt: null } };
}

/** Whether `value` has the shape of a Sortie API token. */
export function isApiToken(value: string): boolean {
  return /^srt_[A-Za-z0-9]{12}_[A-Za-z0-9]{40}$/.test(value);
}

/** The live token `value` names, or null (unknown, wrong secret, revoked, expired). */
export async function findToken(db: D1Database, value: string, now = Date.now()): Promise<ApiToken | null> {
  if (!isApiToken(value)) return null;
  const id = value.slice(PREFIX.length, PREFIX.length + 12);
  const row = await db.prepare("SELECT * FROM api_tokens WHERE id = ?").bind(id).first<TokenRow>();
  if (!row) return null;
  const given = new TextEncoder().encode(await hashOf(value));
  const stored = new TextEncoder().encode(row.hash);
  if (given.length !== stored.length || !crypto.subtle.timingSafeEqual(given, stored)) return null;
  if (row.revoked_at || (row.expires_at !== null && row.expires_at <= now)) return null;
  await db.prepare("UPDATE api_tokens SET last_used_at = ? WHERE id = ?").bind(now, id).run();
  return toToken(row);
}

export async function listTokens(db: D1Database): Promise<ApiToken[]> {
  const { results } = await db.prepare("SELECT * FROM api_tokens ORDER BY created_at DESC LIMIT 500").all<TokenRow>();
  return results.map(toToken);
}

export async function revokeToken(db: D1Database, id: string, now = Date.now()): Promise<ApiToken> {
  const row = /^[A-Za-z0-9]{12}$/.test(id) ? await db.prepare("SELECT * FROM api_tokens WHERE id = ?").bind(id).first<TokenRow>() : null;
  if (!row) throw new SortieError("not_found", `no token ${id}`, 404);
  if (!row.revoked_at) await db.prepare("UPDATE api_tokens SET revoked_at = ? WHERE id = ?").bind(now, id).run();
  return toToken({ ...row, revoked_at: row.revoked_at ?? now });
}

interface TokenRow {
  id: string;
  name: string;
  hash: string;
  scopes: string;
  rate_limit_per_minute: number | null;
  created_by: string;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
  last_used_at: number | null;
}

function toToken(row: TokenRow): ApiToken {
  return {
    id: row.id,
    name: row.name,
    scopes: JSON.parse(row.scopes) as Scope[],
    rateLimitPerMinute: row.rate_limit_per_minute,
    createdBy: row.created_by,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    lastUsedAt: row.last_used_at,
  };
}

async function hashOf(token: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

function randomString(length: number): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  let out = "";
  while (out.length < length) {
    for (const byte of crypto.getRandomValues(new Uint8Array(length))) {
      // Bytes past 247 (4 × 62 − 1) are dropped, so every letter is equally likely.
      if (byte < 248 && out.length < length) out += alphabet[byte % 62];
    }
  }
  return out;
}
