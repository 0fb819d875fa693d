/**
 * The walls of the local sandbox host seen from outside: a model key masked
 * inside and put back on the way out, a port space per sandbox, and a host
 * that starts again at the same root reclaiming what the earlier one left
 * while keeping its snapshots and caches.
 */
import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLocalSandboxHost } from "../../container/local-host.ts";
import { descendantsBelow } from "../../container/processes.ts";
import { missingForWalls } from "../../container/walls.ts";
import { LocalSandboxPort } from "../../src/sandbox/local.ts";
import type { ProcessOutput, Sandbox } from "../../src/sandbox/port.ts";

const TOKEN = `walls-${randomUUID()}`;
const REAL_KEY = `sk-ant-real-${randomUUID()}`;
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "sortie-walls-state-"));
const root = path.join(stateDir, "sandboxes");
let model: http.Server;
let modelUrl = "";
const seenKeys: string[] = [];
/** Each request the model host got: its path and the key it carried. */
const modelRequests: string[] = [];

beforeAll(async () => {
  model = http.createServer((req, res) => {
    seenKeys.push(String(req.headers["x-api-key"] ?? ""));
    modelRequests.push(`${req.url} ${req.headers["x-api-key"] ?? ""}`);
    res.end("model answered");
  });
  await new Promise<void>((resolve) => model.listen(0, "127.0.0.1", resolve));
  modelUrl = `http://127.0.0.1:${(model.address() as import("node:net").AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => model.close(resolve));
  fs.rmSync(stateDir, { recursive: true, force: true });
});

/** The host's helper that puts mounts into live walls (container/mount-into.pl --serve), as its command line holds it. */
const MOUNT_HELPER = "mount-into.pl\0--serve";

/** The processes below this one whose command line (its arguments joined by NULs) holds `text`. */
function childrenRunning(text: string): number[] {
  return descendantsBelow(process.pid).filter((pid) => {
    try {
      return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(text);
    } catch {
      return false; // ended meanwhile
    }
  });
}

/** The wall servers (container/wall-server.mjs) whose sandbox holds `workdir`, by pid, as the host sees them. */
function wallServersIn(workdir: string): number[] {
  const sandboxRoot = path.dirname(workdir);
  return fs.readdirSync("/proc").filter((pid) => /^\d+$/.test(pid)).flatMap((pid) => {
    try {
      const command = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
      return command.includes("wall-server.mjs") && !command.includes("bash") && fs.readlinkSync(`/proc/${pid}/cwd`) === sandboxRoot ? [Number(pid)] : [];
    } catch {
      return []; // ended meanwhile
    }
  });
}

async function untilLine(sandbox: Sandbox, processId: string, pattern: RegExp): Promise<string> {
  let text = "";
  for await (const output of sandbox.streamProcess(processId) as AsyncIterable<ProcessOutput>) {
    if (output.kind === "exit") break;
    text += output.data;
    if (pattern.test(text)) break;
  }
  return text;
}

/** A host at `spareRoot` keeping `count` spares, once they are up (each goes up when the machine is idle enough, at the latest after 15 s). */
async function hostWithSpareUp(spareRoot: string, count = 1) {
  const host = await startLocalSandboxHost({ token: TOKEN, root: spareRoot, spares: count });
  const health = async () => (await (await fetch(`${host.url}/healthz`)).json()) as { spare: boolean; spares: number };
  const spareUp = async () => (await health()).spare;
  try {
    await expect.poll(async () => (await health()).spares, { timeout: 30_000 * count, interval: 100 }).toBe(count);
  } catch (error) {
    await host.close();
    throw error;
  }
  return { host, spareUp, sparesUp: async () => (await health()).spares };
}

/** The wall servers of the spares under `spareRoot`, by pid. */
function spareServers(spareRoot: string): number[] {
  return fs.readdirSync(spareRoot).filter((name) => name.startsWith(".spare-")).flatMap((name) => wallServersIn(path.join(spareRoot, name, "work")));
}

describe("the local host's walls", () => {
  it("hand the agent a sentinel for its model key and put the real key on the request to the model host", async () => {
    const host = await startLocalSandboxHost({ token: TOKEN, root, plaintextModelEndpoints: true });
    try {
      const sandbox = await new LocalSandboxPort(host.url, TOKEN).open(`k-${randomUUID().slice(0, 8)}`);
      const result = await sandbox.exec('curl -s -H "x-api-key: $ANTHROPIC_API_KEY" "$ANTHROPIC_BASE_URL/v1/messages"; echo; echo "inside=$ANTHROPIC_API_KEY"', {
        env: { ANTHROPIC_API_KEY: REAL_KEY, ANTHROPIC_BASE_URL: modelUrl },
      });
      expect(result.stdout).toContain("model answered");
      expect(result.stdout).not.toContain(REAL_KEY);
      expect(result.stdout).toMatch(/inside=\S+/);
      expect(seenKeys).toContain(REAL_KEY);
      await sandbox.destroy();
    } finally {
      await host.close();
    }
  });

  it("send Node's own fetch, http and https through the proxy once a process uses them, and not before", async () => {
    const host = await startLocalSandboxHost({ token: TOKEN, root, plaintextModelEndpoints: true });
    let unnamedAsked = 0;
    const unnamed = http.createServer((req, res) => res.end(`unnamed answered ${++unnamedAsked}`));
    await new Promise<void>((resolve) => unnamed.listen(0, "127.0.0.1", resolve));
    const unnamedPort = (unnamed.address() as import("node:net").AddressInfo).port;
    try {
      const sandbox = await new LocalSandboxPort(host.url, TOKEN).open(`p-${randomUUID().slice(0, 8)}`);
      const probe = [
        "import http from 'node:http';",
        "import { createRequire } from 'node:module';",
        // Importing node:http loads Node's undici; the proxy agent is built only when a request needs it.
        "const built = () => Object.keys(createRequire(import.meta.url).cache).some((file) => file.endsWith('env-http-proxy-agent.js'));",
        "const lazy = !built();",
        "const base = process.env.ANTHROPIC_BASE_URL, headers = { 'x-api-key': process.env.ANTHROPIC_API_KEY };",
        "const viaFetch = await fetch(base + '/fetch', { headers }).then((r) => r.text(), (e) => 'failed ' + e.cause?.code);",
        "const viaHttp = await new Promise((done) => http.get(base + '/esm-http', { headers }, (r) => { let body = ''; r.on('data', (c) => body += c).on('end', () => done(body)); }).on('error', (e) => done('failed ' + e.code)));",
        "const unnamed = await fetch(process.env.UNNAMED).then((r) => 'answered ' + r.status, (e) => 'failed');",
        "console.log(JSON.stringify({ lazy, built: built(), viaFetch, viaHttp, unnamed }));",
      ].join("\n");
      const builtin = "process.getBuiltinModule('node:http').get(process.env.ANTHROPIC_BASE_URL + '/builtin-http', { headers: { 'x-api-key': process.env.ANTHROPIC_API_KEY } }, (r) => r.resume())";
      const cjs = "const https = require('https'); require('http').get(process.env.ANTHROPIC_BASE_URL + '/cjs-http', { headers: { 'x-api-key': process.env.ANTHROPIC_API_KEY } }, (r) => r.resume().on('end', () => " +
        "https.get(process.env.UNNAMED.replace('http:', 'https:'), () => console.log('https answered')).on('error', (e) => console.log('https ' + e.code))))";
      const env = { ANTHROPIC_API_KEY: REAL_KEY, ANTHROPIC_BASE_URL: modelUrl, UNNAMED: `http://127.0.0.1:${unnamedPort}/` };
      const result = await sandbox.exec(`cat > "$TMPDIR/probe.mjs" <<'EOF'\n${probe}\nEOF\nnode -p "process.moduleLoadList.some((name) => name.includes('undici'))" && node "$TMPDIR/probe.mjs" && node -e "$CJS" && node -e "$BUILTIN" && NODE_OPTIONS=--max-old-space-size=256 node -e "$OVERRIDE" && NODE_OPTIONS=--max-old-space-size=256 node -p "process.env.NODE_OPTIONS" && env -u SORTIE_NODE node -p 42`, {
        env: { ...env, CJS: cjs, BUILTIN: builtin, OVERRIDE: builtin.replace("/builtin-http", "/own-node-options") },
      });
      expect(result.exitCode, result.stderr).toBe(0);
      const [started, esm, https, ownOptions, cleared] = result.stdout.trim().split("\n");
      // The command's own NODE_OPTIONS stay, with the preload after them; a node whose environment lost SORTIE_NODE still runs.
      expect(ownOptions).toMatch(/^--max-old-space-size=256 --require ".*node-proxy\.cjs"$/);
      expect(cleared).toBe("42");
      // A start alone loads no fetch client at all.
      expect(started).toBe("false");
      expect(JSON.parse(esm!)).toEqual({ lazy: true, built: true, viaFetch: "model answered", viaHttp: "model answered", unnamed: "failed" });
      // Refused by the proxy (a direct attempt would find nothing listening in the sandbox's own network).
      expect(https).toBe("https ERR_PROXY_TUNNEL");
      expect(unnamedAsked).toBe(0);
      // fetch reaches the model host through a tunnel (as under NODE_USE_ENV_PROXY): on plain http the proxy does not read it.
      expect(modelRequests.some((request) => request.startsWith("/fetch "))).toBe(true);
      // The last with NODE_OPTIONS of its own: the sandbox's node puts the preload back.
      for (const path of ["/esm-http", "/cjs-http", "/builtin-http", "/own-node-options"]) expect(modelRequests).toContain(`${path} ${REAL_KEY}`);
      await sandbox.destroy();
    } finally {
      await new Promise((resolve) => unnamed.close(resolve));
      await host.close();
    }
  });

  it("relay to the proxy with Nagle off on every TCP leg, on the host and inside the sandbox", async () => {
    const host = await startLocalSandboxHost({ token: TOKEN, root, plaintextModelEndpoints: true });
    try {
      const sandbox = await new LocalSandboxPort(host.url, TOKEN).open(`n-${randomUUID().slice(0, 8)}`);
      // Without TCP_NODELAY a request written in pieces waits for a delayed ACK (40 ms on loopback) on each model turn.
      const relays = (listing: string) => listing.split("\n").filter((line) => /^socat .*(TCP|UNIX)/.test(line));
      const inside = relays((await sandbox.exec("for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done")).stdout);
      expect(inside.length).toBeGreaterThan(0);
      for (const relay of inside) expect(relay).toMatch(/TCP[46]?-LISTEN:\S*,nodelay /);
      const outside = relays(fs.readdirSync("/proc").filter((pid) => /^\d+$/.test(pid)).map((pid) => {
        try {
          return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
        } catch {
          return ""; // ended meanwhile
        }
      }).join("\n")).filter((relay) => /UNIX-LISTEN:\S*claude-(http|socks)-/.test(relay));
      expect(outside.length).toBeGreaterThan(0);
      for (const relay of outside) expect(relay).toMatch(/ TCP:\S*,nodelay/);
      await sandbox.destroy();
    } finally {
      await host.close();
    }
  });

  it("give every sandbox a port space of its own: two servers on 3000 at once", async () => {
    const host = await startLocalSandboxHost({ token: TOKEN, root });
    try {
      const port = new LocalSandboxPort(host.url, TOKEN);
      const server = `node -e "require('http').createServer((q, s) => s.end('mine')).listen(3000, '127.0.0.1', () => console.log('listening'))"`;
      const [a, b] = await Promise.all([port.open(`pa-${randomUUID().slice(0, 8)}`), port.open(`pb-${randomUUID().slice(0, 8)}`)]);
      const started = await Promise.all([a, b].map(async (sandbox) => untilLine(sandbox, (await sandbox.startProcess(server)).processId, /listening|EADDRINUSE/)));
      expect(started).toEqual([expect.stringContaining("listening"), expect.stringContaining("listening")]);
      await Promise.all([a.destroy(), b.destroy()]);
    } finally {
      await host.close();
    }
  });

  it("are built once for a sandbox, like a container: what one command serves, the next reaches on its loopback, and no other sandbox does", async () => {
    const host = await startLocalSandboxHost({ token: TOKEN, root });
    try {
      const port = new LocalSandboxPort(host.url, TOKEN);
      const [a, b] = await Promise.all([port.open(`ca-${randomUUID().slice(0, 8)}`), port.open(`cb-${randomUUID().slice(0, 8)}`)]);
      const server = `node -e "require('http').createServer((q, s) => s.end('served in a')).listen(3000, '127.0.0.1', () => console.log('listening'))"`;
      expect(await untilLine(a, (await a.startProcess(server)).processId, /listening/)).toContain("listening");
      const fetch3000 = "curl -s --noproxy '*' --max-time 5 http://127.0.0.1:3000/; echo \" curl=$?\"";
      expect((await a.exec(fetch3000)).stdout).toContain("served in a curl=0");
      expect((await b.exec(fetch3000)).stdout).toMatch(/^ curl=(7|28)/);
      for (let i = 0; i < 3; i++) expect((await a.exec("true")).exitCode).toBe(0);
      // One wall server for each sandbox, however many commands it ran.
      expect(wallServersIn(a.workdir)).toHaveLength(1);
      expect(wallServersIn(b.workdir)).toHaveLength(1);
      await Promise.all([a.destroy(), b.destroy()]);
      expect(wallServersIn(a.workdir)).toEqual([]);
    } finally {
      await host.close();
    }
  });

  it("see a snapshot restored while they are up, and a command running meanwhile sees it too, in the same walls", async () => {
    const host = await startLocalSandboxHost({ token: TOKEN, root });
    try {
      const port = new LocalSandboxPort(host.url, TOKEN);
      const source = await port.open(`ra-${randomUUID().slice(0, 8)}`);
      await source.exec(`mkdir -p ${source.workdir}/repo && echo from-the-snapshot > ${source.workdir}/repo/kept.txt`);
      const snapshot = await source.snapshot(`${source.workdir}/repo`);
      expect(snapshot).toBeTruthy();
      const sandbox = await port.open(`rb-${randomUUID().slice(0, 8)}`);
      expect((await sandbox.exec("true")).exitCode).toBe(0);
      const [walls] = wallServersIn(sandbox.workdir);
      expect(walls).toBeDefined();
      // A command already running in the walls when the layer is mounted.
      const watcher = await sandbox.startProcess(`until [ -f ${sandbox.workdir}/repo/kept.txt ]; do sleep 0.05; done; cat ${sandbox.workdir}/repo/kept.txt`);
      await sandbox.restore(snapshot!, `${sandbox.workdir}/repo`);
      expect(await untilLine(sandbox, watcher.processId, /from-the-snapshot/)).toContain("from-the-snapshot");
      const mounted = `grep " ${sandbox.workdir}/repo " /proc/self/mountinfo`;
      const after = await sandbox.exec(`cat repo/kept.txt && echo mine > repo/new.txt && ${mounted} | wc -l && ${mounted} | grep -c nosuid,nodev`, { cwd: sandbox.workdir });
      // One mount there, as the walls' own are: no setuid, no devices.
      expect(after.stdout).toMatch(/^from-the-snapshot\n1\n1\n$/);
      // The same walls, and one overlay seen from both sides: what the command wrote, the host reads.
      expect(wallServersIn(sandbox.workdir)).toEqual([walls]);
      expect(fs.readFileSync(path.join(sandbox.workdir, "repo", "new.txt"), "utf8")).toBe("mine\n");
      // The host's one helper that puts mounts into walls; should it go, the next mount starts another.
      const helpers = () => childrenRunning(MOUNT_HELPER);
      const [helper, ...more] = helpers();
      expect(helper).toBeDefined();
      expect(more).toEqual([]);
      process.kill(helper!, "SIGKILL");
      await expect.poll(() => helpers().includes(helper!), { timeout: 5000, interval: 50 }).toBe(false);
      await sandbox.restore(snapshot!, `${sandbox.workdir}/again`);
      expect((await sandbox.exec("cat again/kept.txt", { cwd: sandbox.workdir })).stdout).toBe("from-the-snapshot\n");
      expect(wallServersIn(sandbox.workdir)).toEqual([walls]);
      expect(helpers()).toHaveLength(1);
      await Promise.all([source.destroy(), sandbox.destroy()]);
    } finally {
      await host.close();
    }
  });

  it("that go down under a command end it as failed, and the next command gets walls of its own", async () => {
    const host = await startLocalSandboxHost({ token: TOKEN, root });
    try {
      const sandbox = await new LocalSandboxPort(host.url, TOKEN).open(`cd-${randomUUID().slice(0, 8)}`);
      const { processId } = await sandbox.startProcess("echo started; sleep 30");
      expect(await untilLine(sandbox, processId, /started/)).toContain("started");
      const [server] = wallServersIn(sandbox.workdir);
      process.kill(server!, "SIGKILL");
      let exit: number | undefined;
      let said = "";
      for await (const output of sandbox.streamProcess(processId) as AsyncIterable<ProcessOutput>) {
        if (output.kind === "exit") exit = output.exitCode;
        else said += output.data;
      }
      expect(exit).not.toBe(0);
      expect(said).toContain("walls exited");
      expect(await sandbox.exec("echo again")).toMatchObject({ exitCode: 0, stdout: "again\n" });
      expect(wallServersIn(sandbox.workdir)).toHaveLength(1);
      await sandbox.destroy();
    } finally {
      await host.close();
    }
  });

  it("kept up as a spare, are taken over by the next sandbox opened: under its own name, with its files alone", async () => {
    const spareRoot = path.join(stateDir, "spare-host");
    const { host } = await hostWithSpareUp(spareRoot);
    try {
      const [server, ...more] = fs.readdirSync(spareRoot).flatMap((name) => wallServersIn(path.join(spareRoot, name, "work")));
      expect(server).toBeDefined();
      expect(more).toEqual([]);
      const [spareName] = fs.readdirSync(spareRoot);
      const port = new LocalSandboxPort(host.url, TOKEN);
      const id = `sp-${randomUUID().slice(0, 8)}`;
      // The sandbox is answered once renamed, before its walls know the new name: held up here, with the helper that tells them.
      const [helper] = childrenRunning(MOUNT_HELPER);
      expect(helper).toBeDefined();
      process.kill(helper!, "SIGSTOP");
      let sandbox: Sandbox;
      let restored: Promise<void>;
      try {
        sandbox = await port.open(id);
        expect(sandbox.workdir).toBe(path.join(spareRoot, id, "work"));
        // Renamed, not copied: the spare's directory is the sandbox's (the next spare may be going up beside it).
        expect(fs.readdirSync(spareRoot)).toContain(id);
        expect(fs.readdirSync(spareRoot)).not.toContain(spareName);
        // A file written and saved on the host meanwhile; its restore waits for the name to be in the walls.
        await sandbox.writeFile(`${sandbox.workdir}/early.txt`, "early\n");
        const early = await sandbox.snapshot(sandbox.workdir);
        restored = sandbox.restore(early!, `${sandbox.workdir}/early`);
        const first = await Promise.race([restored.then(() => "restored"), new Promise((resolve) => setTimeout(() => resolve("waiting"), 300))]);
        expect(first).toBe("waiting");
      } finally {
        process.kill(helper!, "SIGCONT");
      }
      await restored;
      const own = await sandbox.exec(`pwd && cat early/early.txt && echo mine > own.txt && ls ${spareRoot}`);
      expect(own).toMatchObject({ exitCode: 0, stdout: `${sandbox.workdir}\nearly\n${id}\n` });
      expect(fs.readFileSync(path.join(sandbox.workdir, "own.txt"), "utf8")).toBe("mine\n");
      // The spare's own walls, kept: they see the sandbox under its new name.
      expect(process.kill(server!, 0)).toBe(true);
      expect(fs.statSync(`/proc/${server}/root${sandbox.workdir}/own.txt`).isFile()).toBe(true);
      expect(fs.readFileSync(`/proc/${server}/root${sandbox.workdir}/early/early.txt`, "utf8")).toBe("early\n");
      // A second sandbox opened at once gets walls of its own, and neither reads the other.
      const other = await port.open(`${id}-b`);
      await other.exec("echo theirs > theirs.txt");
      expect((await sandbox.exec(`cat ${other.workdir}/theirs.txt`)).exitCode).not.toBe(0);
      expect((await other.exec(`cat ${sandbox.workdir}/own.txt`)).exitCode).not.toBe(0);
      // A snapshot restored into it is seen there too.
      const snapshot = await other.snapshot(other.workdir);
      await sandbox.restore(snapshot!, `${sandbox.workdir}/restored`);
      expect((await sandbox.exec("cat restored/theirs.txt")).stdout).toBe("theirs\n");
      await Promise.all([sandbox.destroy(), other.destroy()]);
    } finally {
      await host.close();
    }
    // The next spare, if it went up meanwhile, goes with the host.
    expect(fs.readdirSync(spareRoot)).toEqual([]);
  }, 60_000);

  it("kept up as spares, are taken by as many sandboxes opened at once; spares reading other directories go, and the next read the new ones", async () => {
    const spareRoot = path.join(stateDir, "spare-pool");
    const { host, sparesUp } = await hostWithSpareUp(spareRoot, 2);
    try {
      const servers = spareServers(spareRoot);
      expect(servers).toHaveLength(2);
      const port = new LocalSandboxPort(host.url, TOKEN);
      const id = `pool-${randomUUID().slice(0, 8)}`;
      const both = await Promise.all([port.open(`${id}-a`), port.open(`${id}-b`)]);
      for (const sandbox of both) expect(await sandbox.exec("pwd && echo here > marker")).toMatchObject({ exitCode: 0, stdout: `${sandbox.workdir}\n` });
      // No walls built for them: each runs in a spare's, which sees it under its new name.
      const runsIn = (sandbox: Sandbox, among: number[]) => among.filter((pid) => fs.existsSync(`/proc/${pid}/root${sandbox.workdir}/marker`));
      for (const sandbox of both) expect(wallServersIn(sandbox.workdir)).toEqual([]);
      expect(both.flatMap((sandbox) => runsIn(sandbox, servers)).sort()).toEqual([...servers].sort());

      // Sandboxes that now read a directory more: the spares made for the others go, and new ones read it.
      await expect.poll(sparesUp, { timeout: 60_000, interval: 100 }).toBe(2);
      const before = spareServers(spareRoot);
      const layer = fs.mkdtempSync(path.join(stateDir, "granted-"));
      fs.writeFileSync(path.join(layer, "granted.txt"), "granted\n");
      const reading = new LocalSandboxPort(host.url, TOKEN, { allow: [], readable: [layer] });
      const first = await reading.open(`${id}-c`);
      expect((await first.exec(`cat ${layer}/granted.txt`)).stdout).toBe("granted\n");
      expect(wallServersIn(first.workdir)).toHaveLength(1);
      for (const pid of before) await expect.poll(() => fs.existsSync(`/proc/${pid}`), { timeout: 10_000, interval: 50 }).toBe(false);
      await expect.poll(sparesUp, { timeout: 60_000, interval: 100 }).toBe(2);
      const made = spareServers(spareRoot);
      const second = await reading.open(`${id}-d`);
      expect((await second.exec(`cat ${layer}/granted.txt && echo here > marker`)).stdout).toBe("granted\n");
      expect(runsIn(second, made)).toHaveLength(1);
      await Promise.all([...both, first, second].map((sandbox) => sandbox.destroy()));
    } finally {
      await host.close();
    }
    expect(fs.readdirSync(spareRoot)).toEqual([]);
  }, 240_000);

  it("kept up as a spare and gone down, are not taken over: the next sandbox gets walls of its own", async () => {
    const spareRoot = path.join(stateDir, "spare-down");
    const { host, spareUp } = await hostWithSpareUp(spareRoot);
    try {
      const [server] = fs.readdirSync(spareRoot).flatMap((name) => wallServersIn(path.join(spareRoot, name, "work")));
      process.kill(server!, "SIGKILL");
      await expect.poll(spareUp, { timeout: 5000, interval: 50 }).toBe(false);
      const sandbox = await new LocalSandboxPort(host.url, TOKEN).open(`sd-${randomUUID().slice(0, 8)}`);
      expect(await sandbox.exec("pwd")).toMatchObject({ exitCode: 0, stdout: `${sandbox.workdir}\n` });
      expect(wallServersIn(sandbox.workdir)).toHaveLength(1);
      // The spare that went down is no spare: another goes up in its place.
      await expect.poll(spareUp, { timeout: 30_000, interval: 100 }).toBe(true);
      await sandbox.destroy();
    } finally {
      await host.close();
    }
  }, 60_000);

  it("started again at the same root, reclaim what the earlier host left and keep its snapshots and caches", async () => {
    const first = await startLocalSandboxHost({ token: TOKEN, root });
    const port = new LocalSandboxPort(first.url, TOKEN);
    const id = `r-${randomUUID().slice(0, 8)}`;
    const sandbox = await port.open(id);
    await sandbox.exec('mkdir -p warm && echo kept > warm/file');
    const snapshot = await sandbox.snapshot(`${sandbox.workdir}/warm`);
    const cache = (await sandbox.cacheDir("deps"))!;
    await sandbox.exec(`echo cached > "${cache}/entry"`);
    await sandbox.finishCache("deps", cache, true);
    await sandbox.startProcess("sleep 600");
    // The first host "dies": it stops answering and its processes and files stay, as after kill -9.
    const second = await startLocalSandboxHost({ token: TOKEN, root });
    try {
      expect(fs.existsSync(path.join(root, id))).toBe(false);
      const left = () => fs.readdirSync("/proc").filter((pid) => /^\d+$/.test(pid)).filter((pid) => {
        try {
          return fs.readlinkSync(`/proc/${pid}/cwd`).startsWith(root + path.sep);
        } catch {
          return false;
        }
      });
      // Killed at start; gone once the kernel has reaped them.
      await expect.poll(left, { timeout: 10_000 }).toEqual([]);
      const again = await new LocalSandboxPort(second.url, TOKEN).open(`${id}-2`);
      await again.restore(snapshot!, `${again.workdir}/warm`);
      expect((await again.exec("cat warm/file")).stdout.trim()).toBe("kept");
      const warmCache = (await again.cacheDir("deps"))!;
      expect((await again.exec(`cat "${warmCache}/entry"`)).stdout.trim()).toBe("cached");
      await again.destroy();
    } finally {
      await second.close();
      // The first host "died": its close has nothing left to wait for, and is not waited on for long.
      await Promise.race([first.close().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 5000))]);
    }
    // A stable root keeps its stores after a clean stop too.
    expect(fs.existsSync(path.join(`${root}-snapshots`, snapshot!))).toBe(true);
  });
});

