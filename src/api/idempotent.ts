/**
 * The Idempotency-Key of the create routes: `idempotencyKeyOf` checks it (tasks hand it to startTasks,
 * src/agents/launch.ts); `underIdempotencyKey` is the same protocol for a plan, which is not a task.
 */
import type { Context } from "hono";
import { SortieError } from "../errors.ts";
import { forgetIdempotencyKey, reserveIdempotencyKey } from "../store/idempotency.ts";

/** The longest key the store keeps. */
const IDEMPOTENCY_KEY_CHARS = 200;

/**
 * Starts what `id` names under the request's Idempotency-Key (in `namespace`,
 * so a task's and a plan's keys never meet): a key the caller used before
 * replays what it made then (`replay`), marked with `idempotent-replayed`;
 * without a key, `start` runs as it is.
 *
 * @example return c.json(await underIdempotencyKey(c, creator, "", spec.id, (earlier) => loadTask(env, earlier), () => launchTask(env, spec)), 202)
 */
export async function underIdempotencyKey<T>(c: Context, creator: string, namespace: string, id: string, replay: (earlier: string) => Promise<T>, start: () => Promise<T>): Promise<T> {
  const key = idempotencyKeyOf(c, namespace);
  if (key === undefined) return start();
  const db = (c.env as Cloudflare.Env).DB;
  const earlier = await reserveIdempotencyKey(db, creator, key, id);
  if (earlier) {
    c.header("idempotent-replayed", "true");
    return replay(earlier);
  }
  try {
    return await start();
  } catch (error) {
    await forgetIdempotencyKey(db, creator, key, id);
    throw error;
  }
}

/** The request's Idempotency-Key in `namespace`, checked (1 to 200 characters, namespace included); undefined when it sends none. */
export function idempotencyKeyOf(c: Context, namespace = ""): string | undefined {
  const header = c.req.header("idempotency-key");
  if (header === undefined) return undefined;
  const longest = IDEMPOTENCY_KEY_CHARS - namespace.length;
  if (header.length === 0 || header.length > longest) throw new SortieError("invalid_idempotency_key", `Idempotency-Key must be 1 to ${longest} characters`);
  return `${namespace}${header}`;
}
