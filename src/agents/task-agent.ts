/**
 * TaskAgent: one Durable Object per task, named by the task id. It holds the
 * task's state, its event log and its viewers' WebSockets, and it decides
 * what happens next. It never does the coding work: each run happens in a
 * sandbox, driven through the execution port, and the agent records.
 */
import { Agent, type Connection, type ConnectionContext } from "agents";
import { readConfig, type SortieConfig } from "../config.ts";
import { SortieError, messageOf } from "../errors.ts";
import { takeDiff } from "../publish/diff.ts";
import { runClaudeTurn, type AgentEvent } from "../runners/claude-code.ts";
import { CloneError } from "../sandbox/checkout.ts";
import { sandboxPortFor } from "../sandbox/index.ts";
import { SandboxUnavailableError, type Sandbox, type StreamOffsets } from "../sandbox/port.ts";
import { isTerminal, type ErrorInfo, type RunPhase, type RunView, type TaskSpec, type TaskState, type TaskStatus } from "../schema.ts";
import { insertTask, saveTask } from "../store/tasks.ts";
import { DiffStore } from "./diff-store.ts";
import { EventLog } from "./event-log.ts";
import { redactor } from "./redact.ts";

/** Where a run's agent process stands, persisted so a restarted agent can re-attach to it. */
interface RunProgress {
  processId: string;
  offsets: StreamOffsets;
}

const SPEC_KEY = "sortie:spec";
const progressKey = (run: number) => `sortie:progress:${run}`;
/** Set while a run's sandbox may exist; cleared once it is destroyed, so none outlives a restart. */
const sandboxKey = (run: number) => `sortie:sandbox:${run}`;

export class TaskAgent extends Agent<Cloudflare.Env, TaskState | null> {
  static override options = { sendIdentityOnConnect: false };
  override initialState: TaskState | null = null;

  private eventLog?: EventLog;
  private diffStore?: DiffStore;
  /** Runs this instance is driving right now; their abort stops the reading, not the process. */
  private readonly live = new Map<number, AbortController>();

  private get events(): EventLog {
    this.eventLog ??= new EventLog(this.ctx.storage.sql);
    return this.eventLog;
  }

  private get diffs(): DiffStore {
    this.diffStore ??= new DiffStore(this.ctx.storage.sql);
    return this.diffStore;
  }

  private get config(): SortieConfig {
    return readConfig(this.env);
  }

  /** Creates the task and starts its runs. Calling it again returns the task as it is. */
  async create(spec: TaskSpec): Promise<TaskState> {
    if (this.state) return this.state;
    const now = Date.now();
    const task: TaskState = {
      id: spec.id,
      repo: spec.repo,
      branch: spec.branch,
      prompt: spec.prompt,
      model: spec.model,
      maxTurns: spec.maxTurns,
      timeoutMinutes: spec.timeoutMinutes,
      source: spec.source,
      createdBy: spec.createdBy,
      status: "queued",
      createdAt: now,
      startedAt: null,
      endedAt: null,
      costUsd: 0,
      error: null,
      runs: [newRun(spec.id, 0)],
    };
    // The index row first: if D1 refuses, nothing of the task exists anywhere.
    await insertTask(this.env.DB, task);
    this.ctx.storage.kv.put(SPEC_KEY, spec);
    this.setState(task);
    this.record({ run: null, type: "task.status", data: { status: "queued" } });
    await this.schedule(spec.timeoutMinutes * 60, "onTimeout", { taskId: spec.id });
    for (const run of task.runs) this.startRun(run.index);
    return task;
  }

  /** The task's current state, or null if no task has this id. */
  view(): TaskState | null {
    return this.state;
  }

  /** Up to `limit` events after `after`, as NDJSON, with the last `seq` in the page. */
  readEvents(after: number, limit: number): { ndjson: string; count: number; lastSeq: number } {
    const page = this.events.page(after, limit);
    return { ndjson: page.map((event) => `${JSON.stringify(event)}\n`).join(""), count: page.length, lastSeq: page.at(-1)?.seq ?? after };
  }

  diffChunkCount(run: number): number {
    return this.diffs.chunkCount(run);
  }

  diffChunk(run: number, index: number): Uint8Array | null {
    return this.diffs.chunk(run, index);
  }

