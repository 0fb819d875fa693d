import { fleetOf } from "../agents/fleet.ts";
import { readConfig } from "../config.ts";
import { SortieError } from "../errors.ts";
import type { Caller } from "./auth.ts";

/** Counts `count` task creations against the caller's per-minute limit; over it, a 429 with Retry-After. */
export async function takeTaskQuota(env: Cloudflare.Env, caller: Caller, count: number): Promise<void> {
  const limit = caller.rateLimitPerMinute ?? readConfig(env).taskRateLimitPerMinute;
  const outcome = await (await fleetOf(env)).takeRate(`tasks:${caller.name}`, count, limit);
  if (!outcome.allowed) {
    throw new SortieError("rate_limited", `${caller.name} may create ${limit} tasks a minute; try again in ${outcome.retryAfterSeconds} s`, 429, {
      headers: { "retry-after": String(outcome.retryAfterSeconds) },
    });
  }
}
