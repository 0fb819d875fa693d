/**
 * One sandbox's walls, built once and kept up like a container: a wall
 * server (container/wall-server.mjs) runs inside them and starts each of the
 * sandbox's commands, so a command costs a process start, not a new set of
 * namespaces, a seccomp helper and a proxy bridge. Every command of a
 * sandbox sees the same filesystem view, pid and network namespace (a dev
 * server one command starts answers the next on its loopback), as in a
 * container.
 *
 *   const enclosure = await walls.enclose(WALL_SERVER_COMMAND, { root, allow: [] });
 *   const walled = await WalledEnvironment.open(enclosure, { env, cwd: root });
 *   const proc = walled.run({ command: "git diff", cwd, env });
 *   proc.stdout.on("data", …); proc.once("close", (code, signal) => …); await proc.stop();
 */
import { spawn, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { PassThrough } from "node:stream";
import { descendantsBelow } from "./processes.ts";
import type { Enclosure } from "./walls.ts";
import { WALL_SERVER } from "./walls.ts";

/** What to wall in for a sandbox: its wall server. */
export const WALL_SERVER_COMMAND = `exec node ${WALL_SERVER}`;

/** Puts a mount made on the host into the walls' mount namespace (see the script). */
const MOUNT_INTO = path.join(path.dirname(WALL_SERVER), "mount-into.pl");

/** How long the walls may take to come up before the sandbox's command fails. */
const OPEN_TIMEOUT_MS = 20_000;
/** How long the host's mount helper may take over one mount before it is ended (and the walls go up again). */
const MOUNT_TIMEOUT_MS = 10_000;
/** How long a stopped command has after SIGTERM before it is killed. */
const STOP_GRACE_MS = 3000;
/** Bytes of the walls' own stderr kept to say why they failed. */
const STDERR_KEPT = 4096;

export interface EnvironmentOptions {
  /** The wall server's own variables (PATH, HOME); each command is given its own. */
  env: Record<string, string>;
  cwd: string;
  /** Builds the walls as this user (bubblewrap maps that user alone), so no command of it holds root. */
  uid?: number;
}

export interface CommandSpec {
  command: string;
  cwd: string;
  env: Record<string, string>;
}

/** A command running inside the walls: its output streams and its end, as a child process gives them. */
export class WalledProcess extends EventEmitter<{ close: [code: number | null, signal: NodeJS.Signals | null]; error: [Error] }> {
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  done = false;
  private readonly environment: WalledEnvironment;
  readonly id: string;

  constructor(environment: WalledEnvironment, id: string) {
    super();
    this.environment = environment;
    this.id = id;
  }

  /** A process in the walls' namespaces (the port bridge enters its network namespace). */
  get pid(): number | undefined {
    return this.environment.pid;
  }

  signal(signal: NodeJS.Signals): void {
    this.environment.send({ op: "kill", id: this.id, signal });
  }

  /** Ends the command and everything it started: SIGTERM, then SIGKILL until it is gone. */
  stop(): Promise<void> {
    if (this.done) return Promise.resolve();
    return new Promise((resolve) => {
      let force: ReturnType<typeof setInterval> | undefined;
      const first = setTimeout(() => {
        this.signal("SIGKILL");
        force = setInterval(() => this.signal("SIGKILL"), 1000);
      }, STOP_GRACE_MS);
      this.once("close", () => {
        clearTimeout(first);
        if (force) clearInterval(force);
        resolve();
      });
      this.signal("SIGTERM");
    });
  }

  /** @internal the wall server's account of this command. */
  end(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.done) return;
    this.done = true;
    // As a child process does: "close" once its output has been read to the end, not while a reader that paused
    // (the host's output file, behind on the disk) still has some of it to take.
    let open = 2;
    const closed = () => {
      if (--open === 0) this.emit("close", code, signal);
    };
    for (const stream of [this.stdout, this.stderr]) {
      if (stream.readableEnded) closed();
      else stream.once("end", closed);
      stream.end();
      // Output no one reads is let go, so that the end comes.
      if (stream.listenerCount("data") === 0 && stream.readableFlowing === null) stream.resume();
    }
  }
}

export class WalledEnvironment {
  private readonly running = new Map<string, WalledProcess>();
  private commands = 0;
  private alive = true;
  /** Close once the last command ends: the sandbox's policy changed, and new commands get walls of their own. */
  private retired = false;
  /** The wall server's pid on the host, once looked up. */
  private server: number | null = null;

  readonly child: ChildProcess;

