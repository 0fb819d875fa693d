import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { isRetryable } from "../../src/agents/failures.ts";
import { CloneError } from "../../src/sandbox/checkout.ts";
import { CloudflareSandboxPort } from "../../src/sandbox/cloudflare.ts";
import { SandboxUnavailableError, type ProcessOutput } from "../../src/sandbox/port.ts";
import { RecordingSandboxSdk, type SdkScript } from "../standins/cloudflare-sandbox.ts";

const REPO = "https://github.com/acme/widgets.git";
const COMMIT = "0123456789abcdef0123456789abcdef01234567";
/** A directory a shell would misread if it were spliced into a command. */
const DIR = "/workspace/run 1/$(touch pwned)";

/** Opens sandbox `id` through the port, on a fresh recording SDK. */
async function open(script: SdkScript = {}, id = "run-1") {
  const sdk = new RecordingSandboxSdk(script);
  const connected: string[] = [];
  const port = new CloudflareSandboxPort((name) => {
    connected.push(name);
    return sdk;
  });
  return { sandbox: await port.open(id), sdk, connected };
}

/** A clone whose HEAD is COMMIT, readable only when the directory arrives through the environment. */
function headAt(commit: string): SdkScript["exec"] {
  return (command, options) =>
    command === 'git -C "$SORTIE_DIR" rev-parse HEAD' && options?.env?.SORTIE_DIR === DIR
      ? { exitCode: 0, stdout: `${commit}\n` }
      : { exitCode: 128, stderr: `fatal: cannot change to '${command}': No such file or directory` };
}

async function collect(outputs: AsyncIterable<ProcessOutput>): Promise<ProcessOutput[]> {
  const all: ProcessOutput[] = [];
  for await (const output of outputs) all.push(output);
  return all;
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof Error) return error;
    throw new Error(`rejected with a non-Error: ${String(error)}`);
  }
  throw new Error("expected a rejection, got a result");
}

async function text(stream: ReadableStream<Uint8Array>): Promise<string> {
  return new Response(stream).text();
}

describe("checkout", () => {
  it("clones the branch shallowly into the directory and returns the commit HEAD is at", async () => {
    const { sandbox, sdk, connected } = await open({ exec: headAt(COMMIT) });

    const result = await sandbox.checkout(REPO, { dir: DIR, branch: "release/2.x", timeoutMs: 90_000 });

    expect(result).toEqual({ commit: COMMIT });
    expect(connected).toEqual(["run-1"]);
    expect(sdk.calls.map((call) => call.method)).toEqual(["gitCheckout", "exec"]);
    expect(sdk.argsOf("gitCheckout")).toEqual([[REPO, { targetDir: DIR, depth: 1, branch: "release/2.x", cloneTimeoutMs: 90_000 }]]);
    const [[command, options]] = sdk.argsOf("exec") as [[string, { env?: Record<string, string> }]];
    expect(command).toBe('git -C "$SORTIE_DIR" rev-parse HEAD');
    expect(command).not.toContain(DIR);
    expect(options.env).toEqual({ SORTIE_DIR: DIR });
  });

  it("leaves the branch out when none is given, so the remote's default branch is cloned", async () => {
    for (const branch of [undefined, null]) {
      const { sandbox, sdk } = await open({ exec: headAt(COMMIT) });

      await sandbox.checkout(REPO, { dir: DIR, branch });

      const [[url, options]] = sdk.argsOf("gitCheckout") as [[string, Record<string, unknown>]];
      expect(url).toBe(REPO);
      expect(options).toMatchObject({ targetDir: DIR, depth: 1 });
      expect(options).not.toHaveProperty("branch");
    }
  });

  it("turns a failed clone into CloneError with git's words, and never reads HEAD", async () => {
    const { sandbox, sdk } = await open({
      exec: headAt(COMMIT),
      failures: { gitCheckout: new Error("Repository not found: https://github.com/acme/widgets.git") },
    });

    const error = await rejection(sandbox.checkout(REPO, { dir: DIR, branch: "main" }));

    expect(error).toBeInstanceOf(CloneError);
    expect(error.message).toContain("Repository not found");
    expect(sdk.calls.map((call) => call.method)).toEqual(["gitCheckout"]);
  });

  it("reads why a clone failed from the SDK's error code: only the network's failure is retried, a lost container is the sandbox's", async () => {
    const sdkError = (code: string) => Object.assign(new Error(`git checkout failed (${code})`), { code });
    const cases: [string, string | null, boolean][] = [
      ["GIT_NETWORK_ERROR", "network", true],
      ["GIT_REPOSITORY_NOT_FOUND", "not_found", false],
      ["GIT_BRANCH_NOT_FOUND", "branch_not_found", false],
      ["GIT_AUTH_FAILED", "auth", false],
      ["GIT_CLONE_FAILED", "other", false],
      ["CONTAINER_UNAVAILABLE", null, true],
    ];
    for (const [code, reason, retryable] of cases) {
      const { sandbox } = await open({ exec: headAt(COMMIT), failures: { gitCheckout: sdkError(code) } });
      const error = await rejection(sandbox.checkout(REPO, { dir: DIR }));
      if (reason) expect((error as CloneError).reason, code).toBe(reason);
      else expect(error, code).toBeInstanceOf(SandboxUnavailableError);
      expect(isRetryable(error), code).toBe(retryable);
    }
  });

  it("turns a clone whose HEAD cannot be read into CloneError", async () => {
    const { sandbox, sdk } = await open({ exec: () => ({ exitCode: 128, stderr: "fatal: not a git repository" }) });

    const error = await rejection(sandbox.checkout(REPO, { dir: DIR }));

    expect(error).toBeInstanceOf(CloneError);
    expect(error.message).toContain("not a git repository");
    expect(sdk.calls.map((call) => call.method)).toEqual(["gitCheckout", "exec"]);
  });
});

