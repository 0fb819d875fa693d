/**
 * TaskAgent: one Durable Object per task, named by the task id. It holds the
 * task's state, its event log and its viewers' WebSockets, and it decides
 * what happens next. It never does the coding work: each run happens in a
 * sandbox of its own, driven through the execution port, and the agent records.
 */
import { Agent, type Connection, type ConnectionContext } from "agents";
import { LIMITS, readConfig, type SortieConfig } from "../config.ts";
import { SortieError, messageOf } from "../errors.ts";
import { takeDiff } from "../publish/diff.ts";
import { runClaudeTurn, type AgentEvent, type ClaudeTurnResult } from "../runners/claude-code.ts";
import { CloneError } from "../sandbox/checkout.ts";
import { sandboxPortFor } from "../sandbox/index.ts";
import { SandboxUnavailableError, type Sandbox, type StreamOffsets } from "../sandbox/port.ts";
import { isTerminal, type ErrorInfo, type JudgeView, type Publication, type RunPhase, type RunView, type TaskSpec, type TaskState, type TaskStatus } from "../schema.ts";
import { insertTask, saveTask } from "../store/tasks.ts";
import { DiffStore } from "./diff-store.ts";
import { EventLog } from "./event-log.ts";
import { LEASE_RENEW_SECONDS, fleetOf } from "./fleet.ts";
import { JUDGE_DIFF_CHARS, JUDGE_SLOT, judgePrompt, parseVerdict, type Candidate } from "./judge.ts";
import { redactor } from "./redact.ts";
import { backoffMs, isRetryable } from "./retry.ts";
import { prepareWorkspace } from "./workspace.ts";
import { SetupError } from "../runners/setup.ts";
import { estimateCostUsd, type Usage } from "../runners/pricing.ts";
import { postOrUpdate, taskLinks, type SlackTarget } from "../publish/slack.ts";
import { PUBLISH_SLOT, publishRun } from "./publisher.ts";
import { secretFilesIn } from "../publish/secret-files.ts";
import { appendAudit } from "../store/audit.ts";

/** Where a run's agent process stands, persisted so a restarted agent can re-attach to it. */
interface RunProgress {
  processId: string;
  offsets: StreamOffsets;
}

type Refusal = { refused: ErrorInfo & { status: 400 | 409 } };

const SPEC_KEY = "sortie:spec";
const progressKey = (slot: number) => `sortie:progress:${slot}`;
/** Set while a slot's sandbox may exist; cleared once it is destroyed, so none outlives a restart. */
const sandboxKey = (slot: number) => `sortie:sandbox:${slot}`;
/** Set while a slot holds a fleet grant that has not been given back. */
const grantKey = (slot: number) => `sortie:grant:${slot}`;
/** Follow-up messages waiting for a run's current turn to end. */
const pendingKey = (slot: number) => `sortie:pending:${slot}`;

/** The agent's closing words of a run, for its pull request. */
const summaryKey = (slot: number) => `sortie:summary:${slot}`;
/** The Slack message that follows this task, and the public origin for its links. */
const SLACK_KEY = "sortie:slack";

interface PendingMessage {
  text: string;
  by: string;
}

export class TaskAgent extends Agent<Cloudflare.Env, TaskState | null> {
  static override options = { sendIdentityOnConnect: false };
  override initialState: TaskState | null = null;

  private eventLog?: EventLog;
  private diffStore?: DiffStore;
  /** Runs (and the judge, at JUDGE_SLOT) this instance is driving right now. */
  private readonly live = new Map<number, AbortController>();
  private readonly watchdogStrikes = new Map<number, number>();
  /** The task's workspace snapshot, shared by its runs (see workspace.ts). */
  private readonly sharedWorkspace: { snapshot?: Promise<string | null> } = {};
  /** Secrets minted during this instance's life (push tokens), redacted like the configured ones. */
  private readonly extraSecrets = new Set<string>();
  private slackUpdates: Promise<void> = Promise.resolve();
  /** Estimated spending of each slot's current turn, until the CLI reports the real figure. */
  private readonly turnEstimates = new Map<number, number>();
  /** Open sandboxes of the slots being driven, for the watchdog's probe. */
  private readonly handles = new Map<number, Sandbox>();

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

  // ---- the task's surface (RPC from the Worker and the fleet) ----------

