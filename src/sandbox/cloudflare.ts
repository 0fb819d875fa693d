import { parseSSEStream, streamFile, type LogEvent } from "@cloudflare/sandbox";
import {
  SandboxUnavailableError,
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
import { CloneError } from "./checkout.ts";
import { AGENT_API_KEY_PLACEHOLDER, GIT_PUSH_HANDLER } from "./egress.ts";

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
  removeOutboundByHost(hostname: string): Promise<void>;
  destroy(): Promise<void>;
}

/** Where a Cloudflare sandbox keeps the run's files: the container is the run's alone. */
const WORKDIR = "/workspace";

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
  constructor(private readonly connect: (id: string) => SandboxSdkClient) {}

  async open(id: string): Promise<Sandbox> {
    return new CloudflareSandbox(id, this.connect(id));
  }

  destroy(id: string): Promise<void> {
    return new CloudflareSandbox(id, this.connect(id)).destroy();
  }

  async dropSnapshot(): Promise<void> {
    // No snapshots are taken on this backend yet (see snapshot below).
  }

  /** The Worker adds the real key to requests for the model host (egress.ts); the agent holds a placeholder. */
  credentialsForAgent(real: AgentCredentials): Record<string, string> {
    const present = presentCredentials(real);
    if (present.ANTHROPIC_API_KEY) present.ANTHROPIC_API_KEY = AGENT_API_KEY_PLACEHOLDER;
    return present;
  }
}

class CloudflareSandbox implements Sandbox {
  readonly workdir = WORKDIR;
  constructor(
    readonly id: string,
    private readonly sdk: SandboxSdkClient,
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
      throw new CloneError(error instanceof Error ? error.message : String(error));
    }
    const head = await this.exec('git -C "$SORTIE_DIR" rev-parse HEAD', { env: { SORTIE_DIR: options.dir } });
    const commit = head.stdout.trim();
    if (head.exitCode !== 0 || !/^[0-9a-f]{40}$/.test(commit)) throw new CloneError(`cloned, but HEAD is unreadable: ${head.stderr.trim()}`);
    return { commit };
  }

  async exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    const result = await this.call("exec", () =>
      this.sdk.exec(command, { env: options.env, cwd: options.cwd, timeout: options.timeoutMs }),
    );
    return { exitCode: result.exitCode, stdout: result.stdout, stderr: result.stderr };
  }

  async startProcess(command: string, options: ExecOptions = {}): Promise<{ processId: string }> {
    const process = await this.call("startProcess", () => this.sdk.startProcess(command, { env: options.env, cwd: options.cwd }));
    return { processId: process.id };
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
   * Not yet: the SDK's createBackup/restoreBackup need an R2 bucket binding
   * this deployment does not declare, so each run clones and sets up itself.
   */
  async snapshot(): Promise<string | null> {
    return null;
  }

  async restore(): Promise<void> {
    throw new SandboxUnavailableError("this backend takes no snapshots");
  }

  async cacheDir(): Promise<string | null> {
    return null;
  }

  /**
   * Routes the git host's egress to `gitPushEgress` with the token as its
   * parameter, until revoked; git itself runs without a credential.
   * @cloudflare/containers keeps the parameters in the sandbox Durable
   * Object's storage while the route stands; `revoke` removes them.
   */
  async grantGitAccess(repoUrl: string, token: string): Promise<GitAccess> {
    const host = httpsHostOf(repoUrl);
    await this.call("setOutboundByHost", () => this.sdk.setOutboundByHost(host, GIT_PUSH_HANDLER, { token }));
    return {
      env: {},
      revoke: () => this.call("removeOutboundByHost", () => this.sdk.removeOutboundByHost(host)),
    };
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
