/**
 * The local sandbox host: plays the container's role on a machine with no
 * Docker engine. Each sandbox is a directory of its own (work, home, tmp)
 * under one root; commands run there with only the environment the
 * orchestrator passes in, plus what the container image would set.
 *
 *   node container/local-host.ts            # prints LOCAL_SANDBOX_URL=http://127.0.0.1:<free port>
 *
 * The Worker reaches it over loopback (src/sandbox/local.ts). Every sandbox
 * runs inside walls (container/walls.ts): its own filesystem view, process
 * tree and network namespace, the model keys masked. They are built once per
 * sandbox (and per user of it) and hold a wall server that starts each of its
 * commands (container/wall-env.ts), as a container would. Only Sortie's own
 * bookkeeping commands (`bookkeeping: true`: handing a worktree to its
 * user, ending a user's processes, unmounting) run outside them, as root.
 * `LOCAL_SANDBOX_UNCONFINED=1`, set by hand, runs everything without walls.
 */
import { spawn } from "node:child_process";
import { createReadStream, existsSync, realpathSync } from "node:fs";
import fs from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import type { Duplex, Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { timingSafeEqual, createHash, randomBytes } from "node:crypto";
import { asConfinedUser } from "../src/sandbox/port.ts";
import { parseLocalRequest, type CommandRequest, type LOCAL_HOST_REQUESTS, type LocalHostResponses } from "../src/sandbox/local-protocol.ts";
import { DirectoryLayers, copyTree } from "./layers.ts";
import { OutputLog } from "./output-log.ts";
import { PortBridge, proxyRequest, proxyUpgrade } from "./port-bridge.ts";
import { descendantsOf } from "./processes.ts";
import { screenshotOf } from "./screenshot.ts";
import { WALL_SERVER_COMMAND, WalledEnvironment, WalledProcess } from "./wall-env.ts";
import { openWalls, unconfinedByHand, type Enclosure, type Walls } from "./walls.ts";

/**
 * Where this machine keeps its certificate authorities: passed on, so installs in a sandbox trust what the host
 * trusts. The host's own proxy is not: the walls' proxy goes out through it.
 */
const HOST_NETWORK_ENV = Object.fromEntries(
  ["NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR", "GIT_SSL_CAINFO", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE"]
    .flatMap((name) => (process.env[name] ? [[name, process.env[name]!]] : [])),
);



/** What the host reads of a running command: a child process outside the walls, or one the sandbox's wall server runs inside them. */
interface CommandChild {
  readonly pid?: number | undefined;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  on(event: "close", listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  on(event: "error", listener: (error: Error) => void): this;
  once(event: "close", listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
}

interface HostedProcess {
  child: CommandChild;
  /** A started process's output, on disk (an exec's is collected in memory, capped). */
  output: OutputLog | null;
  done: boolean;
  /** How the host reaches the port the command serves, if it serves one. */
  bridge?: PortBridge;
}

interface HostedSandbox {
  root: string;
  processes: Map<string, HostedProcess>;
  /** Confined users of this sandbox are numbered from here: sandboxes on one host never share a user. */
  uidBase: number;
  /** Hosts its commands reach besides the model endpoints (the git host, the deployment's and the task's egress). */
  allow: string[];
  /** Directories outside it its commands may read (a file:// git base). */
  readable: string[];
  /** Directories outside it its commands may write while a publisher's grant lasts (a file:// remote). */
  writable: Set<string>;
  /** Its walls, built once for each way its commands are walled (by user, analysis or not, directories granted). */
  walled: Map<string, WallsEntry>;
  /** Every set of walls worked out and every wall server started for it, current or left behind: what its end takes down. */
  built: { enclosures: Promise<Enclosure>[]; servers: Promise<WalledEnvironment>[] };
  /** Settles once a spare taken over for it has its name on the host: nothing else happens there before (its walls see it under that name once their `adopting` settles). */
  ready: Promise<void>;
  /** Set as it is taken down: no walls go up for it after that. */
  gone: boolean;
}

interface WallsEntry {
  /** The walls worked out (what the runtime builds, which hosts it lets through): kept for the sandbox's life. */
  enclosure: Promise<Enclosure>;
  /** Its wall server, up inside them; started again after a mount in the sandbox. */
  opening: Promise<WalledEnvironment> | null;
  modelOnly: boolean;
  readable: string[];
  writable: string[];
  /** Whether a policy change left these walls behind: no new command starts in them. */
  stale: boolean;
  /** Layers mounted while its wall server went up, or a spare's new name, being put into its walls: no command starts there before. */
  adopting: Promise<void>;
  /** The sandbox directory the walls were worked out for: a spare's old name, until it is seen under the new one. */
  root: string;
}

export interface LocalHostOptions {
  port?: number;
  /** Directory that holds one subdirectory per sandbox. */
  root?: string;
  /** Bearer token every request must carry. */
  token: string;
  /** Runs commands without walls; by default only when LOCAL_SANDBOX_UNCONFINED=1 is set by hand. */
  unconfined?: boolean;
  /** Lets the walls' proxy put a model key on plain-http requests (a stand-in model on loopback). */
  plaintextModelEndpoints?: boolean;
  /**
   * How many sandboxes are kept with their walls up ahead of need (0, the default: none). The next ones opened take
   * them over (see `takeSpare`), so a task that fans out to that many runs builds no walls while its agents start.
   */
  spares?: number;
}

const ID = /^[a-z0-9][a-z0-9-]{0,62}$/;
/**
 * When the next spare goes up: once the machine's CPUs were at least this idle over one look (every SPARE_LOOK_MS),
 * so that building it does not slow the runs going (an agent's start takes a core), and at the latest after SPARE_WAIT_MS.
 */
const SPARE_IDLE_SHARE = 0.6;
const SPARE_LOOK_MS = 250;
const SPARE_WAIT_MS = 15_000;
/** A request to a port a sandbox's process serves: `/v1/sandboxes/<id>/ports/<port>/<path the app sees>`. */
const PORT_PATH = /^\/v1\/sandboxes\/([a-z0-9][a-z0-9-]{0,62})\/ports\/(\d{1,5})(\/.*)?$/;
/** The browser that takes screenshots of previews. */
const CHROMIUM = process.env.LOCAL_SANDBOX_CHROMIUM || "/usr/bin/chromium";

const EXEC_OUTPUT_CAP = 32 * 1024 * 1024;
/** Bytes of one started process's output kept on disk; the rest is dropped (and the stream says so). */
const PROCESS_OUTPUT_MAX_BYTES = Number(process.env.LOCAL_SANDBOX_OUTPUT_MAX_BYTES) || 4 * 1024 ** 3;
const here = path.dirname(fileURLToPath(import.meta.url));
/** Extra binaries before the package's: load tests put a stand-in agent CLI here. */
const EXTRA_PATH = process.env.LOCAL_SANDBOX_EXTRA_PATH ? process.env.LOCAL_SANDBOX_EXTRA_PATH.split(":").filter(Boolean) : [];
/** Binaries the container image has on PATH: this package's (claude, node 22) first. */
const BIN_PATH = [
  ...EXTRA_PATH,
  // Where the binaries really are: the walls hide the checkout, and a linked node_modules with it.
  path.join(realpathSync(path.resolve(here, "../node_modules")), ".bin"),
  process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
].join(":");

/** Starts the host; resolves once it listens. */
export async function startLocalSandboxHost(options: LocalHostOptions) {
  // A root named by the caller is stable: its snapshots and caches outlive this process, its sandboxes do not.
  const persistent = options.root !== undefined;
  const root = options.root ? path.resolve(options.root) : await fs.mkdtemp(path.join(os.tmpdir(), "sortie-sandboxes-"));
  if (persistent) await reclaim(root);
  // Snapshots and caches sit beside the sandboxes, not inside any one of them.
  const snapshotRoot = `${root}-snapshots`;
  const cacheRoot = `${root}-caches`;
  const outputRoot = `${root}-output`;
  await fs.mkdir(outputRoot, { recursive: true, mode: 0o700 });
  await fs.mkdir(snapshotRoot, { recursive: true });
  await fs.mkdir(cacheRoot, { recursive: true });
  await fs.mkdir(root, { recursive: true });
  // Confined agents run as users of their own: they may pass through (not list) the
  // sandbox root, and reach this package's binaries.
  await fs.chmod(root, 0o711);
  await makeTraversable(path.resolve(here, ".."));
  await makeTraversable(root);
  const layers = await DirectoryLayers.create(`${root}-probe`);
  // This start, and the snapshots an earlier host left: what the Fleet's warm index is checked against once.
  const boot = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  const snapshotsAtStart = (await fs.readdir(snapshotRoot)).filter((name) => /^snap-[a-z0-9-]+$/.test(name));
  const unconfined = options.unconfined ?? unconfinedByHand();
  const walls: Walls | null = unconfined
    ? null
    : await openWalls({ stateRoots: [root, snapshotRoot, cacheRoot], readable: EXTRA_PATH, plaintextModelEndpoints: options.plaintextModelEndpoints });
  const sandboxes = new Map<string, HostedSandbox>();
  let sandboxesMade = 0;
  /** The wall servers that are up (their opening resolved): a mount made now must be put into their walls. */
  const wallsUp = new WeakMap<Promise<WalledEnvironment>, WalledEnvironment>();
  /** Sandboxes kept with their walls up for the next ones opened (LocalHostOptions.spares), and the timer that makes the next. */
  const spares: HostedSandbox[] = [];
  const sparesKept = options.spares ?? 0;
  /** What the sandbox opened last reads (the layers granted it): the spares made next read the same. */
  let spareReadable: string[] = [];
  /** Spares whose walls have been up: one of them no longer up went down, and is no spare. */
  const sparesUpOnce = new WeakSet<HostedSandbox>();
  let spareTimer: NodeJS.Timeout | null = null;
  let bridgesMade = 0;
  /** Fault injection for tests of the orchestrator's retries: the next N sandbox starts fail. */
  let failOpens = 0;
  const expected = createHash("sha256").update(`Bearer ${options.token}`).digest();

  const authorized = (req: http.IncomingMessage) => {
    const given = createHash("sha256").update(req.headers.authorization ?? "").digest();
    return timingSafeEqual(given, expected);
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) send(res, 500, { error: { code: "host_error", message: error instanceof Error ? error.message : String(error) } });
      else res.destroy();
    });
  });
  // A preview's WebSocket (a dev server's hot reload) goes through to its port like its HTTP does.
  server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const served = authorized(req) ? servedPort(req.url ?? "/") : null;
    if (!served) return void socket.end("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
    served.bridge.target().then(
      (target) => proxyUpgrade(req, socket, head, target, served.pathAndQuery),
      () => socket.end("HTTP/1.1 502 Bad Gateway\r\nx-sortie-preview: unreachable\r\ncontent-length: 0\r\n\r\n"),
    );
  });

  /** The live process of a sandbox that serves the port a `/ports/…` URL names, and the path it is asked for. */
  function servedPort(rawUrl: string): { bridge: PortBridge; pathAndQuery: string } | null {
    const url = new URL(rawUrl, "http://localhost");
    const match = PORT_PATH.exec(url.pathname);
    if (!match) return null;
    const bridge = bridgeOf(match[1]!, Number(match[2]));
    return bridge ? { bridge, pathAndQuery: `${match[3] ?? "/"}${url.search}` } : null;
  }

  function bridgeOf(id: string, port: number): PortBridge | null {
    const hosted = [...(sandboxes.get(id)?.processes.values() ?? [])].filter((p) => !p.done && p.bridge?.port === port).at(-1);
    return hosted?.bridge ?? null;
  }

  /** A request body checked against its route's schema (src/sandbox/local-protocol.ts); null once a 400 is sent. */
  async function bodyOf<R extends keyof typeof LOCAL_HOST_REQUESTS>(req: http.IncomingMessage, res: http.ServerResponse, route: R) {
    const parsed = parseLocalRequest(route, await readBody(req));
    if (parsed.ok) return parsed.value;
    send(res, 400, parsed.error);
    return null;
  }

  /** A route's answer, typed by the protocol its client reads. */
  function reply<R extends keyof LocalHostResponses>(res: http.ServerResponse, _route: R, body: LocalHostResponses[R]) {
    return send(res, 200, body);
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (url.pathname === "/healthz") return send(res, 200, { ok: true, sandboxes: sandboxes.size, unconfined, spare: spares.some(isUp), spares: spares.filter(isUp).length });
    if (!authorized(req)) return send(res, 401, { error: { code: "unauthorized", message: "bad or missing token" } });
    if (url.pathname === "/v1/sandboxes" && req.method === "GET") {
      const processes = [...sandboxes.entries()].flatMap(([sandbox, hosted]) =>
        [...hosted.processes.entries()].map(([id, p]) => ({ sandbox, id, done: p.done })),
      );
      return reply(res, "GET /v1/sandboxes", { sandboxes: [...sandboxes.keys()], liveProcesses: processes.filter((p) => !p.done).length, processes });
    }
    if (url.pathname === "/v1/snapshots" && req.method === "GET") return reply(res, "GET /v1/snapshots", { boot, snapshots: snapshotsAtStart });
    const snapshot = /^\/v1\/snapshots\/(snap-[a-z0-9-]+)$/.exec(url.pathname);
    if (snapshot && req.method === "DELETE") {
      // A snapshot a running sandbox has mounted goes when that sandbox does.
      await layers.drop(path.join(snapshotRoot, snapshot[1]!));
      return reply(res, "DELETE /v1/snapshots/:id", { deleted: snapshot[1]! });
    }
    if (PORT_PATH.test(url.pathname)) {
      const served = servedPort(req.url ?? "/");
      if (!served) return send(res, 502, { error: { code: "preview_unreachable", message: "no live process serves that port" } }, { "x-sortie-preview": "unreachable" });
      const target = await served.bridge.target().catch((error: unknown) => error as Error);
      if (target instanceof Error) return send(res, 502, { error: { code: "preview_unreachable", message: target.message } }, { "x-sortie-preview": "unreachable" });
      return proxyRequest(req, res, target, served.pathAndQuery);
    }
    if (url.pathname === "/v1/faults" && req.method === "POST") {
      const body = await bodyOf(req, res, "POST /v1/faults");
      if (!body) return;
      failOpens = body.failOpens;
      return reply(res, "POST /v1/faults", { failOpens });
    }
    const match = /^\/v1\/sandboxes\/([^/]+)(\/.*)?$/.exec(url.pathname);
    if (!match) return send(res, 404, { error: { code: "not_found", message: url.pathname } });
    const id = decodeURIComponent(match[1]!);
    if (!ID.test(id)) return send(res, 400, { error: { code: "bad_id", message: `bad sandbox id ${id}` } });
    const rest = match[2] ?? "";

    if (rest === "" && req.method === "POST") {
      if (failOpens > 0) {
        failOpens -= 1;
        return send(res, 503, { error: { code: "injected_fault", message: "sandbox start failed (injected fault)" } });
      }
      const body = await bodyOf(req, res, "POST /");
      if (!body) return;
      const sandbox = await ensureSandbox(id, body.readable.filter((dir) => path.isAbsolute(dir)));
      // Destroyed while it was being opened: nothing of it stays.
      if (sandboxes.get(id) !== sandbox) return send(res, 404, { error: { code: "no_sandbox", message: `sandbox ${id} was destroyed while it opened` } });
      sandbox.allow = [...new Set([...sandbox.allow, ...body.allow])];
      sandbox.readable = [...new Set([...sandbox.readable, ...body.readable.filter((dir) => path.isAbsolute(dir))])];
      policyChanged(sandbox);
      raiseWalls(sandbox);
      return reply(res, "POST /", { workdir: path.join(sandbox.root, "work"), ...(unconfined ? { unconfined: true as const } : {}) });
    }
    if (rest === "" && req.method === "DELETE") {
      await destroySandbox(id);
      return reply(res, "DELETE /", { destroyed: id });
    }
    const sandbox = sandboxes.get(id);
    if (!sandbox) return send(res, 404, { error: { code: "no_sandbox", message: `no sandbox ${id}` } });
    await sandbox.ready;

    if (rest === "/writable" && (req.method === "POST" || req.method === "DELETE")) {
      // A publisher's push to a local (file://) remote: that directory, for as long as the grant lasts.
      const route = req.method === "POST" ? "POST /writable" : "DELETE /writable";
      const body = await bodyOf(req, res, route);
      if (!body) return;
      const dir = path.resolve(body.dir);
      if (req.method === "POST") sandbox.writable.add(dir);
      else sandbox.writable.delete(dir);
      policyChanged(sandbox);
      return reply(res, route, { writable: [...sandbox.writable] });
    }
    if (rest === "/screenshot" && req.method === "POST") {
      const body = await bodyOf(req, res, "POST /screenshot");
      if (!body) return;
      const bridge = bridgeOf(id, body.port);
      if (!bridge) return send(res, 404, { error: { code: "no_port", message: `no live process of ${id} serves port ${body.port}` } });
      const png = await screenshotOf(await bridge.target(), body.path, { chromium: CHROMIUM });
      res.writeHead(200, { "content-type": "image/png", "content-length": png.length }).end(png);
      return;
    }
    if (rest === "/egress" && req.method === "POST") {
      const body = await bodyOf(req, res, "POST /egress");
      if (!body) return;
      sandbox.allow = [...new Set([...sandbox.allow, ...body.hosts])];
      policyChanged(sandbox);
      return reply(res, "POST /egress", { allow: sandbox.allow });
    }
    if (rest === "/exec" && req.method === "POST") {
      const body = await bodyOf(req, res, "POST /exec");
      if (!body) return;
      if (!body.confine) raiseWalls(sandbox);
      return reply(res, "POST /exec", await execIn(sandbox, body));
    }
    if (rest === "/processes" && req.method === "POST") {
      const body = await bodyOf(req, res, "POST /processes");
      if (!body) return;
      if (!body.confine) raiseWalls(sandbox);
      const processId = `p${sandbox.processes.size + 1}-${Date.now().toString(36)}`;
      const hosted = await startIn(sandbox, body, path.join(outputRoot, `${id}-${processId}.ndjson`));
      if (typeof body.serves === "number" && body.serves > 0 && body.serves < 65_536) {
        // Without walls the command shares the host's network: its port is the host's own.
        hosted.bridge = new PortBridge(walls && !body.bookkeeping ? hosted.child.pid ?? null : null, body.serves, path.join(outputRoot, `port-${++bridgesMade}.sock`));
        hosted.child.once("close", () => hosted.bridge?.close());
      }
      sandbox.processes.set(processId, hosted);
      return reply(res, "POST /processes", { processId });
    }
    const proc = /^\/processes\/([^/]+)(\/output)?$/.exec(rest);
    if (proc) {
      const hosted = sandbox.processes.get(decodeURIComponent(proc[1]!));
      if (!hosted) return send(res, 404, { error: { code: "no_process", message: `no process ${proc[1]}` } });
      if (proc[2] && req.method === "GET" && hosted.output) return streamOutput(hosted.output, Number(url.searchParams.get("skip") ?? 0), req, res);
      if (!proc[2] && req.method === "DELETE") {
        await killTree(hosted);
        return reply(res, "DELETE /processes/:id", { killed: true });
      }
    }
    const cache = /^\/caches\/([A-Za-z0-9._-]{1,128})(\/finish)?$/.exec(rest);
    if (cache && req.method === "POST") {
      // Each call gets a directory of its own (runs sharing a sandbox never share one), layered over the
      // repository's saved cache; the first to finish with a key keeps its cache for later runs.
      const shared = path.join(cacheRoot, cache[1]!);
      if (!cache[2]) {
        const own = path.join(sandbox.root, "cache", `${cache[1]!}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`);
        if (existsSync(shared)) await layered(sandbox, own, layers.layer(id, shared, own, path.join(sandbox.root, ".layers")));
        else await fs.mkdir(own, { recursive: true });
        return reply(res, "POST /caches/:key", { path: own });
      }
      const body = await bodyOf(req, res, "POST /caches/finish");
      if (!body) return;
      const own = insideSandbox(sandbox, body.path);
      if (!own || !own.startsWith(path.join(sandbox.root, "cache") + path.sep)) return send(res, 400, { error: { code: "bad_path", message: "path must be a cache directory of this sandbox" } });
      if (body.keep && !existsSync(shared) && existsSync(own) && !layers.isLayered(own)) {
        // Setup is over: the directory moves into the shared store whole, and is copied only across filesystems.
        const moved = await fs.rename(own, shared).then(() => true, async (error: NodeJS.ErrnoException) => {
          if (error.code !== "EXDEV") return false; // another sandbox saved the key first: its cache stands
          const staging = `${shared}.${process.pid}-${Date.now().toString(36)}`;
          await copyTree(own, staging);
          return fs.rename(staging, shared).then(() => true, async () => (await fs.rm(staging, { recursive: true, force: true }), false));
        });
        if (moved) {
          await fs.rm(own, { recursive: true, force: true });
          return reply(res, "POST /caches/finish", { saved: true });
        }
      }
      await layers.remove(own);
      return reply(res, "POST /caches/finish", { saved: false });
    }
    if (rest === "/snapshots" && req.method === "POST") {
      const body = await bodyOf(req, res, "POST /snapshots");
      if (!body) return;
      const from = insideSandbox(sandbox, body.path);
      if (!from || !existsSync(from)) return send(res, 400, { error: { code: "bad_path", message: "snapshot path must be a directory inside the sandbox" } });
      const snapshotId = `snap-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
      await copyTree(from, path.join(snapshotRoot, snapshotId));
      return reply(res, "POST /snapshots", { snapshotId });
    }
    if (rest === "/restore" && req.method === "POST") {
      const body = await bodyOf(req, res, "POST /restore");
      if (!body) return;
      const to = insideSandbox(sandbox, body.path);
      const from = path.join(snapshotRoot, body.snapshotId);
      if (!to) return send(res, 400, { error: { code: "bad_path", message: "the restore path must be inside the sandbox" } });
      if (!existsSync(from)) return send(res, 404, { error: { code: "no_snapshot", message: `no snapshot ${body.snapshotId}` } });
      const how = await layered(sandbox, to, layers.layer(id, from, to, path.join(sandbox.root, ".layers")));
      return reply(res, "POST /restore", { restored: body.snapshotId, how });
    }
    if (rest === "/files") {
      const file = insideSandbox(sandbox, url.searchParams.get("path") ?? "");
      if (!file) return send(res, 400, { error: { code: "bad_path", message: "path must be inside the sandbox" } });
      if (req.method === "PUT") {
        await fs.mkdir(path.dirname(file), { recursive: true });
        await fs.writeFile(file, await readBody(req));
        return reply(res, "PUT /files", { written: file });
      }
      if (req.method === "GET") {
        if (!existsSync(file)) return send(res, 404, { error: { code: "no_file", message: file } });
        res.writeHead(200, { "content-type": "application/octet-stream" });
        createReadStream(file).pipe(res);
        return;
      }
    }
    return send(res, 404, { error: { code: "not_found", message: `${req.method} ${url.pathname}` } });
  }

  async function ensureSandbox(id: string, readable: string[]): Promise<HostedSandbox> {
    let sandbox = sandboxes.get(id);
    if (!sandbox) {
      sandbox = takeSpare(id, readable) ?? newSandbox(path.join(root, id));
      sandboxes.set(id, sandbox);
    }
    await sandbox.ready;
    return laidOut(sandbox);
  }

  function newSandbox(dir: string): HostedSandbox {
    return { root: dir, processes: new Map(), uidBase: 20000 + 1000 * ++sandboxesMade, allow: [], readable: [], writable: new Set(), walled: new Map(), built: { enclosures: [], servers: [] }, ready: Promise.resolve(), gone: false };
  }

  /** Its directories, made where missing. */
  async function laidOut(sandbox: HostedSandbox): Promise<HostedSandbox> {
    if (sandbox.gone) return sandbox;
    await fs.mkdir(sandbox.root, { recursive: true, mode: 0o711 });
    await fs.mkdir(path.join(sandbox.root, "work"), { recursive: true, mode: 0o711 });
    // Root's own home and temp files are no confined user's business.
    for (const dir of ["home", "tmp"]) await fs.mkdir(path.join(sandbox.root, dir), { recursive: true, mode: 0o700 });
    return sandbox;
  }

  /**
   * A spare (LocalHostOptions.spares), taken over as sandbox `id` when its walls are up and read what this sandbox
   * reads; null otherwise. Its directory is renamed to the sandbox's and put into its walls under that name (they
   * know it by the old one), so the sandbox's first command does not wait for walls to be built. Another spare goes
   * up a moment later.
   */
  function takeSpare(id: string, readable: string[]): HostedSandbox | null {
    dropDeadSpares();
    spareReadable = [...new Set(readable)].sort();
    const up = spares.filter(isUp);
    const to = path.join(root, id);
    // Spares that read other directories than sandboxes now ask for go: those made next read these.
    for (const stale of up.filter((spare) => !readsAsAsked(spare))) dropSpare(stale);
    const taken = up.find((spare) => readsAsAsked(spare) && !existsSync(to));
    if (taken) spares.splice(spares.indexOf(taken), 1);
    makeSpareSoon();
    if (!taken) return null;
    const entries = [...taken.walled.values()];
    taken.ready = fs.rename(taken.root, to).then(
      () => {
        taken.root = to;
        // Put into its walls under the new name while the run's first steps (the snapshot index, the remote's head:
        // none of them walled) go on; a walled command waits for it (wallsOf), the sandbox's answer does not.
        for (const entry of entries) {
          const opening = entry.opening!;
          const adoption = opening.then((walled) => walled.usable && walled.adopt(to, { create: true }), () => false).then((seen) => {
            if (seen) {
              entry.root = to;
              return;
            }
            // Walls that cannot see it under its new name go; new ones, worked out anew, go up at once.
            void opening.then((walled) => walled.retire(), () => undefined);
            entry.stale = true;
            if (entry.opening === opening) entry.opening = null;
            raiseWalls(taken);
          });
          entry.adopting = Promise.all([entry.adopting, adoption]).then(() => undefined, () => undefined);
        }
      },
      () => {
        // Not renamed (a directory by that name came meanwhile): the spare goes, the sandbox is laid out anew.
        for (const opening of taken.built.servers) void opening.then((walled) => walled.close(), () => undefined);
        taken.walled.clear();
        void fs.rm(taken.root, { recursive: true, force: true }).catch(() => undefined);
        taken.root = to;
      },
    );
    return taken;
  }

  function isUp(spare: HostedSandbox): boolean {
    const entries = [...spare.walled.values()];
    return entries.length > 0 && entries.every((entry) => entry.opening && wallsUp.get(entry.opening)?.usable);
  }

  /** Whether a spare reads what sandboxes last asked for. */
  function readsAsAsked(spare: HostedSandbox): boolean {
    return JSON.stringify(spare.readable) === JSON.stringify(spareReadable);
  }

  /** Takes a spare out of the pool and down. */
  function dropSpare(spare: HostedSandbox): void {
    if (spares.includes(spare)) spares.splice(spares.indexOf(spare), 1);
    void tearDown(spare, "").catch(() => undefined);
  }

  /** Spares whose walls went down go, so that others are made in their place. */
  function dropDeadSpares(): void {
    for (const dead of spares.filter((spare) => sparesUpOnce.has(spare) && !isUp(spare))) dropSpare(dead);
  }

  /** Makes the next spare once the machine is idle enough, if fewer than LocalHostOptions.spares are kept; one at a time. */
  function makeSpareSoon(): void {
    dropDeadSpares();
    // A spare is renamed under live walls by mount-into.pl, which needs Linux and root.
    if (!walls || spares.length >= sparesKept || process.platform !== "linux" || process.getuid?.() !== 0 || closing || spareTimer) return;
    // One going up at a time: the next waits for it.
    if (spares.some((spare) => !sparesUpOnce.has(spare))) return;
    const since = Date.now();
    let before = cpuTimes();
    spareTimer = setInterval(() => {
      const now = cpuTimes();
      const idle = (now.idle - before.idle) / Math.max(1, now.total - before.total);
      before = now;
      if (idle < SPARE_IDLE_SHARE && Date.now() - since < SPARE_WAIT_MS) return;
      clearInterval(spareTimer!);
      spareTimer = null;
      if (!walls || closing || spares.length >= sparesKept) return;
      const made = newSandbox(path.join(root, `.spare-${randomBytes(6).toString("hex")}`));
      made.readable = spareReadable;
      spares.push(made);
      made.ready = laidOut(made).then(() => undefined);
      made.ready
        .then(() => wallsOf(made, undefined))
        .then(
          // The next one, once these are up (or this one was taken meanwhile).
          () => {
            sparesUpOnce.add(made);
            // Sandboxes asked for other directories while it went up: it is no use to them.
            if (spares.includes(made) && !readsAsAsked(made)) dropSpare(made);
            makeSpareSoon();
          },
          () => {
            // Walls that would not go up are tried again a while later, not at once; a spare taken down is not.
            if (!made.gone) setTimeout(makeSpareSoon, SPARE_WAIT_MS).unref();
            dropSpare(made);
          },
        );
    }, SPARE_LOOK_MS);
    spareTimer.unref();
  }

  async function destroySandbox(id: string) {
    const sandbox = sandboxes.get(id);
    if (!sandbox) return;
    sandboxes.delete(id);
    await tearDown(sandbox, id);
  }

  async function tearDown(sandbox: HostedSandbox, id: string) {
    sandbox.gone = true;
    await sandbox.ready.catch(() => undefined);
    await Promise.all([...sandbox.processes.values()].map(killTree));
    await Promise.all(sandbox.built.servers.map((opening) => opening.then((walled) => walled.close(), () => undefined)));
    await Promise.all(sandbox.built.enclosures.map((enclosure) => enclosure.then((built) => built.release(), () => undefined)));
    await Promise.all([...sandbox.processes.values()].map((hosted) => hosted.output && fs.rm(hosted.output.file, { force: true })));
    if (id) await layers.release(id);
    await fs.rm(sandbox.root, { recursive: true, force: true });
  }

  function environment(sandbox: HostedSandbox, extra: Record<string, string> = {}): Record<string, string> {
    return {
      PATH: BIN_PATH,
      HOME: path.join(sandbox.root, "home"),
      TMPDIR: path.join(sandbox.root, "tmp"),
      LANG: "C.UTF-8",
      TERM: "dumb",
      // What container/Dockerfile sets for every process in the image.
      IS_SANDBOX: "1",
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
      DISABLE_AUTOUPDATER: "1",
      GIT_AUTHOR_NAME: "Sortie",
      GIT_AUTHOR_EMAIL: "sortie@users.noreply.github.com",
      GIT_COMMITTER_NAME: "Sortie",
      GIT_COMMITTER_EMAIL: "sortie@users.noreply.github.com",
      GIT_TERMINAL_PROMPT: "0",
      SORTIE_UID_BASE: String(sandbox.uidBase),
      // The machine's trust store and proxy, which a container image would carry in its own files.
      ...HOST_NETWORK_ENV,
      ...extra,
    };
  }

  async function spawnIn(sandbox: HostedSandbox, body: CommandRequest): Promise<CommandChild> {
    const cwd = body.cwd ? insideSandbox(sandbox, body.cwd) : path.join(sandbox.root, "work");
    if (!cwd) throw new Error(`cwd ${body.cwd} is outside the sandbox`);
    const detached = (command: string[], env: Record<string, string>) =>
      spawn(command[0]!, command.slice(1), { cwd, env: env as NodeJS.ProcessEnv, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    if (!walls || body.bookkeeping) {
      if (!body.confine) return detached(["bash", "-c", body.command], environment(sandbox, body.env));
      const confined = asConfinedUser(body.command, body.confine, body.env);
      return detached(["bash", "-c", confined.command], environment(sandbox, confined.env));
    }
    const confine = body.confine;
    if (confine) {
      // The confined user's private home, made by root before the user exists in any process.
      await fs.mkdir(confine.home, { recursive: true });
      await fs.chown(confine.home, confine.uid, confine.uid);
      await fs.chmod(confine.home, 0o700);
    }
    const inside = walls.inside(environment(sandbox, { ...body.env, ...(confine ? { HOME: confine.home, TMPDIR: confine.home } : {}) }));
    const walled = await wallsOf(sandbox, confine);
    return walled.run({ command: body.command, cwd, env: inside.env }, inside.unset);
  }

  /**
   * The walls a sandbox's command runs in: one set for each user (a workspace run's own), for analysis runs (the
   * model endpoints alone) and for the directories granted, built the first time a command needs them.
   */
  async function wallsOf(sandbox: HostedSandbox, confine: CommandRequest["confine"]): Promise<WalledEnvironment> {
    const modelOnly = Boolean(confine?.modelOnly);
    const writable = [...sandbox.writable].sort();
    const readable = [...sandbox.readable].sort();
    const key = JSON.stringify([confine?.uid ?? 0, modelOnly, readable, writable]);
    // A spare's new name or a layer being put into walls still in use first: they may turn out to be left behind.
    const prior = sandbox.walled.get(key);
    if (prior && !prior.stale) await prior.adopting;
    let entry = sandbox.walled.get(key);
    if (!entry || entry.stale || entry.root !== sandbox.root) {
      // Walls left behind (by a policy change, or built for a spare's old name) take no new command.
      void entry?.opening?.then((walled) => walled.retire(), () => undefined);
      const enclosure = walls!.enclose(WALL_SERVER_COMMAND, { root: sandbox.root, allow: modelOnly ? [] : sandbox.allow, readable, writable });
      entry = { enclosure, opening: null, modelOnly, readable, writable, stale: false, adopting: Promise.resolve(), root: sandbox.root };
      sandbox.walled.set(key, entry);
      sandbox.built.enclosures.push(enclosure);
      // Walls that cannot be worked out are tried again by the next command.
      enclosure.catch(() => sandbox.walled.get(key) === entry && sandbox.walled.delete(key));
    }
    await entry.adopting;
    const known = entry.opening;
    if (known) {
      const walled = await known.catch(() => null);
      if (walled?.usable) return walled;
      if (entry.opening === known) entry.opening = null;
    }
    if (!entry.opening) {
      if (sandbox.gone) throw new Error("the sandbox is gone");
      const opening = entry.enclosure.then((enclosure) =>
        WalledEnvironment.open(enclosure, { env: { PATH: BIN_PATH, HOME: confine?.home ?? path.join(sandbox.root, "home"), LANG: "C.UTF-8" }, cwd: sandbox.root, uid: confine?.uid }),
      );
      entry.opening = opening;
      opening.then((walled) => wallsUp.set(opening, walled), () => undefined);
      sandbox.built.servers.push(opening);
    }
    return entry.opening;
  }

  /**
   * A layer was mounted in the sandbox at `target`. Walls already up do not see it (their mount namespace is a copy
   * made before it, and mounts do not propagate into it): it is put into theirs too, and walls it cannot be put
   * into go once idle, while new ones go up at once.
   */
  async function layered(sandbox: HostedSandbox, target: string, mounting: Promise<"overlay" | "copy">): Promise<"overlay" | "copy"> {
    const how = await mounting;
    if (how === "overlay") {
      await Promise.all([...sandbox.walled.values()].map((entry) => {
        const opening = entry.opening;
        if (!opening) return undefined;
        // After a spare's new name is in its walls: the layer is mounted under it.
        const adoption = entry.adopting.then(() => opening).then((walled) => walled.usable && walled.adopt(target), () => false).then((seen) => {
          if (seen || entry.opening !== opening) return;
          void opening.then((walled) => walled.retire(), () => undefined);
          entry.opening = null;
          raiseWalls(sandbox);
        });
        entry.adopting = Promise.all([entry.adopting, adoption]).then(() => undefined, () => undefined);
        // Walls still going up run nothing yet: their first command waits for the mount (wallsOf), this answer does not.
        return wallsUp.has(opening) ? adoption : undefined;
      }));
    }
    raiseWalls(sandbox);
    return how;
  }

  /**
   * Builds the sandbox's walls ahead of its first walled command: when it is opened (its clone or restore runs
   * meanwhile), at a command, or when a mount left them behind. Should they fail, the command that needs them opens
   * them again and fails with the reason.
   */
  function raiseWalls(sandbox: HostedSandbox): void {
    if (walls && !sandbox.gone && ![...sandbox.walled.values()].some((entry) => entry.opening)) wallsOf(sandbox, undefined).catch(() => undefined);
  }

  /** The sandbox's hosts or directories changed: its walls let through the new hosts; those granted what is gone go once idle. */
  function policyChanged(sandbox: HostedSandbox): void {
    const readable = JSON.stringify([...sandbox.readable].sort());
    for (const entry of sandbox.walled.values()) {
      entry.stale ||= JSON.stringify(entry.readable) !== readable || entry.writable.some((dir) => !sandbox.writable.has(dir));
      if (entry.stale) void entry.opening?.then((walled) => walled.retire(), () => undefined);
      else if (!entry.modelOnly) void entry.enclosure.then((enclosure) => enclosure.allow(sandbox.allow), () => undefined);
    }
  }

  async function execIn(sandbox: HostedSandbox, body: CommandRequest) {
    const child = await spawnIn(sandbox, body);
    return new Promise<LocalHostResponses["POST /exec"]>((resolve) => {
      const hosted: HostedProcess = { child, output: null, done: false };
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let size = 0;
      let timedOut = false;
      const keep = (into: Buffer[]) => (chunk: Buffer) => {
        size += chunk.length;
        if (size <= EXEC_OUTPUT_CAP) into.push(chunk);
      };
      child.stdout!.on("data", keep(out));
      child.stderr!.on("data", keep(err));
      const timer = body.timeoutMs ? setTimeout(() => { timedOut = true; void killTree(hosted); }, body.timeoutMs) : undefined;
      child.on("error", (error) => err.push(Buffer.from(`sortie: could not start the command: ${error.message}\n`)));
      child.on("close", (code, signal) => {
        clearTimeout(timer);
        hosted.done = true;
        resolve({
          exitCode: code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : -1),
          stdout: Buffer.concat(out).toString("utf8"),
          stderr: Buffer.concat(err).toString("utf8") + (timedOut ? `\ncommand timed out after ${body.timeoutMs} ms` : ""),
          timedOut,
        });
      });
    });
  }

  async function startIn(sandbox: HostedSandbox, body: CommandRequest, outputFile: string): Promise<HostedProcess> {
    const child = await spawnIn(sandbox, body);
    const output = new OutputLog(outputFile, PROCESS_OUTPUT_MAX_BYTES);
    const hosted: HostedProcess = { child, output, done: false };
    output.capture(child.stdout!, "stdout");
    output.capture(child.stderr!, "stderr");
    // A command that cannot start at all ends like one that failed.
    child.on("error", (error) => output.push({ kind: "stderr", data: `sortie: could not start the command: ${error.message}\n` }));
    child.on("close", (code, signal) => {
      hosted.done = true;
      output.push({ kind: "exit", exitCode: code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : -1) });
    });
    return hosted;
  }

  let closing: Promise<void> | null = null;
  return new Promise<{ url: string; port: number; root: string; close: () => Promise<void> }>((resolve) => {
    server.listen(options.port ?? 0, "127.0.0.1", () => {
      const { port } = server.address() as import("node:net").AddressInfo;
      makeSpareSoon();
      resolve({
        url: `http://127.0.0.1:${port}`,
        port,
        root,
        // Once: a second call (a dev server's two ways of stopping at once) waits for the first to have taken everything down.
        close: () =>
          (closing ??= (async () => {
            if (spareTimer) clearInterval(spareTimer);
            const left = spares.splice(0);
            await Promise.all([...sandboxes.keys()].map(destroySandbox).concat(left.map((spare) => tearDown(spare, ""))));
            await walls?.close();
            await fs.rm(outputRoot, { recursive: true, force: true });
            if (!persistent) {
              await fs.rm(snapshotRoot, { recursive: true, force: true });
              await fs.rm(cacheRoot, { recursive: true, force: true });
            }
            server.closeAllConnections();
            await new Promise((done) => server.close(done));
          })()),
      });
    });
  });
}

