/**
 * TaskAgent: one Durable Object per task, named by the task id. It holds the
 * task's state, its event log and its viewers' WebSockets, and it decides
 * what happens next. It never does the coding work: each run happens in a
 * sandbox of its own, driven through the execution port, and the agent records.
 */
import { Agent, type Connection, type ConnectionContext, type WSMessage } from "agents";
import { readConfig, type SortieConfig } from "../config.ts";
import { deploymentRedactor } from "../redact.ts";
import { SortieError, messageOf } from "../errors.ts";
import { sandboxPortFor } from "../sandbox/index.ts";
import { applyEvent, emptyFold, type TaskEvent, type TaskFold } from "../events.ts";
import type { PlanFile } from "../plan-schema.ts";
import { isTerminal, type ErrorInfo, type EventInput, type Publication, type RunView, type TaskSpec, type TaskState, type TaskStatus } from "../schema.ts";
import { insertTask, saveTask } from "../store/tasks.ts";
import type { SlackTarget } from "../publish/slack.ts";
import { appendAudit } from "../store/audit.ts";
import { markMemoryWinner } from "../store/memory.ts";
import { DiffStore } from "../store/diff-store.ts";
import { TASK_AGENT_SCHEMA } from "../store/agent-schemas.ts";
import { migrateDurable } from "../store/durable-schema.ts";
import { EventLog } from "../store/event-log.ts";
import { LEASE_RENEW_SECONDS, claimsOf, fleetOf } from "./fleet.ts";
import { driveJudge, endJudge, type JudgeContext } from "./judge.ts";
import { admits, nextStep, preludeOf, reactionsTo, recoveryOf, type NextStep } from "./decide.ts";
import { SLACK_WORTHY, TaskNotifier, type NotifyContext } from "./notify.ts";
import { drivePublish, endPublication, publicationFor, type PublicationContext } from "./publisher.ts";
import { reportToPlan, type PlanReport } from "./plan-report.ts";
import { TaskCheckpoints } from "./checkpoints.ts";
import { LEGACY_WRITTEN_PLAN_KEY } from "./plan-roles.ts";
import { judgeSlot, publishSlot, reviewSlot, runSlot, slotFromNumber, slotKey, slotNumber, type Slot } from "./slot.ts";
import { fixEndedUnpublished, type TendingNote } from "./tending.ts";
import { driveRun, runTurn, type RunContext } from "./run.ts";
import { ViewedLog, ViewerStreams } from "./viewer-streams.ts";
import { RunPreviews, type PreviewTarget } from "./preview.ts";
import { ScreenshotStore } from "../store/screenshot-store.ts";
import { TaskSlots, type SlotContext } from "./slots.ts";
import { SPEC_KEY, newTask, runEnded, runReopened, type Refusal, type RunProgress } from "./task-state.ts";

/** What the modules that drive and report on the task borrow from its agent. */
type TaskContext = RunContext & JudgeContext & PublicationContext & NotifyContext & SlotContext;

/**
 * The agent keeps no state of its own beside the event log: the task is the
 * fold of its events (src/events.ts), kept current as each one is appended.
 */
export class TaskAgent extends Agent<Cloudflare.Env, TaskState | null> {
  static override options = { sendIdentityOnConnect: false };
  override initialState: TaskState | null = null;

  /** The event log and its viewers, made on first use. */
  private viewedLog?: ViewedLog;
  private folded?: TaskFold;
  private diffStore?: DiffStore;
  private borrowed?: TaskContext;
  private taskSlots?: TaskSlots;
  private taskNotifier?: TaskNotifier;
  private runPreviews?: RunPreviews;
  private screenshotStore?: ScreenshotStore;
  private taskCheckpoints?: TaskCheckpoints;

  constructor(ctx: DurableObjectState, env: Cloudflare.Env) {
    super(ctx, env);
    // The task's tables (its log, patches, screenshots), made (or brought up to date) once per instance.
    migrateDurable(ctx.storage, "task-agent", TASK_AGENT_SCHEMA);
  }
  /** The slots (runs, the judge, the publisher) this instance is driving right now, by slotKey. */
  private readonly live = new Map<string, AbortController>();
  /** Secrets minted during this instance's life (push tokens), redacted like the configured ones. */
  private readonly extraSecrets = new Set<string>();
  private scrub?: <T>(value: T) => T;

