/**
 * Runs `npm run dev -- --demo` as a user would (the dev script, wrangler dev,
 * the local sandbox host, the stand-in model and fixture repos) on a free
 * port, for end-to-end tests, the CLI and benchmarks.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { knownKeys } from "../../scripts/dev-settings.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export interface DevServer {
  url: string;
  token: string;
  gitBaseUrl: string;
  /** The dev script's process id; wrangler and workerd run under it. */
  pid: number;
  /** Where wrangler keeps this server's D1 and Durable Object state, and the sandbox host its state (removed on stop unless given). */
  persistTo: string;
  output: () => string;
  stop: () => Promise<void>;
  /** Ends the server and everything in its process group at once (SIGKILL), as a crash would. */
  kill: () => Promise<void>;
}

export interface DevServerOptions {
  /** Settings only through this file (`--dev-vars FILE`). */
  devVars?: string;
  /** State from an earlier server to start on (kept on stop): a restart. */
  persistTo?: string;
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Starts the dev server. Settings go in through the environment (`extraEnv`),
 * or, with `devVars`, only through that file (`--dev-vars FILE`, the README's
 * .dev.vars): then nothing Sortie reads is left in the environment and the
 * admin token is the file's.
 */
export async function startDevServer(extraEnv: Record<string, string> = {}, options: DevServerOptions = {}): Promise<DevServer> {
  // The port is free when chosen, but anything on the machine (another test's
  // servers, workerd's own sockets) may take it before wrangler listens: then
  // wrangler exits at once, and the server is started again on another port.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(await freePort(), extraEnv, options);
    } catch (error) {
      if (attempt >= 3 || !(error instanceof PortTaken)) throw error;
    }
  }
}

class PortTaken extends Error {}

async function startOnce(port: number, extraEnv: Record<string, string>, options: DevServerOptions): Promise<DevServer> {
  const persist = options.persistTo ?? fs.mkdtempSync(path.join(os.tmpdir(), "sortie-e2e-state-"));
  const args = ["scripts/dev.ts", "--demo", "--persist-to", persist];
  const env = { ...process.env };
  let token: string;
  if (options.devVars) {
    const fileToken = /^SORTIE_ADMIN_TOKEN=(.+)$/m.exec(fs.readFileSync(options.devVars, "utf8"))?.[1];
    if (!fileToken) throw new Error(`${options.devVars} sets no SORTIE_ADMIN_TOKEN`);
    token = fileToken.trim().replace(/^"(.*)"$/, "$1");
    for (const key of knownKeys(root)) delete env[key as keyof typeof env];
    args.push("--dev-vars", options.devVars);
  } else {
    token = extraEnv.SORTIE_ADMIN_TOKEN ?? `e2e-${Math.random().toString(36).slice(2)}`;
    env.SORTIE_ADMIN_TOKEN = token;
  }
  const child: ChildProcess = spawn(process.execPath, args, {
    cwd: root,
    env: { ...env, PORT: String(port), ...extraEnv },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const deadline = Date.now() + 90_000;
  while (!/SORTIE_URL=/.test(output)) {
    if (child.exitCode !== null) {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // the group is gone with it
      }
      if (!options.persistTo) fs.rmSync(persist, { recursive: true, force: true });
      const taken = new RegExp(`Address already in use \\(127\\.0\\.0\\.1:${port}\\)`).test(output);
      throw new (taken ? PortTaken : Error)(`npm run dev exited ${child.exitCode}:\n${output}`);
    }
    if (Date.now() > deadline) {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // already gone
      }
      throw new Error(`npm run dev did not start in time:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const gitBaseUrl = /fixture repos .* at (file:\/\/\S+)/.exec(output)?.[1];
  if (!gitBaseUrl) throw new Error(`no fixture repo base in the dev output:\n${output}`);
  return {
    url: `http://127.0.0.1:${port}`,
    token,
    gitBaseUrl,
    pid: child.pid!,
    persistTo: persist,
    output: () => output,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      try {
        process.kill(-child.pid!, "SIGTERM");
      } catch {
        // already gone
      }
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // already gone
      }
      if (!options.persistTo) fs.rmSync(persist, { recursive: true, force: true });
    },
    kill: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // already gone
      }
      await exited;
    },
  };
}
