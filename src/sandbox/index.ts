import { getSandbox } from "@cloudflare/sandbox";
import type { SortieConfig } from "../config.ts";
import { CloudflareSandboxPort } from "./cloudflare.ts";
import { egressPolicyFor } from "./egress.ts";
import { LocalSandboxPort, localReachOf } from "./local.ts";
import type { SandboxPort } from "./port.ts";

export type { Sandbox, SandboxPort, ProcessOutput } from "./port.ts";

/** The sandbox backend the configuration names: `local` for dev and tests, `cloudflare` in production. */
export function sandboxPortFor(env: Cloudflare.Env, config: SortieConfig): SandboxPort {
  if (config.sandboxBackend === "local") return new LocalSandboxPort(env.LOCAL_SANDBOX_URL, env.LOCAL_SANDBOX_TOKEN ?? "", localReachOf(egressPolicyFor(env), env.GIT_BASE_URL));
  // Backups need the bucket and the R2 credentials the SDK signs upload URLs with.
  const backups = env.BACKUP_BUCKET && env.R2_ACCESS_KEY_ID && env.R2_SECRET_ACCESS_KEY && (env.CLOUDFLARE_R2_ACCOUNT_ID || env.CLOUDFLARE_ACCOUNT_ID)
    ? { bucket: env.BACKUP_BUCKET, snapshotTtlSeconds: Math.max(config.warmSnapshotTtlMinutes, 60) * 60 }
    : null;
  return new CloudflareSandboxPort((id) => getSandbox(env.Sandbox as never, id), backups, env.BROWSER ?? null);
}