describe("commands and processes", () => {
  it("runs a command with its env, cwd and timeout, and a non-zero exit is a result, not an error", async () => {
    const { sandbox, sdk } = await open({ exec: () => ({ exitCode: 2, stdout: "partial\n", stderr: "boom\n" }) });

    const result = await sandbox.exec('printf %s "$NAME"', { env: { NAME: "x; rm -rf /" }, cwd: "/workspace/repo", timeoutMs: 5_000 });

    expect(result).toEqual({ exitCode: 2, stdout: "partial\n", stderr: "boom\n" });
    expect(sdk.calls).toEqual([{ method: "exec", args: ['printf %s "$NAME"', { env: { NAME: "x; rm -rf /" }, cwd: "/workspace/repo", timeout: 5_000 }] }]);
  });

  it("starts a process with its env and cwd and returns the SDK's process id", async () => {
    const { sandbox, sdk } = await open();

    const started = await sandbox.startProcess("claude -p \"$SORTIE_PROMPT\"", { env: { SORTIE_PROMPT: "fix it" }, cwd: "/workspace/repo" });

    expect(started).toEqual({ processId: "proc-1" });
    expect(sdk.calls).toEqual([{ method: "startProcess", args: ['claude -p "$SORTIE_PROMPT"', { env: { SORTIE_PROMPT: "fix it" }, cwd: "/workspace/repo" }] }]);
  });

  it("streams stdout and stderr in order and ends with the exit code", async () => {
    const { sandbox, sdk } = await open({
      processes: {
        "proc-9": {
          live: [
            { type: "stdout", data: '{"type":"system"}\n' },
            { type: "stderr", data: "warning: slow\n" },
            { type: "stdout", data: '{"type":"result"}\n' },
          ],
          exitCode: 3,
        },
      },
    });

    const outputs = await collect(sandbox.streamProcess("proc-9"));

    expect(outputs).toEqual([
      { kind: "stdout", data: '{"type":"system"}\n' },
      { kind: "stderr", data: "warning: slow\n" },
      { kind: "stdout", data: '{"type":"result"}\n' },
      { kind: "exit", exitCode: 3 },
    ]);
    expect(sdk.calls).toEqual([{ method: "streamProcessLogs", args: ["proc-9", { signal: undefined }] }]);
  });

  it("reads events whole when the bytes arrive cut mid-frame and mid-character", async () => {
    const process = {
      live: [
        { type: "stdout" as const, data: "héllo ✓ 🚀\n" },
        { type: "stdout" as const, data: "data: looks like a frame\n\n" },
        { type: "stderr" as const, data: "ünïcode\r\n" },
      ],
      exitCode: 0,
    };
    const whole = await collect((await open({ processes: { p: process } })).sandbox.streamProcess("p"));
    for (const chunkBytes of [1, 3, 7, 64]) {
      const { sandbox } = await open({ processes: { p: process }, chunkBytes });

      expect(await collect(sandbox.streamProcess("p")), `${chunkBytes}-byte chunks`).toEqual(whole);
    }
    expect(whole).toEqual([...process.live.map(({ type, data }) => ({ kind: type, data })), { kind: "exit", exitCode: 0 }]);
  });

  it("resumes from per-stream character offsets when re-attaching", async () => {
    const { sandbox } = await open({
      processes: {
        p: {
          live: [
            { type: "stdout", data: "one\n" },
            { type: "stderr", data: "two\n" },
            { type: "stdout", data: "three\n" },
          ],
          exitCode: 0,
        },
      },
    });

    expect(await collect(sandbox.streamProcess("p", { from: { stdout: 4, stderr: 4 } }))).toEqual([
      { kind: "stdout", data: "three\n" },
      { kind: "exit", exitCode: 0 },
    ]);
  });

  // The container replays what a process printed before the stream attached
  // as ONE stdout event and ONE stderr event (sandbox-container
  // handlers/process-handler.ts): resuming must count characters, not events.
  it("re-attaching after the first attach saw separate chunks resumes where the reader left off", async () => {
    // The first attach saw "one\n" and "two\n" as two live events: 8 characters of stdout.
    const { sandbox } = await open({
      processes: { p: { buffered: { stdout: "one\ntwo\n" }, live: [{ type: "stdout", data: "three\n" }], exitCode: 0 } },
    });

    expect(await collect(sandbox.streamProcess("p", { from: { stdout: 8, stderr: 0 } }))).toEqual([
      { kind: "stdout", data: "three\n" },
      { kind: "exit", exitCode: 0 },
    ]);
  });

  it("reads a killed process's exit without a code as -1", async () => {
    const { sandbox } = await open({ processes: { p: { live: [{ type: "stdout", data: "working\n" }], exitCode: null } } });

    expect(await collect(sandbox.streamProcess("p"))).toEqual([
      { kind: "stdout", data: "working\n" },
      { kind: "exit", exitCode: -1 },
    ]);
  });

  it("raises SandboxUnavailableError at an error event, after the output before it", async () => {
    const { sandbox } = await open({
      processes: {
        "proc-3": {
          live: [
            { type: "stdout", data: "partial\n" },
            { type: "error", data: "process crashed: out of memory" },
            { type: "stdout", data: "never read\n" },
          ],
          exitCode: 137,
        },
      },
    });
    const seen: ProcessOutput[] = [];

    const error = await rejection(
      (async () => {
        for await (const output of sandbox.streamProcess("proc-3")) seen.push(output);
      })(),
    );

    expect(seen).toEqual([{ kind: "stdout", data: "partial\n" }]);
    expect(error).toBeInstanceOf(SandboxUnavailableError);
    expect(error.message).toContain("proc-3");
    expect(error.message).toContain("out of memory");
  });

  it("stops reading, without killing the process, when the reader aborts", async () => {
    const { sandbox, sdk } = await open({ processes: { p: { live: [{ type: "stdout", data: "first\n" }, { type: "stdout", data: "second\n" }] } } });
    const reader = new AbortController();
    const seen: ProcessOutput[] = [];

    const error = await rejection(
      (async () => {
        for await (const output of sandbox.streamProcess("p", { signal: reader.signal })) {
          seen.push(output);
          if (seen.length === 2) setTimeout(() => reader.abort(), 0);
        }
      })(),
    );

    expect(seen).toEqual([
      { kind: "stdout", data: "first\n" },
      { kind: "stdout", data: "second\n" },
    ]);
    expect(error.message).toMatch(/abort/i);
    expect(sdk.argsOf("streamProcessLogs")).toEqual([["p", { signal: reader.signal }]]);
    expect(sdk.argsOf("killProcess")).toEqual([]);
  });

  it("kills a process by id", async () => {
    const { sandbox, sdk } = await open();

    await sandbox.killProcess("proc-4");

    expect(sdk.calls).toEqual([{ method: "killProcess", args: ["proc-4"] }]);
  });
});

