/**
 * The benchmarks' view of a running Sortie: the public HTTP API only (tasks,
 * events, the WebSocket), plus the local sandbox host's unauthenticated
 * `/healthz`, which counts live sandboxes.
 */
import { inflateRawSync } from "node:zlib";
import type { LoggedEvent, TaskStatus, TaskSummary, TaskView } from "../src/schema.ts";
import { Acknowledger } from "../src/stream-protocol.ts";
import type { DevServer } from "../test/support/dev-server.ts";

export const TERMINAL: ReadonlySet<TaskStatus> = new Set(["succeeded", "failed", "cancelled", "timed_out"]);

/** A Bash step that keeps the agent busy for `ms` (Claude Code refuses a bare `sleep N`). */
export const hold = (ms: number) => ({ tool: "Bash", input: { command: `node -e 'setTimeout(() => {}, ${ms})'` } });

/** A prompt the stand-in model plays step by step; `label` makes it recognisable in listings. */
export const scriptedPrompt = (label: string, steps: unknown[]) => `${label}\n#!standin ${JSON.stringify(steps)}`;

/**
 * A prompt for the stand-in agent CLI (bench/standin-claude/claude), which a
 * dev server started with LOCAL_SANDBOX_EXTRA_PATH runs instead of Claude Code:
 * after `delayMs`, `lines` plain lines at `rate` a second (0: as fast as it can).
 */
