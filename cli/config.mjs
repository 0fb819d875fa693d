/** Where the CLI finds its server and token: flags, then environment, then a config file. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { CliError } from "./errors.mjs";

/** `npm run dev`'s address, so a local checkout works without any setup but the token. */
export const DEFAULT_URL = "http://localhost:8787";

/** `$XDG_CONFIG_HOME/sortie/config.json`, or `~/.config/sortie/config.json`. */
export function configPath(env = process.env) {
  const base = env.XDG_CONFIG_HOME || path.join(os.homedir(), ".config");
  return path.join(base, "sortie", "config.json");
}

/**
 * The server URL and token for this invocation. A flag beats an environment
 * variable, which beats the config file; an empty value counts as unset.
 * @param {{ url?: string, token?: string }} flags
 * @returns {{ url: string, token: string }}
 */
export function resolveConfig(flags, env = process.env) {
  const file = configPath(env);
  const saved = readConfigFile(file);
  const url = flags.url || env.SORTIE_URL || saved.url || DEFAULT_URL;
  const token = flags.token || env.SORTIE_TOKEN || saved.token;
  if (!token) {
    throw new CliError(
      `no API token: set SORTIE_TOKEN, pass --token, or write {"url": "${url}", "token": "..."} to ${file}`,
      { exitCode: 2 },
    );
  }
  if (!/^https?:\/\//.test(url)) throw new CliError(`the server URL must start with http:// or https://, got "${url}"`, { exitCode: 2 });
  return { url: url.replace(/\/+$/, ""), token };
}

/** @returns {{ url?: string, token?: string }} */
function readConfigFile(file) {
  let text;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (error) {
    if (error.code === "ENOENT") return {};
    throw new CliError(`cannot read ${file}: ${error.message}`, { exitCode: 2, cause: error });
  }
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new CliError(`${file} is not valid JSON: ${error.message}`, { exitCode: 2, cause: error });
  }
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new CliError(`${file} must hold a JSON object {"url", "token"}`, { exitCode: 2 });
  const pick = (key) => (typeof parsed[key] === "string" ? parsed[key] : undefined);
  return { url: pick("url"), token: pick("token") };
}
