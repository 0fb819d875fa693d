/**
 * The local sandbox host (container/local-host.ts), driven the way the Worker
 * drives it: through the `local` adapter of the sandbox port.
 */
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLocalSandboxHost } from "../../container/local-host.ts";
import { parseNumstat, takeDiff } from "../../src/publish/diff.ts";
import { isRetryable } from "../../src/agents/failures.ts";
import { CloneError } from "../../src/sandbox/checkout.ts";
import { LocalSandboxPort } from "../../src/sandbox/local.ts";
import { SandboxUnavailableError, type ProcessOutput, type Sandbox } from "../../src/sandbox/port.ts";
import { createFixtureRepos } from "../support/fixtures.ts";

const TOKEN = `test-${randomUUID()}`;
let host: Awaited<ReturnType<typeof startLocalSandboxHost>>;
let port: LocalSandboxPort;
let gitBase: string;
const widgetsUrl = () => `${gitBase}/acme/widgets.git`;

beforeAll(async () => {
  host = await startLocalSandboxHost({ token: TOKEN });
  gitBase = createFixtureRepos();
  // As the Worker opens them: the fixtures' file:// base readable inside the walls.
  port = new LocalSandboxPort(host.url, TOKEN, { allow: [], readable: [fileURLToPath(gitBase)] });
});

afterAll(async () => {
  await host.close();
  fs.rmSync(host.root, { recursive: true, force: true });
  fs.rmSync(fileURLToPath(gitBase), { recursive: true, force: true });
});

const newId = () => `t-${randomUUID().slice(0, 8)}`;

async function collect(stream: AsyncIterable<ProcessOutput>, limit = Infinity): Promise<ProcessOutput[]> {
  const items: ProcessOutput[] = [];
  for await (const item of stream) {
    items.push(item);
    if (items.length >= limit) break;
  }
  return items;
}

const textOf = (items: ProcessOutput[], kind: "stdout" | "stderr") =>
  items.map((item) => (item.kind === kind ? item.data : "")).join("");

async function readText(sandbox: Sandbox, file: string): Promise<string> {
  return new Response(await sandbox.readFile(file)).text();
}

describe("access", () => {
  it("refuses a request without the token with 401 and creates nothing", async () => {
    const id = newId();
    const response = await fetch(`${host.url}/v1/sandboxes/${id}`, { method: "POST" });
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ error: { code: "unauthorized" } });
    expect(fs.existsSync(path.join(host.root, id))).toBe(false);
  });

  it("refuses the adapter when its token is wrong", async () => {
    const wrong = new LocalSandboxPort(host.url, "not-the-token");
    await expect(wrong.open(newId())).rejects.toThrow(SandboxUnavailableError);
    await expect(wrong.open(newId())).rejects.toThrow(/401/);
  });
});

describe("the protocol (src/sandbox/local-protocol.ts)", () => {
  const call = (pathname: string, method: string, body?: string) =>
    fetch(`${host.url}${pathname}`, { method, body, headers: { authorization: `Bearer ${TOKEN}` } });

  it("refuses a body its route's schema does not take with a 400 that names the field, and opens nothing", async () => {
    const id = newId();
    const badOpen = await call(`/v1/sandboxes/${id}`, "POST", JSON.stringify({ allow: "example.com" }));
    expect(badOpen.status).toBe(400);
    expect(await badOpen.json()).toMatchObject({ error: { code: "bad_request", message: expect.stringContaining("allow") } });
    expect(fs.existsSync(path.join(host.root, id))).toBe(false);
    expect((await call(`/v1/sandboxes/${id}`, "POST", "{not json")).status).toBe(400);
    // A sandbox the protocol opened takes only commands that say what to run.
    const opened = await call(`/v1/sandboxes/${id}`, "POST");
    expect(opened.status).toBe(200);
    expect(await opened.json()).toMatchObject({ workdir: expect.stringContaining(id) });
    for (const [route, body, field] of [
      ["/exec", { cwd: "/tmp" }, "command"],
      ["/exec", { command: "true", confine: { uid: "root" } }, "confine.uid"],
      ["/processes", { command: "true", serves: 70_000 }, "serves"],
      ["/screenshot", { port: "8080" }, "port"],
      ["/restore", { snapshotId: "../../etc", path: "x" }, "snapshotId"],
      ["/writable", { dir: "relative/dir" }, "dir"],
    ] as const) {
      const response = await call(`/v1/sandboxes/${id}${route}`, "POST", JSON.stringify(body));
      expect(response.status, route).toBe(400);
      expect(((await response.json()) as { error: { message: string } }).error.message, route).toContain(field);
    }
    const ran = await call(`/v1/sandboxes/${id}/exec`, "POST", JSON.stringify({ command: "echo typed" }));
    expect(await ran.json()).toEqual({ exitCode: 0, stdout: "typed\n", stderr: "", timedOut: false });
    await call(`/v1/sandboxes/${id}`, "DELETE");
  });
});

