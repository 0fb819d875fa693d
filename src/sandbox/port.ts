/**
 * The execution port: everything a task agent needs from a sandbox, and
 * nothing about how a sandbox is made. The `cloudflare` adapter drives a
 * Cloudflare Sandbox container; the `local` adapter drives
 * container/local-host.ts over loopback HTTP.
 */

/** Output of a process, in order. `exit` comes last, once. */
export type ProcessOutput =
  | { kind: "stdout" | "stderr"; data: string }
  | { kind: "exit"; exitCode: number };

/** How many characters of each stream a reader has taken: where a re-attach resumes. */
export interface StreamOffsets {
  stdout: number;
  stderr: number;
}

export interface ExecOptions {
  cwd?: string;
  /** Variables for this one command only; user data travels here, never inside `command`. */
  env?: Record<string, string>;
  timeoutMs?: number;
  /** Runs the command as an unprivileged user, and with only the model API for a network if asked. */
  confine?: Confinement;
  /**
   * One of Sortie's own fixed scripts that runs nothing from the repository
   * or the agent, user data only in variables: one that needs the machine's
   * root (hands a worktree to its user, ends that user's processes,
   * unmounts), or one that only reads what no agent has touched yet (the
   * remote's head, the clone, a directory's size). The local backend runs it
   * outside the walls it builds around every other command, which saves
   * building them; in a container it changes nothing.
   */
  bookkeeping?: boolean;
  /**
   * The port the command will listen on (a preview): the backend makes it
   * reachable by `SandboxPort.fetchPort`. Locally each walled command has a
   * network namespace of its own, which the host bridges; in a container
   * every port is the container's.
   */
  serves?: number;
}

/**
 * What a confined agent process may do. It runs as `uid` (group `uid`, no
 * others) with HOME at `home`, so files it does not own are as closed to it
 * as their modes say, even inside the sandbox. With `modelOnly`, the model
 * API (the origins listed) is its only network: no package registry, no git
 * host, nothing else.
 */
export interface Confinement {
  uid: number;
  home: string;
  modelOnly?: { origins: string[] };
}

/**
 * Wraps `command` to run as the confined user: root makes the user's private
 * HOME, then `setpriv` drops to the user with no groups and no capabilities.
 * The command travels in $SORTIE_CONFINED_COMMAND, never spliced. The
 * network part of a confinement is the backend's.
 */