describe("files", () => {
  it("reads a text file as its UTF-8 bytes, not as the SDK's event stream", async () => {
    const diff = "diff --git a/README.md b/README.md\n+héllo ✓ 🚀\n";
    const { sandbox, sdk } = await open({ files: { "/workspace/.sortie/diff-1.patch": diff }, chunkBytes: 4 });

    const bytes = new Uint8Array(await new Response(await sandbox.readFile("/workspace/.sortie/diff-1.patch")).arrayBuffer());

    expect(bytes).toEqual(new TextEncoder().encode(diff));
    expect(sdk.calls).toEqual([{ method: "readFileStream", args: ["/workspace/.sortie/diff-1.patch"] }]);
  });

  it("reads a binary file byte for byte", async () => {
    const image = Uint8Array.from({ length: 300 }, (_, index) => (index * 7) % 256);
    const { sandbox } = await open({ files: { "/workspace/logo.png": image } });

    const bytes = new Uint8Array(await new Response(await sandbox.readFile("/workspace/logo.png")).arrayBuffer());

    expect(bytes).toEqual(image);
  });

  it("fails the read with SandboxUnavailableError naming a missing file", async () => {
    const { sandbox } = await open({}, "run-5");

    const error = await rejection(sandbox.readFile("/workspace/missing.patch").then(text));

    expect(error).toBeInstanceOf(SandboxUnavailableError);
    expect(error.message).toContain("run-5");
    expect(error.message).toContain("/workspace/missing.patch");
  });

  it("writes a file's content as given", async () => {
    const { sandbox, sdk } = await open();

    await sandbox.writeFile("/workspace/.sortie/prompt.md", "fix the bug\n");

    expect(sdk.calls).toEqual([{ method: "writeFile", args: ["/workspace/.sortie/prompt.md", "fix the bug\n"] }]);
  });
});

