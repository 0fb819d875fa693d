/**
 * A recording stand-in for the part of `@cloudflare/sandbox` that
 * CloudflareSandboxPort drives (`SandboxSdkClient`). It keeps every call with
 * its arguments as passed, and its streams carry the bytes the SDK's container
 * sends (packages/sandbox-container in cloudflare/sandbox-sdk): SSE frames
 * `data: <json>\n\n`, cut into chunks at arbitrary byte offsets the way a
 * network may cut them.
 *
 * @example
 * const sdk = new RecordingSandboxSdk({ processes: { p1: { live: [{ type: "stdout", data: "hi\n" }], exitCode: 0 } } });
 * const sandbox = await new CloudflareSandboxPort(() => sdk).open("run-1");
 */
import type { ExecResult, FileStreamEvent, GitCheckoutResult, LogEvent } from "@cloudflare/sandbox";
import type { BackupHandle, SandboxSdkClient } from "../../src/sandbox/cloudflare.ts";

type SdkMethod = keyof SandboxSdkClient;
type ExecOptions = Parameters<SandboxSdkClient["exec"]>[1];

/** One call the adapter made, with its arguments exactly as it passed them. */
export interface RecordedCall {
  method: SdkMethod;
  args: unknown[];
}

/** Output a process prints once the log stream is attached, in order. */
export interface LiveOutput {
  type: "stdout" | "stderr" | "error";
  data: string;
}

/** A background process as the container keeps it. */
export interface ScriptedProcess {
  /**
   * What the process printed before the stream attached. The container
   * replays it as one event per stream, all stdout first, then all stderr.
   */
  buffered?: { stdout?: string; stderr?: string };
  live?: LiveOutput[];
  /** The code the container reports at exit; `null` for a killed process, `undefined` keeps the stream open (still running). */
  exitCode?: number | null;
}

export interface SdkScript {
  /** Answers `exec`; the default is a silent success. */
  exec?: (command: string, options: ExecOptions) => { exitCode: number; stdout?: string; stderr?: string };
  /** Processes `streamProcessLogs` knows, by id. */
  processes?: Record<string, ScriptedProcess>;
  /** Files `readFileStream` can read: a string is text, bytes are binary. */
  files?: Record<string, string | Uint8Array>;
  /** Methods that reject with this error, as the SDK does when the container is unreachable or git fails. */
  failures?: Partial<Record<SdkMethod, Error>>;
  /** Bytes per chunk of every stream; by default each SSE frame arrives whole. */
  chunkBytes?: number;
  /** The sandbox's id, as the preview URLs name it. */
  id?: string;
  /** What listens on each port of the container: `containerFetch` and `wsConnect` reach it; another port fails as the SDK does. */
  ports?: Record<number, (request: Request) => Response | Promise<Response>>;
}

/** Characters per `chunk` event of a file stream: small, so even short files span several events. */
const FILE_CHUNK = 5;

export class RecordingSandboxSdk implements SandboxSdkClient {
  readonly calls: RecordedCall[] = [];
  private started = 0;

  constructor(private readonly script: SdkScript = {}) {}

  /** The recorded calls to one method, as argument lists. */
  argsOf(method: SdkMethod): unknown[][] {
    return this.calls.filter((call) => call.method === method).map((call) => call.args);
  }

  async exec(command: string, options?: ExecOptions): Promise<ExecResult> {
    this.record("exec", [command, options]);
    const answer = this.script.exec?.(command, options) ?? { exitCode: 0 };
    return {
      success: answer.exitCode === 0,
      exitCode: answer.exitCode,
      stdout: answer.stdout ?? "",
      stderr: answer.stderr ?? "",
      command,
      duration: 1,
      timestamp: now(),
    };
  }

  async startProcess(command: string, options?: Parameters<SandboxSdkClient["startProcess"]>[1]): Promise<{ id: string; command: string }> {
    this.record("startProcess", [command, options]);
    this.started += 1;
    return { id: options?.processId ?? `proc-${this.started}`, command };
  }

  async streamProcessLogs(processId: string, options?: { signal?: AbortSignal }): Promise<ReadableStream<Uint8Array>> {
    this.record("streamProcessLogs", [processId, options]);
    const process = this.script.processes?.[processId];
    if (!process) throw new Error(`Process not found: ${processId}`);
    const event = (type: LogEvent["type"], data: string): LogEvent => ({ type, data, processId, timestamp: now() });
    const frames: unknown[] = [{ type: "process_info", processId, command: "scripted", status: process.exitCode === undefined ? "running" : "completed", timestamp: now() }];
    if (process.buffered?.stdout) frames.push(event("stdout", process.buffered.stdout));
    if (process.buffered?.stderr) frames.push(event("stderr", process.buffered.stderr));
    for (const output of process.live ?? []) frames.push(event(output.type, output.data));
    const ended = process.exitCode !== undefined;
    if (ended) frames.push({ ...event("exit", `Process completed with exit code ${process.exitCode}`), exitCode: process.exitCode });
    return this.sse(frames, { close: ended });
  }

  async killProcess(id: string, signal?: string): Promise<void> {
    this.record("killProcess", signal === undefined ? [id] : [id, signal]);
  }

  async writeFile(path: string, content: string): Promise<{ success: boolean; path: string; bytesWritten: number; timestamp: string }> {
    this.record("writeFile", [path, content]);
    return { success: true, path, bytesWritten: new TextEncoder().encode(content).byteLength, timestamp: now() };
  }

