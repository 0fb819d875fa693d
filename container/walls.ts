/**
 * The walls around every sandbox of the local sandbox host, built with
 * `@anthropic-ai/sandbox-runtime` (bubblewrap on Linux, Seatbelt on macOS):
 *
 * - filesystem: writes only inside the command's sandbox directory; the
 *   host's home, the Sortie checkout (its `.dev.vars`, `.wrangler/`) and
 *   the host's state root (other sandboxes, the snapshot and cache stores)
 *   are unreadable, except the sandbox itself and the toolchain;
 * - processes: a pid namespace of its own, so no other process is seen,
 *   signalled or read (`/proc/<pid>/environ`);
 * - network: a network namespace of its own (its loopback is its own, so two
 *   sandboxes may both listen on 3000); the only way out is the runtime's
 *   proxy, which lets through the model endpoints and the hosts this
 *   sandbox was given, nothing else (a host's 127.0.0.1 included);
 * - credentials: the model keys the orchestrator hands over are masked: the
 *   command sees a sentinel, and the proxy puts the real value back on
 *   requests to that key's model host.
 *
 * A sandbox's walls are built once and hold a wall server that starts each of
 * its commands (container/wall-env.ts): `enclose` works them out, `inside`
 * masks what a command is given.
 *
 *   const walls = await openWalls({ stateRoots: [root], plaintextModelEndpoints: true });
 *   const enclosure = await walls.enclose(WALL_SERVER_COMMAND, { root: sandboxRoot, allow: ["registry.npmjs.org"] });
 *   const { env, unset } = walls.inside({ PATH, HOME, ANTHROPIC_API_KEY: key }); // the key becomes a sentinel
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { SandboxManager, type SandboxRuntimeConfig } from "@anthropic-ai/sandbox-runtime";

const here = path.dirname(fileURLToPath(import.meta.url));
/** The Sortie checkout: its secrets (.dev.vars) and state (.wrangler/) are no sandbox's business. */
const CHECKOUT = path.resolve(here, "..");
/** The toolchain every command may read: where the checkout's node_modules really is (a git worktree may link it from another checkout). */
const NODE_MODULES = fs.realpathSync(path.join(CHECKOUT, "node_modules"));
/** The one file of the checkout readable inside the walls: the server that starts a sandbox's commands. */
export const WALL_SERVER = path.join(here, "wall-server.mjs");
/** The socat the runtime's proxy relays run (on the host and inside each sandbox): its own, with Nagle off. */
const SOCAT = path.join(here, "socat-nodelay.sh");
/** Preloaded into every Node process inside: its fetch, http and https take the proxy when first used (see the file). */
const NODE_PROXY = path.join(here, "node-proxy.cjs");
/** `node` first on PATH inside: the real one, with the preload put back when a command sets NODE_OPTIONS of its own. */
const NODE_SHIM = path.join(here, "node-shim");

/** The model keys a command may be handed, with the variable naming where each goes and its default host. */
const MODEL_KEYS = [
  { key: "ANTHROPIC_API_KEY", base: "ANTHROPIC_BASE_URL", origin: "https://api.anthropic.com" },
  { key: "ANTHROPIC_AUTH_TOKEN", base: "ANTHROPIC_BASE_URL", origin: "https://api.anthropic.com" },
  { key: "OPENAI_API_KEY", base: "OPENAI_BASE_URL", origin: "https://api.openai.com" },
  { key: "GEMINI_API_KEY", base: "GOOGLE_GEMINI_BASE_URL", origin: "https://generativelanguage.googleapis.com" },
] as const;

/** The system packages the walls need on Linux, by the command each provides. */
const LINUX_TOOLS = [
  { command: "bwrap", pkg: "bubblewrap" },
  { command: "socat", pkg: "socat" },
  { command: "rg", pkg: "ripgrep" },
] as const;

export interface WallsOptions {
  /** Where the host keeps every sandbox, snapshot and cache: unreadable except a command's own sandbox. */
  stateRoots: string[];
  /** Directories every command may read besides the system (LOCAL_SANDBOX_EXTRA_PATH, a file:// git base). */
  readable?: string[];
  /**
   * Lets the proxy put a model key on a plain-http request (a stand-in model on loopback in tests and the
   * demo). Off, a key goes out only inside TLS the proxy terminated and verified upstream.
   */
  plaintextModelEndpoints?: boolean;
}

export interface WallSpec {
  /** The sandbox's own directory: the only place its commands write. */
  root: string;
  /** Hosts its commands reach besides the model endpoints (git host, registries, the task's egress); none for an analysis run. */
  allow: string[];
  /** Directories outside `root` its commands may read (a file:// git base). */
  readable?: string[];
  /** Directories outside `root` its commands may write (a file:// remote a publisher pushes to). */
  writable?: string[];
}

/** One long-lived command walled in (a sandbox's wall server, container/wall-env.ts). */
export interface Enclosure {
  /** A shell command line to run with `bash -c`, with `env` added to the variables it is given. */
  command: string;
  env: Record<string, string>;
  /** The hosts its commands may reach from now on (a task's egress added while the sandbox lives). */
  allow(hosts: string[]): void;
  /** Forgets what it was allowed: call once it has exited. */
  release(): void;
}