describe("a command's environment", () => {
  it("holds only what the orchestrator passed plus the image's base variables", async () => {
    const sandbox = await port.open(newId());
    process.env.SORTIE_SECRET_PROBE = "host-secret";
    try {
      const result = await sandbox.exec(`printf '%s\\n' "\${SORTIE_SECRET_PROBE-unset}" "$HOME" "$PASSED"; env`, { env: { PASSED: "given" } });
      expect(result.exitCode).toBe(0);
      const [probe, home, passed, ...env] = result.stdout.split("\n");
      expect(probe).toBe("unset");
      expect(passed).toBe("given");
      expect(home).toBe(path.join(path.dirname(sandbox.workdir), "home"));
      expect(home).not.toBe(os.homedir());
      expect(fs.statSync(home!).isDirectory()).toBe(true);

      const names = env.filter(Boolean).map((line) => line.slice(0, line.indexOf("=")));
      const base = [
        "PATH", "HOME", "TMPDIR", "LANG", "TERM", "IS_SANDBOX", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "DISABLE_AUTOUPDATER",
        "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "GIT_TERMINAL_PROMPT", "SORTIE_UID_BASE",
      ];
      const bashOwn = ["PWD", "SHLVL", "_", "OLDPWD"];
      // What the walls set: the runtime's marker, its proxy for every kind of client, git's proxy auth, and the command they carry.
      // Proxy settings for every kind of client, trust stores holding its CA, and the command they carry: none from the host.
      const walls = /^(SANDBOX_RUNTIME|[A-Z_]*PROXY[A-Z_]*|[a-z_]*proxy|[A-Z_]*(CA_BUNDLE|CAINFO|CERT|CERTS_FILE|CERT_FILE)|CLAUDE_CODE_HOST_[A-Z_]+|CLOUDSDK_[A-Z_]+|JAVA_TOOL_OPTIONS|GIT_CONFIG_PARAMETERS|GIT_SSH_COMMAND|SORTIE_WALLED_COMMAND|SORTIE_TMPDIR|SORTIE_NODE|SORTIE_NODE_REQUIRE|NODE_OPTIONS)$/;
      // The machine's certificate authorities and proxy (set on some machines, not on others) are the only host variables let through.
      const trust = /^(NODE_EXTRA_CA_CERTS|SSL_CERT_FILE|SSL_CERT_DIR|GIT_SSL_CAINFO|REQUESTS_CA_BUNDLE|PIP_CERT|CURL_CA_BUNDLE|HTTPS?_PROXY|NO_PROXY|https?_proxy|no_proxy)$/;
      expect(names.filter((name) => !base.includes(name) && !bashOwn.includes(name) && !trust.test(name) && !walls.test(name))).toEqual(["PASSED"]);
    } finally {
      delete process.env.SORTIE_SECRET_PROBE;
      await sandbox.destroy();
    }
  });

  it("runs in the sandbox's workdir by default", async () => {
    const sandbox = await port.open(newId());
    try {
      expect((await sandbox.exec("pwd")).stdout.trim()).toBe(sandbox.workdir);
    } finally {
      await sandbox.destroy();
    }
  });
});