  private get viewed(): ViewedLog {
    this.viewedLog ??= new ViewedLog(this.ctx.storage, () => this.getConnections(), (events) =>
      this.current ? JSON.stringify({ type: "cf_agent_state", seq: events.lastSeq, state: this.current }) : null,
    );
    return this.viewedLog;
  }

  private get events(): EventLog {
    return this.viewed.events;
  }

  private get viewers(): ViewerStreams {
    return this.viewed.viewers;
  }

  private get diffs(): DiffStore {
    this.diffStore ??= new DiffStore(this.ctx.storage.sql);
    return this.diffStore;
  }

  private get config(): SortieConfig {
    return readConfig(this.env);
  }

  private get slots(): TaskSlots {
    this.taskSlots ??= new TaskSlots(this.context);
    return this.taskSlots;
  }

  private get previews(): RunPreviews {
    this.runPreviews ??= new RunPreviews({
      kv: this.ctx.storage.kv,
      spec: () => this.requireSpec(),
      port: () => sandboxPortFor(this.env, this.config),
      runOf: (index) => this.runOf(index),
      record: (input) => this.record(input),
      localUrl: (index) => `${this.requireSpec().origin ?? ""}/preview/${this.requireTask().id}/${index}/`,
      hostname: () => this.env.PREVIEW_HOSTNAME || null,
      readyTimeoutMs: () => this.config.previewReadyMs,
    });
    return this.runPreviews;
  }

  private get checkpoints(): TaskCheckpoints {
    this.taskCheckpoints ??= new TaskCheckpoints(this.ctx.storage.kv, (key, write) => this.events.afterPending(key, write));
    return this.taskCheckpoints;
  }

  private get screenshots(): ScreenshotStore {
    this.screenshotStore ??= new ScreenshotStore(this.ctx.storage.sql);
    return this.screenshotStore;
  }

  private get notifier(): TaskNotifier {
    this.taskNotifier ??= new TaskNotifier(this.context);
    return this.taskNotifier;
  }

  private get context(): TaskContext {
    if (this.borrowed) return this.borrowed;
    const context: TaskContext = {
      env: this.env,
      kv: this.ctx.storage.kv,
      diffs: () => this.diffs,
      sharedWorkspace: {},
      config: () => this.config,
      port: () => sandboxPortFor(this.env, this.config),
      task: () => this.requireTask(),
      spec: () => this.requireSpec(),
      runOf: (index) => this.runOf(index),
      fold: () => this.fold,
      checkpoints: this.checkpoints,
      record: (input) => this.record(input),
      recordOutput: (input) => this.record(input, { batched: true }),
      log: (input) => this.record(input, { quiet: true }),
      redact: (data) => this.redact(data),
      addSecret: (secret) => {
        this.extraSecrets.add(secret);
        this.scrub = undefined;
      },
      openSandbox: (slot, shared) => this.slots.open(slot, shared),
      destroySandbox: (slot, open) => this.slots.destroy(slot, open),
      abort: (slot) => this.live.get(slotKey(slot))?.abort(),
      runTurn: (slot, sandbox, turn, signal) => runTurn(context, slot, sandbox, turn, signal),
      advance: () => this.advance(),
      previews: this.previews,
      previewTarget: (index) => this.previews.target(index),
      screenshots: () => this.screenshots,
      origin: () => this.notifier.origin(),
      index: () => this.index(),
    };
    this.borrowed = context;
    return context;
  }

  // ---- the task's surface (RPC from the Worker and the fleet) ----------

  /** Creates the task and queues its runs with the fleet. Calling it again returns the task as it is. */
  async create(spec: TaskSpec): Promise<TaskState> {
    if (this.current) return this.current;
    // What the task shows (API, D1, Slack, pull requests) has secrets pasted into the prompt redacted; the agent gets it whole.
    const task = newTask(spec, this.redact(spec.prompt));
    // The index row first: if D1 refuses, nothing of the task exists anywhere.
    await insertTask(this.env.DB, task);
    this.ctx.storage.kv.put(SPEC_KEY, spec);
    this.record({ run: null, type: "task.created", data: { task } });
    this.record({ run: null, type: "task.status", data: { status: "queued", runs: task.runs.length } });
    await this.audit(spec.createdBy, "task.create", { repo: spec.repo, runs: task.runs.length, source: spec.source });
    if (spec.key) await this.scheduleEvery(LEASE_RENEW_SECONDS, "renewClaim");
    const fleet = await fleetOf(this.env);
    const positions = await fleet.enqueue(spec.id, task.runs.map((run) => run.index), spec.createdBy);
    for (const [run, position] of Object.entries(positions)) {
      this.record({ run: Number(run), type: "run.queued", data: { position } });
    }
    return this.requireTask();
  }

