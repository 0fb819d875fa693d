import { parseSSEStream, streamFile, type LogEvent } from "@cloudflare/sandbox";
import {
  SandboxUnavailableError,
  asConfinedUser,
  presentCredentials,
  resumeFrom,
  type AgentCredentials,
  type CheckoutResult,
  type ExecOptions,
  type ExecResult,
  type GitAccess,
  type ProcessOutput,
  type Sandbox,
  type SandboxPort,
  type StreamOffsets,
} from "./port.ts";
import { CloneError, type CloneFailure } from "./checkout.ts";
import { AGENT_API_KEY_PLACEHOLDER, GEMINI_API_KEY_PLACEHOLDER, GIT_PUSH_HANDLER, MODEL_ONLY_HANDLER, OPENAI_API_KEY_PLACEHOLDER, TASK_EGRESS_HANDLER } from "./egress.ts";
import { screenshotThroughBrowser } from "./screenshot.ts";
import { writeLog } from "../log.ts";

/**
 * The part of the `@cloudflare/sandbox` SDK this adapter uses. Naming it keeps
 * the adapter honest about its surface and lets tests drive it with a
 * recording stand-in instead of a container.
 */
export interface SandboxSdkClient {
  exec(command: string, options?: { env?: Record<string, string>; cwd?: string; timeout?: number }): Promise<{ exitCode: number; stdout: string; stderr: string }>;
  startProcess(command: string, options?: { env?: Record<string, string>; cwd?: string; processId?: string }): Promise<{ id: string }>;
  streamProcessLogs(processId: string, options?: { signal?: AbortSignal }): Promise<ReadableStream<Uint8Array>>;
  killProcess(id: string, signal?: string): Promise<void>;
  writeFile(path: string, content: string): Promise<unknown>;
  readFileStream(path: string): Promise<ReadableStream<Uint8Array>>;
  gitCheckout(repoUrl: string, options?: { branch?: string; targetDir?: string; depth?: number; cloneTimeoutMs?: number }): Promise<unknown>;
  /** From @cloudflare/containers: route one host's egress to a handler in `SortieSandbox.outboundHandlers`. */
  setOutboundByHost(hostname: string, methodName: string, params: { token: string }): Promise<void>;
  /** From @cloudflare/containers: route all of the container's egress to one handler in `SortieSandbox.outboundHandlers`. */
  setOutboundHandler(methodName: string, params?: { allow: string[] }): Promise<void>;
  removeOutboundByHost(hostname: string): Promise<void>;
  /** Archives `dir` (squashfs) into the BACKUP_BUCKET R2 binding; the handle restores it in any sandbox. */
  createBackup(options: { dir: string; name?: string; ttl?: number }): Promise<BackupHandle>;
  restoreBackup(backup: BackupHandle): Promise<{ success: boolean; dir: string; id: string }>;
  /** A preview URL `https://{port}-{id}-{token}.{hostname}` for the port, served by `proxyToSandbox`; again after a container restart. */
  exposePort(port: number, options: { hostname: string; name?: string }): Promise<{ url: string; port: number; name: string | undefined }>;
  unexposePort(port: number): Promise<void>;
  /** A request to a port of the container (the SDK's Container.containerFetch). */
  containerFetch(request: Request, port: number): Promise<Response>;
  /** A WebSocket upgrade to a port of the container. */
  wsConnect(request: Request, port: number): Promise<Response>;
  destroy(): Promise<void>;
}

/** The SDK's serializable backup handle (`DirectoryBackup`). */
export interface BackupHandle {
  readonly id: string;
  readonly dir: string;
  readonly localBucket?: boolean;
}

/** Where backups keep what they need besides the SDK's own objects. */
export interface BackupStore {
  /** The R2 bucket the SDK writes backups to (binding BACKUP_BUCKET): Sortie keeps its cache index there too. */
  bucket: R2Bucket;
  /** How long a snapshot lives, in seconds. */
  snapshotTtlSeconds: number;
}

/** Where a Cloudflare sandbox keeps the run's files: the container is the run's alone. */
const WORKDIR = "/workspace";
/** Dependency caches live here: a directory the SDK can back up, outside the repository. */
const CACHE_ROOT = "/var/tmp/sortie-cache";
/** The SDK's R2 layout: everything of backup `id` lies under this prefix. */
const backupPrefix = (id: string) => `backups/${id}/`;
/** Sortie's index of dependency caches: key → backup handle. */
const cacheIndexKey = (key: string) => `sortie/caches/${key}.json`;

/**
 * The `cloudflare` adapter: one Sandbox container (a Durable Object with a
 * container attached) per run. Its egress goes through the Worker
 * (egress.ts), so credentials stay outside: the agent gets a placeholder key,
 * and git gets a push token only through `grantGitAccess`.
 *
 * @example new CloudflareSandboxPort((id) => getSandbox(env.Sandbox, id))
 */
