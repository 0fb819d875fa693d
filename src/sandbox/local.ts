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
import { CLONE_SCRIPT, parseCloneOutput } from "./checkout.ts";
import { gitBasicAuth, type EgressPolicy } from "./egress.ts";
import type { LocalHostBody, LocalHostResponses } from "./local-protocol.ts";

/** What a local sandbox's commands may reach and read besides the model endpoints: the deployment's policy. */
export interface LocalSandboxReach {
  /** Hosts (exact, or `*.suffix`): the git host and SANDBOX_EGRESS_ALLOW. */
  allow: string[];
  /** Directories to read outside the sandbox: a `file://` GIT_BASE_URL. */
  readable: string[];
}

/** The reach the Worker's egress policy gives a local sandbox, the same hosts the Cloudflare egress lets through. */
export function localReachOf(policy: EgressPolicy, gitBaseUrl: string | undefined): LocalSandboxReach {
  const readable = gitBaseUrl?.startsWith("file://") ? [decodeURIComponent(new URL(gitBaseUrl).pathname)] : [];
  let gitHost: string[] = [];
  if (policy.gitHost && gitBaseUrl && !gitBaseUrl.startsWith("file://")) {
    // A git host on a port of its own (a stand-in on loopback) is named with it, as the proxy sees it.
    const url = new URL(gitBaseUrl);
    gitHost = [url.port ? `${policy.gitHost}:${url.port}` : policy.gitHost];
  } else if (policy.gitHost && !gitBaseUrl) gitHost = [policy.gitHost];
  return { allow: [...gitHost, ...policy.allow], readable };
}

/**
 * The `local` adapter: each sandbox is a directory with its own processes on
 * this machine, served by container/local-host.ts, which walls every command
 * in (filesystem, processes, network through a filtering proxy). Used by
 * `npm run dev` and the tests, where no Docker engine runs. The model keys
 * go to the host, which masks them: the agent sees a sentinel and the host's
 * proxy puts the real key on requests to the model host (see the README,
 * "Sandbox backends").
 */
export class LocalSandboxPort implements SandboxPort {
  readonly backend = "local" as const;
  constructor(
    private readonly baseUrl: string,
    private readonly token: string,
    private readonly reach: LocalSandboxReach = { allow: [], readable: [] },
  ) {
    if (!baseUrl) throw new SandboxUnavailableError("LOCAL_SANDBOX_URL is not set: start the local sandbox host (npm run dev does)");
  }

  async open(id: string): Promise<Sandbox> {
    const client = new LocalHostClient(this.baseUrl, this.token, id);
    const { workdir, unconfined } = await client.call("POST /", "", this.reach);
    return new LocalSandbox(id, workdir, client, unconfined === true);
  }

  async destroy(id: string): Promise<void> {
    await new LocalHostClient(this.baseUrl, this.token, id).call("DELETE /", "");
  }

  async snapshotsAtStart(): Promise<{ boot: string; snapshots: string[] }> {
    return new LocalHostClient(this.baseUrl, this.token, "").host("GET /v1/snapshots", "/v1/snapshots");
  }

  async dropSnapshot(snapshotId: string): Promise<void> {
    await new LocalHostClient(this.baseUrl, this.token, "").host("DELETE /v1/snapshots/:id", `/v1/snapshots/${encodeURIComponent(snapshotId)}`);
  }

  /** Through the host, which bridges the port out of the command's walls; the Worker's own credentials stay behind. */
  async fetchPort(id: string, port: number, request: Request): Promise<Response> {
    const url = new URL(request.url);
    const headers = new Headers(request.headers);
    headers.set("authorization", `Bearer ${this.token}`);
    const target = `${this.baseUrl}/v1/sandboxes/${encodeURIComponent(id)}/ports/${port}${url.pathname}${url.search}`;
    try {
      return await fetch(target, { method: request.method, headers, body: request.body, redirect: "manual" });
    } catch (error) {
      throw new SandboxUnavailableError(`local sandbox host unreachable at ${this.baseUrl}`, { cause: error });
    }
  }

  async screenshot(id: string, port: number, path: string): Promise<Uint8Array | null> {
    const body: LocalHostBody<"POST /screenshot"> = { port, path };
    const response = await new LocalHostClient(this.baseUrl, this.token, id).request("POST", "/screenshot", JSON.stringify(body));
    return new Uint8Array(await response.arrayBuffer());
  }

  /** The real key goes to the host, which masks it before the agent's command starts (container/walls.ts). */
  credentialsForAgent(real: AgentCredentials): Record<string, string> {
    return presentCredentials(real);
  }
}

class LocalHostClient {
  constructor(
    private readonly baseUrl: string,
    private readonly token: string,
    private readonly sandboxId: string,
  ) {}

  async request(method: string, path: string, body?: BodyInit, signal?: AbortSignal): Promise<Response> {
    const url = `${this.baseUrl}/v1/sandboxes/${encodeURIComponent(this.sandboxId)}${path}`;
    let response: Response;
    try {
      response = await fetch(url, { method, body, signal, headers: { authorization: `Bearer ${this.token}` } });
    } catch (error) {
      if (signal?.aborted) throw error;
      throw new SandboxUnavailableError(`local sandbox host unreachable at ${this.baseUrl}`, { cause: error });
    }
    if (!response.ok) {
      const text = await response.text();
      throw new SandboxUnavailableError(`local sandbox host answered ${response.status} to ${method} ${path || "/"}: ${text.slice(0, 500)}`);
    }
    return response;
  }