  /** The task's current state, or null if no task has this id. */
  view(): TaskState | null {
    return this.current;
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

  /** The fleet grants a sandbox slot: start that run (or the judge). False if there is nothing to start. */
  grantRun(granted: number): boolean {
    const task = this.current;
    const slot = slotFromNumber(granted);
    if (!task || !slot || this.live.has(slotKey(slot))) return false;
    const waiting =
      slot.kind === "judge" ? task.judge?.status === "queued"
      : slot.kind === "publish" ? task.publication?.status === "queued"
      : slot.kind === "run" ? task.runs[slot.index]?.status === "queued" && !isTerminal(task.status)
      : false;
    if (!waiting) return false;
    this.slots.granted(slot);
    this.startRun(slot);
    return true;
  }

  /** Whether the slot numbered `granted` still needs the fleet grant it was given (asked by the fleet's sweeper). */
  holdsSlot(granted: number): boolean {
    const slot = slotFromNumber(granted);
    return slot !== null && (this.live.has(slotKey(slot)) || this.slots.hasSandbox(slot));
  }

  /**
   * Stops every live run, destroys their sandboxes, and ends the task
   * `cancelled`. A refusal is returned, not thrown: errors lose their type
   * on the way back over RPC.
   */
  async cancel(by: string): Promise<{ task: TaskState } | Refusal> {
    const task = this.requireTask();
    if (isTerminal(task.status)) return { refused: { code: "task_finished", message: `task ${task.id} already ended ${task.status}`, status: 409 } };
    await this.stopAll("cancelled", { code: "cancelled", message: `cancelled by ${by}` });
    await this.audit(by, "task.cancel");
    return { task: this.requireTask() };
  }

  /**
   * A follow-up: continues the run's Claude Code session (`--resume`) in the
   * same workspace. While a turn runs the message waits for it to end; a
   * finished run is reopened if its workspace is still kept.
   */
  async message(text: string, run: number | undefined, by: string): Promise<{ task: TaskState } | Refusal> {
    const task = this.requireTask();
    const index = run ?? task.winner?.run ?? 0;
    const target = task.runs[index];
    if (!target) return { refused: { code: "invalid_run", message: `task ${task.id} has runs 0 to ${task.runs.length - 1}, not ${index}`, status: 400 } };
    if (target.status === "cancelled" || target.status === "timed_out") {
      return { refused: { code: "run_ended", message: `run ${index} was ${target.status}; it takes no more messages`, status: 409 } };
    }
    const reopen = isTerminal(target.status);
    if (reopen && (!target.workspaceUntil || target.workspaceUntil < Date.now() || !this.slots.hasSandbox(runSlot(index)))) {
      return { refused: { code: "workspace_expired", message: `run ${index}'s workspace is gone; start a new task`, status: 409 } };
    }
    if (reopen && !target.sessionId) return { refused: { code: "no_session", message: `run ${index} has no Claude Code session to continue`, status: 409 } };
    this.checkpoints.queueMessage(index, { text, by });
    this.record({ run: index, type: "run.message", data: { text, by, delivery: reopen ? "reopen" : "after_turn" } });
    // Before the audit's await: the message and the reopening it asks for are stored together.
    const reopened = reopen ? this.record(runReopened(index)) : Promise.resolve();
    await this.audit(by, "task.message", { run: index });
    await reopened;
    return { task: this.requireTask() };
  }

  /** A reopened run (decide.ts `requeue`): its kept workspace no longer expires, and it waits for a fleet slot again. */
  private async requeue(index: number): Promise<void> {
    await this.cancelSchedulesFor("expireWorkspace", index);
    await this.index();
    const task = this.requireTask();
    const fleet = await fleetOf(this.env);
    await fleet.enqueue(task.id, [index], task.createdBy);
  }

  /** Alarm callback: a finished run's follow-up window has passed; its workspace goes, and its preview with it. */
  async expireWorkspace(payload: { slot: number; until?: number }): Promise<void> {
    const run = this.current?.runs[payload.slot];
    if (!run || !isTerminal(run.status)) return;
    // An alarm of an earlier window (its cancel lost to an eviction after a reopen): the current window has its own.
    if (payload.until !== undefined && payload.until !== run.workspaceUntil) return;
    await this.previews.stop(payload.slot, "workspace_released");
    this.record({ run: payload.slot, type: "run.workspace_released", data: {} });
    await this.slots.destroy(runSlot(payload.slot));
  }

  /** Where run `run`'s preview is served while it is starting or ready (the Worker's proxy asks); null otherwise. */
  previewTarget(run: number): PreviewTarget | null {
    if (!this.current?.runs[run]) return null;
    return this.previews.target(run);
  }

  /** `DELETE …/runs/:n/preview`: stops the run's preview; its workspace stays for follow-ups. */
  async stopPreview(run: number, by: string): Promise<{ task: TaskState } | Refusal> {
    const target = this.requireTask().runs[run];
    if (!target) return { refused: { code: "invalid_run", message: `task has runs 0 to ${this.requireTask().runs.length - 1}, not ${run}`, status: 400 } };
    const status = target.preview?.status;
    if (status !== "starting" && status !== "ready") return { refused: { code: "no_preview", message: `run ${run} has no live preview${status ? ` (it is ${status})` : ""}`, status: 409 } };
    await this.previews.stop(run, "deleted");
    await this.audit(by, "task.preview_stopped", { run });
    return { task: this.requireTask() };
  }

  /** The PNG of run `run`'s preview the judge was shown, if one was taken. */
  screenshot(run: number): Uint8Array | null {
    return this.screenshots.get(run);
  }

  /** Picks the run whose diff later steps publish. */
  async pickWinner(run: number, by: string): Promise<{ task: TaskState } | Refusal> {
    const task = this.requireTask();
    const chosen = task.runs[run];
    if (!chosen) return { refused: { code: "invalid_winner", message: `task ${task.id} has runs 0 to ${task.runs.length - 1}, not ${run}`, status: 400 } };
    if (chosen.status !== "succeeded" || !chosen.diff) {
      return { refused: { code: "winner_not_ready", message: `run ${run} is ${chosen.status} and has ${chosen.diff ? "a" : "no"} diff; only a succeeded run can win`, status: 409 } };
    }
    this.record({ run, type: "task.winner", data: { run, by } });
    await markMemoryWinner(this.env.DB, task.id, run).catch((error: unknown) => this.record({ run: null, type: "memory.error", data: { message: messageOf(error) } }));
    await this.audit(by, "task.winner", { run });
    return { task: this.requireTask() };
  }

  /**
   * Publishes a run (the winner unless `run` is given): pushes its branch and,
   * for `pr`/`draft-pr`, opens the pull request. Refused for a run without a
   * diff, while a publication is under way, or when the diff adds files that
   * look like secrets and the task did not allow them.
   */
  async publish(run: number | undefined, output: Publication["output"] | undefined, by: string): Promise<{ task: TaskState } | Refusal> {
    const task = this.requireTask();
    const publication = publicationFor(this.context, task, run, output, by);
    if ("refused" in publication) return publication;
    this.record({ run: publication.run, type: "publish.status", data: { status: "queued", output: publication.output, branch: publication.branch, by } });
    await this.audit(by, "task.publish", { run: publication.run, output: publication.output });
    const fleet = await fleetOf(this.env);
    await fleet.enqueue(task.id, [slotNumber(publishSlot)], task.createdBy);
    return { task: this.requireTask() };
  }

  /** A decision about the pull request this task opened (src/agents/tending.ts): an event, and its follow-ups kept current. */
  noteTending(note: TendingNote): void {
    this.record({ run: null, type: `tending.${note.decision}`, data: { ...note.data, ...(note.followUp ? { followUp: note.followUp } : {}) } });
  }

  /** Hands the task a Slack message to keep current (posted by the Slack trigger). */
  followInSlack(target: SlackTarget, origin: string): void {
    this.notifier.follow(target, origin);
  }

  /** Alarm callback: the task ran past its `timeoutMinutes`. */
  async onTimeout(): Promise<void> {
    const task = this.current;
    if (!task || isTerminal(task.status)) return;
    await this.stopAll("timed_out", { code: "timeout", message: `the task ran longer than its ${task.timeoutMinutes} minute limit` });
  }

  /** Schedule callback: keeps this task's claim on its key alive. */
  async renewClaim(): Promise<void> {
    const task = this.current;
    if (!task?.key) return;
    if (isTerminal(task.status)) return this.cancelSchedulesFor("renewClaim");
    const claims = await claimsOf(this.env, task.key);
    if (!(await claims.renewClaim(task.key, task.id))) this.record({ run: null, type: "claim.lost", data: { key: task.key } });
  }

  /**
   * Schedule callback while runs are live: a run nobody is driving is picked
   * up again or ended; a sandbox that stops answering twice fails its run.
   */
  async watchdog(): Promise<void> {
    const task = this.current;
    if (!task || isTerminal(task.status)) return this.cancelSchedulesFor("watchdog");
    for (const run of task.runs) {
      if (run.status !== "running") continue;
      const slot = runSlot(run.index);
      if (!this.live.has(slotKey(slot))) {
        await this.recover(run);
        continue;
      }
      if (await this.slots.stoppedAnswering(slot)) {
        this.live.get(slotKey(slot))?.abort();
        await this.finishRun(run.index, "failed", { code: "sandbox_unresponsive", message: "the sandbox stopped answering" });
        await this.slots.destroy(slot);
      }
    }
  }

  /** Asked by the fleet's sweeper for a task open far past any timeout: end it truthfully. */
  async closeIfStale(): Promise<void> {
    const task = this.current;
    if (!task || isTerminal(task.status)) return;
    await this.stopAll("timed_out", { code: "stale", message: "the task was still open long after its time limit; the sweeper closed it" });
  }

  /** On every wake: runs that were live when this instance went away are picked up again or ended. */
  override async onStart(): Promise<void> {
    const task = this.current;
    if (!task) return;
    for (const run of task.runs) {
      if (this.live.has(slotKey(runSlot(run.index)))) continue;
      // A reviewer is driven by its run: with the run not driven here, its sandbox has no one left.
      await this.slots.destroy(reviewSlot(run.index));
      if (isTerminal(run.status)) {
        await this.previews.recover(run.index);
        await this.cleanUpSlot(runSlot(run.index), { keepWorkspace: (run.workspaceUntil ?? 0) > Date.now() });
      }
      else if (run.status === "running") await this.recover(run);
      // A queued run is (again) in the fleet's queue; enqueueing twice changes nothing.
      else if (!isTerminal(task.status)) await (await fleetOf(this.env)).enqueue(task.id, [run.index], task.createdBy);
    }
    if (task.judge && isTerminal(task.judge.status)) await this.cleanUpSlot(judgeSlot);
    else if (task.judge?.status === "running" && !this.live.has(slotKey(judgeSlot))) {
      await endJudge(this.context, { ...task.judge, status: "failed", error: { code: "orchestrator_restarted", message: "the task agent restarted while judging" } });
    }
  }

  /** A viewer connects: it gets the task's state, every event after `?after=SEQ`, then live ones; `?frames=deflate` deflates its events frames (src/stream-protocol.ts). */
  override onConnect(connection: Connection, ctx: ConnectionContext): void {
    this.viewers.connect(connection, ctx.request.url);
  }

  /**
   * A viewer's acknowledgement lets more of the stream go to it. It is the
   * one message viewers send many of, so it is read here, before the SDK's
   * dispatch (which wraps the connection and parses every message again);
   * defining this handler keeps the SDK from installing its own, so
   * everything else is handed to it.
   */
  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    if (ViewerStreams.isAck(message)) return this.viewers.acknowledgeText(ws, message);
    return this.lifecycle.webSocketMessage(ws, message);
  }