describe("the sandbox itself", () => {
  it("destroys the sandbox through the SDK", async () => {
    const { sandbox, sdk } = await open();

    await sandbox.destroy();

    expect(sdk.calls).toEqual([{ method: "destroy", args: [] }]);
  });

  it("turns an SDK exception into SandboxUnavailableError naming the sandbox, with the cause kept", async () => {
    const failure = new Error("Container is not running");
    const { sandbox, sdk } = await open({ failures: { exec: failure } }, "run-7");

    const error = await rejection(sandbox.exec("true"));

    expect(error).toBeInstanceOf(SandboxUnavailableError);
    expect(error.message).toContain("sandbox run-7");
    expect(error.message).toContain("Container is not running");
    expect(error.cause).toBe(failure);
    expect(sdk.calls).toEqual([{ method: "exec", args: ["true", { env: undefined, cwd: undefined, timeout: undefined }] }]);
  });
});

describe("snapshots and caches in R2 (createBackup / restoreBackup)", () => {
  /** A port with backups on: one recording SDK for every sandbox, the Worker's R2 binding for the index. */
  function withBackups() {
    const sdk = new RecordingSandboxSdk({});
    const port = new CloudflareSandboxPort(() => sdk, { bucket: env.BACKUP_BUCKET, snapshotTtlSeconds: 3600 });
    return { sdk, port };
  }

  it("without a bucket takes no snapshot and offers no cache, so every run sets up for itself", async () => {
    const { sandbox, sdk } = await open();
    expect(await sandbox.snapshot("/workspace/repo")).toBeNull();
    expect(await sandbox.cacheDir("acme--widgets-abc")).toBeNull();
    expect(sdk.calls.some((call) => call.method === "createBackup")).toBe(false);
  });

  it("snapshots a directory as a backup another sandbox restores into its own directory", async () => {
    const { sdk, port } = withBackups();
    const first = await port.open("task-0");
    const snapshot = await first.snapshot("/workspace/repo");
    expect(snapshot).not.toBeNull();
    const second = await port.open("task-1");
    await second.restore(snapshot!, "/workspace/repo");
    const created = sdk.calls.find((call) => call.method === "createBackup")!.args[0] as { dir: string; ttl: number };
    expect(created).toMatchObject({ dir: "/workspace/repo", ttl: 3600 });
    const restored = sdk.calls.find((call) => call.method === "restoreBackup")!.args[0] as { id: string; dir: string };
    expect(restored).toEqual({ id: JSON.parse(snapshot!).id, dir: "/workspace/repo" });
  });

  it("refuses to pass anything but a backup handle to the SDK, and fails a restore the SDK cannot find", async () => {
    const { sdk, port } = withBackups();
    const sandbox = await port.open("task-0");
    expect((await rejection(sandbox.restore("snap-from-another-backend", "/workspace/repo"))).message).toMatch(/not a backup handle/);
    expect((await rejection(sandbox.restore(JSON.stringify({ id: "bk-404", dir: "/workspace/repo" }), "/workspace/repo")))).toBeInstanceOf(SandboxUnavailableError);
    expect(sdk.calls.filter((call) => call.method === "restoreBackup")).toHaveLength(1);
  });

  it("drops a snapshot by deleting its objects from the bucket", async () => {
    const { port } = withBackups();
    await env.BACKUP_BUCKET.put("backups/bk-9/data.sqsh", "archive");
    await env.BACKUP_BUCKET.put("backups/bk-9/meta.json", "{}");
    await env.BACKUP_BUCKET.put("backups/bk-90/meta.json", "{}");
    await port.dropSnapshot(JSON.stringify({ id: "bk-9", dir: "/workspace/repo" }));
    expect((await env.BACKUP_BUCKET.list({ prefix: "backups/bk-9/" })).objects).toEqual([]);
    expect(await env.BACKUP_BUCKET.head("backups/bk-90/meta.json")).not.toBeNull();
  });

  it("backs a dependency cache up once per key and restores it for the next sandbox", async () => {
    const { sdk, port } = withBackups();
    const key = `acme--widgets-${Math.random().toString(36).slice(2, 10)}`;
    const first = await port.open("task-a");
    const dir = await first.cacheDir(key);
    expect(dir).toMatch(new RegExp(`^/var/tmp/sortie-cache/${key}-[0-9a-f]{8}$`));
    expect(sdk.calls.some((call) => call.method === "restoreBackup")).toBe(false);
    await first.finishCache(key, dir!, true);
    await first.finishCache(key, dir!, true);
    expect(sdk.calls.filter((call) => call.method === "createBackup")).toHaveLength(1);

    const second = await port.open("task-b");
    const again = await second.cacheDir(key);
    expect(again).not.toBe(dir);
    expect(sdk.calls.filter((call) => call.method === "restoreBackup").map((call) => (call.args[0] as { dir: string }).dir)).toEqual([again]);
  });
});

