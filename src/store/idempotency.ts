import { SortieError } from "../errors.ts";

/** Idempotency keys of `POST /api/tasks`: one task per creator and key for 24 hours. */

const WINDOW_MS = 24 * 60 * 60 * 1000;

/**
 * Reserves `key` for `taskId`. Returns the id of the task an earlier request
 * with the same key created within the window, or null if this one is first.
 * The reservation is a single insert, so two racing requests cannot both win.
 */
export async function reserveIdempotencyKey(db: D1Database, creator: string, key: string, taskId: string, now = Date.now()): Promise<string | null> {
  if (key.length === 0 || key.length > 200) {
    throw new SortieError("invalid_idempotency_key", "Idempotency-Key must be 1 to 200 characters");
  }
  await db.prepare("DELETE FROM idempotency_keys WHERE creator = ? AND key = ? AND created_at < ?").bind(creator, key, now - WINDOW_MS).run();
  const inserted = await db
    .prepare("INSERT INTO idempotency_keys (creator, key, task_id, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING")
    .bind(creator, key, taskId, now)
    .run();
  if (inserted.meta.changes > 0) return null;
  const row = await db.prepare("SELECT task_id FROM idempotency_keys WHERE creator = ? AND key = ?").bind(creator, key).first<{ task_id: string }>();
  return row?.task_id ?? null;
}

/** Gives a key back when the task it was reserved for could not be created. */
export async function forgetIdempotencyKey(db: D1Database, creator: string, key: string, taskId: string): Promise<void> {
  await db.prepare("DELETE FROM idempotency_keys WHERE creator = ? AND key = ? AND task_id = ?").bind(creator, key, taskId).run();
}