  /** Nothing else a viewer sends means anything, but an acknowledgement that came through the SDK still counts. */
  override onMessage(connection: Connection, message: WSMessage): void {
    if (typeof message === "string") this.viewers.acknowledgeText(connection, message);
  }

  override onClose(connection: Connection): void {
    this.viewers.remove(connection);
  }

  /** Viewers get the state frames from this agent's own registry (ViewerStreams), not from the SDK's broadcast. */
  override shouldSendProtocolMessages(): boolean {
    return false;
  }

  /** The task's state is its log's fold (`current`); the SDK's own state is never set by this agent, and viewers set nothing. */
  override validateStateChange(_next: TaskState | null, source: Connection | "server"): void {
    if (source !== "server") throw new Error("task state is read-only for clients");
  }

  // ---- driving runs ----------------------------------------------------

  /** Drives a granted slot: a run (re-attached when `resume` says where its process stands), the judge or the publisher. */
  private startRun(slot: Slot, resume?: RunProgress): void {
    if (slot.kind === "review") throw new Error("a reviewer is driven by its run");
    const abort = new AbortController();
    this.live.set(slotKey(slot), abort);
    const drive =
      slot.kind === "judge" ? () => driveJudge(this.context, abort.signal)
      : slot.kind === "publish" ? () => drivePublish(this.context)
      : () => driveRun(this.context, slot.index, abort.signal, resume);
    void this.keepAliveWhile(drive)
      .catch((error: unknown) => {
        const failure = { code: "internal", message: messageOf(error) };
        if (slot.kind === "judge") return endJudge(this.context, { ...this.requireTask().judge!, status: "failed", error: failure });
        if (slot.kind === "publish") return endPublication(this.context, { status: "failed", error: failure });
        return this.finishRun(slot.index, "failed", failure);
      })
      .finally(() => {
        this.live.delete(slotKey(slot));
        const run = slot.kind === "run" ? this.current?.runs[slot.index] : null;
        return this.cleanUpSlot(slot, { keepWorkspace: (run?.workspaceUntil ?? 0) > Date.now() });
      });
  }