export function asConfinedUser(command: string, confine: Confinement, env: Record<string, string> = {}): { command: string; env: Record<string, string> } {
  return {
    command: [
      'install -d -m 0700 -o "$SORTIE_UID" -g "$SORTIE_UID" "$HOME"',
      'exec setpriv --reuid="$SORTIE_UID" --regid="$SORTIE_UID" --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs -- bash -c "$SORTIE_CONFINED_COMMAND"',
    ].join(" && "),
    env: { ...env, SORTIE_UID: String(confine.uid), SORTIE_CONFINED_COMMAND: command, HOME: confine.home, TMPDIR: confine.home },
  };
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface CheckoutResult {
  /** The commit the clone is at: the base every diff is taken against. */
  commit: string;
}

export interface Sandbox {
  readonly id: string;
  /** Absolute directory this sandbox's run owns; the repo is cloned beneath it. */
  readonly workdir: string;
  /** True when the backend runs this sandbox without walls (the local host with LOCAL_SANDBOX_UNCONFINED=1). */
  readonly unconfined?: boolean;
  checkout(url: string, options: { dir: string; branch?: string | null; timeoutMs?: number }): Promise<CheckoutResult>;
  exec(command: string, options?: ExecOptions): Promise<ExecResult>;
  /** Starts a long-running command and returns its id; its output is read with `streamProcess`. */
  startProcess(command: string, options?: ExecOptions): Promise<{ processId: string }>;
  /**
   * The process's output from the start (or, to re-attach, from character
   * offsets `from` of each stream), ending with its exit. A stream that ends
   * without an exit raises SandboxUnavailableError. Aborting `signal` stops
   * reading, not the process.
   */
  streamProcess(processId: string, options?: { from?: StreamOffsets; signal?: AbortSignal }): AsyncIterable<ProcessOutput>;
  killProcess(processId: string): Promise<void>;
  writeFile(path: string, content: string): Promise<void>;
  /** A file's bytes as a stream, so a large diff never sits whole in memory. */
  readFile(path: string): Promise<ReadableStream<Uint8Array>>;
  /** Ends every process and frees the sandbox. Safe to call twice. */
  destroy(): Promise<void>;
  /**
   * Copies `dir` into a snapshot that other sandboxes restore from; null when
   * the backend cannot (then every run clones and sets up for itself).
   */
  snapshot(dir: string): Promise<string | null>;
  /** Replaces `dir` with a snapshot's copy. */
  restore(snapshotId: string, dir: string): Promise<void>;
  /** A directory for package-manager caches that outlives the sandbox, shared by runs with the same `key`; null if none. */
  cacheDir(key: string): Promise<string | null>;
  /**
   * Ends the use of a cache directory: with `keep`, what setup put there is
   * kept for the runs after it (once per key); without, it is thrown away.
   * Either way the directory may go, so it is not used after.
   */
  finishCache(key: string, dir: string, keep: boolean): Promise<void>;
  /**
   * Lets git in this sandbox authenticate to `repoUrl`'s host with `token`
   * until the grant is revoked. Spread `env` into the git command's
   * environment: it is empty where the backend adds the token on the way out,
   * so the token never enters the sandbox.
   */
  grantGitAccess(repoUrl: string, token: string): Promise<GitAccess>;
  /**
   * Lets this sandbox reach `hosts` too (exact names, or `*.suffix`), on top
   * of the deployment's allowlist. A backend that does not filter egress
   * (local) has nothing to open.
   */
  allowEgress(hosts: string[]): Promise<void>;
  /**
   * Gives `port` a public URL on `hostname` (Cloudflare's `exposePort`, served
   * through `proxyToSandbox`), or null where the orchestrator proxies the port
   * itself (local). Exposing an exposed port again is harmless.
   */
  exposePort(port: number, options: { hostname: string | null; name: string }): Promise<string | null>;
  /** Takes the public URL of `port` away; nothing where there was none. */
  unexposePort(port: number): Promise<void>;
}

/** A push token lent to one sandbox's git; `revoke` takes it back. */
export interface GitAccess {
  env: Record<string, string>;
  revoke(): Promise<void>;
}

/** The model API credentials the orchestrator holds; unset or empty values are left out. */
export interface AgentCredentials {
  ANTHROPIC_API_KEY?: string;
  ANTHROPIC_BASE_URL?: string;
  OPENAI_API_KEY?: string;
  OPENAI_BASE_URL?: string;
  GEMINI_API_KEY?: string;
  GOOGLE_GEMINI_BASE_URL?: string;
}

/** The credentials that are set, as environment variables. */
export function presentCredentials(real: AgentCredentials): Record<string, string> {
  return Object.fromEntries(Object.entries(real).filter((entry): entry is [string, string] => typeof entry[1] === "string" && entry[1] !== ""));
}

export interface SandboxPort {
  readonly backend: "cloudflare" | "local";
  /** Opens (creating if needed) the sandbox named `id`. */
  open(id: string): Promise<Sandbox>;
  /** Destroys the sandbox named `id` if it exists, without starting it first. */
  destroy(id: string): Promise<void>;
  /** Frees a snapshot no one will restore again. */
  dropSnapshot(snapshotId: string): Promise<void>;
  /**
   * For a backend whose snapshots live with a host that restarts (local): the
   * host's start (`boot`) and the snapshots it found on disk then, so the warm
   * index can be brought in line with them once per start.
   */
  snapshotsAtStart?(): Promise<{ boot: string; snapshots: string[] }>;
  /**
   * The environment the agent command gets to reach the model API. A backend
   * that adds the key on the way out hands the agent a placeholder instead.
   */
  credentialsForAgent(real: AgentCredentials): Record<string, string>;
  /**
   * Sends `request` (HTTP, or a WebSocket upgrade) to `port` of sandbox `id`,
   * its path and query as the app should see them. A port nothing answers on
   * is a 502 carrying `x-sortie-preview: unreachable`.
   */
  fetchPort(id: string, port: number, request: Request): Promise<Response>;
  /** A PNG of `path` on `port` of sandbox `id`, rendered in a browser outside the sandbox; null where the backend has no browser. */
  screenshot(id: string, port: number, path: string): Promise<Uint8Array | null>;
}

/** Whether a response to `fetchPort` came from the app, not from the backend saying nothing answers. */
export function answeredByApp(response: Response): boolean {
  return response.headers.get("x-sortie-preview") !== "unreachable";
}

/** Raised by an adapter when the sandbox itself (not the command in it) failed. */
export class SandboxUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "SandboxUnavailableError";
  }
}

/**
 * Drops what a reader already took (`from`) from a replayed output stream.
 * Backends replay earlier output in pieces of their own choosing (the
 * Cloudflare container sends it as one event per stream), so resuming counts
 * characters per stream, never events.
 */
export async function* resumeFrom(source: AsyncIterable<ProcessOutput>, from: StreamOffsets | undefined, what: string): AsyncIterable<ProcessOutput> {
  const seen: StreamOffsets = { stdout: 0, stderr: 0 };
  for await (const output of source) {
    if (output.kind === "exit") {
      yield output;
      return;
    }
    const start = seen[output.kind];
    seen[output.kind] = start + output.data.length;
    const skip = (from?.[output.kind] ?? 0) - start;
    if (skip >= output.data.length) continue;
    yield skip > 0 ? { kind: output.kind, data: output.data.slice(skip) } : output;
  }
  throw new SandboxUnavailableError(`${what}: the output stream ended before the process exited`);
}