  async readFileStream(path: string): Promise<ReadableStream<Uint8Array>> {
    this.record("readFileStream", [path]);
    const file = this.script.files?.[path];
    if (file === undefined) return this.sse([{ type: "error", error: `File not found: ${path}` } satisfies FileStreamEvent], { close: true });
    const binary = typeof file !== "string";
    const size = binary ? file.byteLength : new TextEncoder().encode(file).byteLength;
    const frames: FileStreamEvent[] = [
      { type: "metadata", mimeType: binary ? "application/octet-stream" : "text/plain", size, isBinary: binary, encoding: binary ? "base64" : "utf-8" },
    ];
    if (binary) {
      for (let at = 0; at < file.byteLength; at += FILE_CHUNK) frames.push({ type: "chunk", data: base64(file.subarray(at, at + FILE_CHUNK)) });
    } else {
      const characters = [...file];
      for (let at = 0; at < characters.length; at += FILE_CHUNK) frames.push({ type: "chunk", data: characters.slice(at, at + FILE_CHUNK).join("") });
    }
    frames.push({ type: "complete", bytesRead: size });
    return this.sse(frames, { close: true });
  }

  async gitCheckout(repoUrl: string, options?: Parameters<SandboxSdkClient["gitCheckout"]>[1]): Promise<GitCheckoutResult> {
    this.record("gitCheckout", [repoUrl, options]);
    return { success: true, repoUrl, branch: options?.branch ?? "main", targetDir: options?.targetDir ?? "/workspace/repo", timestamp: now() };
  }

  async setOutboundByHost(hostname: string, methodName: string, params: { token: string }): Promise<void> {
    this.record("setOutboundByHost", [hostname, methodName, params]);
  }

  async removeOutboundByHost(hostname: string): Promise<void> {
    this.record("removeOutboundByHost", [hostname]);
  }

  async setOutboundHandler(methodName: string, params?: { allow: string[] }): Promise<void> {
    this.record("setOutboundHandler", params === undefined ? [methodName] : [methodName, params]);
  }

  /** Backups as the SDK makes them: an id and the directory, kept here so a restore of an unknown id fails like the SDK's. */
  readonly backups = new Map<string, string>();

  async createBackup(options: { dir: string; name?: string; ttl?: number }): Promise<BackupHandle> {
    this.record("createBackup", [options]);
    const id = `bk-${this.backups.size + 1}`;
    this.backups.set(id, options.dir);
    return { id, dir: options.dir };
  }

  async restoreBackup(backup: BackupHandle): Promise<{ success: boolean; dir: string; id: string }> {
    this.record("restoreBackup", [backup]);
    if (!this.backups.has(backup.id)) throw new Error(`Backup not found: ${backup.id}`);
    return { success: true, dir: backup.dir, id: backup.id };
  }

  /** Ports exposed now, with their tokens: a restart of the container (`restart()`) forgets the forwarding, not the token. */
  readonly exposed = new Map<number, string>();

  /** The SDK's rules: 1024–65535 but 3000 (its control server), and a custom domain, never workers.dev. */
  async exposePort(port: number, options: { hostname: string; name?: string }): Promise<{ url: string; port: number; name: string | undefined }> {
    this.record("exposePort", [port, options]);
    if (!Number.isInteger(port) || port < 1024 || port > 65_535 || port === 3000) throw new Error(`Invalid port number: ${port}`);
    if (options.hostname.endsWith(".workers.dev")) throw new Error("CustomDomainRequiredError: preview URLs need a custom domain, not .workers.dev");
    const token = this.exposed.get(port) ?? Math.random().toString(36).slice(2, 10).padEnd(16, "0");
    this.exposed.set(port, token);
    return { url: `https://${port}-${this.script.id ?? "sandbox"}-${token}.${options.hostname}`, port, name: options.name };
  }

  async unexposePort(port: number): Promise<void> {
    this.record("unexposePort", [port]);
    this.exposed.delete(port);
  }

  async containerFetch(request: Request, port: number): Promise<Response> {
    this.record("containerFetch", [request.url, port]);
    const listener = this.script.ports?.[port];
    if (!listener) throw new Error(`The container is not listening in the TCP address 10.0.0.1:${port}`);
    return listener(request);
  }

  async wsConnect(request: Request, port: number): Promise<Response> {
    this.record("wsConnect", [request.url, port]);
    return this.containerFetch(request, port);
  }

  async destroy(): Promise<void> {
    this.record("destroy", []);
  }

  /** Records the call, then rejects if the script says this method fails. */
  private record(method: SdkMethod, args: unknown[]): void {
    this.calls.push({ method, args });
    const failure = this.script.failures?.[method];
    if (failure) throw failure;
  }

  /** The frames as the container writes them, one chunk per read; an open stream never ends by itself. */
  private sse(frames: unknown[], { close }: { close: boolean }): ReadableStream<Uint8Array> {
    const bytes = new TextEncoder().encode(frames.map((frame) => `data: ${JSON.stringify(frame)}\n\n`).join(""));
    const chunks: Uint8Array[] = [];
    if (this.script.chunkBytes) {
      for (let at = 0; at < bytes.byteLength; at += this.script.chunkBytes) chunks.push(bytes.slice(at, at + this.script.chunkBytes));
    } else {
      let at = 0;
      for (const frame of frames) {
        const length = new TextEncoder().encode(`data: ${JSON.stringify(frame)}\n\n`).byteLength;
        chunks.push(bytes.slice(at, at + length));
        at += length;
      }
    }
    return new ReadableStream<Uint8Array>({
      pull(controller) {
        const chunk = chunks.shift();
        if (chunk) controller.enqueue(chunk);
        else if (close) controller.close();
      },
    });
  }
}

function now(): string {
  return new Date().toISOString();
}

function base64(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes));
}