  /**
   * Stops every live run, destroys their sandboxes, and ends the task
   * `cancelled`. A refusal is returned, not thrown: errors lose their type
   * on the way back over RPC.
   */
  async cancel(by: string): Promise<{ task: TaskState } | { refused: ErrorInfo }> {
    const task = this.requireTask();
    if (isTerminal(task.status)) return { refused: { code: "task_finished", message: `task ${task.id} already ended ${task.status}` } };
    await this.stopAll("cancelled", { code: "cancelled", message: `cancelled by ${by}` });
    return { task: this.requireTask() };
  }

  /** Alarm callback: the task ran past its `timeoutMinutes`. */
  async onTimeout(): Promise<void> {
    const task = this.state;
    if (!task || isTerminal(task.status)) return;
    await this.stopAll("timed_out", { code: "timeout", message: `the task ran longer than its ${task.timeoutMinutes} minute limit` });
  }

  /**
   * On every wake: a run that was live when this instance went away is picked
   * up again from its persisted progress, or ended truthfully.
   */
  override async onStart(): Promise<void> {
    const task = this.state;
    if (!task) return;
    for (const run of task.runs) {
      if (this.live.has(run.index)) continue;
      if (isTerminal(run.status)) {
        if (this.ctx.storage.kv.get(sandboxKey(run.index))) await this.destroySandbox(run.index);
        continue;
      }
      const progress = this.ctx.storage.kv.get<RunProgress>(progressKey(run.index));
      if (run.phase === "agent" && progress) {
        this.record({ run: run.index, type: "run.reattach", data: { processId: progress.processId, from: progress.offsets } });
        this.startRun(run.index, progress);
      } else {
        await this.finishRun(run.index, "failed", { code: "orchestrator_restarted", message: `the task agent restarted while the run was ${run.phase ?? run.status}; its work could not be resumed` });
        await this.destroySandbox(run.index);
      }
    }
  }

  /** A viewer connects: it first gets every event after `?after=SEQ`, then live ones. */
  override onConnect(connection: Connection, ctx: ConnectionContext): void {
    const after = Number(new URL(ctx.request.url).searchParams.get("after") ?? 0);
    // Synchronous on purpose: no event can be appended between the replay and the live stream.
    for (const event of this.events.since(Number.isFinite(after) && after > 0 ? after : 0)) {
      connection.send(JSON.stringify({ type: "event", event }));
    }
  }

  /** Viewers read; only the agent writes its state. */
  override validateStateChange(_next: TaskState | null, source: Connection | "server"): void {
    if (source !== "server") throw new Error("task state is read-only for clients");
  }

  // ---- driving runs ----------------------------------------------------

  private startRun(index: number, resume?: RunProgress): void {
    const abort = new AbortController();
    this.live.set(index, abort);
    void this.keepAliveWhile(() => this.driveRun(index, abort.signal, resume))
      .catch((error: unknown) => this.finishRun(index, "failed", { code: "internal", message: messageOf(error) }))
      .finally(() => this.live.delete(index));
  }