describe("isolation between sandboxes", () => {
  it("gives each sandbox its own workdir", async () => {
    const [a, b] = await Promise.all([port.open(newId()), port.open(newId())]);
    try {
      expect(a.workdir).not.toBe(b.workdir);
      expect(b.workdir.startsWith(a.workdir)).toBe(false);
      expect(a.workdir.startsWith(b.workdir)).toBe(false);
    } finally {
      await Promise.all([a.destroy(), b.destroy()]);
    }
  });

  it("keeps one sandbox's files out of another's reach through the files endpoint", async () => {
    const [a, b] = await Promise.all([port.open(newId()), port.open(newId())]);
    try {
      const secret = path.join(a.workdir, "secret.txt");
      await a.writeFile(secret, "a's secret\n");
      expect(await readText(a, secret)).toBe("a's secret\n");

      await expect(b.readFile(`../${a.id}/work/secret.txt`)).rejects.toThrow(/400/);
      await expect(b.readFile(secret)).rejects.toThrow(/400/);
      await expect(b.readFile("../../../../../../etc/passwd")).rejects.toThrow(/400/);
      await expect(b.writeFile(`../${a.id}/work/secret.txt`, "overwritten")).rejects.toThrow(/400/);
      expect(await readText(a, secret)).toBe("a's secret\n");
    } finally {
      await Promise.all([a.destroy(), b.destroy()]);
    }
  });
});