describe("a failed setup's cache", () => {
  it("is thrown away, never backed up", async () => {
    const sdk = new RecordingSandboxSdk({});
    const port = new CloudflareSandboxPort(() => sdk, { bucket: env.BACKUP_BUCKET, snapshotTtlSeconds: 3600 });
    const key = `acme--widgets-${Math.random().toString(36).slice(2, 10)}`;
    const sandbox = await port.open("task-y");
    const dir = await sandbox.cacheDir(key);
    await sandbox.finishCache(key, dir!, false);
    expect(sdk.calls.some((call) => call.method === "createBackup")).toBe(false);
    expect(sdk.calls.some((call) => call.method === "exec" && String(call.args[0]).startsWith("rm -rf"))).toBe(true);
    expect(await env.BACKUP_BUCKET.head(`sortie/caches/${key}.json`)).toBeNull();
  });
});

describe("an expired dependency cache", () => {
  it("is forgotten when its backup cannot be restored, so this run's cache is saved in its place", async () => {
    const sdk = new RecordingSandboxSdk({});
    const port = new CloudflareSandboxPort(() => sdk, { bucket: env.BACKUP_BUCKET, snapshotTtlSeconds: 3600 });
    const key = `acme--widgets-${Math.random().toString(36).slice(2, 10)}`;
    await env.BACKUP_BUCKET.put(`sortie/caches/${key}.json`, JSON.stringify({ id: "bk-expired", dir: `/var/tmp/sortie-cache/${key}` }));
    const sandbox = await port.open("task-x");
    const dir = await sandbox.cacheDir(key);
    expect(dir).toMatch(new RegExp(`^/var/tmp/sortie-cache/${key}-`));
    expect(await env.BACKUP_BUCKET.head(`sortie/caches/${key}.json`)).toBeNull();
    await sandbox.finishCache(key, dir!, true);
    expect(sdk.calls.filter((call) => call.method === "createBackup")).toHaveLength(1);
    expect(JSON.parse(await (await env.BACKUP_BUCKET.get(`sortie/caches/${key}.json`))!.text()).id).not.toBe("bk-expired");
  });
});

describe("confinement", () => {
  it("runs a confined command as its user through setpriv, the command itself in a variable", async () => {
    const { sandbox, sdk } = await open();
    await sandbox.exec("echo $(id -u) > out", { cwd: "/workspace/repo", env: { A: "1" }, confine: { uid: 20001, home: "/workspace/homes/t-0" } });
    const [command, options] = sdk.calls.find((call) => call.method === "exec")!.args as [string, { env: Record<string, string> }];
    expect(command).toContain("setpriv");
    expect(command).not.toContain("id -u");
    expect(options.env).toMatchObject({ A: "1", SORTIE_UID: "20001", SORTIE_CONFINED_COMMAND: "echo $(id -u) > out", HOME: "/workspace/homes/t-0" });
    expect(sdk.calls.some((call) => call.method === "setOutboundHandler")).toBe(false);
  });

  it("switches the container's egress to the model-only handler before a model-only process starts", async () => {
    const { sandbox, sdk } = await open({ processes: {} });
    await sandbox.startProcess("claude -p", { confine: { uid: 10001, home: "/workspace/agent-home", modelOnly: { origins: ["https://api.anthropic.com"] } } });
    const methods = sdk.calls.map((call) => call.method);
    expect(methods.indexOf("setOutboundHandler")).toBeLessThan(methods.indexOf("startProcess"));
    expect(sdk.calls.find((call) => call.method === "setOutboundHandler")!.args).toEqual(["modelOnly"]);
  });
});