  private constructor(child: ChildProcess) {
    this.child = child;
  }

  /**
   * Starts the wall server inside `enclosure` (walls.enclose of {@link WALL_SERVER_COMMAND}); resolves once it is
   * ready. The enclosure outlives it: the same walls go up again, without being worked out again, when a mount
   * made in the sandbox needs them rebuilt.
   */
  static async open(enclosure: Enclosure, options: EnvironmentOptions): Promise<WalledEnvironment> {
    const env = { ...options.env, ...enclosure.env };
    env.SORTIE_WALL_GIVEN = Object.keys(env).join(",");
    const command =
      options.uid === undefined
        ? ["bash", "-c", enclosure.command]
        : ["setpriv", `--reuid=${options.uid}`, `--regid=${options.uid}`, "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", "bash", "-c", enclosure.command];
    const child = spawn(command[0]!, command.slice(1), { cwd: options.cwd, env: env as NodeJS.ProcessEnv, detached: true, stdio: ["pipe", "pipe", "pipe"] });
    const environment = new WalledEnvironment(child);
    await environment.ready();
    // What a mount put into them needs, found now rather than when a run waits for the mount.
    setImmediate(() => {
      try {
        environment.serverPid();
        mountHelper.start();
      } catch {
        // Looked for again at the first mount.
      }
    });
    return environment;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /**
   * Makes the mount at `mountPoint`, made on the host after these walls went up, seen inside them too
   * (container/mount-into.pl); false when it cannot be, and only new walls would see it. With `create`, a directory
   * the walls do not have (one renamed on the host) is bound there, the place made first.
   */
  async adopt(mountPoint: string, options: { create?: boolean } = {}): Promise<boolean> {
    const server = this.serverPid();
    if (server === null || !this.alive) return false;
    if (seesMount(server, mountPoint)) return true;
    return (await mountHelper.put(server, mountPoint, Boolean(options.create))) && seesMount(server, mountPoint);
  }

  /** The wall server's pid on the host: its mount namespace is the one its commands get. */
  private serverPid(): number | null {
    if (this.server !== null || this.child.pid === undefined) return this.server;
    this.server = descendantsBelow(this.child.pid).find((pid) => isWallServer(pid)) ?? null;
    return this.server;
  }

  /** Whether new commands may start here. */
  get usable(): boolean {
    return this.alive && !this.retired;
  }

  run(spec: CommandSpec, unset: string[]): WalledProcess {
    const proc = new WalledProcess(this, `c${++this.commands}`);
    if (!this.alive) {
      queueMicrotask(() => {
        proc.stderr.write("sortie: the sandbox's walls are gone\n");
        proc.end(null, "SIGKILL");
      });
      return proc;
    }
    this.running.set(proc.id, proc);
    this.send({ op: "run", id: proc.id, command: spec.command, cwd: spec.cwd, env: spec.env, unset });
    return proc;
  }

  retire(): void {
    this.retired = true;
    if (this.running.size === 0) this.shutDown();
  }

  /** Ends every command and the walls themselves; resolves once they are down. */
  close(): Promise<void> {
    this.retired = true;
    if (!this.alive) return Promise.resolve();
    const exited = new Promise<void>((resolve) => this.child.once("close", () => resolve()));
    this.shutDown();
    // The server kills its commands when its input closes; the walls' pid namespace takes whatever is left with it.
    const force = setTimeout(() => signalGroup(this.child.pid, "SIGKILL"), STOP_GRACE_MS);
    return exited.finally(() => clearTimeout(force));
  }

  /** @internal */
  send(message: Record<string, unknown>): void {
    if (this.alive && this.child.stdin?.writable) this.child.stdin.write(`${JSON.stringify(message)}\n`);
  }

  private shutDown(): void {
    this.child.stdin?.end();
  }

  private ready(): Promise<void> {
    let stderr = "";
    this.child.stderr!.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString("utf8")).slice(-STDERR_KEPT);
    });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        signalGroup(this.child.pid, "SIGKILL");
        reject(new Error(`the sandbox's walls did not come up in ${OPEN_TIMEOUT_MS} ms: ${stderr.trim()}`));
      }, OPEN_TIMEOUT_MS);
      const lines = createInterface({ input: this.child.stdout! });
      lines.on("line", (line) => {
        const message = messageOf(line);
        if (!message) return;
        if (message.op === "ready") {
          clearTimeout(timer);
          resolve();
          return;
        }
        const proc = typeof message.id === "string" ? this.running.get(message.id) : undefined;
        if (!proc) return;
        if (message.op === "out" && typeof message.data === "string") (message.fd === 2 ? proc.stderr : proc.stdout).write(Buffer.from(message.data, "base64"));
        else if (message.op === "exit") {
          this.running.delete(proc.id);
          proc.end(typeof message.code === "number" ? message.code : null, typeof message.signal === "string" ? (message.signal as NodeJS.Signals) : null);
          if (this.retired && this.running.size === 0) this.shutDown();
        }
      });
      this.child.on("error", (error) => {
        clearTimeout(timer);
        reject(new Error(`the sandbox's walls could not start: ${error.message}`));
      });
      this.child.on("close", (code, signal) => {
        clearTimeout(timer);
        this.alive = false;
        reject(new Error(`the sandbox's walls exited (${signal ?? code}) before they were up: ${stderr.trim()}`));
        // Commands still running went down with the walls.
        for (const proc of this.running.values()) {
          proc.stderr.write(`sortie: the sandbox's walls exited (${signal ?? code})\n`);
          proc.end(null, "SIGKILL");
        }
        this.running.clear();
      });
    });
  }
}