  /** Gives the slot's sandbox and fleet grant back (see TaskSlots.cleanUp), unless this instance still drives it. */
  private async cleanUpSlot(slot: Slot, options: { keepWorkspace?: boolean } = {}): Promise<void> {
    if (this.live.has(slotKey(slot))) return;
    await this.slots.cleanUp(slot, options);
  }

  /** A run that was live when this instance went away: re-attach to its process, or end it truthfully. */
  private async recover(run: RunView): Promise<void> {
    const progress = this.checkpoints.progress(runSlot(run.index));
    const recovery = recoveryOf(run, progress !== undefined);
    switch (recovery.kind) {
      case "reattach":
        this.record({ run: run.index, type: "run.reattach", data: { processId: progress!.processId, from: progress!.offsets } });
        this.startRun(runSlot(run.index), progress);
        return;
      case "end_review":
        this.record({ run: run.index, type: "review.status", data: { status: "failed", reason: recovery.reason } });
        await this.slots.destroy(reviewSlot(run.index));
        await this.slots.destroy(runSlot(run.index));
        await this.finishRun(run.index, "succeeded", null);
        await this.cleanUpSlot(runSlot(run.index));
        return;
      case "restart":
        this.record({ run: run.index, type: "run.restart", data: { phase: run.phase } });
        await this.slots.destroy(runSlot(run.index));
        this.startRun(runSlot(run.index));
        return;
      case "fail":
        await this.finishRun(run.index, "failed", recovery.error);
        await this.cleanUpSlot(runSlot(run.index));
    }
  }