export class CloudflareSandboxPort implements SandboxPort {
  readonly backend = "cloudflare" as const;
  /**
   * Without `backups` (no BACKUP_BUCKET binding) every run clones and sets up for itself; without `browser` (no
   * Browser Rendering binding, BROWSER) no preview is photographed for the judge.
   */
  constructor(
    private readonly connect: (id: string) => SandboxSdkClient,
    private readonly backups: BackupStore | null = null,
    private readonly browser: BrowserRun | null = null,
  ) {}

  async open(id: string): Promise<Sandbox> {
    return new CloudflareSandbox(id, this.connect(id), this.backups);
  }

  destroy(id: string): Promise<void> {
    return new CloudflareSandbox(id, this.connect(id), this.backups).destroy();
  }

  /** Deletes the backup's archive and metadata from R2. */
  async dropSnapshot(snapshotId: string): Promise<void> {
    if (!this.backups) return;
    const handle = parseBackupHandle(snapshotId);
    const listed = await this.backups.bucket.list({ prefix: backupPrefix(handle.id) });
    if (listed.objects.length) await this.backups.bucket.delete(listed.objects.map((object) => object.key));
  }

  /** Straight to the container's port; a container that cannot be reached answers like a port nobody listens on. */
  async fetchPort(id: string, port: number, request: Request): Promise<Response> {
    const sdk = this.connect(id);
    try {
      return request.headers.get("upgrade")?.toLowerCase() === "websocket" ? await sdk.wsConnect(request, port) : await sdk.containerFetch(request, port);
    } catch (error) {
      return Response.json(
        { error: { code: "preview_unreachable", message: `sandbox ${id} port ${port}: ${error instanceof Error ? error.message : String(error)}` } },
        { status: 502, headers: { "x-sortie-preview": "unreachable" } },
      );
    }
  }

  /** The Browser Rendering binding's Chromium, its page's requests answered from the container's port (screenshot.ts). */
  async screenshot(id: string, port: number, path: string): Promise<Uint8Array | null> {
    if (!this.browser) return null;
    return screenshotThroughBrowser(this.browser, (request) => this.fetchPort(id, port, request), path);
  }

  /** The Worker adds the real key to requests for the model host (egress.ts); the agent holds a placeholder. */
  credentialsForAgent(real: AgentCredentials): Record<string, string> {
    const present = presentCredentials(real);
    if (present.ANTHROPIC_API_KEY) present.ANTHROPIC_API_KEY = AGENT_API_KEY_PLACEHOLDER;
    if (present.OPENAI_API_KEY) present.OPENAI_API_KEY = OPENAI_API_KEY_PLACEHOLDER;
    if (present.GEMINI_API_KEY) present.GEMINI_API_KEY = GEMINI_API_KEY_PLACEHOLDER;
    return present;
  }
}

class CloudflareSandbox implements Sandbox {
  readonly workdir = WORKDIR;
  constructor(
    readonly id: string,
    private readonly sdk: SandboxSdkClient,
    private readonly backups: BackupStore | null,
  ) {}

  async checkout(url: string, options: { dir: string; branch?: string | null; timeoutMs?: number }): Promise<CheckoutResult> {
    try {
      await this.sdk.gitCheckout(url, {
        targetDir: options.dir,
        depth: 1,
        cloneTimeoutMs: options.timeoutMs,
        ...(options.branch ? { branch: options.branch } : {}),
      });
    } catch (error) {
      throw cloneFailure(error);
    }
    const head = await this.exec('git -C "$SORTIE_DIR" rev-parse HEAD', { env: { SORTIE_DIR: options.dir } });
    const commit = head.stdout.trim();
    if (head.exitCode !== 0 || !/^[0-9a-f]{40}$/.test(commit)) throw new CloneError(`cloned, but HEAD is unreadable: ${head.stderr.trim()}`);
    return { commit };
  }

