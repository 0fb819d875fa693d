/**
 * How `npm run dev` hands a user's settings to `wrangler dev`.
 *
 * wrangler.jsonc declares `secrets.required` (the two secrets deploy must not go
 * out without), and with `secrets` set, wrangler dev loads only those keys from
 * .dev.vars or the environment. So the dev script runs wrangler dev on a copy
 * of the configuration whose `secrets.required` names every setting this
 * start has (in .dev.vars or the environment). The dev script parses the file
 * once (`util.parseEnv`), the environment wins over it, and every value reaches
 * wrangler through its environment, never a command line. wrangler.jsonc
 * itself, `wrangler types` and `wrangler deploy` are untouched.
 */
import fs from "node:fs";
import path from "node:path";
import { parseEnv } from "node:util";

export interface Settings {
  /** Every key with a value, and where it came from (the environment wins over the file). */
  values: Map<string, { value: string; from: "file" | "environment" | "dev script" }>;
  /** Keys in the file that neither .dev.vars.example nor wrangler.jsonc's vars name: passed on, but probably typos. */
  unknown: string[];
}

/** wrangler.jsonc as an object (its comments are whole lines). */
export function readWranglerConfig(root: string): Record<string, unknown> & { vars: Record<string, string>; secrets?: { required?: string[] } } {
  const text = fs.readFileSync(path.join(root, "wrangler.jsonc"), "utf8");
  return JSON.parse(text.replace(/^\s*\/\/.*$/gm, ""));
}

/** The keys .dev.vars.example documents (set or commented out), and the vars of wrangler.jsonc. */
export function knownKeys(root: string): Set<string> {
  const example = fs.readFileSync(path.join(root, ".dev.vars.example"), "utf8");
  const keys = new Set([...example.matchAll(/^#?\s*([A-Z][A-Z0-9_]*)=/gm)].map((match) => match[1]!));
  for (const key of Object.keys(readWranglerConfig(root).vars)) keys.add(key);
  return keys;
}

/**
 * The settings this start has: the file's, then the environment's for every
 * known key (a benchmark or CI passes settings that way), then the dev script's own.
 */
export function collectSettings(options: { root: string; file: string | null; env: Record<string, string | undefined>; computed: Record<string, string> }): Settings {
  const known = knownKeys(options.root);
  const values: Settings["values"] = new Map();
  const parsed = options.file && fs.existsSync(options.file) ? parseEnv(fs.readFileSync(options.file, "utf8")) : {};
  for (const [key, value] of Object.entries(parsed)) if (value) values.set(key, { value, from: "file" });
  for (const key of known) {
    const value = options.env[key];
    if (value) values.set(key, { value, from: "environment" });
  }
  for (const [key, value] of Object.entries(options.computed)) values.set(key, { value, from: "dev script" });
  const unknown = Object.keys(parsed).filter((key) => !known.has(key));
  return { values, unknown };
}

/**
 * The configuration wrangler dev runs on: wrangler.jsonc with every setting
 * this start has in `secrets.required`, and its paths made absolute so the
 * copy can live outside the checkout.
 */
export function devConfig(root: string, settings: Settings): Record<string, unknown> {
  const config = readWranglerConfig(root);
  const required = new Set(config.secrets?.required ?? []);
  for (const key of settings.values.keys()) if (!(key in config.vars)) required.add(key);
  const absolute = (p: string) => path.resolve(root, p);
  const { $schema: _schema, ...rest } = config;
  return {
    ...rest,
    main: absolute(String(config.main)),
    secrets: { required: [...required] },
    assets: { ...(config.assets as object), directory: absolute(String((config.assets as { directory: string }).directory)) },
    containers: (config.containers as { image: string }[]).map((container) => ({ ...container, image: absolute(container.image) })),
    d1_databases: (config.d1_databases as { migrations_dir: string }[]).map((db) => ({ ...db, migrations_dir: absolute(db.migrations_dir) })),
  };
}

/** What is configured and what is off, one line per integration; never a value. */
export function integrationReport(settings: Settings): string[] {
  const has = (key: string) => settings.values.has(key);
  const yes = (key: string) => (has(key) ? `yes (${settings.values.get(key)!.from})` : "no");
  const github = has("GITHUB_APP_ID") && has("GITHUB_APP_PRIVATE_KEY") ? "app" : has("GITHUB_TOKEN") ? "token" : "off";
  const r2 = ["R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY", "CLOUDFLARE_ACCOUNT_ID"];
  const lines = [
    `admin token: ${yes("SORTIE_ADMIN_TOKEN")}`,
    `Claude Code and OpenCode (ANTHROPIC_API_KEY): ${yes("ANTHROPIC_API_KEY")}`,
    `Codex (OPENAI_API_KEY): ${yes("OPENAI_API_KEY")}`,
    `Gemini CLI (GEMINI_API_KEY): ${yes("GEMINI_API_KEY")}`,
    `Slack: signing secret ${yes("SLACK_SIGNING_SECRET")}, bot token ${yes("SLACK_BOT_TOKEN")}`,
    `GitHub: ${github}${github === "off" && has("GITHUB_APP_ID") ? " (GITHUB_APP_ID is set but GITHUB_APP_PRIVATE_KEY is not)" : ""}, webhook secret ${yes("GITHUB_WEBHOOK_SECRET")}`,
    `R2 backups: ${r2.every(has) ? "on" : `off${r2.some(has) ? ` (missing ${r2.filter((key) => !has(key)).join(", ")})` : ""}`} (used on the cloudflare backend only)`,
  ];
  const overrides = [...settings.values].filter(([, { from }]) => from !== "dev script").map(([key]) => key);
  lines.push(`settings passed on: ${overrides.length ? overrides.sort().join(", ") : "none"}`);
  for (const key of settings.unknown) lines.push(`warning: ${key} in .dev.vars is not a setting Sortie documents (a typo?); it is passed on anyway`);
  return lines;
}
