/**
 * `npm run dev`: the orchestrator on http://localhost:8787 (or $PORT) with
 * runs in local sandboxes, no Docker engine needed. Starts the local sandbox
 * host on a free port, applies the D1 migrations, builds the web viewer, then
 * runs `wrangler dev` with SANDBOX_BACKEND=local.
 *
 *   npm run dev                  # uses .dev.vars (created on first run)
 *   npm run dev -- --demo        # also a scripted stand-in model and a fixture repo acme/widgets
 *   npm run dev -- --persist-to DIR   # keep local state somewhere else
 *   npm run dev -- --dev-vars FILE    # read settings from FILE instead of .dev.vars
 */
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startLocalSandboxHost } from "../container/local-host.ts";
import { requireWalls } from "../container/walls.ts";
import { collectSettings, devConfig, integrationReport, knownKeys } from "./dev-settings.ts";

// No silent downgrade: without bubblewrap, socat, ripgrep or user namespaces, say what is missing and stop.
requireWalls();

// Sandboxes kept with their walls up ahead of need: one by default; a server whose tasks fan out to N runs keeps N.
const sparesGiven = process.env.LOCAL_SANDBOX_SPARES || "1";
const spares = Number(sparesGiven);
if (!/^\d+$/.test(sparesGiven) || spares > 64) {
  console.error(`LOCAL_SANDBOX_SPARES must be a whole number from 0 to 64 (the sandboxes kept ready), not "${sparesGiven}"`);
  process.exit(1);
}

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

// Like wrangler: .dev.vars, else .env, in the project root (or the file --dev-vars names).
const dotEnv = path.join(root, ".env");
const devVars = path.resolve(option("--dev-vars") ?? (!fs.existsSync(path.join(root, ".dev.vars")) && fs.existsSync(dotEnv) ? dotEnv : path.join(root, ".dev.vars")));
if (!fs.existsSync(devVars) && !process.env.SORTIE_ADMIN_TOKEN) {
  const token = randomBytes(24).toString("base64url");
  const example = fs.readFileSync(path.join(root, ".dev.vars.example"), "utf8");
  fs.writeFileSync(devVars, example.replace(/^SORTIE_ADMIN_TOKEN=.*$/m, `SORTIE_ADMIN_TOKEN=${token}`), { mode: 0o600 });
  console.log(`created ${path.relative(root, devVars)} with a new admin token:\n  export SORTIE_ADMIN_TOKEN=${token}`);
}

/** Values the dev script sets itself; they reach wrangler through its environment, never its command line. */
const vars: Record<string, string> = { SANDBOX_BACKEND: "local" };

const cleanups: (() => Promise<unknown> | void)[] = [];
if (flag("--demo")) {
  const { startAnthropicStandin } = await import("../test/standins/anthropic.mjs");
  const { createFixtureRepos } = await import("../test/support/fixtures.ts");
  const model = await startAnthropicStandin();
  cleanups.push(() => model.close());
  vars.ANTHROPIC_BASE_URL = model.url;
  if (!process.env.ANTHROPIC_API_KEY && !collectSettings({ root, file: devVars, env: {}, computed: {} }).values.has("ANTHROPIC_API_KEY")) {
    vars.ANTHROPIC_API_KEY = "sk-ant-demo-not-a-real-key";
  }
  // A GIT_BASE_URL given keeps its repositories across restarts (the restart tests); otherwise fresh fixtures.
  vars.GIT_BASE_URL = process.env.GIT_BASE_URL || createFixtureRepos(fs.mkdtempSync(path.join(os.tmpdir(), "sortie-demo-git-")), ["acme/widgets", "acme/gadgets"]);
  console.log(`demo: stand-in model at ${model.url}, fixture repos acme/widgets and acme/gadgets at ${vars.GIT_BASE_URL}`);
}

const token = randomBytes(24).toString("base64url");
// Under the persisted state by default, so warm snapshots and dependency caches survive a restart.
const host = await startLocalSandboxHost({ token, root: process.env.LOCAL_SANDBOX_ROOT ?? path.join(persistTo, "sandboxes"), plaintextModelEndpoints: flag("--demo"), spares });
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

const settings = collectSettings({ root, file: devVars, env: process.env, computed: vars });
// Every setting reaches wrangler through its environment (which it reads whenever `secrets` is set), parsed once,
// here: the report below and the Worker see the same values, and none is ever on a command line.
const childEnv: Record<string, string | undefined> = { ...process.env };
for (const key of knownKeys(root)) delete childEnv[key];
for (const [key, { value }] of settings.values) childEnv[key] = value;
console.log(["configuration (values never shown):", ...integrationReport(settings).map((line) => `  ${line}`)].join("\n"));
// wrangler dev runs on a copy of wrangler.jsonc whose secrets.required names every setting this start has (scripts/dev-settings.ts).
const configDir = fs.mkdtempSync(path.join(os.tmpdir(), "sortie-dev-config-"));
const configPath = path.join(configDir, "wrangler.json");
fs.writeFileSync(configPath, JSON.stringify(devConfig(root, settings), null, 2), { mode: 0o600 });
cleanups.push(() => fs.rmSync(configDir, { recursive: true, force: true }));
const dev = spawn(
  wrangler,
  ["dev", "--config", configPath, "--port", port, "--ip", "127.0.0.1", "--persist-to", persistTo, "--show-interactive-dev-session=false"],
  { cwd: root, stdio: ["ignore", "pipe", "inherit"], env: childEnv as NodeJS.ProcessEnv },
);
dev.stdout!.on("data", (chunk: Buffer) => {
  const text = chunk.toString();
  process.stdout.write(text);
  if (/Ready on/.test(text)) console.log(`SORTIE_URL=http://127.0.0.1:${port}`);
});

/** The cleanups, run once however the stop comes (a signal, wrangler's exit, or both at once). */
let cleaned: Promise<void> | null = null;
const cleanUp = () =>
  (cleaned ??= (async () => {
    for (const cleanup of cleanups) await cleanup();
  })());
const stop = async () => {
  dev.kill("SIGTERM");
  await cleanUp();
  process.exit(0);
};
dev.on("exit", async (code) => {
  await cleanUp();
  process.exit(code ?? 0);
});
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