  // ---- ending ----------------------------------------------------------

  private async stopAll(status: "cancelled" | "timed_out", error: ErrorInfo): Promise<void> {
    const task = this.requireTask();
    const runs = task.runs.filter((run) => !isTerminal(run.status)).map((run) => run.index);
    const stopping: Slot[] = runs.map(runSlot);
    const fleet = await fleetOf(this.env);
    await fleet.dropQueued(task.id);
    if (task.judge && !isTerminal(task.judge.status)) {
      this.live.get(slotKey(judgeSlot))?.abort();
      stopping.push(judgeSlot);
      this.record({ run: null, type: "judge.status", data: { status, error } });
    }
    for (const index of runs) {
      this.live.get(slotKey(runSlot(index)))?.abort();
      await this.finishRun(index, status, error);
    }
    // Destroyed now, not when the aborted drivers unwind: a clone in progress is not abortable.
    await Promise.all([...stopping, ...runs.map(reviewSlot)].map((slot) => this.slots.destroy(slot)));
    await Promise.all(stopping.map((slot) => this.cleanUpSlot(slot)));
    await this.advance();
  }

  /** Ends a run (a run that has ended already stays as it ended); the task's next step follows (see `react`). */
  private finishRun(index: number, status: TaskStatus, error: ErrorInfo | null): Promise<void> {
    return this.record(runEnded(this.runOf(index), status, error));
  }

  /** Carries out what the task does next, as decided from its folded state (decide.ts): queue the judge, or end the task. */
  private async advance(): Promise<void> {
    const task = this.requireTask();
    const step = nextStep(task);
    switch (step.kind) {
      case "wait":
        return this.index();
      case "judge_fails":
        // Ending the judge advances the task again.
        return endJudge(this.context, { ...task.judge!, status: "failed", error: step.error });
      case "judge": {
        this.record({ run: null, type: "judge.queued", data: { candidates: step.candidates } });
        const fleet = await fleetOf(this.env);
        await fleet.enqueue(task.id, [slotNumber(judgeSlot)], task.createdBy);
        return this.index();
      }
      case "finish":
        return this.finish(step);
    }
  }

