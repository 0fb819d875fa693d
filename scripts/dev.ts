/**
 * `npm run dev`: the orchestrator on http://localhost:8787 (or $PORT) with
 * runs in local sandboxes, no Docker engine needed. Starts the local sandbox
 * host on a free port, applies the D1 migrations, builds the web viewer, then
 * runs `wrangler dev` with SANDBOX_BACKEND=local.
 *
 *   npm run dev                  # uses .dev.vars (created on first run)
 *   npm run dev -- --demo        # also a scripted stand-in model and a fixture repo acme/widgets
 *   npm run dev -- --persist-to DIR   # keep local state somewhere else
 */
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startLocalSandboxHost } from "../container/local-host.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const flag = (name: string) => args.includes(name);
const option = (name: string) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : undefined;
};
const port = process.env.PORT ?? "8787";
const persistTo = option("--persist-to") ?? path.join(root, ".wrangler", "state");
const wrangler = path.join(root, "node_modules", ".bin", "wrangler");

const devVars = path.join(root, ".dev.vars");
if (!fs.existsSync(devVars) && !process.env.SORTIE_ADMIN_TOKEN) {
  const token = randomBytes(24).toString("base64url");
  const example = fs.readFileSync(path.join(root, ".dev.vars.example"), "utf8");
  fs.writeFileSync(devVars, example.replace(/^SORTIE_ADMIN_TOKEN=.*$/m, `SORTIE_ADMIN_TOKEN=${token}`), { mode: 0o600 });
  console.log(`created .dev.vars with a new admin token:\n  export SORTIE_ADMIN_TOKEN=${token}`);
}

const vars: Record<string, string> = { SANDBOX_BACKEND: "local" };
// Settings taken from the environment as well as .dev.vars (the environment wins), for scripts and benchmarks.
const FORWARDED = [
  "SORTIE_ADMIN_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "GIT_BASE_URL", "MAX_SANDBOXES", "MAX_SANDBOXES_PER_CREATOR",
  "RETRY_BASE_MS", "TASK_RATE_LIMIT_PER_MINUTE", "FOLLOWUP_WINDOW_MINUTES", "DEFAULT_TIMEOUT_MINUTES", "MAX_TIMEOUT_MINUTES", "DEFAULT_MAX_TURNS", "MAX_BODY_BYTES",
  "OPENAI_API_KEY", "OPENAI_BASE_URL", "GEMINI_API_KEY", "GEMINI_BASE_URL", "WARM_SNAPSHOT_TTL_MINUTES", "WARM_SNAPSHOT_MAX", "WARM_SNAPSHOT_MAX_BYTES",
];
for (const key of FORWARDED) {
  if (process.env[key]) vars[key] = process.env[key]!;
}

const cleanups: (() => Promise<unknown> | void)[] = [];
if (flag("--demo")) {
  const { startAnthropicStandin } = await import("../test/standins/anthropic.mjs");
  const { createFixtureRepos } = await import("../test/support/fixtures.ts");
  const model = await startAnthropicStandin();
  cleanups.push(() => model.close());
  vars.ANTHROPIC_BASE_URL = model.url;
  vars.ANTHROPIC_API_KEY ??= "sk-ant-demo-not-a-real-key";
  vars.GIT_BASE_URL = createFixtureRepos(fs.mkdtempSync(path.join(os.tmpdir(), "sortie-demo-git-")), ["acme/widgets", "acme/gadgets"]);
  console.log(`demo: stand-in model at ${model.url}, fixture repos acme/widgets and acme/gadgets at ${vars.GIT_BASE_URL}`);
}

const token = randomBytes(24).toString("base64url");
const host = await startLocalSandboxHost({ token, root: process.env.LOCAL_SANDBOX_ROOT });
cleanups.push(() => host.close());
vars.LOCAL_SANDBOX_URL = host.url;
vars.LOCAL_SANDBOX_TOKEN = token;
console.log(`local sandbox host on ${host.url}, sandboxes under ${host.root}`);

const migrate = spawnSync(wrangler, ["d1", "migrations", "apply", "DB", "--local", "--persist-to", persistTo], { cwd: root, encoding: "utf8", env: { ...process.env, CI: "1" } });
if (migrate.status !== 0) {
  console.error(migrate.stdout, migrate.stderr);
  process.exit(1);
}

// wrangler serves the viewer from web/dist (wrangler.jsonc `assets`), so it is built first.
const viewer = spawnSync(process.execPath, [path.join(root, "node_modules", "vite", "bin", "vite.js"), "build", "--config", "web/vite.config.ts"], { cwd: root, encoding: "utf8" });
if (viewer.status !== 0) {
  console.error("building the web viewer failed:\n", viewer.stdout, viewer.stderr);
  process.exit(1);
}

const varArgs = Object.entries(vars).flatMap(([key, value]) => ["--var", `${key}:${value}`]);
const dev = spawn(wrangler, ["dev", "--port", port, "--ip", "127.0.0.1", "--persist-to", persistTo, "--show-interactive-dev-session=false", ...varArgs], {
  cwd: root,
  stdio: ["ignore", "pipe", "inherit"],
});
dev.stdout!.on("data", (chunk: Buffer) => {
  const text = chunk.toString();
  process.stdout.write(text);
  if (/Ready on/.test(text)) console.log(`SORTIE_URL=http://127.0.0.1:${port}`);
});

const stop = async () => {
  dev.kill("SIGTERM");
  for (const cleanup of cleanups) await cleanup();
  process.exit(0);
};
dev.on("exit", async (code) => {
  for (const cleanup of cleanups) await cleanup();
  process.exit(code ?? 0);
});
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