/** A command's variables as they go inside the walls, and the ones the walls' own must not keep for it. */
export interface InsideEnv {
  env: Record<string, string>;
  unset: string[];
}

/** What stops the walls from being built on this machine; empty when they can be. */
export function missingForWalls(): string[] {
  const missing: string[] = [];
  if (process.platform === "darwin") {
    if (!onPath("rg")) missing.push("ripgrep (brew install ripgrep)");
    return missing;
  }
  if (process.platform !== "linux") return [`a supported platform (Linux or macOS), not ${process.platform}`];
  for (const tool of LINUX_TOOLS) if (!onPath(tool.command)) missing.push(`${tool.command} (apt-get install ${tool.pkg})`);
  if (onPath("bwrap")) {
    const probe = spawnSync("bwrap", ["--unshare-user", "--unshare-pid", "--unshare-net", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "true"], { encoding: "utf8" });
    if (probe.status !== 0) missing.push(`user namespaces (bwrap could not build one: ${(probe.stderr || probe.error?.message || "").trim()}; see kernel.unprivileged_userns_clone / user.max_user_namespaces)`);
  }
  return missing;
}

/** Whether the walls were switched off by hand (`LOCAL_SANDBOX_UNCONFINED=1`). */
export function unconfinedByHand(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.LOCAL_SANDBOX_UNCONFINED === "1";
}

/**
 * For `npm run dev`: stops the process with a message naming what is
 * missing when the walls cannot be built, unless they were switched off by hand.
 */
export function requireWalls(): void {
  if (unconfinedByHand()) {
    console.warn("LOCAL_SANDBOX_UNCONFINED=1: local sandboxes run WITHOUT walls (host filesystem, network and processes in reach); every run records an `unconfined` warning");
    return;
  }
  const missing = missingForWalls();
  if (missing.length === 0) return;
  console.error(
    `Sortie's local sandboxes cannot be walled in on this machine. Missing: ${missing.join("; ")}.\n` +
      "Install what is missing (see README, \"Sandbox backends\"), or set LOCAL_SANDBOX_UNCONFINED=1 to run agents without walls on purpose.",
  );
  process.exit(1);
}

export interface Walls {
  /** Walls in `command` (run it with `bash -c`), which stays up and starts the sandbox's commands. */
  enclose(command: string, spec: WallSpec): Promise<Enclosure>;
  /** `env` as a command inside the walls gets it: model keys masked (the proxy puts them back), Node told to use the proxy. */
  inside(env: Record<string, string>): InsideEnv;
  /** This host is done with the walls; the last to go stops the runtime's proxy. */
  close(): Promise<void>;
}

let opened: Promise<WallsImpl> | null = null;
let users = 0;

/** The walls of this process (the runtime keeps one proxy per process: every host in it shares them). */
export async function openWalls(options: WallsOptions): Promise<Walls> {
  opened ??= WallsImpl.start(options);
  users += 1;
  const walls = (await opened).adopt(options);
  let closed = false;
  return {
    enclose: (command, spec) => walls.enclose(command, spec),
    inside: (env) => walls.inside(env),
    close: async () => {
      if (closed) return;
      closed = true;
      users -= 1;
      if (users > 0) return;
      opened = null;
      await SandboxManager.reset();
    },
  };
}

class WallsImpl {
  private readonly stateRoots = new Set<string>();
  private readonly readable = new Set<string>();
  /** What the proxy lets every command reach (`host:port`): the model endpoints, loopback hosts given to a sandbox. */
  private readonly open = new Set<string>();
  private config: SandboxRuntimeConfig;

  private constructor(config: SandboxRuntimeConfig) {
    this.config = config;
  }

  static async start(options: WallsOptions): Promise<WallsImpl> {
    const config: SandboxRuntimeConfig = {
      network: { allowedDomains: [], deniedDomains: [], ...(options.plaintextModelEndpoints ? {} : { tlsTerminate: {} }) },
      filesystem: { denyRead: [], allowWrite: [], denyWrite: [] },
      // Masking is set up per command; the block here is what installs the proxy's substitution.
      credentials: { envVars: [], ...(options.plaintextModelEndpoints ? { allowPlaintextInject: true } : {}) },
      // The runtime scans this process's working directory (the Sortie checkout, read-only to every command anyway)
      // for files to protect on every wrap: one level is enough, and keeps the wrap fast.
      mandatoryDenySearchDepth: 1,
      ...(process.platform === "linux" ? { socatPath: SOCAT } : {}),
    };
    await SandboxManager.initialize(config);
    // Confined agents run as users of their own, and reach the proxy through these sockets (its token still guards it).
    for (const socket of [SandboxManager.getLinuxHttpSocketPath(), SandboxManager.getLinuxSocksSocketPath()]) if (socket) fs.chmodSync(socket, 0o666);
    // They also trust the proxy's CA: its certificate and bundle readable by them, its key by root alone.
    const ca = SandboxManager.getMitmCA();
    if (ca) {
      for (const file of [ca.certPath, ca.trustBundlePath]) {
        fs.chmodSync(path.dirname(file), 0o711);
        fs.chmodSync(file, 0o644);
      }
      fs.chmodSync(ca.keyPath, 0o600);
    }
    return new WallsImpl(config);
  }