/** Streams a process's output as NDJSON from item `skip` on, live until it exits; a slow reader is read for no faster than it takes. */
async function streamOutput(output: OutputLog, skip: number, req: http.IncomingMessage, res: http.ServerResponse) {
  res.writeHead(200, { "content-type": "application/x-ndjson" });
  const reader = { closed: false };
  res.on("close", () => {
    reader.closed = true;
    output.wake();
  });
  for await (const chunk of output.read(skip, reader)) {
    if (!res.write(chunk)) await new Promise((drain) => res.once("drain", drain).once("close", drain));
  }
  res.end();
}

/**
 * What an earlier host at `root` left (it stopped, or died by kill -9): its
 * processes are ended, its mounts taken down, its sandboxes and process output deleted (their
 * runs cannot go on: the orchestrator retries them in fresh ones). Snapshots
 * and caches stay; a cache half saved (a staging copy) goes.
 */
export async function reclaim(root: string): Promise<{ processes: number; sandboxes: number }> {
  const stores = [root, `${root}-snapshots`, `${root}-caches`];
  const under = (target: string) => stores.some((store) => target === store || target.startsWith(store + path.sep));
  let processes = 0;
  for (const pid of await fs.readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const cwd = await fs.readlink(`/proc/${pid}/cwd`).catch(() => "");
    if (!cwd || !under(cwd)) continue;
    try {
      process.kill(Number(pid), "SIGKILL");
      processes += 1;
    } catch {
      // Gone meanwhile: nothing to end.
    }
  }
  const mounts = (await fs.readFile("/proc/self/mounts", "utf8").catch(() => "")).split("\n").map((line) => line.split(" ")[1] ?? "").filter((target) => target && under(target));
  for (const target of mounts.sort().reverse()) await unmountLazily(target);
  const left = await fs.readdir(root).catch(() => [] as string[]);
  await fs.rm(root, { recursive: true, force: true });
  // The dead host's process output: no one reads it again.
  await fs.rm(`${root}-output`, { recursive: true, force: true });
  for (const staging of await fs.readdir(`${root}-caches`).catch(() => [] as string[])) {
    if (/\.\d+-[a-z0-9]+$/.test(staging)) await fs.rm(path.join(`${root}-caches`, staging), { recursive: true, force: true });
  }
  return { processes, sandboxes: left.length };
}

