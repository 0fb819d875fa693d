import { env, exports } from "cloudflare:workers";
import { inflateRawSync } from "node:zlib";
import { expect } from "vitest";
import { TaskEvent, foldTask } from "../../src/events.ts";
import { isTerminal, type LoggedEvent, type TaskState, type TaskView } from "../../src/schema.ts";
import { Acknowledger } from "../../src/stream-protocol.ts";

export const ADMIN = "test-admin-token";
export const auth = { authorization: `Bearer ${ADMIN}` };

/** Calls the Worker the way a client does. */
export function api(path: string, init: RequestInit = {}): Promise<Response> {
  return exports.default.fetch(new Request(`https://sortie.test${path}`, { ...init, headers: { ...auth, ...(init.headers as Record<string, string>) } }));
}

/** A prompt that makes the stand-in model play these steps (see test/standins/anthropic.mjs). */
export function scripted(steps: unknown[], preface = "do the scripted work"): string {
  return `${preface}\n#!standin ${JSON.stringify(steps)}`;
}

export async function createTask(body: Record<string, unknown>): Promise<TaskView> {
  const response = await api("/api/tasks", { method: "POST", body: JSON.stringify({ repo: "acme/widgets", ...body }) });
  expect(response.status, await response.clone().text()).toBe(202);
  return (await response.json()) as TaskView;
}

export async function getTask(id: string): Promise<TaskView> {
  const response = await api(`/api/tasks/${id}`);
  expect(response.status).toBe(200);
  return (await response.json()) as TaskView;
}

/** Polls until the task reaches one of `statuses`. */
export async function waitForStatus(id: string, statuses: string[], timeoutMs = 30_000): Promise<TaskView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const task = await getTask(id);
    if (statuses.includes(task.status)) {
      if (isTerminal(task.status)) await expectServedIsFold(id);
      return task;
    }
    if (Date.now() > deadline) throw new Error(`task ${id} still ${task.status} (phase ${task.runs[0]?.phase}) after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** What `GET /api/tasks/:id` serves beside the history: where to watch it, and queue places. */
export function historyOf(task: TaskView | TaskState): TaskState {
  const { url: _url, ws: _ws, ...state } = task as TaskView;
  return { ...state, runs: state.runs.map(({ queuePosition: _position, ...run }) => run) };
}

/**
 * The served task is the fold of its served events (src/events.ts), every one of which parses as a declared event.
 * Read between two reads of the log that agree, so no event lands in between.
 */
export async function expectServedIsFold(id: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const before = await readEvents(id);
    const task = await getTask(id);
    const after = await readEvents(id);
    if (after.length !== before.length && attempt < 5) continue;
    const events = before.map((event) => TaskEvent.parse(event));
    expect(historyOf(foldTask(events))).toEqual(historyOf(task));
    return;
  }
}

export async function waitForPhase(id: string, phase: string, timeoutMs = 30_000): Promise<TaskView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const task = await getTask(id);
    if (task.runs[0]?.phase === phase) return task;
    if (Date.now() > deadline) throw new Error(`task ${id} never reached phase ${phase} (status ${task.status})`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Polls until run 0's agent has started its session (its process runs, past the run's own bookkeeping commands). */
export async function waitForSession(id: string, timeoutMs = 30_000): Promise<TaskView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const task = await getTask(id);
    if (task.runs[0]?.sessionId) return task;
    if (Date.now() > deadline) throw new Error(`task ${id}'s agent started no session (status ${task.status}, phase ${task.runs[0]?.phase})`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export async function readEvents(id: string, after = 0): Promise<LoggedEvent[]> {
  const response = await api(`/api/tasks/${id}/events?after=${after}`);
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toContain("application/x-ndjson");
  const text = await response.text();
  return text.split("\n").filter(Boolean).map((line) => JSON.parse(line) as LoggedEvent);
}

export async function countTasks(): Promise<number> {
  const row = await env.DB.prepare("SELECT COUNT(*) AS n FROM tasks").first<{ n: number }>();
  return row?.n ?? 0;
}