  adopt(options: WallsOptions): this {
    for (const root of options.stateRoots) this.stateRoots.add(root);
    for (const dir of options.readable ?? []) this.readable.add(dir);
    return this;
  }

  async enclose(command: string, spec: WallSpec): Promise<Enclosure> {
    const home = os.homedir();
    const commandId = randomBytes(16).toString("base64url");
    const wrapped = await SandboxManager.wrapWithSandbox(
      // The enclosed command starts every other one with the variables it is asked for (the sandbox's TMPDIR among them).
      `exec bash -c "$SORTIE_WALLED_COMMAND"`,
      "bash",
      {
        filesystem: {
          // Not /tmp as a whole: the runtime's proxy sockets live there, and a hidden /tmp hides them too.
          denyRead: [...new Set([home, "/root", "/home", CHECKOUT, ...this.stateRoots])],
          allowRead: [spec.root, NODE_MODULES, WALL_SERVER, SOCAT, NODE_PROXY, NODE_SHIM, ...this.readable, ...(spec.readable ?? []), ...(spec.writable ?? [])],
          allowWrite: [spec.root, ...(spec.writable ?? [])],
          // The runtime's own scratch (/tmp/claude) would be shared by every sandbox: none of them writes there.
          denyWrite: ["/tmp/claude"],
        },
      },
      undefined,
      { commandId },
    );
    const allow = (hosts: string[]) => {
      // The runtime refuses a loopback address it finds only on a command's own list: those go on the shared one.
      for (const host of hosts) if (isLoopback(host.replace(/:\d+$/, ""))) this.allowEverywhere(host);
      SandboxManager.registerCommandNetworkLists(commandId, { allowedDomains: hosts.filter((host) => !this.open.has(host)) });
    };
    allow(spec.allow);
    return { command: wrapped, env: { SORTIE_WALLED_COMMAND: command }, allow, release: () => SandboxManager.unregisterCommandNetworkLists(commandId) };
  }

  inside(given: Record<string, string>): InsideEnv {
    const env = { ...given };
    let loopbackModel = false;
    for (const model of MODEL_KEYS) {
      const value = env[model.key];
      if (!value) continue;
      const endpoint = endpointOf(env[model.base] || model.origin);
      this.allowEverywhere(endpoint.hostPort);
      loopbackModel ||= endpoint.loopback;
      // The command gets the sentinel; the proxy swaps it for the real value on requests to that key's model host alone.
      env[model.key] = SandboxManager.getSentinelRegistry().register(model.key, value, [endpoint.host]);
    }
    // Node's own fetch and http reach the network only through the proxy when told to. NODE_USE_ENV_PROXY
    // would tell them at every start, building a fetch client each time; the preload does it on first use.
    const preload = `--require ${JSON.stringify(NODE_PROXY)}`;
    env.NODE_OPTIONS = [given.NODE_OPTIONS, preload].filter(Boolean).join(" ");
    const node = given.PATH ? nodeOn(given.PATH) : null;
    if (node) {
      env.SORTIE_NODE = node;
      env.SORTIE_NODE_REQUIRE = preload;
      env.PATH = `${NODE_SHIM}:${given.PATH}`;
    }
    // A model endpoint on loopback is reached through the proxy, so loopback is not exempted from it.
    return { env, unset: loopbackModel ? ["NO_PROXY", "no_proxy"] : [] };
  }

  /** Opens `hostPort` to every command: the model endpoints, and loopback hosts a sandbox was given. */
  private allowEverywhere(hostPort: string): void {
    if (this.open.has(hostPort)) return;
    this.open.add(hostPort);
    this.config = { ...this.config, network: { ...this.config.network, allowedDomains: [...this.open] } };
    SandboxManager.updateConfig(this.config);
  }
}

function endpointOf(url: string): { host: string; hostPort: string; loopback: boolean } {
  const parsed = new URL(url);
  const host = parsed.hostname.replace(/^\[|\]$/g, "");
  const port = parsed.port || (parsed.protocol === "https:" ? "443" : "80");
  return { host, hostPort: `${host}:${port}`, loopback: isLoopback(host) };
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host.startsWith("127.");
}

/** The `node` a PATH finds (the shim never), by PATH. */
const nodes = new Map<string, string>();
function nodeOn(searchPath: string): string | null {
  const known = nodes.get(searchPath);
  if (known) return known;
  const found = searchPath.split(":").filter((dir) => path.isAbsolute(dir)).map((dir) => path.join(dir, "node")).find((file) => {
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return fs.statSync(file).isFile() && !fs.realpathSync(file).startsWith(NODE_SHIM + path.sep);
    } catch {
      return false;
    }
  });
  if (found) nodes.set(searchPath, found);
  return found ?? null;
}

function onPath(command: string): boolean {
  return spawnSync("sh", ["-c", 'command -v "$1"', "sh", command], { stdio: "ignore" }).status === 0;
}