/**
 * The host's one `mount-into.pl --serve`, started once and kept: a mount is put into walls by a line written to it,
 * not by a process this one (large, and held up by each fork) starts for it. It answers in order. A request it has
 * not answered in MOUNT_TIMEOUT_MS ends it (one stuck mount would hold up every other); a request it went down under
 * is sent once more to the next one.
 */
class MountHelper {
  private helper: { child: ChildProcess; answers: ((ok: boolean | null) => void)[] } | null = null;

  /** The helper, started if need be; null off Linux (setns and move_mount are Linux's) or if it cannot start. */
  start(): MountHelper["helper"] {
    if (this.helper || process.platform !== "linux") return this.helper;
    const child = spawn("perl", [MOUNT_INTO, "--serve"], { stdio: ["pipe", "pipe", "ignore"] });
    const helper = { child, answers: [] as ((ok: boolean | null) => void)[] };
    const gone = () => {
      if (this.helper === helper) this.helper = null;
      // null: not answered, and worth asking again.
      for (const answer of helper.answers.splice(0)) answer(null);
    };
    child.once("error", gone);
    child.once("close", gone);
    // Without pipes (no file descriptors left) there is no helper to keep.
    if (!child.stdin || !child.stdout) {
      child.kill("SIGKILL");
      return null;
    }
    child.stdin.on("error", gone);
    createInterface({ input: child.stdout }).on("line", (line) => helper.answers.shift()?.(line === "ok"));
    // Kept for the host's life without keeping it alive; its stdin closes with the host, and it exits.
    child.unref();
    (child.stdin as unknown as { unref(): void }).unref();
    (child.stdout as unknown as { unref(): void }).unref();
    this.helper = helper;
    return helper;
  }

  async put(pid: number, mountPoint: string, create: boolean): Promise<boolean> {
    // A path the line cannot carry is not put in (the walls go up again instead).
    if (/[\t\n]/.test(mountPoint)) return false;
    for (let attempt = 0; attempt < 2; attempt++) {
      const helper = this.start();
      if (!helper?.child.stdin?.writable) return false;
      const answer = await new Promise<boolean | null>((resolve) => {
        let stuck = false;
        const timer = setTimeout(() => {
          stuck = true;
          helper.child.kill("SIGKILL");
        }, MOUNT_TIMEOUT_MS);
        helper.answers.push((ok) => {
          clearTimeout(timer);
          // A mount that got stuck is not tried again.
          resolve(stuck ? false : ok);
        });
        helper.child.stdin!.write(`${pid}\t${mountPoint}\t${create ? "create" : ""}\n`);
      });
      if (answer !== null) return answer;
    }
    return false;
  }
}

const mountHelper = new MountHelper();

function isWallServer(pid: number): boolean {
  try {
    const [command, script] = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return path.basename(command ?? "") === "node" && script === WALL_SERVER;
  } catch {
    return false; // ended meanwhile
  }
}

/** Whether process `pid` sees the host's mount at `mountPoint` there (the same filesystem, the same root). */
function seesMount(pid: number, mountPoint: string): boolean {
  try {
    const host = statSync(mountPoint);
    const inside = statSync(`/proc/${pid}/root${mountPoint}`);
    return host.dev === inside.dev && host.ino === inside.ino;
  } catch {
    return false;
  }
}

function messageOf(line: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function signalGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}