  /** Every run (and the judge, if any) has ended: the task ends with the outcome they add up to. */
  private async finish(outcome: Extract<NextStep, { kind: "finish" }>): Promise<void> {
    const task = this.requireTask();
    this.record({ run: null, type: "task.status", data: { status: outcome.status, ...(outcome.error ? { error: outcome.error } : {}) } });
    for (const schedule of await this.listSchedules()) {
      if (schedule.callback !== "expireWorkspace" && schedule.callback !== "reindex") await this.cancelSchedule(schedule.id);
    }
    await this.notifier.notify();
    // A publication asked for while the task was ending is the one that stands.
    if (outcome.publish && !this.requireTask().publication) {
      const published = await this.publish(undefined, outcome.publish, "sortie");
      if ("refused" in published) this.record({ run: null, type: "publish.skipped", data: { ...published.refused } });
    }
    if (task.key) {
      const claims = await claimsOf(this.env, task.key);
      await claims.releaseClaim(task.key, task.id);
    }
    // A fix of a tended pull request that published nothing frees the pull request (after its claim) for the next trigger.
    const fix = this.requireSpec().tending;
    if (fix) await fixEndedUnpublished(this.env, fix, this.requireTask()).catch((error: unknown) => this.record({ run: null, type: "tending.error", data: { message: messageOf(error) } }));
    await this.index();
    await this.reportToPlan();
  }

  /** A plan's planner or worker tells its PlanAgent how it ended (a PlanAgent that missed it asks with `planReport`). */
  private async reportToPlan(): Promise<void> {
    const role = this.requireSpec().plan;
    const report = this.planReport();
    if (!role || !report) return;
    try {
      await reportToPlan(this.env, role.id, report);
    } catch (error) {
      this.record({ run: null, type: "plan.report_failed", data: { plan: role.id, message: messageOf(error) } });
    }
  }

  /** How a plan's task ended: the state, the chosen run's diff and closing words, the plan written; null while it runs or outside a plan. */
  planReport(): PlanReport | null {
    const task = this.current;
    const role = task ? this.requireSpec().plan : undefined;
    if (!task || !role || !isTerminal(task.status)) return null;
    const run = task.winner?.run ?? task.runs.find((r) => r.status === "succeeded" && r.diff)?.index ?? null;
    return {
      task,
      run,
      diff: run !== null && task.runs[run]?.diff ? this.diffs.text(run, Number.POSITIVE_INFINITY) : null,
      summary: run !== null ? (this.fold.summaries[run] ?? null) : null,
      plan: role.role === "planner" ? (this.fold.writtenPlan ?? this.ctx.storage.kv.get<PlanFile>(LEGACY_WRITTEN_PLAN_KEY) ?? null) : null,
    };
  }

  // ---- state -----------------------------------------------------------

  /**
   * Appends an event and folds it into the task: the one way anything changes
   * it. An event that no longer applies (decide.ts `admits`) is not recorded.
   * Unless `batched`, it is stored (with any pending before it) and sent at
   * once; one that changes the task is stored before viewers get the new
   * state, so the log never trails the state that followed from it. `quiet`
   * events keep Slack's message as it is. Resolves once the task has done
   * what follows from the event (`react`).
   */
  private record(input: EventInput, { batched = false, quiet = false } = {}): Promise<void> {
    const prior = this.current;
    if (prior && !admits(prior, input)) return Promise.resolve();
    // What must come first (decide.ts `preludeOf`) is recorded first, and what follows from it is carried out too.
    const preluded = prior ? preludeOf(prior, input).map((first) => this.record(first, { batched, quiet })) : [];
    const before = this.fold;
    const event = this.events.append({ ...input, data: this.redact(input.data) });
    this.folded = applyEvent(before, event);
    const changed = this.folded.task !== before.task;
    if (!batched || changed) this.events.flush();
    if (changed) this.viewedLog?.viewers.publishState();
    if (!quiet && SLACK_WORTHY.has(event.type)) this.notifier.update();
    return prior ? Promise.all([...preluded, this.react(before.task ?? prior, event)]).then(() => undefined) : Promise.resolve();
  }