describe("checkout", () => {
  let sandbox: Sandbox;
  beforeAll(async () => {
    sandbox = await port.open(newId());
  });
  afterAll(() => sandbox.destroy());

  const bareCommit = (ref: string) =>
    execFileSync("git", ["--git-dir", path.join(fileURLToPath(gitBase), "acme/widgets.git"), "rev-parse", ref], { encoding: "utf8" }).trim();

  it("clones the default branch and returns the commit it landed on", async () => {
    const dir = path.join(sandbox.workdir, "main");
    const { commit } = await sandbox.checkout(widgetsUrl(), { dir });
    expect(commit).toMatch(/^[0-9a-f]{40}$/);
    expect(commit).toBe(bareCommit("main"));
    expect(await readText(sandbox, path.join(dir, "README.md"))).toContain("acme/widgets");
    await expect(sandbox.readFile(path.join(dir, "DEVELOP.md"))).rejects.toThrow(/404/);
  });

  it("clones the branch asked for", async () => {
    const dir = path.join(sandbox.workdir, "develop");
    const { commit } = await sandbox.checkout(widgetsUrl(), { dir, branch: "develop" });
    expect(commit).toBe(bareCommit("develop"));
    expect(await readText(sandbox, path.join(dir, "DEVELOP.md"))).toBe("only on develop\n");
  });

  it("throws CloneError for a repository that does not exist, not worth a retry", async () => {
    const error: unknown = await sandbox.checkout(`${gitBase}/acme/nothing-here.git`, { dir: path.join(sandbox.workdir, "missing") }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CloneError);
    expect((error as CloneError).reason).toBe("not_found");
    expect(isRetryable(error)).toBe(false);
  });

  it("throws CloneError in git's words for a branch that does not exist", async () => {
    const error: unknown = await sandbox.checkout(widgetsUrl(), { dir: path.join(sandbox.workdir, "nobranch"), branch: "no-such-branch" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CloneError);
    expect((error as CloneError).message).toContain("no-such-branch");
    expect((error as CloneError).reason).toBe("branch_not_found");
    expect(isRetryable(error)).toBe(false);
  });

  it("a remote whose host cannot be reached is a network failure, worth a retry (told by exit statuses, not git's words)", async () => {
    const closed = await new Promise<number>((resolve) => {
      const server = net.createServer().listen(0, "127.0.0.1", () => {
        const { port } = server.address() as net.AddressInfo;
        server.close(() => resolve(port));
      });
    });
    const error: unknown = await sandbox.checkout(`http://127.0.0.1:${closed}/acme/widgets.git`, { dir: path.join(sandbox.workdir, "unreachable") }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CloneError);
    expect((error as CloneError).reason).toBe("network");
    expect(isRetryable(error)).toBe(true);
  });
});

describe("processes", () => {
  let sandbox: Sandbox;
  beforeAll(async () => {
    sandbox = await port.open(newId());
  });
  afterAll(() => sandbox.destroy());

  it("streams stdout and stderr, then the exit code, last and once", async () => {
    const { processId } = await sandbox.startProcess("printf 'out\\n'; printf 'err\\n' >&2; exit 3");
    const items = await collect(sandbox.streamProcess(processId));
    expect(textOf(items, "stdout")).toBe("out\n");
    expect(textOf(items, "stderr")).toBe("err\n");
    expect(items.at(-1)).toEqual({ kind: "exit", exitCode: 3 });
    expect(items.filter((item) => item.kind === "exit")).toHaveLength(1);
  });

  it("a reader that re-attaches at its character offsets gets only what it had not seen", async () => {
    const { processId } = await sandbox.startProcess("for i in 1 2 3 4 5 6; do echo line-$i; sleep 0.1; done");
    const seen = await collect(sandbox.streamProcess(processId), 2);
    expect(seen).toHaveLength(2);

    const rest = await collect(sandbox.streamProcess(processId, { from: { stdout: textOf(seen, "stdout").length, stderr: 0 } }));
    expect(textOf([...seen, ...rest], "stdout")).toBe("line-1\nline-2\nline-3\nline-4\nline-5\nline-6\n");
    expect(rest.at(-1)).toEqual({ kind: "exit", exitCode: 0 });
  });

  it("kill stops a long command quickly, with a non-zero exit", async () => {
    const { processId } = await sandbox.startProcess("echo started; sleep 60");
    // Once the command runs inside its walls (a kill while bubblewrap is still spawning is the host's race, not this test's).
    await collect(sandbox.streamProcess(processId), 1);
    const started = Date.now();
    await sandbox.killProcess(processId);
    const items = await collect(sandbox.streamProcess(processId));
    // Well before the 60 s the command would take by itself; walled processes take a few seconds to end on a busy machine.
    expect(Date.now() - started).toBeLessThan(15_000);
    const exit = items.at(-1);
    expect(exit?.kind).toBe("exit");
    expect(exit?.kind === "exit" && exit.exitCode).not.toBe(0);
  });
});

describe("destroy", () => {
  it("removes the sandbox's directory and ends what runs in it", async () => {
    const sandbox = await port.open(newId());
    const root = path.dirname(sandbox.workdir);
    await sandbox.writeFile(path.join(sandbox.workdir, "left-behind.txt"), "x");
    const { processId } = await sandbox.startProcess("sleep 60 & echo started; wait");
    await collect(sandbox.streamProcess(processId), 1);
    // Inside its pid namespace the sleep has a pid of its own: it is found on the host by where it runs.
    expect(processesUnder(root).length).toBeGreaterThan(0);

    await sandbox.destroy();

    expect(fs.existsSync(root)).toBe(false);
    await expect.poll(() => processesUnder(root).length, { timeout: 2000 }).toBe(0);
    await expect(sandbox.exec("true")).rejects.toThrow(/404/);
    await expect(sandbox.destroy()).resolves.toBeUndefined();
  });
});

describe("takeDiff on a cloned repository", () => {
  const BINARY = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

  it("writes a patch git applies cleanly to a fresh clone, with stats that match it", async () => {
    const sandbox = await port.open(newId());
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "sortie-apply-"));
    const fresh = path.join(scratch, "clone");
    const patchFile = path.join(scratch, "change.diff");
    try {
      const repo = path.join(sandbox.workdir, "repo");
      const { commit } = await sandbox.checkout(widgetsUrl(), { dir: repo });
      await sandbox.writeFile(path.join(repo, "notes.md"), "# Notes\n\nWritten by a run.\n");
      await sandbox.writeFile(path.join(repo, "README.md"), "# acme/widgets\n\nA fixture repository, changed by a run.\n");
      const write = await sandbox.exec('mkdir -p "$(dirname "$TARGET")" && printf "%s" "$DATA" | base64 -d > "$TARGET"', {
        env: { DATA: BINARY.toString("base64"), TARGET: path.join(repo, "assets/icon.bin") },
      });
      expect(write.exitCode).toBe(0);

      const taken = await takeDiff(sandbox, repo, commit, path.join(sandbox.workdir, "sortie.diff"));
      const patch = Buffer.from(await new Response(await sandbox.readFile(taken.path)).arrayBuffer());

      expect(taken.stats).toEqual({ files: 3, additions: 4, deletions: 1, bytes: patch.length });

      execFileSync("git", ["clone", "-q", widgetsUrl(), fresh], { stdio: "pipe" });
      fs.writeFileSync(patchFile, patch);
      execFileSync("git", ["apply", "--check", patchFile], { cwd: fresh, stdio: "pipe" });
      const numstat = execFileSync("git", ["apply", "--numstat", patchFile], { cwd: fresh, encoding: "utf8" });
      expect(parseNumstat(numstat)).toEqual({ ...taken.stats, bytes: 0 });

      execFileSync("git", ["apply", patchFile], { cwd: fresh, stdio: "pipe" });
      expect(fs.readFileSync(path.join(fresh, "assets/icon.bin")).equals(BINARY)).toBe(true);
      expect(fs.readFileSync(path.join(fresh, "notes.md"), "utf8")).toBe("# Notes\n\nWritten by a run.\n");
      expect(fs.readFileSync(path.join(fresh, "README.md"), "utf8")).toBe("# acme/widgets\n\nA fixture repository, changed by a run.\n");
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
      await sandbox.destroy();
    }
  });
});