  private async driveRun(index: number, signal: AbortSignal, resume?: RunProgress): Promise<void> {
    const spec = this.requireSpec();
    const credentials = this.agentCredentials();
    let sandbox: Sandbox | undefined;
    try {
      if (!resume) this.setPhase(index, "provisioning");
      this.ctx.storage.kv.put(sandboxKey(index), true);
      sandbox = await sandboxPortFor(this.env, this.config).open(sandboxIdFor(spec.id, index));
      if (signal.aborted) return;
      const repoDir = `${sandbox.workdir}/repo`;
      if (!resume) {
        this.setPhase(index, "cloning");
        const { commit } = await sandbox.checkout(spec.cloneUrl, { dir: repoDir, branch: spec.branch });
        if (signal.aborted) return;
        this.patchRun(index, { baseCommit: commit });
        this.record({ run: index, type: "run.cloned", data: { commit } });
        this.setPhase(index, "agent");
      }
      const turn = await runClaudeTurn(
        sandbox,
        { prompt: spec.prompt, cwd: repoDir, maxTurns: spec.maxTurns, model: spec.model, credentials },
        {
          signal,
          onEvent: (event) => this.onAgentEvent(index, event),
          onProcessStarted: (processId) => this.ctx.storage.kv.put(progressKey(index), { processId, offsets: { stdout: 0, stderr: 0 } } satisfies RunProgress),
          onOutputConsumed: (offsets) => {
            const progress = this.ctx.storage.kv.get<RunProgress>(progressKey(index));
            if (progress) this.ctx.storage.kv.put(progressKey(index), { ...progress, offsets });
          },
        },
        resume ? { processId: resume.processId, from: resume.offsets } : undefined,
      );
      if (signal.aborted || this.runOf(index).status !== "running") return;
      if (!turn.final) {
        await this.finishRun(index, "failed", { code: "agent_no_result", message: `Claude Code exited ${turn.exitCode} without a result` });
        return;
      }
      this.patchRun(index, { numTurns: turn.final.numTurns, costUsd: turn.final.costUsd, sessionId: turn.sessionId });
      this.setPhase(index, "diffing");
      const base = this.runOf(index).baseCommit;
      if (!base) throw new Error("the run has no base commit to diff against");
      const taken = await takeDiff(sandbox, repoDir, base, `${sandbox.workdir}/sortie.diff`);
      const bytes = await this.diffs.write(index, await sandbox.readFile(taken.path));
      const diff = { ...taken.stats, bytes };
      this.patchRun(index, { diff });
      this.record({ run: index, type: "run.diff", data: diff });
      if (turn.final.isError || turn.exitCode !== 0) {
        await this.finishRun(index, "failed", { code: "agent_failed", message: turn.final.text || `Claude Code ended ${turn.final.subtype} (exit ${turn.exitCode})` });
      } else {
        await this.finishRun(index, "succeeded", null);
      }
    } catch (error) {
      if (signal.aborted || isTerminal(this.runOf(index).status)) return;
      await this.finishRun(index, "failed", classify(error));
    } finally {
      this.ctx.storage.kv.delete(progressKey(index));
      if (sandbox && !this.live.get(index)?.signal.aborted) await this.destroySandbox(index, sandbox);
    }
  }

  private onAgentEvent(index: number, event: AgentEvent): void {
    this.record({ run: index, type: event.type, data: event.data });
    if (event.type === "agent.result") {
      this.patchRun(index, { costUsd: Number(event.data.costUsd) || 0, numTurns: Number(event.data.numTurns) || 0 });
    }
  }

  private async stopAll(status: "cancelled" | "timed_out", error: ErrorInfo): Promise<void> {
    const task = this.requireTask();
    const stopping = task.runs.filter((run) => !isTerminal(run.status)).map((run) => run.index);
    this.setState({ ...task, error });
    for (const index of stopping) {
      this.live.get(index)?.abort();
      await this.finishRun(index, status, error);
    }
    await Promise.all(stopping.map((index) => this.destroySandbox(index)));
  }

  // ---- state -----------------------------------------------------------

  private setPhase(index: number, phase: RunPhase): void {
    const run = this.runOf(index);
    if (isTerminal(run.status)) return;
    const starting = run.status === "queued";
    this.patchRun(index, { status: "running", phase, startedAt: run.startedAt ?? Date.now() });
    this.record({ run: index, type: "run.status", data: { status: "running", phase } });
    const task = this.requireTask();
    if (starting && task.status === "queued") {
      this.setState({ ...task, status: "running", startedAt: Date.now() });
      this.record({ run: null, type: "task.status", data: { status: "running" } });
      void this.index();
    }
  }

  private async finishRun(index: number, status: TaskStatus, error: ErrorInfo | null): Promise<void> {
    const run = this.runOf(index);
    if (isTerminal(run.status)) return;
    const endedAt = Date.now();
    this.patchRun(index, { status, phase: null, endedAt, durationMs: run.startedAt ? endedAt - run.startedAt : null, error });
    this.record({ run: index, type: "run.status", data: { status, ...(error ? { error } : {}) } });
    const task = this.requireTask();
    if (task.runs.every((r) => isTerminal(r.status))) {
      const outcome = taskOutcome(task);
      this.setState({ ...task, status: outcome.status, endedAt, error: outcome.error, costUsd: task.runs.reduce((sum, r) => sum + r.costUsd, 0) });
      this.record({ run: null, type: "task.status", data: { status: outcome.status, ...(outcome.error ? { error: outcome.error } : {}) } });
      for (const schedule of await this.listSchedules({ type: "delayed" })) await this.cancelSchedule(schedule.id);
    }
    await this.index();
  }