export const standinAgentPrompt = (label: string, script: { lines: number; rate?: number; delayMs?: number }) => `${label}\n#!standin-claude ${JSON.stringify(script)}`;

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class ApiError extends Error {
  readonly status: number;
  constructor(message: string, status: number) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

/** Talks to one dev server with its admin token. */
export function apiOf(server: DevServer) {
  const call = (pathname: string, init: RequestInit = {}) =>
    fetch(`${server.url}${pathname}`, { ...init, headers: { authorization: `Bearer ${server.token}`, "content-type": "application/json", ...(init.headers as Record<string, string> | undefined) } });

  const json = async <T>(pathname: string, init?: RequestInit): Promise<T> => {
    const response = await call(pathname, init);
    if (!response.ok) throw new ApiError(`${init?.method ?? "GET"} ${pathname} answered ${response.status}: ${(await response.text()).slice(0, 300)}`, response.status);
    return (await response.json()) as T;
  };

  /** The whole event log, as served by the NDJSON endpoint. */
  const events = async (id: string): Promise<LoggedEvent[]> => {
    const response = await call(`/api/tasks/${id}/events`);
    if (!response.ok) throw new ApiError(`events of ${id} answered ${response.status}`, response.status);
    const text = await response.text();
    return text.split("\n").filter((line) => line.trim()).map((line) => JSON.parse(line) as LoggedEvent);
  };

  const hostUrl = /local sandbox host on (http:\/\/[\d.]+:\d+)/.exec(server.output())?.[1];
  if (!hostUrl) throw new Error(`no local sandbox host URL in the dev server output:\n${server.output()}`);

  return {
    /** Any API call with the server's token: the raw response. */
    call,

    /** `POST /api/tasks`; the raw response, so a caller can count statuses. */
    submit: (body: Record<string, unknown>) => call("/api/tasks", { method: "POST", body: JSON.stringify(body) }),

    /** `POST /api/tasks`, expecting 202. */
    async create(body: Record<string, unknown>): Promise<TaskView> {
      return json<TaskView>("/api/tasks", { method: "POST", body: JSON.stringify(body) });
    },

    task: (id: string) => json<TaskView>(`/api/tasks/${id}`),

    /** One page of the D1 index. */
    list: (query: string) => json<{ tasks: TaskSummary[]; nextCursor: string | null }>(`/api/tasks?${query}`),

    events,

    /**
     * Resolves with the moment (this process's clock) the task's terminal
     * `task.status` event arrives on its WebSocket, which replays from seq 1
     * first, so nothing between the POST and the connect is missed. A slow
     * poll of `GET /api/tasks/:id` backs the socket up.
     */
    waitForEnd(task: TaskView, timeoutMs: number): Promise<{ endedAt: number; status: TaskStatus }> {
      return new Promise((resolve, reject) => {
        const socket = new WebSocket(`${task.ws}${task.ws.includes("?") ? "&" : "?"}frames=deflate`);
        socket.binaryType = "arraybuffer";
        const acks = new Acknowledger((text) => socket.readyState === WebSocket.OPEN && socket.send(text));
        let settled = false;
        const finish = (outcome: { endedAt: number; status: TaskStatus } | Error) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          clearInterval(poller);
          acks.stop();
          socket.close();
          if (outcome instanceof Error) reject(outcome);
          else resolve(outcome);
        };
        socket.addEventListener("message", (message) => {
          const at = Date.now();
          const data = message.data as string | ArrayBuffer;
          const text = typeof data === "string" ? data : inflateRawSync(Buffer.from(data)).toString("utf8");
          const parsed = JSON.parse(text) as { type?: string; events?: LoggedEvent[] };
          const events = parsed.type === "events" ? (parsed.events ?? []) : [];
          acks.read(events.at(-1)?.seq ?? 0, typeof data === "string" ? data.length : data.byteLength);
          const ended = events.find((event) => event.type === "task.status" && TERMINAL.has(event.data.status as TaskStatus));
          if (ended) finish({ endedAt: at, status: ended.data.status as TaskStatus });
        });
        const timer = setTimeout(() => finish(new Error(`task ${task.id} did not end within ${timeoutMs} ms`)), timeoutMs);
        const poller = setInterval(() => {
          json<TaskView>(`/api/tasks/${task.id}`).then(
            (view) => TERMINAL.has(view.status) && finish({ endedAt: Date.now(), status: view.status }),
            (error: unknown) => finish(new Error(`polling task ${task.id} failed`, { cause: error })),
          );
        }, 2000);
      });
    },

    /**
     * Polls `GET /api/tasks/:id` until the task ends; unlike waitForEnd, opens
     * no WebSocket, so benchmarks that count viewers get no extra one.
     */
    async pollUntilEnded(id: string, timeoutMs: number, everyMs = 250): Promise<TaskView> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const view = await json<TaskView>(`/api/tasks/${id}`);
        if (TERMINAL.has(view.status)) return view;
        if (Date.now() > deadline) throw new Error(`task ${id} did not end within ${timeoutMs} ms (still ${view.status})`);
        await sleep(everyMs);
      }
    },

    /**
     * The event log once every run has settled its sandbox (destroyed it, or
     * kept it for follow-ups), which comes just after the task's terminal
     * status; or the log as it stands after `timeoutMs`.
     */
    async settledEvents(id: string, runs: number, timeoutMs = 5000): Promise<LoggedEvent[]> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const log = await events(id);
        const settled = new Set(log.filter(isSandboxSettled).map((e) => e.run));
        if (settled.size >= runs || Date.now() > deadline) return log;
        await sleep(100);
      }
    },

    /** Live sandboxes right now, as the local sandbox host counts them. */
    async liveSandboxes(): Promise<number> {
      const response = await fetch(`${hostUrl}/healthz`);
      return ((await response.json()) as { sandboxes: number }).sandboxes;
    },

    /** Runs whose status is `running`, over every task the D1 index lists as running. */
    async runningRuns(): Promise<number> {
      let cursor: string | null = null;
      let count = 0;
      do {
        const page: { tasks: TaskSummary[]; nextCursor: string | null } = await json(`/api/tasks?status=running&limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
        const views = await Promise.all(page.tasks.map((summary) => json<TaskView>(`/api/tasks/${summary.id}`)));
        count += views.reduce((sum, view) => sum + view.runs.filter((run) => run.status === "running").length, 0);
        cursor = page.nextCursor;
      } while (cursor);
      return count;
    },
  };
}

export type Api = ReturnType<typeof apiOf>;

/** Where a run's time went, in ms, read from the event timestamps (the Worker's clock). */
export interface RunPhases {
  /** Task created → the fleet granted the run a slot (provisioning began). */
  queued: number | null;
  /**
   * Opening the sandbox and preparing the workspace: a clone (and the setup
   * step), or the restore of a snapshot another run or an earlier task made.
   */
  prepare: number | null;
  /** The agent phase began → Claude Code's init line (process start and CLI boot). */
  agentBoot: number | null;
  /** Init → result: the model turns and the tools. */
  agentWork: number | null;
  /** Result → the run's terminal status (process exit, diff, storing it). */
  finish: number | null;
  /** Terminal status → sandbox destroyed, or kept for follow-ups. */
  settle: number | null;
  /** Task created → the run's terminal status. */
  total: number | null;
}

export const PHASE_NAMES = ["queued", "prepare", "agentBoot", "agentWork", "finish", "settle", "total"] as const;

/** The run is done with its sandbox: destroyed, or kept idle (holding no fleet slot) for follow-up messages. */
const isSandboxSettled = (event: LoggedEvent) => event.type === "sandbox.destroyed" || event.type === "run.workspace_kept";

/** Splits one run's life into phases from its events. */
export function phasesOf(events: LoggedEvent[], run: number, createdAt: number): RunPhases {
  const mine = events.filter((event) => event.run === run);
  const at = (predicate: (event: LoggedEvent) => boolean) => mine.find(predicate)?.ts ?? null;
  const phase = (name: string) => at((event) => event.type === "run.status" && event.data.phase === name);
  const provisioning = phase("provisioning");
  const agent = phase("agent");
  const init = at((event) => event.type === "agent.init");
  const result = at((event) => event.type === "agent.result");
  const ended = at((event) => event.type === "run.status" && TERMINAL.has(event.data.status as TaskStatus));
  const settled = at(isSandboxSettled);
  const span = (from: number | null, to: number | null) => (from !== null && to !== null ? to - from : null);
  return {
    queued: span(createdAt, provisioning),
    prepare: span(provisioning, agent),
    agentBoot: span(agent, init),
    agentWork: span(init, result),
    finish: span(result, ended),
    settle: span(ended, settled),
    total: span(createdAt, ended),
  };
}

/** Breaks in a log's `seq` (a jump, a repeat, or a start other than 1); 0 means it runs 1, 2, …, N. */
export function seqBreaks(events: LoggedEvent[]): number {
  return events.reduce((breaks, event, i) => breaks + (event.seq === (i === 0 ? 1 : events[i - 1]!.seq + 1) ? 0 : 1), 0);
}