describe("restored snapshots and caches", () => {
  it("restore copy-on-write: a run's writes never reach the snapshot or a sibling restored from it", async () => {
    const first = await port.open(newId());
    const second = await port.open(newId());
    try {
      const made = await first.exec('mkdir -p repo && echo original > repo/file && mkdir repo/deps && echo dep > repo/deps/a');
      expect(made.exitCode).toBe(0);
      const snapshot = await first.snapshot(`${first.workdir}/repo`);
      await first.restore(snapshot!, `${first.workdir}/repo`);
      await second.restore(snapshot!, `${second.workdir}/repo`);
      expect((await first.exec("echo changed > repo/file && rm repo/deps/a && cat repo/file")).stdout).toBe("changed\n");
      expect((await second.exec("cat repo/file && ls repo/deps")).stdout).toBe("original\na\n");
      await port.dropSnapshot(snapshot!);
      // Dropped while restored: the sandboxes still read it until they go.
      expect((await second.exec("cat repo/deps/a")).stdout).toBe("dep\n");
    } finally {
      await first.destroy();
      await second.destroy();
    }
  });
});

describe("a snapshot whose mount a sandbox took down itself", () => {
  it("is deleted when dropped, not kept for a mount that is gone", async () => {
    const sandbox = await port.open(newId());
    try {
      expect((await sandbox.exec("mkdir -p repo && echo x > repo/f")).exitCode).toBe(0);
      const snapshot = await sandbox.snapshot(`${sandbox.workdir}/repo`);
      await sandbox.restore(snapshot!, `${sandbox.workdir}/tree`);
      // What removing a worktree does: unmount, from Sortie's bookkeeping outside the walls.
      const unmounted = await sandbox.exec('umount -l "$PWD/tree" 2>/dev/null || true; rm -rf tree', { bookkeeping: true });
      expect(unmounted.exitCode).toBe(0);
      await port.dropSnapshot(snapshot!);
      const root = path.dirname(path.dirname(sandbox.workdir));
      expect(fs.existsSync(path.join(`${root}-snapshots`, snapshot!))).toBe(false);
    } finally {
      await sandbox.destroy();
    }
  });
});

/** Host pids of the processes whose working directory is under `dir`. */
function processesUnder(dir: string): string[] {
  return fs.readdirSync("/proc").filter((pid) => /^\d+$/.test(pid)).filter((pid) => {
    try {
      const cwd = fs.readlinkSync(`/proc/${pid}/cwd`);
      return cwd === dir || cwd.startsWith(dir + path.sep);
    } catch {
      return false;
    }
  });
}