  private patchRun(index: number, patch: Partial<RunView>): void {
    const task = this.requireTask();
    this.setState({ ...task, runs: task.runs.map((run) => (run.index === index ? { ...run, ...patch } : run)) });
  }

  private record(input: { run: number | null; type: string; data: Record<string, unknown> }): void {
    const event = this.events.append({ ...input, data: this.redact(input.data) });
    this.broadcast(JSON.stringify({ type: "event", event }));
  }

  /** Keeps the D1 index current; a failure is logged as an event and retried at the next change. */
  private async index(): Promise<void> {
    const task = this.state;
    if (!task) return;
    try {
      await saveTask(this.env.DB, task);
    } catch (error) {
      this.record({ run: null, type: "index.error", data: { message: messageOf(error) } });
    }
  }

  private async destroySandbox(index: number, open?: Sandbox): Promise<void> {
    const spec = this.requireSpec();
    try {
      const sandbox = open ?? (await sandboxPortFor(this.env, this.config).open(sandboxIdFor(spec.id, index)));
      await sandbox.destroy();
      this.ctx.storage.kv.delete(sandboxKey(index));
      this.record({ run: index, type: "sandbox.destroyed", data: { sandbox: sandbox.id } });
    } catch (error) {
      this.record({ run: index, type: "sandbox.destroy_failed", data: { message: messageOf(error) } });
    }
  }

  private agentCredentials(): Record<string, string> {
    const credentials: Record<string, string> = {};
    if (this.env.ANTHROPIC_API_KEY) credentials.ANTHROPIC_API_KEY = this.env.ANTHROPIC_API_KEY;
    if (this.env.ANTHROPIC_BASE_URL) credentials.ANTHROPIC_BASE_URL = this.env.ANTHROPIC_BASE_URL;
    return credentials;
  }

  private redact(data: Record<string, unknown>): Record<string, unknown> {
    return redactor([this.env.ANTHROPIC_API_KEY, this.env.SORTIE_ADMIN_TOKEN, this.env.LOCAL_SANDBOX_TOKEN])(data);
  }

  private runOf(index: number): RunView {
    const run = this.requireTask().runs[index];
    if (!run) throw new SortieError("not_found", `task has no run ${index}`, 404);
    return run;
  }

  private requireTask(): TaskState {
    if (!this.state) throw new SortieError("not_found", "no such task", 404);
    return this.state;
  }

  private requireSpec(): TaskSpec {
    const spec = this.ctx.storage.kv.get<TaskSpec>(SPEC_KEY);
    if (!spec) throw new Error("task spec missing from storage");
    return spec;
  }
}

function newRun(taskId: string, index: number): RunView {
  return {
    index,
    status: "queued",
    phase: null,
    branch: `sortie/${taskId}/${index}`,
    sessionId: null,
    baseCommit: null,
    startedAt: null,
    endedAt: null,
    durationMs: null,
    numTurns: null,
    costUsd: 0,
    diff: null,
    error: null,
  };
}

/** Sandbox ids are lowercase DNS-safe labels: the task id and the run index. */
export function sandboxIdFor(taskId: string, index: number): string {
  return `${taskId}-${index}`;
}

/** A task succeeds if any run did; otherwise it carries the first run's failure. */
function taskOutcome(task: TaskState): { status: TaskStatus; error: ErrorInfo | null } {
  if (task.runs.some((run) => run.status === "succeeded")) return { status: "succeeded", error: null };
  for (const status of ["timed_out", "cancelled"] as const) {
    const run = task.runs.find((r) => r.status === status);
    if (run) return { status, error: run.error };
  }
  const failed = task.runs.find((run) => run.status === "failed");
  return { status: "failed", error: failed?.error ?? { code: "failed", message: "every run failed" } };
}

function classify(error: unknown): ErrorInfo {
  if (error instanceof CloneError) return { code: "clone_failed", message: error.message };
  if (error instanceof SandboxUnavailableError) return { code: "sandbox_unavailable", message: error.message };
  return { code: "internal", message: messageOf(error) };
}
