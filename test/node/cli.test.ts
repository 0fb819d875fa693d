/**
 * The `sortie` CLI as a user runs it: `node cli/sortie.mjs ...` as a child
 * process against one `npm run dev -- --demo` server (real wrangler dev, local
 * sandboxes, the real Claude Code CLI, the stand-in model), with its URL and
 * token in SORTIE_URL and SORTIE_TOKEN.
 */
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startDevServer, type DevServer } from "../support/dev-server.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const cli = path.join(root, "cli", "sortie.mjs");

let server: DevServer;
/** A config directory with nothing in it, so the user's own ~/.config/sortie never leaks into a test. */
let emptyConfig: string;

beforeAll(async () => {
  server = await startDevServer();
  emptyConfig = fs.mkdtempSync(path.join(os.tmpdir(), "sortie-cli-config-"));
});

afterAll(async () => {
  await server?.stop();
  if (emptyConfig) fs.rmSync(emptyConfig, { recursive: true, force: true });
});

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  bytes: Buffer;
}

/** Runs the CLI to its end. `env` entries replace the defaults; `undefined` removes one. */
function sortie(args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  const childEnv: Record<string, string> = {};
  const merged = { PATH: process.env.PATH, HOME: emptyConfig, XDG_CONFIG_HOME: emptyConfig, SORTIE_URL: server.url, SORTIE_TOKEN: server.token, ...env };
  for (const [key, value] of Object.entries(merged)) if (value !== undefined) childEnv[key] = value;
  return new Promise((resolve, reject) => {
    // worker-configuration.d.ts types process.env with the Worker's vars; a child gets only these.
    const child = spawn(process.execPath, [cli, ...args], { env: childEnv as NodeJS.ProcessEnv, stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), 90_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      const bytes = Buffer.concat(out);
      resolve({ code, stdout: bytes.toString("utf8"), stderr: Buffer.concat(err).toString("utf8"), bytes });
    });
  });
}

async function api(pathname: string, init: RequestInit = {}) {
  return fetch(`${server.url}${pathname}`, { ...init, headers: { authorization: `Bearer ${server.token}` } });
}