  /** A host-level route (`/v1/…`, not under this sandbox's path), typed by the protocol (local-protocol.ts). */
  async host<R extends keyof LocalHostResponses>(route: R, path: string): Promise<LocalHostResponses[R]> {
    const method = route.slice(0, route.indexOf(" "));
    const response = await fetch(`${this.baseUrl}${path}`, { method, headers: { authorization: `Bearer ${this.token}` } }).catch((error: unknown) => {
      throw new SandboxUnavailableError(`local sandbox host unreachable at ${this.baseUrl}`, { cause: error });
    });
    if (!response.ok) throw new SandboxUnavailableError(`local sandbox host answered ${response.status} to ${method} ${path}: ${(await response.text()).slice(0, 500)}`);
    return (await response.json()) as LocalHostResponses[R];
  }

  /** A route of this sandbox (`path` under it, its parameters filled in), its body and answer typed by the protocol. */
  async call<R extends keyof LocalHostResponses>(route: R, path: string, ...body: LocalHostBody<R> extends undefined ? [] : [LocalHostBody<R>]): Promise<LocalHostResponses[R]> {
    const method = route.slice(0, route.indexOf(" "));
    const response = await this.request(method, path, body.length ? JSON.stringify(body[0]) : undefined);
    return (await response.json()) as LocalHostResponses[R];
  }
}

class LocalSandbox implements Sandbox {
  constructor(
    readonly id: string,
    readonly workdir: string,
    private readonly client: LocalHostClient,
    readonly unconfined: boolean,
  ) {}

  async checkout(url: string, options: { dir: string; branch?: string | null; timeoutMs?: number }): Promise<CheckoutResult> {
    const result = await this.exec(CLONE_SCRIPT, {
      env: { SORTIE_REPO_URL: url, SORTIE_DIR: options.dir, SORTIE_BRANCH: options.branch ?? "" },
      timeoutMs: options.timeoutMs ?? 10 * 60_000,
      // A fresh clone, before anything of the repository's has run: no walls to build for it.
      bookkeeping: true,
    });
    return parseCloneOutput(result);
  }

  exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    return this.client.call("POST /exec", "/exec", { command, ...options });
  }

  async startProcess(command: string, options: ExecOptions = {}): Promise<{ processId: string }> {
    return this.client.call("POST /processes", "/processes", { command, ...options });
  }

  streamProcess(processId: string, options: { from?: StreamOffsets; signal?: AbortSignal } = {}): AsyncIterable<ProcessOutput> {
    return resumeFrom(this.readOutput(processId, options.signal), options.from, `sandbox ${this.id} process ${processId}`);
  }

  private async *readOutput(processId: string, signal?: AbortSignal): AsyncIterable<ProcessOutput> {
    const path = `/processes/${encodeURIComponent(processId)}/output`;
    const response = await this.client.request("GET", path, undefined, signal);
    if (!response.body) throw new SandboxUnavailableError("local sandbox host sent no output stream");
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      buffered += decoder.decode(chunk, { stream: true });
      let newline = buffered.indexOf("\n");
      while (newline >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (line) yield JSON.parse(line) as ProcessOutput;
        newline = buffered.indexOf("\n");
      }
    }
  }

  async killProcess(processId: string): Promise<void> {
    await this.client.call("DELETE /processes/:id", `/processes/${encodeURIComponent(processId)}`);
  }

  async writeFile(path: string, content: string): Promise<void> {
    await this.client.request("PUT", `/files?path=${encodeURIComponent(path)}`, content);
  }

  async readFile(path: string): Promise<ReadableStream<Uint8Array>> {
    const response = await this.client.request("GET", `/files?path=${encodeURIComponent(path)}`);
    if (!response.body) throw new SandboxUnavailableError(`no content for ${path}`);
    return response.body;
  }

  async destroy(): Promise<void> {
    await this.client.call("DELETE /", "");
  }

  async snapshot(dir: string): Promise<string | null> {
    return (await this.client.call("POST /snapshots", "/snapshots", { path: dir })).snapshotId;
  }

  async restore(snapshotId: string, dir: string): Promise<void> {
    await this.client.call("POST /restore", "/restore", { snapshotId, path: dir });
  }

  /** A private copy of the cache for `key`, so no two sandboxes write one directory. */
  async cacheDir(key: string): Promise<string | null> {
    return (await this.client.call("POST /caches/:key", `/caches/${encodeURIComponent(key)}`)).path;
  }

  async finishCache(key: string, dir: string, keep: boolean): Promise<void> {
    await this.client.call("POST /caches/finish", `/caches/${encodeURIComponent(key)}/finish`, { path: dir, keep });
  }

  /** The orchestrator serves local previews at its own `/preview/…` paths: no public URL here. */
  async exposePort(): Promise<string | null> {
    return null;
  }

  async unexposePort(): Promise<void> {}

  /** The task's own hosts join what the host's proxy lets this sandbox's commands reach. */
  async allowEgress(hosts: string[]): Promise<void> {
    await this.client.call("POST /egress", "/egress", { hosts });
  }

  /**
   * The token goes to git as configuration in the command's environment: never in argv, a URL or a file.
   * A `file://` remote is a directory the walls keep read-only: the grant makes it writable until revoked.
   */
  async grantGitAccess(repoUrl: string, token: string): Promise<GitAccess> {
    if (repoUrl.startsWith("file://")) {
      const dir = decodeURIComponent(new URL(repoUrl).pathname);
      await this.client.call("POST /writable", "/writable", { dir });
      return { env: {}, revoke: async () => void (await this.client.call("DELETE /writable", "/writable", { dir })) };
    }
    return {
      env: { GIT_CONFIG_COUNT: "1", GIT_CONFIG_KEY_0: "http.extraHeader", GIT_CONFIG_VALUE_0: `Authorization: ${gitBasicAuth(token)}` },
      revoke: async () => {},
    };
  }
}
