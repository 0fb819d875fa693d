/**
 * What the escape suite (test/worker/walls.test.ts) tries to reach from inside
 * a sandbox, planted on this host: a secret in the host's home directory, a
 * loopback HTTP server no allowlist names, and a process outside every
 * sandbox to signal. Their addresses reach the Worker's tests by `inject`.
 * (The `.dev.vars` the suite reads is planted by the test itself: wrangler
 * would read one planted before the Worker's pool starts.)
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { TestProject } from "vitest/node";

const checkout = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export default async function setup(project: TestProject) {
  const homeSecret = path.join(os.homedir(), `.sortie-escape-${randomBytes(4).toString("hex")}`);
  const homeSecretValue = `home-secret-${randomBytes(8).toString("hex")}`;
  fs.writeFileSync(homeSecret, `${homeSecretValue}\n`, { mode: 0o644 });

  const forbiddenValue = `forbidden-${randomBytes(8).toString("hex")}`;
  const forbidden = http.createServer((_req, res) => res.end(forbiddenValue));
  await new Promise<void>((resolve) => forbidden.listen(0, "127.0.0.1", resolve));
  const forbiddenUrl = `http://127.0.0.1:${(forbidden.address() as import("node:net").AddressInfo).port}/`;

  const outsider = spawn("sleep", ["3600"], { stdio: "ignore", detached: true });

  project.provide("escape", { homeSecret, homeSecretValue, devVars: path.join(checkout, ".dev.vars"), checkout, forbiddenUrl, forbiddenValue, outsiderPid: outsider.pid! });
  return async () => {
    fs.rmSync(homeSecret, { force: true });
    outsider.kill("SIGKILL");
    await new Promise((resolve) => forbidden.close(resolve));
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    escape: { homeSecret: string; homeSecretValue: string; devVars: string; checkout: string; forbiddenUrl: string; forbiddenValue: string; outsiderPid: number };
  }
}