  async exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    const run = await this.confined(command, options);
    const result = await this.call("exec", () =>
      this.sdk.exec(run.command, { env: run.env, cwd: options.cwd, timeout: options.timeoutMs }),
    );
    return { exitCode: result.exitCode, stdout: result.stdout, stderr: result.stderr };
  }

  async startProcess(command: string, options: ExecOptions = {}): Promise<{ processId: string }> {
    const run = await this.confined(command, options);
    const process = await this.call("startProcess", () => this.sdk.startProcess(run.command, { env: run.env, cwd: options.cwd }));
    return { processId: process.id };
  }

  /**
   * A confined command runs as its own user; with `modelOnly`, the whole
   * container's egress is switched to the model-only handler first (an
   * analysis sandbox is the run's alone, and its setup has already run).
   */
  private async confined(command: string, options: ExecOptions): Promise<{ command: string; env?: Record<string, string> }> {
    if (!options.confine) return { command, env: options.env };
    if (options.confine.modelOnly) await this.call("setOutboundHandler", () => this.sdk.setOutboundHandler(MODEL_ONLY_HANDLER));
    return asConfinedUser(command, options.confine, options.env);
  }

  streamProcess(processId: string, options: { from?: StreamOffsets; signal?: AbortSignal } = {}): AsyncIterable<ProcessOutput> {
    return resumeFrom(this.readLogs(processId, options.signal), options.from, `sandbox ${this.id} process ${processId}`);
  }

  private async *readLogs(processId: string, signal?: AbortSignal): AsyncIterable<ProcessOutput> {
    const stream = await this.call("streamProcessLogs", () => this.sdk.streamProcessLogs(processId, { signal }));
    for await (const event of parseSSEStream<LogEvent>(stream, signal)) {
      const output = toOutput(event);
      if (output) yield output;
      if (output?.kind === "exit") return;
    }
  }

  killProcess(processId: string): Promise<void> {
    return this.call("killProcess", () => this.sdk.killProcess(processId));
  }

  async writeFile(path: string, content: string): Promise<void> {
    await this.call("writeFile", () => this.sdk.writeFile(path, content));
  }

  /** `readFileStream` sends the file as SSE events (text, or base64 for binary); this hands back the bytes. */
  async readFile(path: string): Promise<ReadableStream<Uint8Array>> {
    const bytes = fileBytes(await this.call("readFileStream", () => this.sdk.readFileStream(path)));
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        let next: IteratorResult<Uint8Array, void>;
        try {
          next = await bytes.next();
        } catch (error) {
          throw new SandboxUnavailableError(`sandbox ${this.id}: reading ${path} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
        }
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      },
      cancel: async () => {
        await bytes.return();
      },
    });
  }

  destroy(): Promise<void> {
    return this.call("destroy", () => this.sdk.destroy());
  }

  /**
   * A backup of `dir` in R2 (the SDK's createBackup); the snapshot id is the
   * backup's handle as JSON, so any sandbox can restore it.
   */
  async snapshot(dir: string): Promise<string | null> {
    if (!this.backups) return null;
    const ttl = this.backups.snapshotTtlSeconds;
    const handle = await this.call("createBackup", () => this.sdk.createBackup({ dir, name: `sortie ${this.id}`, ttl }));
    return JSON.stringify({ id: handle.id, dir: handle.dir, ...(handle.localBucket ? { localBucket: true } : {}) });
  }

  /**
   * Restores a backup into `dir`. In production the SDK mounts the archive
   * copy-on-write (an overlay), which lasts as long as the container runs.
   */
  async restore(snapshotId: string, dir: string): Promise<void> {
    if (!this.backups) throw new SandboxUnavailableError("snapshots need the BACKUP_BUCKET binding");
    const handle = parseBackupHandle(snapshotId);
    const result = await this.call("restoreBackup", () => this.sdk.restoreBackup({ ...handle, dir }));
    if (!result.success) throw new SandboxUnavailableError(`sandbox ${this.id}: restoring backup ${handle.id} into ${dir} failed`);
  }

  /**
   * The dependency cache for `key`: restored from its R2 backup when an
   * earlier run saved one, else an empty directory that `finishCache` backs up.
   */
  async cacheDir(key: string): Promise<string | null> {
    if (!this.backups) return null;
    // A directory per call: runs sharing a sandbox (the workspace level) never share one.
    const dir = `${CACHE_ROOT}/${key}-${crypto.randomUUID().slice(0, 8)}`;
    const indexed = await this.backups.bucket.get(cacheIndexKey(key));
    if (indexed) {
      try {
        await this.restore(await indexed.text(), dir);
        return dir;
      } catch (error) {
        // A cache is an optimisation: a lost (or expired) one is rebuilt by this run's install and saved again.
        writeLog("warn", { event: "sandbox.cache_restore_failed", key, message: error instanceof Error ? error.message : String(error) });
        await this.backups.bucket.delete(cacheIndexKey(key)).catch(() => undefined);
      }
    }
    await this.exec('mkdir -p "$SORTIE_CACHE"', { env: { SORTIE_CACHE: dir } });
    return dir;
  }

  /** Backs the cache up once per key: the first run with a lockfile hash fills it, later ones reuse it. */
  async finishCache(key: string, dir: string, keep: boolean): Promise<void> {
    if (!this.backups) return;
    if (!keep) {
      await this.exec('rm -rf "$SORTIE_CACHE"', { env: { SORTIE_CACHE: dir } });
      return;
    }
    if (await this.backups.bucket.head(cacheIndexKey(key))) return;
    const handle = await this.call("createBackup", () => this.sdk.createBackup({ dir, name: `sortie cache ${key}`, ttl: this.backups!.snapshotTtlSeconds }));
    await this.backups.bucket.put(cacheIndexKey(key), JSON.stringify({ id: handle.id, dir: handle.dir, ...(handle.localBucket ? { localBucket: true } : {}) }));
  }

  /** Switches the container's catch-all egress to the task's handler: the deployment's policy plus `hosts`. */
  async allowEgress(hosts: string[]): Promise<void> {
    if (hosts.length === 0) return;
    await this.call("setOutboundHandler", () => this.sdk.setOutboundHandler(TASK_EGRESS_HANDLER, { allow: hosts }));
  }

  /**
   * Routes the git host's egress to `gitPushEgress` with the token as its
   * parameter, until revoked; git itself runs without a credential.
   * @cloudflare/containers keeps the parameters in the sandbox Durable
   * Object's storage while the route stands; `revoke` removes them.
   */
  async grantGitAccess(repoUrl: string, token: string): Promise<GitAccess> {
    // A container reaches git hosts over the network only: a local remote needs nothing opened.
    if (!/^https?:/.test(repoUrl)) return { env: {}, revoke: async () => {} };
    const host = httpsHostOf(repoUrl);
    await this.call("setOutboundByHost", () => this.sdk.setOutboundByHost(host, GIT_PUSH_HANDLER, { token }));
    return {
      env: {},
      revoke: () => this.call("removeOutboundByHost", () => this.sdk.removeOutboundByHost(host)),
    };
  }

  /** Container ports are the container's own: `serves` needs nothing here, the URL comes from the SDK. */
  async exposePort(port: number, options: { hostname: string | null; name: string }): Promise<string | null> {
    if (!options.hostname) return null;
    const hostname = options.hostname;
    return (await this.call("exposePort", () => this.sdk.exposePort(port, { hostname, name: options.name }))).url;
  }

  async unexposePort(port: number): Promise<void> {
    await this.call("unexposePort", () => this.sdk.unexposePort(port));
  }

  /** Runs one SDK call; a failure of the container itself becomes SandboxUnavailableError. */
  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw new SandboxUnavailableError(`sandbox ${this.id}: ${what} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
  }
}

/** A snapshot id back into the SDK's handle; anything else is refused rather than passed to the SDK. */
function parseBackupHandle(snapshotId: string): BackupHandle {
  let value: unknown;
  try {
    value = JSON.parse(snapshotId);
  } catch {
    value = null;
  }
  const handle = value as Partial<BackupHandle> | null;
  if (!handle || typeof handle.id !== "string" || !/^[A-Za-z0-9_-]{1,100}$/.test(handle.id) || typeof handle.dir !== "string") {
    throw new SandboxUnavailableError("not a backup handle of this backend");
  }
  return { id: handle.id, dir: handle.dir, ...(handle.localBucket ? { localBucket: true } : {}) };
}

/** The host git pushes to; a token is only ever lent for https. */
function httpsHostOf(repoUrl: string): string {
  const url = URL.canParse(repoUrl) ? new URL(repoUrl) : null;
  if (url?.protocol !== "https:") throw new Error(`git access is granted for https remotes only, not ${url ? url.protocol : "an unparsable URL"}`);
  return url.hostname.toLowerCase();
}

function toOutput(event: LogEvent): ProcessOutput | null {
  switch (event.type) {
    case "stdout":
    case "stderr":
      return { kind: event.type, data: event.data };
    case "exit":
      return { kind: "exit", exitCode: event.exitCode ?? -1 };
    case "error":
      throw new SandboxUnavailableError(`process ${event.processId} failed: ${event.data}`);
    default:
      return null;
  }
}

/** The bytes carried by `readFileStream`'s events; `streamFile` decodes the base64 of binary files. */
async function* fileBytes(events: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array, void> {
  const encoder = new TextEncoder();
  for await (const chunk of streamFile(events)) yield typeof chunk === "string" ? encoder.encode(chunk) : chunk;
}

/** The SDK's git error codes, as the reason a clone failed (a container that went away is the sandbox's failure, not the clone's). */
const SDK_CLONE_FAILURES: Record<string, CloneFailure> = {
  GIT_NETWORK_ERROR: "network",
  GIT_REPOSITORY_NOT_FOUND: "not_found",
  GIT_BRANCH_NOT_FOUND: "branch_not_found",
  GIT_AUTH_FAILED: "auth",
};

function cloneFailure(error: unknown): Error {
  const code = typeof (error as { code?: unknown } | null)?.code === "string" ? (error as { code: string }).code : "";
  const message = error instanceof Error ? error.message : String(error);
  if (code === "CONTAINER_UNAVAILABLE") return new SandboxUnavailableError(`the sandbox went away during the clone: ${message}`, { cause: error });
  return new CloneError(message, SDK_CLONE_FAILURES[code] ?? "other");
}