/** The machine's CPU time so far, in ms: idle, and all of it. */
function cpuTimes(): { idle: number; total: number } {
  let idle = 0;
  let total = 0;
  for (const cpu of os.cpus()) {
    idle += cpu.times.idle;
    total += cpu.times.user + cpu.times.nice + cpu.times.sys + cpu.times.idle + cpu.times.irq;
  }
  return { idle, total };
}

function unmountLazily(target: string): Promise<void> {
  return new Promise((resolve) => spawn("umount", ["-l", target], { stdio: "ignore" }).on("close", () => resolve()).on("error", () => resolve()));
}

/** Adds search (x, never read) permission for others to `dir` and each directory above it. */
async function makeTraversable(dir: string): Promise<void> {
  for (let at = dir; ; at = path.dirname(at)) {
    const mode = (await fs.stat(at)).mode;
    if (!(mode & 0o001)) await fs.chmod(at, (mode & 0o7777) | 0o001);
    if (path.dirname(at) === at) return;
  }
}

/**
 * Ends a process and everything it started. The walls start a session of
 * their own (bubblewrap's --new-session), outside the process group, so the
 * tree is also found by parentage, before its root goes and it is reparented.
 */
function killTree(hosted: HostedProcess): Promise<void> {
  if (hosted.done) return Promise.resolve();
  const child = hosted.child;
  // Inside the walls, the wall server signals the command's tree in its own pid namespace.
  if (child instanceof WalledProcess) return child.stop();
  if (child.pid === undefined) return Promise.resolve();
  const pid = child.pid;
  // Every process seen below it, kept: a walled command may still be spawning its own when the kill comes,
  // and one that outlives its parent is no longer found under it.
  const tree = new Set(descendantsOf(pid));
  const sweep = (signal: NodeJS.Signals) => {
    signalGroup(pid, signal);
    for (const each of descendantsOf(pid)) tree.add(each);
    for (const each of tree) signalProcess(each, signal);
  };
  return new Promise((resolve) => {
    let force: ReturnType<typeof setInterval> | undefined;
    const first = setTimeout(() => {
      sweep("SIGKILL");
      force = setInterval(() => sweep("SIGKILL"), 1000);
    }, 3000);
    child.once("close", () => {
      clearTimeout(first);
      if (force) clearInterval(force);
      resolve();
    });
    sweep("SIGTERM");
  });
}

function signalProcess(pid: number, signal: NodeJS.Signals) {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals) {
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is already gone: nothing left to stop.
  }
}

function insideSandbox(sandbox: HostedSandbox, target: string): string | null {
  if (!target) return null;
  const resolved = path.resolve(sandbox.root, target);
  return resolved === sandbox.root || resolved.startsWith(sandbox.root + path.sep) ? resolved : null;
}

async function readBody(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { "content-type": "application/json", ...headers }).end(JSON.stringify(body));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const token = process.env.LOCAL_SANDBOX_TOKEN;
  if (!token) {
    console.error("LOCAL_SANDBOX_TOKEN must be set");
    process.exit(2);
  }
  const host = await startLocalSandboxHost({ token, port: Number(process.env.LOCAL_SANDBOX_PORT ?? 0), root: process.env.LOCAL_SANDBOX_ROOT });
  console.log(`LOCAL_SANDBOX_URL=${host.url}`);
  console.log(`sandboxes live under ${host.root}`);
  const stop = () => host.close().then(() => process.exit(0));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