  /** Creates the task and queues its runs with the fleet. Calling it again returns the task as it is. */
  async create(spec: TaskSpec): Promise<TaskState> {
    if (this.state) return this.state;
    const task: TaskState = {
      id: spec.id,
      repo: spec.repo,
      branch: spec.branch,
      // What the task shows (API, D1, Slack, pull requests) has secrets pasted into the prompt redacted; the agent gets it whole.
      prompt: this.redact({ prompt: spec.prompt }).prompt as string,
      model: spec.model,
      maxTurns: spec.maxTurns,
      timeoutMinutes: spec.timeoutMinutes,
      source: spec.source,
      createdBy: spec.createdBy,
      status: "queued",
      createdAt: Date.now(),
      startedAt: null,
      endedAt: null,
      costUsd: 0,
      error: null,
      key: spec.key,
      maxCostUsd: spec.maxCostUsd,
      runs: spec.runs.map((variant, index) => newRun(spec, index, variant.model ?? null, variant.prompt_suffix ?? null)),
      judge: spec.judge ? { status: "queued", winner: null, ranking: [], reasons: "", costUsd: 0, error: null } : null,
      winner: null,
      output: spec.output ?? "diff",
      publication: null,
    };
    // The index row first: if D1 refuses, nothing of the task exists anywhere.
    await insertTask(this.env.DB, task);
    this.ctx.storage.kv.put(SPEC_KEY, spec);
    this.setState(task);
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

  /** The fleet grants a sandbox slot: start that run (or the judge). False if there is nothing to start. */
  grantRun(slot: number): boolean {
    const task = this.state;
    if (!task || this.live.has(slot)) return false;
    const waiting =
      slot === JUDGE_SLOT ? task.judge?.status === "queued" : slot === PUBLISH_SLOT ? task.publication?.status === "queued" : task.runs[slot]?.status === "queued";
    if (!waiting || (slot < JUDGE_SLOT && isTerminal(task.status))) return false;
    this.ctx.storage.kv.put(grantKey(slot), true);
    this.startRun(slot);
    return true;
  }

  /** Whether `slot` still needs the fleet grant it was given (asked by the fleet's sweeper). */
  holdsSlot(slot: number): boolean {
    return this.live.has(slot) || this.ctx.storage.kv.get(sandboxKey(slot)) === true;
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
    if (reopen && (!target.workspaceUntil || target.workspaceUntil < Date.now() || !this.ctx.storage.kv.get(sandboxKey(index)))) {
      return { refused: { code: "workspace_expired", message: `run ${index}'s workspace is gone; start a new task`, status: 409 } };
    }
    if (reopen && !target.sessionId) return { refused: { code: "no_session", message: `run ${index} has no Claude Code session to continue`, status: 409 } };
    const pending = [...(this.ctx.storage.kv.get<PendingMessage[]>(pendingKey(index)) ?? []), { text, by }];
    this.ctx.storage.kv.put(pendingKey(index), pending);
    this.patchRun(index, { pendingMessages: pending.length });
    this.record({ run: index, type: "run.message", data: { text, by, delivery: reopen ? "reopen" : "after_turn" } });
    await this.audit(by, "task.message", { run: index });
    if (reopen) await this.reopen(index);
    return { task: this.requireTask() };
  }

  /** Puts a finished run with a kept workspace back in the queue, to deliver its follow-ups. */
  private async reopen(index: number): Promise<void> {
    await this.cancelSchedulesFor("expireWorkspace", index);
    this.patchRun(index, { status: "queued", phase: null, endedAt: null, durationMs: null, error: null, workspaceUntil: null });
    const task = this.requireTask();
    if (isTerminal(task.status)) {
      this.setState({ ...task, status: "running", endedAt: null, error: null });
      this.record({ run: null, type: "task.status", data: { status: "running", reason: "follow-up" } });
      void this.schedule(task.timeoutMinutes * 60, "onTimeout");
      void this.scheduleEvery(30, "watchdog");
    }
    await this.index();
    const fleet = await fleetOf(this.env);
    await fleet.enqueue(task.id, [index], task.createdBy);
  }

  /** Alarm callback: a finished run's follow-up window has passed; its workspace goes. */
  async expireWorkspace(payload: { slot: number }): Promise<void> {
    const run = this.state?.runs[payload.slot];
    if (!run || !isTerminal(run.status)) return;
    this.patchRun(payload.slot, { workspaceUntil: null });
    await this.destroySandbox(payload.slot);
  }

  /** Picks the run whose diff later steps publish. */
  async pickWinner(run: number, by: string): Promise<{ task: TaskState } | Refusal> {
    const task = this.requireTask();
    const chosen = task.runs[run];
    if (!chosen) return { refused: { code: "invalid_winner", message: `task ${task.id} has runs 0 to ${task.runs.length - 1}, not ${run}`, status: 400 } };
    if (chosen.status !== "succeeded" || !chosen.diff) {
      return { refused: { code: "winner_not_ready", message: `run ${run} is ${chosen.status} and has ${chosen.diff ? "a" : "no"} diff; only a succeeded run can win`, status: 409 } };
    }
    this.setState({ ...task, winner: { run, by, at: Date.now() } });
    this.record({ run, type: "task.winner", data: { run, by } });
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
    const index = run ?? task.winner?.run ?? task.runs.find((r) => r.status === "succeeded" && r.diff)?.index;
    const chosen = index === undefined ? undefined : task.runs[index];
    if (index === undefined || !chosen) return { refused: { code: "invalid_run", message: "name a run: no winner is picked and no run succeeded", status: 400 } };
    if (chosen.status !== "succeeded" || !chosen.diff || chosen.diff.files === 0) {
      return { refused: { code: "nothing_to_publish", message: `run ${index} is ${chosen.status} with ${chosen.diff?.files ?? 0} changed files; only a succeeded run with changes can be published`, status: 409 } };
    }
    if (task.publication && !isTerminal(task.publication.status)) return { refused: { code: "publishing", message: "a publication of this task is under way", status: 409 } };
    const secrets = secretFilesIn(this.diffText(index, Number.POSITIVE_INFINITY));
    if (secrets.length > 0 && !this.requireSpec().allowSecretFiles) {
      return { refused: { code: "secret_files", message: `run ${index} adds files that look like secrets (${secrets.join(", ")}); the task must allow them to publish`, status: 409 } };
    }
    const publication: Publication = {
      status: "queued",
      output: output ?? (task.output === "diff" ? "pr" : task.output),
      run: index,
      branch: chosen.branch,
      commit: null,
      pullRequest: null,
      by,
      error: null,
    };
    this.setState({ ...task, publication });
    this.record({ run: index, type: "publish.status", data: { status: "queued", output: publication.output, branch: publication.branch } });
    await this.audit(by, "task.publish", { run: index, output: publication.output });
    const fleet = await fleetOf(this.env);
    await fleet.enqueue(task.id, [PUBLISH_SLOT], task.createdBy);
    return { task: this.requireTask() };
  }

  /** Hands the task a Slack message to keep current (posted by the Slack trigger). */
  followInSlack(target: SlackTarget, origin: string): void {
    this.ctx.storage.kv.put(SLACK_KEY, { target, origin });
  }

  /** Alarm callback: the task ran past its `timeoutMinutes`. */
  async onTimeout(): Promise<void> {
    const task = this.state;
    if (!task || isTerminal(task.status)) return;
    await this.stopAll("timed_out", { code: "timeout", message: `the task ran longer than its ${task.timeoutMinutes} minute limit` });
  }

  /** Schedule callback: keeps this task's claim on its key alive. */
  async renewClaim(): Promise<void> {
    const task = this.state;
    if (!task?.key) return;
    if (isTerminal(task.status)) return this.cancelSchedulesFor("renewClaim");
    const fleet = await fleetOf(this.env);
    if (!(await fleet.renewClaim(task.key, task.id))) this.record({ run: null, type: "claim.lost", data: { key: task.key } });
  }

  /**
   * Schedule callback while runs are live: a run nobody is driving is picked
   * up again or ended; a sandbox that stops answering twice fails its run.
   */
  async watchdog(): Promise<void> {
    const task = this.state;
    if (!task || isTerminal(task.status)) return this.cancelSchedulesFor("watchdog");
    for (const run of task.runs) {
      if (run.status !== "running") continue;
      if (!this.live.has(run.index)) {
        await this.recover(run);
        continue;
      }
      if (await this.sandboxAnswers(run.index)) {
        this.watchdogStrikes.delete(run.index);
        continue;
      }
      const strikes = (this.watchdogStrikes.get(run.index) ?? 0) + 1;
      this.watchdogStrikes.set(run.index, strikes);
      this.record({ run: run.index, type: "run.watchdog", data: { strikes } });
      if (strikes >= 2) {
        this.live.get(run.index)?.abort();
        await this.finishRun(run.index, "failed", { code: "sandbox_unresponsive", message: "the sandbox stopped answering" });
        await this.destroySandbox(run.index);
      }
    }
  }

  /** Asked by the fleet's sweeper for a task open far past any timeout: end it truthfully. */
  async closeIfStale(): Promise<void> {
    const task = this.state;
    if (!task || isTerminal(task.status)) return;
    await this.stopAll("timed_out", { code: "stale", message: "the task was still open long after its time limit; the sweeper closed it" });
  }

  /** On every wake: runs that were live when this instance went away are picked up again or ended. */
  override async onStart(): Promise<void> {
    const task = this.state;
    if (!task) return;
    for (const run of task.runs) {
      if (this.live.has(run.index)) continue;
      if (isTerminal(run.status)) await this.cleanUpSlot(run.index, { keepWorkspace: (run.workspaceUntil ?? 0) > Date.now() });
      else if (run.status === "running") await this.recover(run);
      // A queued run is (again) in the fleet's queue; enqueueing twice changes nothing.
      else if (!isTerminal(task.status)) await (await fleetOf(this.env)).enqueue(task.id, [run.index], task.createdBy);
    }
    if (task.judge && isTerminal(task.judge.status)) await this.cleanUpSlot(JUDGE_SLOT);
    else if (task.judge?.status === "running" && !this.live.has(JUDGE_SLOT)) {
      await this.endJudge({ ...task.judge, status: "failed", error: { code: "orchestrator_restarted", message: "the task agent restarted while judging" } });
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

  private startRun(slot: number, resume?: RunProgress): void {
    const abort = new AbortController();
    this.live.set(slot, abort);
    const drive =
      slot === JUDGE_SLOT ? () => this.driveJudge(abort.signal) : slot === PUBLISH_SLOT ? () => this.drivePublish() : () => this.driveRun(slot, abort.signal, resume);
    void this.keepAliveWhile(drive)
      .catch((error: unknown) => {
        const failure = { code: "internal", message: messageOf(error) };
        if (slot === JUDGE_SLOT) return this.endJudge({ ...this.requireTask().judge!, status: "failed", error: failure });
        if (slot === PUBLISH_SLOT) return this.endPublication({ status: "failed", error: failure });
        return this.finishRun(slot, "failed", failure);
      })
      .finally(() => {
        this.live.delete(slot);
        const run = slot >= JUDGE_SLOT ? null : this.state?.runs[slot];
        return this.cleanUpSlot(slot, { keepWorkspace: (run?.workspaceUntil ?? 0) > Date.now() });
      });
  }

  private async driveRun(index: number, signal: AbortSignal, resume?: RunProgress): Promise<void> {
    const spec = this.requireSpec();
    const run = this.runOf(index);
    // A run that already has a session was reopened by a follow-up message.
    const followUp = !resume && run.sessionId !== null;
    let sandbox: Sandbox | undefined;
    let keep = false;
    // The outcome is recorded after the sandbox is dealt with, so a run that reads as ended has no sandbox left behind.
    let outcome: [TaskStatus, ErrorInfo | null] | null = null;
    try {
      if (resume || followUp) {
        sandbox = await this.openSandbox(index);
        this.setPhase(index, "agent");
      } else {
        sandbox = await this.provision(index, spec, signal);
        if (!sandbox) return;
        this.setPhase(index, "agent");
      }
      const repoDir = `${sandbox.workdir}/repo`;
      const model = run.model ?? spec.model;
      let turn: ClaudeTurnResult | null = null;
      if (!followUp) {
        const prompt = run.promptSuffix ? `${spec.prompt}\n\n${run.promptSuffix}` : spec.prompt;
        turn = await this.runAgent(index, sandbox, { prompt, cwd: repoDir, model, maxTurns: spec.maxTurns, resumeSessionId: null }, signal, resume);
      }
      // Follow-ups queued while a turn ran are delivered, in order, once it ends.
      for (;;) {
        if (signal.aborted || this.runOf(index).status !== "running") return;
        if (turn && (!turn.final || turn.final.isError)) break;
        const next = this.takePending(index);
        if (!next) break;
        this.record({ run: index, type: "run.message_delivered", data: { text: next.text, by: next.by } });
        turn = await this.runAgent(index, sandbox, { prompt: next.text, cwd: repoDir, model, maxTurns: spec.maxTurns, resumeSessionId: this.runOf(index).sessionId }, signal);
      }
      if (!turn) throw new Error("no turn ran");
      if (signal.aborted || this.runOf(index).status !== "running") return;
      if (!turn.final) {
        outcome = ["failed", { code: "agent_no_result", message: `Claude Code exited ${turn.exitCode} without a result` }];
        return;
      }
      this.patchRun(index, { sessionId: turn.sessionId ?? this.runOf(index).sessionId });
      this.setPhase(index, "diffing");
      const base = this.runOf(index).baseCommit;
      if (!base) throw new Error("the run has no base commit to diff against");
      const taken = await takeDiff(sandbox, repoDir, base, `${sandbox.workdir}/sortie.diff`);
      const bytes = await this.diffs.write(index, await sandbox.readFile(taken.path));
      const diff = { ...taken.stats, bytes };
      const secretFiles = secretFilesIn(this.diffText(index, Number.POSITIVE_INFINITY));
      this.patchRun(index, { diff, ...(secretFiles.length ? { secretFiles } : {}) });
      this.record({ run: index, type: "run.diff", data: { ...diff, ...(secretFiles.length ? { secretFiles } : {}) } });
      keep = spec.keepWorkspaceMinutes > 0;
      if (turn.final.subtype === "error_max_turns") {
        outcome = ["failed", { code: "budget", message: `the run used its ${spec.maxTurns} turns` }];
      } else if (turn.final.isError || turn.exitCode !== 0) {
        outcome = ["failed", { code: "agent_failed", message: turn.final.text || `Claude Code ended ${turn.final.subtype} (exit ${turn.exitCode})` }];
      } else {
        outcome = ["succeeded", null];
      }
    } catch (error) {
      if (!signal.aborted && !isTerminal(this.runOf(index).status)) outcome = ["failed", classify(error)];
    } finally {
      this.ctx.storage.kv.delete(progressKey(index));
      const live = !signal.aborted && !isTerminal(this.runOf(index).status);
      const lateMessages = outcome !== null && outcome[0] !== "cancelled" && this.runOf(index).pendingMessages > 0 && this.runOf(index).sessionId !== null;
      if (live && outcome && (keep || lateMessages)) {
        await this.finishRun(index, ...outcome);
        // A message that came while the diff was being taken reopens the run at once.
        await this.keepWorkspace(index, Math.max(spec.keepWorkspaceMinutes, 1));
        if (lateMessages) await this.reopen(index);
      } else if (live) {
        await this.destroySandbox(index, sandbox);
        if (outcome) await this.finishRun(index, ...outcome);
      }
    }
  }

  /** Keeps a finished run's workspace for follow-ups; an alarm destroys it when the window closes. */
  private async keepWorkspace(index: number, minutes: number): Promise<void> {
    const until = Date.now() + minutes * 60_000;
    this.patchRun(index, { workspaceUntil: until });
    this.record({ run: index, type: "run.workspace_kept", data: { until } });
    await this.schedule(minutes * 60, "expireWorkspace", { slot: index });
    await this.index();
  }

  private takePending(index: number): PendingMessage | null {
    const pending = this.ctx.storage.kv.get<PendingMessage[]>(pendingKey(index)) ?? [];
    const [next, ...rest] = pending;
    if (!next) return null;
    if (rest.length) this.ctx.storage.kv.put(pendingKey(index), rest);
    else this.ctx.storage.kv.delete(pendingKey(index));
    this.patchRun(index, { pendingMessages: rest.length });
    return next;
  }

  /**
   * Opens the run's sandbox and clones the repo. A failure of the
   * infrastructure (the sandbox did not start, the network cut the clone) is
   * retried with backoff; a wrong repo or branch is not.
   */
  private async provision(index: number, spec: TaskSpec, signal: AbortSignal): Promise<Sandbox | undefined> {
    for (let attempt = 0; ; attempt++) {
      let sandbox: Sandbox | undefined;
      try {
        this.setPhase(index, "provisioning");
        sandbox = await this.openSandbox(index);
        if (signal.aborted) return undefined;
        const fleet = await fleetOf(this.env);
        const port = sandboxPortFor(this.env, this.config);
        const { commit, source } = await prepareWorkspace({
          sandbox,
          spec,
          repoDir: `${sandbox.workdir}/repo`,
          warm: { findWarm: (key) => fleet.findWarm(key), putWarm: (key, id) => fleet.putWarm(key, id) },
          shared: this.sharedWorkspace,
          signal,
          setPhase: (phase) => this.setPhase(index, phase),
          record: (type, data) => this.record({ run: index, type, data }),
          dropSnapshot: (id) => port.dropSnapshot(id),
        });
        if (signal.aborted) return undefined;
        this.patchRun(index, { baseCommit: commit, workspace: source });
        if (source !== "clone") this.record({ run: index, type: "run.restored", data: { commit, source } });
        return sandbox;
      } catch (error) {
        if (signal.aborted || !isRetryable(error) || attempt >= LIMITS.maxInfraRetries) throw error;
        const failure = classify(error);
        const delayMs = backoffMs(attempt, this.config.retryBaseMs);
        this.patchRun(index, { attempts: [...this.runOf(index).attempts, { at: Date.now(), ...failure }] });
        this.record({ run: index, type: "run.retry", data: { attempt: attempt + 1, of: LIMITS.maxInfraRetries, delayMs, error: failure } });
        await this.destroySandbox(index, sandbox);
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        if (signal.aborted) return undefined;
      }
    }
  }

  private async runAgent(
    slot: number,
    sandbox: Sandbox,
    turn: { prompt: string; cwd: string; model: string | null; maxTurns: number; resumeSessionId?: string | null },
    signal: AbortSignal,
    resume?: RunProgress,
  ): Promise<ClaudeTurnResult> {
    return runClaudeTurn(
      sandbox,
      { ...turn, credentials: this.agentCredentials() },
      {
        signal,
        onEvent: (event) => this.onAgentEvent(slot, event),
        onProcessStarted: (processId) => this.ctx.storage.kv.put(progressKey(slot), { processId, offsets: { stdout: 0, stderr: 0 } } satisfies RunProgress),
        onOutputConsumed: (offsets) => {
          const progress = this.ctx.storage.kv.get<RunProgress>(progressKey(slot));
          if (progress) this.ctx.storage.kv.put(progressKey(slot), { ...progress, offsets });
        },
      },
      resume ? { processId: resume.processId, from: resume.offsets } : undefined,
    );
  }

  /** A run that was live when this instance went away: re-attach to its process, or end it truthfully. */
  private async recover(run: RunView): Promise<void> {
    const progress = this.ctx.storage.kv.get<RunProgress>(progressKey(run.index));
    if (run.phase === "agent" && progress) {
      this.record({ run: run.index, type: "run.reattach", data: { processId: progress.processId, from: progress.offsets } });
      this.startRun(run.index, progress);
      return;
    }
    if ((run.phase === "provisioning" || run.phase === "cloning") && run.sessionId === null) {
      // Nothing of the agent's has happened yet: start the run over in a fresh sandbox.
      this.record({ run: run.index, type: "run.restart", data: { phase: run.phase } });
      await this.destroySandbox(run.index);
      this.startRun(run.index);
      return;
    }
    await this.finishRun(run.index, "failed", {
      code: "orchestrator_restarted",
      message: `the task agent restarted while the run was ${run.phase ?? run.status}; that step cannot be resumed`,
    });
    await this.cleanUpSlot(run.index);
  }

  private onAgentEvent(slot: number, event: AgentEvent): void {
    this.record({ run: slot === JUDGE_SLOT ? null : slot, type: slot === JUDGE_SLOT ? `judge.${event.type.replace(/^agent\./, "")}` : event.type, data: event.data });
    if (slot === JUDGE_SLOT) return;
    const run = this.runOf(slot);
    if (event.type === "agent.usage") {
      const estimate = (this.turnEstimates.get(slot) ?? 0) + estimateCostUsd(event.data as unknown as Usage);
      this.turnEstimates.set(slot, estimate);
      this.patchRun(slot, { inputTokens: run.inputTokens + Number(event.data.inputTokens), outputTokens: run.outputTokens + Number(event.data.outputTokens) });
      if (run.costUsd + estimate > this.requireTask().maxCostUsd) void this.stopForBudget(slot, run.costUsd + estimate);
    }
    if (event.type === "agent.result") {
      // The CLI's own figure replaces this turn's estimate; turns of follow-ups add up.
      this.turnEstimates.delete(slot);
      this.patchRun(slot, { costUsd: run.costUsd + (Number(event.data.costUsd) || 0), numTurns: (run.numTurns ?? 0) + (Number(event.data.numTurns) || 0) });
      if (typeof event.data.sessionId === "string") this.patchRun(slot, { sessionId: event.data.sessionId });
      this.ctx.storage.kv.put(summaryKey(slot), String(event.data.text ?? ""));
    }
  }

  /** The run's spending crossed the task's budget: stop its process and end it `failed`, reason `budget`. */
  private async stopForBudget(slot: number, spent: number): Promise<void> {
    if (isTerminal(this.runOf(slot).status)) return;
    const limit = this.requireTask().maxCostUsd;
    this.live.get(slot)?.abort();
    await this.finishRun(slot, "failed", { code: "budget", message: `the run spent about $${spent.toFixed(4)}, over its $${limit} budget` });
    await this.destroySandbox(slot);
  }

  // ---- publishing ------------------------------------------------------

  private async drivePublish(): Promise<void> {
    const task = this.requireTask();
    const publication = task.publication!;
    this.setState({ ...task, publication: { ...publication, status: "running" } });
    this.record({ run: publication.run, type: "publish.status", data: { status: "running" } });
    let sandbox: Sandbox | undefined;
    try {
      sandbox = await this.openSandbox(PUBLISH_SLOT);
      const slack = this.ctx.storage.kv.get<{ origin: string }>(SLACK_KEY);
      const made = await publishRun({
        env: this.env,
        spec: this.requireSpec(),
        task,
        publication,
        sandbox,
        patch: this.diffText(publication.run, Number.POSITIVE_INFINITY),
        summary: this.ctx.storage.kv.get<string>(summaryKey(publication.run)) ?? "",
        viewerUrl: taskLinks(slack?.origin ?? this.requireSpec().origin ?? "", task.id).viewer,
        addSecret: (secret) => this.extraSecrets.add(secret),
        onStep: (step, data) => this.record({ run: publication.run, type: `publish.${step}`, data: data ?? {} }),
      });
      await this.endPublication({ status: "succeeded", ...made, error: null });
    } catch (error) {
      await this.endPublication({ status: "failed", error: { code: error instanceof SortieError ? error.code : "publish_failed", message: this.redact({ m: messageOf(error) }).m as string } });
    } finally {
      await this.destroySandbox(PUBLISH_SLOT, sandbox);
    }
  }

  private async endPublication(patch: Partial<Publication> & Pick<Publication, "status" | "error">): Promise<void> {
    const task = this.requireTask();
    if (!task.publication) return;
    const publication = { ...task.publication, ...patch };
    this.setState({ ...task, publication });
    this.record({
      run: publication.run,
      type: "publish.status",
      data: { status: publication.status, commit: publication.commit, pullRequest: publication.pullRequest, ...(publication.error ? { error: publication.error } : {}) },
    });
    await this.index();
  }

  // ---- the judge -------------------------------------------------------

  /** The reviewer: a fresh sandbox holding only the candidate diffs, and Claude Code asked to rank them. */
  private async driveJudge(signal: AbortSignal): Promise<void> {
    const task = this.requireTask();
    const judge = task.judge!;
    this.setState({ ...task, judge: { ...judge, status: "running" } });
    this.record({ run: null, type: "judge.status", data: { status: "running" } });
    let sandbox: Sandbox | undefined;
    try {
      sandbox = await this.openSandbox(JUDGE_SLOT);
      const dir = `${sandbox.workdir}/candidates`;
      const candidates: Candidate[] = [];
      for (const run of task.runs) {
        if (run.status !== "succeeded" || !run.diff) continue;
        const file = `run-${run.index}.diff`;
        await sandbox.writeFile(`${dir}/${file}`, this.diffText(run.index, JUDGE_DIFF_CHARS));
        candidates.push({ run: run.index, file, files: run.diff.files, additions: run.diff.additions, deletions: run.diff.deletions });
      }
      const turn = await this.runAgent(JUDGE_SLOT, sandbox, { prompt: judgePrompt(task.prompt, candidates), cwd: dir, model: task.model, maxTurns: 20 }, signal);
      if (signal.aborted) return;
      const costUsd = turn.final?.costUsd ?? 0;
      const verdict = turn.final ? parseVerdict(turn.final.text, candidates.map((c) => c.run)) : null;
      if (!verdict) {
        await this.endJudge({ ...judge, status: "failed", costUsd, error: { code: "no_verdict", message: `the reviewer gave no valid verdict: ${(turn.final?.text ?? `exit ${turn.exitCode}`).slice(0, 300)}` } });
        return;
      }
      await this.endJudge({ status: "succeeded", winner: verdict.winner, ranking: verdict.ranking, reasons: verdict.reasons, costUsd, error: null });
    } catch (error) {
      if (!signal.aborted) await this.endJudge({ ...judge, status: "failed", error: classify(error) });
    } finally {
      this.ctx.storage.kv.delete(progressKey(JUDGE_SLOT));
      if (!signal.aborted) await this.destroySandbox(JUDGE_SLOT, sandbox);
    }
  }

  private async endJudge(judge: JudgeView): Promise<void> {
    const task = this.requireTask();
    if (!task.judge || isTerminal(task.judge.status)) return;
    const winner = judge.winner !== null && !task.winner ? { run: judge.winner, by: "judge", at: Date.now() } : task.winner;
    this.setState({ ...task, judge, winner });
    this.record({ run: null, type: "judge.status", data: { status: judge.status, winner: judge.winner, ranking: judge.ranking, reasons: judge.reasons, ...(judge.error ? { error: judge.error } : {}) } });
    await this.finishTaskIfDone();
  }

  /** The text of a run's diff, cut to `limit` characters. */
  private diffText(run: number, limit: number): string {
    const decoder = new TextDecoder();
    let text = "";
    for (let i = 0; i < this.diffs.chunkCount(run) && text.length < limit; i++) {
      text += decoder.decode(this.diffs.chunk(run, i)!, { stream: true });
    }
    return text.length > limit ? `${text.slice(0, limit)}\n[diff cut at ${limit} characters]\n` : text;
  }

  // ---- ending ----------------------------------------------------------

  private async stopAll(status: "cancelled" | "timed_out", error: ErrorInfo): Promise<void> {
    const task = this.requireTask();
    const stopping = task.runs.filter((run) => !isTerminal(run.status)).map((run) => run.index);
    const fleet = await fleetOf(this.env);
    await fleet.dropQueued(task.id);
    if (task.judge && !isTerminal(task.judge.status)) {
      this.live.get(JUDGE_SLOT)?.abort();
      stopping.push(JUDGE_SLOT);
      this.setState({ ...this.requireTask(), judge: { ...task.judge, status, error } });
      this.record({ run: null, type: "judge.status", data: { status, error } });
    }
    for (const index of stopping) {
      if (index === JUDGE_SLOT) continue;
      this.live.get(index)?.abort();
      await this.finishRun(index, status, error);
    }
    // Destroyed now, not when the aborted drivers unwind: a clone in progress is not abortable.
    await Promise.all(stopping.map((slot) => this.destroySandbox(slot)));
    await Promise.all(stopping.map((slot) => this.cleanUpSlot(slot)));
    await this.finishTaskIfDone();
  }

  private async finishRun(index: number, status: TaskStatus, error: ErrorInfo | null): Promise<void> {
    const run = this.runOf(index);
    if (isTerminal(run.status)) return;
    const endedAt = Date.now();
    this.patchRun(index, { status, phase: null, endedAt, durationMs: run.startedAt ? endedAt - run.startedAt : null, error });
    this.record({ run: index, type: "run.status", data: { status, ...(error ? { error, phase: run.phase } : {}) } });
    const task = this.requireTask();
    const judgeWaits = task.judge?.status === "queued" && status !== "cancelled" && status !== "timed_out";
    if (judgeWaits && task.runs.every((r) => isTerminal(r.status))) {
      const candidates = task.runs.filter((r) => r.status === "succeeded" && r.diff);
      if (candidates.length === 0) {
        await this.endJudge({ ...task.judge!, status: "failed", error: { code: "no_candidates", message: "no run produced a diff to judge" } });
      } else {
        this.record({ run: null, type: "judge.queued", data: { candidates: candidates.map((r) => r.index) } });
        const fleet = await fleetOf(this.env);
        await fleet.enqueue(task.id, [JUDGE_SLOT], task.createdBy);
      }
    }
    await this.finishTaskIfDone();
  }

  /** When every run (and the judge, if any) has ended, the task ends with the outcome they add up to. */
  private async finishTaskIfDone(): Promise<void> {
    const task = this.requireTask();
    const runsDone = task.runs.every((r) => isTerminal(r.status));
    const judgeDone = !task.judge || isTerminal(task.judge.status);
    if (isTerminal(task.status) || !runsDone || !judgeDone) {
      await this.index();
      return;
    }
    const outcome = taskOutcome(task);
    this.setState({ ...task, status: outcome.status, endedAt: Date.now(), error: task.error ?? outcome.error, costUsd: task.runs.reduce((sum, r) => sum + r.costUsd, 0) + (task.judge?.costUsd ?? 0) });
    this.record({ run: null, type: "task.status", data: { status: outcome.status, ...(outcome.error ? { error: outcome.error } : {}) } });
    for (const schedule of await this.listSchedules()) {
      if (schedule.callback !== "expireWorkspace" && schedule.callback !== "reindex") await this.cancelSchedule(schedule.id);
    }
    await this.notify();
    const ended = this.requireTask();
    if (ended.status === "succeeded" && ended.output !== "diff" && !ended.publication) {
      const outcome = await this.publish(undefined, ended.output, "sortie");
      if ("refused" in outcome) this.record({ run: null, type: "publish.skipped", data: { ...outcome.refused } });
    }
    if (task.key) {
      const fleet = await fleetOf(this.env);
      await fleet.releaseClaim(task.key, task.id);
    }
    await this.index();
  }

  // ---- sandboxes and slots ---------------------------------------------

  private async openSandbox(slot: number): Promise<Sandbox> {
    this.ctx.storage.kv.put(sandboxKey(slot), true);
    const sandbox = await sandboxPortFor(this.env, this.config).open(sandboxIdFor(this.requireTask().id, slot));
    this.handles.set(slot, sandbox);
    return sandbox;
  }

  private async destroySandbox(slot: number, open?: Sandbox): Promise<void> {
    if (!open && !this.ctx.storage.kv.get(sandboxKey(slot))) return;
    const id = sandboxIdFor(this.requireTask().id, slot);
    try {
      if (open) await open.destroy();
      else await sandboxPortFor(this.env, this.config).destroy(id);
      this.handles.delete(slot);
      this.ctx.storage.kv.delete(sandboxKey(slot));
      this.record({ run: slot === JUDGE_SLOT ? null : slot, type: "sandbox.destroyed", data: { sandbox: id } });
    } catch (error) {
      this.record({ run: slot === JUDGE_SLOT ? null : slot, type: "sandbox.destroy_failed", data: { sandbox: id, message: messageOf(error) } });
    }
  }

  /**
   * Destroys the slot's sandbox if one may exist (unless its workspace is
   * kept for follow-ups: an idle workspace holds no fleet slot), then gives
   * its fleet grant back.
   */
  private async cleanUpSlot(slot: number, options: { keepWorkspace?: boolean } = {}): Promise<void> {
    if (this.live.has(slot)) return;
    if (!options.keepWorkspace) await this.destroySandbox(slot);
    if (!options.keepWorkspace && this.ctx.storage.kv.get(sandboxKey(slot))) return;
    if (this.ctx.storage.kv.get(grantKey(slot))) {
      this.ctx.storage.kv.delete(grantKey(slot));
      const fleet = await fleetOf(this.env);
      await fleet.release(this.requireTask().id, slot);
    }
  }

  private async sandboxAnswers(slot: number): Promise<boolean> {
    const sandbox = this.handles.get(slot);
    if (!sandbox) return true;
    try {
      const result = await sandbox.exec("true", { timeoutMs: 10_000 });
      return result.exitCode === 0;
    } catch {
      return false;
    }
  }

  // ---- state -----------------------------------------------------------

  private setPhase(index: number, phase: RunPhase): void {
    const run = this.runOf(index);
    if (isTerminal(run.status) || run.phase === phase) return;
    this.patchRun(index, { status: "running", phase, startedAt: run.startedAt ?? Date.now() });
    this.record({ run: index, type: "run.status", data: { status: "running", phase } });
    const task = this.requireTask();
    if (task.status === "queued") {
      this.setState({ ...task, status: "running", startedAt: Date.now() });
      this.record({ run: null, type: "task.status", data: { status: "running" } });
      // The time limit counts from the first run's start, not from time spent waiting in the queue.
      void this.schedule(task.timeoutMinutes * 60, "onTimeout");
      void this.scheduleEvery(30, "watchdog");
      void this.index();
    }
  }

  private patchRun(index: number, patch: Partial<RunView>): void {
    const task = this.requireTask();
    this.setState({ ...task, runs: task.runs.map((run) => (run.index === index ? { ...run, ...patch } : run)) });
  }

  private record(input: { run: number | null; type: string; data: Record<string, unknown> }): void {
    const event = this.events.append({ ...input, data: this.redact(input.data) });
    this.broadcast(JSON.stringify({ type: "event", event }));
    if (SLACK_WORTHY.has(event.type)) this.updateSlack();
  }

  /** Brings the task's Slack message up to date, one update at a time. */
  private updateSlack(): void {
    const following = this.ctx.storage.kv.get<{ target: SlackTarget; origin: string }>(SLACK_KEY);
    if (!following) return;
    this.slackUpdates = this.slackUpdates.then(async () => {
      const current = this.ctx.storage.kv.get<{ target: SlackTarget; origin: string }>(SLACK_KEY)!;
      try {
        const target = await postOrUpdate(this.env, current.target, this.requireTask(), taskLinks(current.origin, this.requireTask().id));
        this.ctx.storage.kv.put(SLACK_KEY, { ...current, target });
      } catch (error) {
        this.events.append({ run: null, type: "slack.error", data: this.redact({ message: messageOf(error) }) });
      }
    });
  }

  /** Keeps the D1 index current; a failure is logged as an event and retried at the next change. */
  private async index(): Promise<void> {
    const task = this.state;
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
      await appendAudit(this.env.DB, { actor, action, taskId: this.state?.id ?? null, detail });
    } catch (error) {
      this.record({ run: null, type: "audit.error", data: { action, message: messageOf(error) } });
    }
  }

  /** Tells the task's webhook and Slack channel how it ended. */
  private async notify(): Promise<void> {
    const spec = this.requireSpec();
    const task = this.requireTask();
    if (spec.notify?.slackChannel) {
      try {
        const origin = this.ctx.storage.kv.get<{ origin: string }>(SLACK_KEY)?.origin ?? spec.origin ?? "";
        await postOrUpdate(this.env, { channel: spec.notify.slackChannel }, task, taskLinks(origin, task.id));
        this.record({ run: null, type: "notify.sent", data: { slackChannel: spec.notify.slackChannel } });
      } catch (error) {
        this.record({ run: null, type: "notify.failed", data: { slackChannel: spec.notify.slackChannel, message: messageOf(error) } });
      }
    }
    if (!spec.notify?.webhook) return;
    const body = {
      id: task.id, repo: task.repo, status: task.status, error: task.error, costUsd: task.costUsd, winner: task.winner,
      runs: task.runs.map((r) => ({ index: r.index, status: r.status, diff: r.diff, error: r.error })),
    };
    try {
      const response = await fetch(spec.notify.webhook, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
      this.record({ run: null, type: response.ok ? "notify.sent" : "notify.failed", data: { status: response.status } });
    } catch (error) {
      this.record({ run: null, type: "notify.failed", data: { message: messageOf(error) } });
    }
  }

  /** What the agent command gets: on Cloudflare a placeholder key (the Worker adds the real one on egress), locally the key itself. */
  private agentCredentials(): Record<string, string> {
    return sandboxPortFor(this.env, this.config).credentialsForAgent({
      ANTHROPIC_API_KEY: this.env.ANTHROPIC_API_KEY,
      ANTHROPIC_BASE_URL: this.env.ANTHROPIC_BASE_URL,
    });
  }

  private redact(data: Record<string, unknown>): Record<string, unknown> {
    return redactor([this.env.ANTHROPIC_API_KEY, this.env.SORTIE_ADMIN_TOKEN, this.env.LOCAL_SANDBOX_TOKEN, this.env.GITHUB_TOKEN, this.env.SLACK_BOT_TOKEN, ...this.extraSecrets])(data);
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

/** Events that change what the task's Slack message shows. */
const SLACK_WORTHY = new Set(["task.status", "run.status", "judge.status", "task.winner", "publish.status"]);

function newRun(spec: TaskSpec, index: number, model: string | null, promptSuffix: string | null): RunView {
  return {
    index,
    status: "queued",
    model,
    promptSuffix,
    attempts: [],
    phase: null,
    branch: `sortie/${spec.id}/${index}`,
    sessionId: null,
    baseCommit: null,
    startedAt: null,
    endedAt: null,
    durationMs: null,
    numTurns: null,
    costUsd: 0,
    diff: null,
    error: null,
    inputTokens: 0,
    outputTokens: 0,
    pendingMessages: 0,
    workspaceUntil: null,
  };
}

/** Sandbox ids are lowercase DNS-safe labels: the task id and the run index (or `judge`). */
export function sandboxIdFor(taskId: string, slot: number): string {
  return `${taskId}-${slot === JUDGE_SLOT ? "judge" : slot === PUBLISH_SLOT ? "publish" : slot}`;
}

/** A task succeeds if any run did; otherwise it carries the first run's reason. */
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
  if (error instanceof SetupError) return { code: "setup_failed", message: error.message };
  if (error instanceof SandboxUnavailableError) return { code: "sandbox_unavailable", message: error.message };
  return { code: "internal", message: messageOf(error) };
}
