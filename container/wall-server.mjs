/**
 * The process that stays up inside one sandbox's walls and starts its
 * commands (container/wall-env.ts starts it and speaks to it): the walls are
 * built once per sandbox, like a container, instead of once per command.
 *
 * It reads requests from stdin and writes what happens on stdout, one JSON
 * object a line:
 *
 *   → {"op":"run","id":"c1","command":"git diff","cwd":"/…/work/repo","env":{…},"unset":["NO_PROXY"]}
 *   ← {"op":"started","id":"c1"}   {"op":"out","id":"c1","fd":1,"data":"<base64>"}   {"op":"exit","id":"c1","code":0,"signal":null}
 *   → {"op":"kill","id":"c1","signal":"SIGTERM"}
 *
 * A command's variables are the ones the request names plus what the walls
 * set (the proxy, its certificate authority), which win. When stdin closes,
 * every command is killed and the process exits. It imports nothing but
 * Node's own modules: inside the walls, the Sortie checkout is out of reach
 * but for this file. Plain JavaScript: it starts once per sandbox, and
 * stripping types would double its start.
 */
import { spawn } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { createInterface } from "node:readline";

/**
 * @typedef {{ op: "run", id: string, command: string, cwd: string, env: Record<string, string>, unset: string[] }} RunRequest
 * @typedef {{ op: "kill", id: string, signal: NodeJS.Signals }} KillRequest
 * @typedef {{ child: import("node:child_process").ChildProcess, tree: Set<number> }} Running
 *   `tree`: every process seen below the command (one that outlives its parent is no longer found under it).
 */

/** Names this process was started with, or that the shell adds: not the walls' own. */
const GIVEN = new Set([...(process.env.SORTIE_WALL_GIVEN ?? "").split(","), "SORTIE_WALL_GIVEN", "PWD", "OLDPWD", "SHLVL", "_"]);
/** What the walls set for every command (the proxy, its CA, the runtime's marker). */
const WALLS_ENV = Object.fromEntries(Object.entries(process.env).filter(([name, value]) => !GIVEN.has(name) && value !== undefined));

/** @type {Map<string, Running>} */
const running = new Map();

/** @param {Record<string, unknown>} message */
function say(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

/** @param {RunRequest} request */
function run(request) {
  const env = { ...request.env, ...WALLS_ENV };
  // The sandbox's own temporary directory, not the runtime's shared one.
  if (request.env.TMPDIR) env.TMPDIR = request.env.TMPDIR;
  for (const name of request.unset ?? []) delete env[name];
  const child = spawn("bash", ["-c", request.command], { cwd: request.cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  running.set(request.id, { child, tree: new Set() });
  say({ op: "started", id: request.id });
  let ended = false;
  /** @type {(code: number | null, signal: NodeJS.Signals | null) => void} */
  const end = (code, signal) => {
    if (ended) return;
    ended = true;
    running.delete(request.id);
    say({ op: "exit", id: request.id, code, signal });
  };
  // A command that cannot start at all (its directory is gone) ends like one the shell could not find.
  child.on("error", (error) => {
    say({ op: "out", id: request.id, fd: 2, data: Buffer.from(`sortie: could not start the command: ${error.message}\n`).toString("base64") });
    if (child.pid === undefined) end(127, null);
  });
  child.stdout.on("data", (chunk) => say({ op: "out", id: request.id, fd: 1, data: chunk.toString("base64") }));
  child.stderr.on("data", (chunk) => say({ op: "out", id: request.id, fd: 2, data: chunk.toString("base64") }));
  child.on("close", end);
}

/**
 * Signals a command's group and every process seen below it.
 * @param {string} id
 * @param {NodeJS.Signals} signal
 */
function kill(id, signal) {
  const command = running.get(id);
  const pid = command?.child.pid;
  if (!command || pid === undefined) return;
  for (const each of descendantsOf(pid)) command.tree.add(each);
  signalQuietly(-pid, signal);
  signalQuietly(pid, signal);
  for (const each of command.tree) signalQuietly(each, signal);
}

/** @param {number} pid @param {NodeJS.Signals} signal */
function signalQuietly(pid, signal) {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

/**
 * The processes below `pid`, from each one's parent in this pid namespace's /proc.
 * @param {number} pid
 * @returns {number[]}
 */
function descendantsOf(pid) {
  /** @type {Map<number, number[]>} */
  const children = new Map();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat = "";
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // ended meanwhile
    }
    const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (parent) children.set(parent, [...(children.get(parent) ?? []), Number(entry)]);
  }
  const found = [];
  for (let queue = [pid]; queue.length; ) {
    const next = children.get(/** @type {number} */ (queue.shift())) ?? [];
    found.push(...next);
    queue.push(...next);
  }
  return found;
}

/**
 * A line the host wrote, checked field by field (no validation library loads this early inside the walls).
 * @param {string} line
 * @returns {RunRequest | KillRequest | null}
 */
function requestOf(line) {
  let value;
  try {
    value = JSON.parse(line);
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null) return null;
  const request = value;
  if (typeof request.id !== "string") return null;
  if (request.op === "kill" && typeof request.signal === "string") return { op: "kill", id: request.id, signal: request.signal };
  const strings = (/** @type {unknown} */ record) => typeof record === "object" && record !== null && Object.values(record).every((each) => typeof each === "string");
  if (request.op !== "run" || typeof request.command !== "string" || typeof request.cwd !== "string" || !strings(request.env)) return null;
  const unset = Array.isArray(request.unset) ? request.unset.filter((name) => typeof name === "string") : [];
  return { op: "run", id: request.id, command: request.command, cwd: request.cwd, env: request.env, unset };
}

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const request = requestOf(line);
  if (!request) return say({ op: "bad", line: line.slice(0, 200) });
  if (request.op === "run") run(request);
  else kill(request.id, request.signal);
});
lines.on("close", () => {
  for (const id of running.keys()) kill(id, "SIGKILL");
  process.exit(0);
});
say({ op: "ready" });