describe("no silent downgrade", () => {
  it("names the system packages the walls need when they are missing", () => {
    expect(missingForWalls()).toEqual([]);
    const saved = process.env.PATH;
    process.env.PATH = "/nonexistent";
    try {
      expect(missingForWalls().join("; ")).toMatch(/bwrap \(apt-get install bubblewrap\).*socat \(apt-get install socat\).*rg \(apt-get install ripgrep\)/);
    } finally {
      process.env.PATH = saved;
    }
  });

  it("refuse a spare count that is not a whole number from 0 to 64, before anything starts", () => {
    for (const given of ["abc", "2.5", "-1", "65", "0x2", " 3"]) {
      const run = spawnSync(process.execPath, ["scripts/dev.ts"], { cwd: path.resolve(import.meta.dirname, "../.."), env: { ...process.env, LOCAL_SANDBOX_SPARES: given }, encoding: "utf8", timeout: 20_000 });
      expect(run.status).toBe(1);
      expect(run.stderr).toContain(`LOCAL_SANDBOX_SPARES must be a whole number from 0 to 64 (the sandboxes kept ready), not "${given}"`);
      expect(run.stdout).toBe("");
    }
  });

  it("says so on every sandbox of a host started unconfined, and runs its commands without walls", async () => {
    const host = await startLocalSandboxHost({ token: TOKEN, unconfined: true });
    const mark = path.join(os.tmpdir(), `sortie-unconfined-${randomUUID().slice(0, 8)}`);
    try {
      const sandbox = await new LocalSandboxPort(host.url, TOKEN).open(`u-${randomUUID().slice(0, 8)}`);
      expect(sandbox.unconfined).toBe(true);
      expect((await sandbox.exec(`echo x > ${mark}`)).exitCode).toBe(0);
      expect(fs.existsSync(mark)).toBe(true);
      await sandbox.destroy();
    } finally {
      fs.rmSync(mark, { force: true });
      await host.close();
    }
  });
});