  /**
   * Carries out what follows from an event (decide.ts `reactionsTo`): the
   * task's clock starts with its first run, synchronously, before the
   * recorder's next step; a run's end is followed by the task's next step.
   */
  private async react(before: TaskState, event: TaskEvent): Promise<void> {
    for (const reaction of reactionsTo(before, event)) {
      if (reaction === "expire_workspace" && event.type === "run.workspace_kept" && event.run !== null) {
        // An alarm destroys the kept workspace when its window closes.
        await this.schedule(Math.max(1, Math.round((event.data.until - event.ts) / 1000)), "expireWorkspace", { slot: event.run, until: event.data.until });
        await this.index();
      } else if (reaction === "start_clock") {
        void this.record({ run: null, type: "task.status", data: { status: "running" } });
        // The time limit counts from the first run's start, not from time spent waiting in the queue.
        void this.schedule(before.timeoutMinutes * 60, "onTimeout");
        void this.scheduleEvery(30, "watchdog");
        void this.index();
      } else if (reaction === "restart_clock") {
        // The first start's limit would end the follow-up early: it goes, and the limit counts from now.
        void this.cancelSchedulesFor("onTimeout").then(() => this.schedule(before.timeoutMinutes * 60, "onTimeout"));
        void this.scheduleEvery(30, "watchdog");
      } else if (reaction === "requeue" && event.run !== null) {
        await this.requeue(event.run);
      } else if (reaction === "advance") {
        await this.advance();
      }
    }
  }

  /** The fold of the whole log, read once per instance and kept current by `record`. */
  private get fold(): TaskFold {
    if (this.folded) return this.folded;
    let fold = emptyFold();
    for (let after = 0, page = this.events.page(0); page.length > 0; after = page.at(-1)!.seq, page = this.events.page(after)) {
      for (const event of page) fold = applyEvent(fold, event);
    }
    // A task stored before the log held its creation: its last saved state is where the fold starts.
    if (!fold.task && this.events.lastSeq > 0 && super.state) fold = { ...emptyFold(), task: super.state };
    this.folded = fold;
    return fold;
  }

  /** The task as its log tells it, or null if no task has this id. */
  private get current(): TaskState | null {
    return this.fold.task;
  }

  /** Keeps the D1 index current; a failure is logged as an event and retried at the next change. */
  private async index(): Promise<void> {
    const task = this.current;
    if (!task) return;
    try {
      await saveTask(this.env.DB, task);
    } catch (error) {
      this.record({ run: null, type: "index.error", data: { message: messageOf(error) } });
      // The task's own state is safe in this Durable Object; the listing catches up on a retry.
      await this.schedule(5, "reindex");
    }
  }

  /** Schedule callback: writes the D1 index again after a failed write. */
  async reindex(): Promise<void> {
    await this.index();
  }

  private async cancelSchedulesFor(callback: string, slot?: number): Promise<void> {
    for (const schedule of await this.listSchedules()) {
      if (schedule.callback !== callback) continue;
      if (slot !== undefined && (schedule.payload as { slot?: number } | undefined)?.slot !== slot) continue;
      await this.cancelSchedule(schedule.id);
    }
  }

  /** Appends to the audit trail; a failure is logged as an event, the action itself stands. */
  private async audit(actor: string, action: string, detail: Record<string, unknown> = {}): Promise<void> {
    try {
      await appendAudit(this.env.DB, { actor, action, taskId: this.current?.id ?? null, detail: this.redact(detail) });
    } catch (error) {
      this.record({ run: null, type: "audit.error", data: { action, message: messageOf(error) } });
    }
  }

  /** Every secret the deployment holds (src/redact.ts) and the tokens minted here, scrubbed deep inside `value`. */
  private redact<T>(value: T): T {
    this.scrub ??= deploymentRedactor(this.env, this.extraSecrets);
    return this.scrub(value);
  }

  private runOf(index: number): RunView {
    const run = this.requireTask().runs[index];
    if (!run) throw new SortieError("not_found", `task has no run ${index}`, 404);
    return run;
  }

  private requireTask(): TaskState {
    if (!this.current) throw new SortieError("not_found", "no such task", 404);
    return this.current;
  }

  private requireSpec(): TaskSpec {
    const spec = this.ctx.storage.kv.get<TaskSpec>(SPEC_KEY);
    if (!spec) throw new Error("task spec missing from storage");
    return spec;
  }
}