async function waitForPhase(id: string, phase: string) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const task = (await (await api(`/api/tasks/${id}`)).json()) as { status: string; runs: { phase: string | null }[] };
    if (task.runs[0]?.phase === phase) return;
    if (Date.now() > deadline) throw new Error(`task ${id} never reached phase ${phase} (status ${task.status})`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A prompt that makes the stand-in model play these steps (see test/standins/anthropic.mjs). */
const scripted = (steps: unknown[]) => `do the scripted work\n#!standin ${JSON.stringify(steps)}`;
/** Claude Code refuses a bare `sleep`; a node timer makes a Bash step that takes a while. */
const pause = (ms: number, label: string) => ({ tool: "Bash", input: { command: `echo ${label} && node -e 'setTimeout(() => {}, ${ms})'` } });

const parseTask = (result: CliResult) => JSON.parse(result.stdout) as { id: string; status: string; repo: string; url: string; winner: { run: number } | null };

describe("the sortie CLI", () => {
  /** Created by the first test; later ones read its events and diff. */
  let notes: { id: string };

  it("run --json prints the created task with its id", async () => {
    const result = await sortie(["run", "acme/widgets", "add a NOTES.md", "--json"]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const task = parseTask(result);
    expect(task).toMatchObject({ repo: "acme/widgets", status: "queued", url: `${server.url}/api/tasks/${task.id}` });
    expect(task.id).toMatch(/^[a-z0-9]{19}$/);
    notes = task;
  });

  it("run --follow streams the run, shows the tool call, and exits 0 when it succeeds", async () => {
    const result = await sortie(["run", "acme/widgets", scripted([{ tool: "Write", input: { file_path: "FOLLOW.md", content: "followed\n" } }, { text: "Wrote it." }]), "--follow"]);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toContain("▸ Write FOLLOW.md");
    expect(result.stdout).toContain("Wrote it.");
    expect(result.stdout).toMatch(/✓ succeeded in .* 1 file \+1 -0/);
    expect(result.stdout).not.toContain("\x1b["); // not a terminal: no colours, no status line
  });

  it("run races agent CLIs with --agent twice, at the isolation --isolation names, and show says so", async () => {
    const refused = await sortie(["run", "acme/widgets", "x", "--isolation", "workspace", "--egress", "api.stripe.com"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("isolation_conflict");
    const created = await sortie(["run", "acme/widgets", scripted([{ text: "Looked." }]), "--agent", "claude-code", "--agent", "opencode", "--isolation", "workspace", "--json"]);
    expect(created.code, created.stderr).toBe(0);
    const task = JSON.parse(created.stdout) as { id: string; runs: { agent: string; isolation: string }[]; isolation: { level: string } };
    expect(task.runs.map((run) => [run.agent, run.isolation])).toEqual([["claude-code", "workspace"], ["opencode", "workspace"]]);
    const followed = await sortie(["logs", "-f", task.id]);
    expect(followed.code, followed.stdout + followed.stderr).toBe(0);
    expect(followed.stdout).toContain("opencode");
    const shown = await sortie(["show", task.id]);
    expect(shown.stdout).toContain("isolation workspace: declared by the task");
    expect(shown.stdout).toMatch(/run 1 .*opencode · isolation workspace/);
  });

  it("logs -f waits for the end; logs renders the events; logs --json gives them as NDJSON", async () => {
    const followed = await sortie(["logs", "-f", notes.id]);
    expect(followed.code, followed.stderr).toBe(0);
    expect(followed.stdout).toContain("✓ succeeded");

    const rendered = await sortie(["logs", notes.id]);
    expect(rendered.code).toBe(0);
    expect(rendered.stdout).toMatch(/^task queued$/m);
    expect(rendered.stdout).toContain("▸ Write NOTES.md");
    expect(rendered.stdout).toMatch(/^task succeeded$/m);

    const raw = await sortie(["logs", notes.id, "--json"]);
    const events = raw.stdout.trim().split("\n").map((line) => JSON.parse(line) as { seq: number; type: string });
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    expect(events.map((e) => e.type)).toContain("agent.tool_call");
  });

  it("diff prints bytes that git apply takes on a fresh clone", async () => {
    const result = await sortie(["diff", notes.id]);
    expect(result.code, result.stderr).toBe(0);
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "sortie-cli-apply-"));
    try {
      execFileSync("git", ["clone", "-q", `${server.gitBaseUrl}/acme/widgets.git`, work]);
      execFileSync("git", ["apply", "--index", "-"], { cwd: work, input: result.bytes });
      expect(fs.readFileSync(path.join(work, "NOTES.md"), "utf8")).toContain("> add a NOTES.md");
      expect(execFileSync("git", ["status", "--porcelain"], { cwd: work, encoding: "utf8" }).trim()).toBe("A  NOTES.md");
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  });

  it("cancel stops a long task that logs -f is following; a second cancel exits 1 with the API's message", async () => {
    const created = await sortie(["run", "acme/widgets", scripted([pause(60_000, "long"), { text: "never" }]), "--json"]);
    const { id } = parseTask(created);
    const following = sortie(["logs", "-f", id]);
    await waitForPhase(id, "agent");

    const cancelled = await sortie(["cancel", id, "--json"]);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(parseTask(cancelled).status).toBe("cancelled");

    const followed = await following;
    expect(followed.code).toBe(1);
    expect(followed.stdout).toMatch(/✗ cancelled/);

    const again = await sortie(["cancel", id]);
    const refusal = (await (await api(`/api/tasks/${id}/cancel`, { method: "POST" })).json()) as { error: { code: string; message: string } };
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(`sortie: ${refusal.error.message} (${refusal.error.code})\n`);
  });

  it("logs -f delivers every event exactly once when the connection drops mid-run", async () => {
    const proxy = await startCuttingProxy(new URL(server.url));
    try {
      const created = await sortie(["run", "acme/widgets", scripted([0, 1, 2, 3, 4, 5].map((i) => pause(300, `step-${i}`))), "--json"], { SORTIE_URL: proxy.url });
      const { id } = parseTask(created);
      const followed = await sortie(["logs", "-f", "--json", id], { SORTIE_URL: proxy.url });
      expect(followed.code, followed.stderr).toBe(0);
      expect(followed.stderr).toMatch(/connection lost after event \d+; reconnecting/);

      // The first socket was cut mid-run; the second asked for what came after the last event seen.
      expect(proxy.upgrades.length).toBeGreaterThanOrEqual(2);
      const resumedAfter = Number(new URL(proxy.upgrades[1]!, "http://x").searchParams.get("after"));
      expect(resumedAfter).toBeGreaterThan(0);

      const seen = followed.stdout.trim().split("\n").map((line) => (JSON.parse(line) as { seq: number }).seq);
      const logged = (await (await api(`/api/tasks/${id}/events`)).text()).trim().split("\n").map((line) => (JSON.parse(line) as { seq: number }).seq);
      expect(seen).toEqual(logged.slice(0, seen.length));
      expect(seen).toEqual(seen.map((_, i) => i + 1));
      expect(seen).toContain(resumedAfter + 1);
    } finally {
      await proxy.close();
    }
  });

  it("prefixes each line with its run when a task has several, and winner picks one", async () => {
    const followed = await sortie(["run", "acme/widgets", "add a PAIR.md", "-n", "2", "--follow"]);
    expect(followed.code, followed.stderr).toBe(0);
    expect(followed.stdout).toMatch(/^\[0\] ▸ Write PAIR\.md$/m);
    expect(followed.stdout).toMatch(/^\[1\] ▸ Write PAIR\.md$/m);
    const id = /^([a-z0-9]{19}) /.exec(followed.stdout)![1]!;

    const picked = await sortie(["winner", id, "1", "--json"]);
    expect(picked.code, picked.stderr).toBe(0);
    expect(parseTask(picked).winner?.run).toBe(1);
    const shown = await sortie(["show", id]);
    expect(shown.stdout).toMatch(/^run 0 {2}succeeded/m);
    expect(shown.stdout).toMatch(/^run 1 {2}succeeded.*★ winner$/m);
  });

  it("say sends a follow-up that reopens a finished run", async () => {
    const created = await sortie(["run", "acme/widgets", "add a SAY.md", "--follow", "--json"]);
    const { id } = parseTask(created);
    const said = await sortie(["say", id, "also say hello", "--json"]);
    expect(said.code, said.stderr).toBe(0);
    expect(parseTask(said).status).toBe("running");
    const followed = await sortie(["logs", "-f", id]);
    expect(followed.code, followed.stderr).toBe(0);
    expect(followed.stdout).toContain("» admin: also say hello");
    expect(followed.stdout).toMatch(/^task running \(follow-up\)$/m);
  });

  it("ls lists the tasks, as a table and as JSON", async () => {
    const listed = await sortie(["ls", "--json", "--limit", "100"]);
    expect(listed.code, listed.stderr).toBe(0);
    const page = JSON.parse(listed.stdout) as { tasks: { id: string; status: string }[]; nextCursor: string | null };
    expect(page.tasks.map((t) => t.id)).toContain(notes.id);
    expect(page.tasks.length).toBeGreaterThanOrEqual(6);

    const table = await sortie(["ls", "--status", "succeeded"]);
    expect(table.stdout.split("\n")[0]).toMatch(/^ID\s+STATUS\s+REPO\s+RUNS\s+COST\s+AGE\s+PROMPT$/);
    expect(table.stdout).toMatch(new RegExp(`^${notes.id}\\s+succeeded\\s+acme/widgets\\s+1\\s+\\$0\\.\\d{4}\\s+\\d+[smhd]\\s+add a NOTES\\.md$`, "m"));
    expect(table.stdout).not.toMatch(/cancelled/);
  });

  it("a bad repo exits 1 with the API's message and code", async () => {
    const result = await sortie(["run", "git@github.com:acme/widgets.git", "x"]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(/^sortie: repo must be .*got "git@github\.com:acme\/widgets\.git" \(invalid_repo\)\n$/);
  });

  it("without a token it says where to put one and exits 2", async () => {
    const result = await sortie(["ls"], { SORTIE_TOKEN: undefined });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("no API token");
    expect(result.stderr).toContain("SORTIE_TOKEN");
    expect(result.stderr).toContain(path.join(emptyConfig, "sortie", "config.json"));
  });

  it("reads url and token from $XDG_CONFIG_HOME/sortie/config.json; flags beat it", async () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), "sortie-cli-xdg-"));
    try {
      fs.mkdirSync(path.join(home, "sortie"));
      fs.writeFileSync(path.join(home, "sortie", "config.json"), JSON.stringify({ url: server.url, token: server.token }));
      const env = { XDG_CONFIG_HOME: home, SORTIE_URL: undefined, SORTIE_TOKEN: undefined };
      const listed = await sortie(["ls", "--json", "--limit", "1"], env);
      expect(listed.code, listed.stderr).toBe(0);
      expect(JSON.parse(listed.stdout)).toHaveProperty("tasks");

      const refused = await sortie(["ls", "--token", "wrong"], env);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/\(unauthorized\)\n$/);
    } finally {
      fs.rmSync(home, { recursive: true, force: true });
    }
  });

  it("names the URL it could not reach", async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const result = await sortie(["show", notes.id], { SORTIE_URL: url });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`sortie: could not reach ${url}`);
  });

  it("an unknown command or a missing argument exits 2 with the usage", async () => {
    const unknown = await sortie(["lst"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('sortie: unknown command "lst"');
    expect(unknown.stderr).toContain("usage: sortie <command> [options]");

    const missing = await sortie(["run", "acme/widgets"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("missing <prompt>");

    const help = await sortie(["--help"], { SORTIE_TOKEN: undefined });
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("usage: sortie <command> [options]");
  });

  it("memory lists what a run proposed, and approve and reject decide on it", async () => {
    const learn = { tool: "Bash", input: { command: `printf '%s\\n' '- The CLI test learned this.' '- And this it rejects.' >> "$SORTIE_LEARNINGS_FILE"` } };
    const followed = await sortie(["run", "acme/widgets", scripted([learn, { text: "Learned." }]), "--follow"]);
    expect(followed.code, followed.stderr).toBe(0);
    const id = /^([a-z0-9]{19}) /.exec(followed.stdout)![1]!;
    expect((await sortie(["show", id])).stdout).toMatch(/^learnings {2}2 new, 0 already known · sortie memory acme\/widgets$/m);
    const listed = await sortie(["memory", "acme/widgets", "--status", "proposed"]);
    expect(listed.code, listed.stderr).toBe(0);
    const line = (text: string) => listed.stdout.split("\n").find((l) => l.includes(text)) ?? "";
    expect(line("The CLI test learned this.")).toMatch(/^m[a-z0-9]{15} {2}proposed +seen 1×/);
    const keep = /^(m[a-z0-9]{15})/.exec(line("The CLI test learned this."))![1]!;
    const drop = /^(m[a-z0-9]{15})/.exec(line("And this it rejects."))![1]!;

    const approved = await sortie(["memory", "acme/widgets", "approve", keep, "--json"]);
    expect(approved.code, approved.stderr).toBe(0);
    expect(JSON.parse(approved.stdout)).toMatchObject({ id: keep, status: "approved" });
    const rejected = await sortie(["memory", "acme/widgets", "reject", drop]);
    expect(rejected.code, rejected.stderr).toBe(0);
    expect(rejected.stdout).toContain("rejected");
    const all = JSON.parse((await sortie(["memory", "acme/widgets", "--json"])).stdout) as { entries: { id: string; status: string }[] };
    expect(all.entries.filter((e) => e.id === keep || e.id === drop).map((e) => e.status).sort()).toEqual(["approved", "rejected"]);

    const unknown = await sortie(["memory", "acme/widgets", "approve", "m000000000000000"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("(not_found)");
    const noId = await sortie(["memory", "acme/widgets", "approve"]);
    expect(noId.code).toBe(2);
    expect(noId.stderr).toContain("needs the entry's ID");
  });
});

/**
 * A TCP proxy in front of the dev server that cuts the first WebSocket once
 * an `agent.tool_result` event has gone through it, and records each upgrade
 * request's path. Compression is stripped from the upgrade so frames stay
 * readable.
 */
async function startCuttingProxy(target: URL) {
  const upgrades: string[] = [];
  const sockets = new Set<net.Socket>();
  let cut = false;
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    sockets.add(client).add(upstream);
    let websocket = false;
    client.on("data", (chunk: Buffer) => {
      // An upgrade may come on a kept-alive connection, after plain requests: look at every request head.
      if (!websocket && /^[A-Z]+ \S+ HTTP\/1\.1\r\n/.test(chunk.toString("latin1", 0, 2000))) {
        const head = chunk.toString("latin1");
        if (/^upgrade:\s*websocket/im.test(head)) {
          websocket = true;
          upgrades.push(head.split(" ")[1]!);
          chunk = Buffer.from(head.replace(/^sec-websocket-extensions:.*\r\n/im, ""), "latin1");
        }
      }
      upstream.write(chunk);
    });
    let deflatedFrames = 0;
    upstream.on("data", (chunk: Buffer) => {
      client.write(chunk);
      // The CLI asks for deflated events frames (binary, opcode 2): the socket is cut after the second, mid-run.
      if (websocket && chunk[0] === 0x82) deflatedFrames++;
      if (websocket && !cut && deflatedFrames === 2) {
        cut = true;
        client.destroy();
        upstream.destroy();
      }
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("close", end).on("error", end);
    upstream.on("close", end).on("error", end);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    upgrades,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