/** Sandboxes the local host still has; a finished task must leave none behind. */
export async function liveSandboxes(): Promise<string[]> {
  const response = await fetch(`${env.LOCAL_SANDBOX_URL}/v1/sandboxes`, { headers: { authorization: `Bearer ${env.LOCAL_SANDBOX_TOKEN}` } });
  return ((await response.json()) as { sandboxes: string[] }).sandboxes;
}

/**
 * A viewer on a task's WebSocket (`path` with its query), collecting the
 * events it is sent and acknowledging them as the web viewer does; `stall`
 * stops the acknowledgements, as a tab that stopped reading, `resume` sends
 * them again.
 */
export async function watch(path: string, headers: Record<string, string> = {}) {
  const response = await exports.default.fetch(new Request(`https://sortie.test${path}`, { headers: { upgrade: "websocket", ...headers } }));
  const socket = response.webSocket;
  const events: LoggedEvent[] = [];
  const frames: string[] = [];
  const viewer = {
    status: response.status,
    events,
    frames,
    /** Bytes of every frame received, as they came on the wire. */
    bytes: 0,
    /** Frames that came deflated (binary). */
    deflated: 0,
    stall: () => {},
    resume: () => {},
    close: () => {},
  };
  if (response.status !== 101 || !socket) return viewer;
  socket.binaryType = "arraybuffer";
  socket.accept();
  let stalled = false;
  let unread = 0;
  const acks = new Acknowledger((text) => socket.send(text));
  socket.addEventListener("message", (message) => {
    // A binary message is a deflated events frame (`?frames=deflate`); bytes are counted as they came on the wire.
    const data = message.data as string | ArrayBuffer;
    const text = typeof data === "string" ? data : inflateRawSync(new Uint8Array(data)).toString("utf8");
    const wire = typeof data === "string" ? data.length : data.byteLength;
    frames.push(text);
    if (typeof data !== "string") viewer.deflated++;
    viewer.bytes += wire;
    const parsed = JSON.parse(text) as { v?: number; type: string; events?: LoggedEvent[] };
    if (parsed.type === "events" && parsed.v === 1) events.push(...parsed.events!);
    if (stalled) unread += wire;
    else acks.read(events.at(-1)?.seq ?? 0, wire);
  });
  viewer.stall = () => {
    stalled = true;
  };
  viewer.resume = () => {
    stalled = false;
    acks.read(events.at(-1)?.seq ?? 0, unread);
    unread = 0;
  };
  viewer.close = () => {
    acks.stop();
    socket.close(1000, "done");
  };
  return viewer;
}

/**
 * Runs `command` (with `vars` in its environment) in a scratch sandbox of the local host, then removes
 * the sandbox. `open` is the body the sandbox is created with (`readable` paths, as the Worker opens
 * one); `bookkeeping` runs the command outside the walls, as a person at their own machine would.
 */
export async function inScratchSandbox(command: string, vars: Record<string, string> = {}, options: { open?: Record<string, unknown>; bookkeeping?: boolean } = {}) {
  const headers = { authorization: `Bearer ${env.LOCAL_SANDBOX_TOKEN}` };
  const base = `${env.LOCAL_SANDBOX_URL}/v1/sandboxes/probe-${Math.random().toString(36).slice(2, 10)}`;
  await fetch(base, { method: "POST", headers, ...(options.open ? { body: JSON.stringify(options.open) } : {}) });
  try {
    const response = await fetch(`${base}/exec`, { method: "POST", headers, body: JSON.stringify({ command, env: vars, ...(options.bookkeeping ? { bookkeeping: true } : {}) }) });
    return (await response.json()) as { stdout: string; stderr: string; exitCode: number };
  } finally {
    await fetch(base, { method: "DELETE", headers });
  }
}

/** The commit a branch of the fixture's acme/widgets points at, asked of git in a scratch sandbox opened as the Worker opens one. */
export async function remoteBranch(branch: string): Promise<string | null> {
  const { stdout } = await inScratchSandbox('git ls-remote "$REPO" "refs/heads/$BRANCH"', { REPO: `${env.GIT_BASE_URL}/acme/widgets.git`, BRANCH: branch }, { open: { readable: [new URL(env.GIT_BASE_URL).pathname] } });
  return /^([0-9a-f]{40})\s/.exec(stdout)?.[1] ?? null;
}
