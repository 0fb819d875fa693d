/**
 * Driving one run: a sandbox provisioned with the repository, the agent's
 * first turn and then the follow-ups that came while it ran, and the diff.
 * Every agent turn (the judge's too) goes through `runTurn`, which keeps
 * where the process stands for re-attaching and counts its spending against
 * the task's budget.
 */
import { LIMITS, type SortieConfig } from "../config.ts";
import type { TaskFold } from "../events.ts";
import { messageOf } from "../errors.ts";
import { takeDiff } from "../publish/diff.ts";
import { secretFilesIn } from "../publish/secret-files.ts";
import { runAgentTurn, type AgentEvent, type AgentTurnResult } from "../runners/agent.ts";
import { adapterFor, modelCredentials } from "../runners/index.ts";
import { dirBytes } from "../sandbox/files.ts";
import { peerViewExcludes } from "../sandbox/peer-view.ts";
import type { Confinement, Sandbox, SandboxPort } from "../sandbox/port.ts";
import { isTerminal, type AgentName, type ErrorInfo, type EventInput, type RunPhase, type RunView, type TaskSpec, type TaskState, type TaskStatus } from "../schema.ts";
import type { DiffStore } from "../store/diff-store.ts";
import type { TaskCheckpoints } from "./checkpoints.ts";
import { fleetOf } from "./fleet.ts";
import { configuredAgents, reviewChange, turnSucceeded, type ReviewLaneContext } from "./review.ts";
import { reviewSlot, runOfSlot, runSlot, type Slot } from "./slot.ts";
import { deliverMemory, memoryOfEarlierTurn, proposeLearnings, readLearnings, type RunMemory } from "./memory.ts";
import { applyDependencyWork, enforceOwnership, planFilePath, PLAN_FILE_VAR, preparePlanFile, takePlan } from "./plan-roles.ts";
import { retryOf, turnOutcome } from "./decide.ts";
import { backoffMs } from "./retry.ts";
import { runEnded, runPhase, runReopened, workspaceKept, type RunProgress } from "./task-state.ts";
import { addWorktree, adoptTemplate, changesIn, collectFromUser, handOverWorktree, populateWorktree, lockDownCheckout, placementFor, sharedSandboxId, type Placement } from "../sandbox/placement.ts";
import type { RunPreviews } from "./preview.ts";
import { reconcileWarmIndex } from "./warm-index.ts";
import { prepareWorkspace, setUpCheckout, warmFamilyOf } from "./workspace.ts";

/** One turn of the agent: a prompt, or a follow-up continuing `resumeSessionId`. */
export interface AgentTurn {
  prompt: string;
  cwd: string;
  model: string | null;
  maxTurns: number;
  resumeSessionId?: string | null;
  /** The CLI that runs the turn (`claude-code` unless said). */
  agent?: AgentName;
  /** Answer only: the CLI is told not to edit (analysis runs). */
  readOnly?: boolean;
  /** The model API is the process's only network (implied by `readOnly`; a reviewer has it without being told not to write). */
  modelOnly?: boolean;
  /** The agent process's user and network, and the git environment of its checkout. */
  placement?: Pick<Placement, "confine" | "gitEnv">;
  /** Sortie's own variables for the agent (`SORTIE_PEER_DIR`, `SORTIE_REVIEW_FILE`…): paths, never secrets. */
  env?: Record<string, string>;
  /** The run's memory files (their variables) and what the preamble says about them. */
  memory?: RunMemory;
}

/** What a run borrows from its task agent. */
export interface RunContext {
  env: Cloudflare.Env;
  /** Scrubs the deployment's secrets (src/redact.ts) from a value. */
  redact<T>(value: T): T;
  diffs(): DiffStore;
  /** The task's workspace snapshot, shared by its runs (see workspace.ts). */
  sharedWorkspace: { snapshot?: Promise<string | null> };
  config(): SortieConfig;
  port(): SandboxPort;
  task(): TaskState;
  spec(): TaskSpec;
  runOf(index: number): RunView;
  /**
   * The log's fold (src/events.ts): the task, and what the run reads back that the task does not show (a turn's
   * estimated spending until its CLI reports it, a workspace run's user). The run keeps nothing of its own.
   */
  fold(): TaskFold;
  /** What is not history: where its process's output was read to, and the follow-ups waiting for its turn. */
  checkpoints: TaskCheckpoints;
  /**
   * Appends an event to the task's log: the one way the run changes the task
   * (its phases, `runPhase`, and its end, `runEnded`, among them). Resolves
   * once the task has done what follows from it (src/agents/decide.ts): after
   * a run's end, the judge queued or the task ended.
   */
  record(input: EventInput): Promise<void>;
  /**
   * Records an event parsed from the agent's output. It may wait a few
   * milliseconds to be stored with the ones after it: lost in a crash, it is
   * read again from the process on re-attach (see TaskCheckpoints.consumed).
   */
  recordOutput(input: EventInput): void;
  /** Opens the slot's sandbox: its own, or `shared` (a repository's workspace sandbox). */
  openSandbox(slot: Slot, shared?: string): Promise<Sandbox>;
  destroySandbox(slot: Slot, open?: Sandbox): Promise<void>;
  /** Stops what this instance drives in the slot. */
  abort(slot: Slot): void;
  /** The runs' previews (tasks with `preview`): started after a succeeded turn, stopped before a follow-up's. */
  previews: Pick<RunPreviews, "start" | "stop">;
}

/** The run enters `phase` (recorded unless it is there already or has ended). */
function enter(ctx: RunContext, index: number, phase: RunPhase): void {
  void ctx.record(runPhase(index, phase));
}

export async function driveRun(ctx: RunContext, index: number, signal: AbortSignal, resume?: RunProgress): Promise<void> {
  const spec = ctx.spec();
  const run = ctx.runOf(index);
  // A run that already has a session was reopened by a follow-up message.
  const followUp = !resume && run.sessionId !== null;
  let sandbox: Sandbox | undefined;
  let keep = false;
  // The outcome is recorded after the sandbox is dealt with, so a run that reads as ended has no sandbox left behind.
  let outcome: [TaskStatus, ErrorInfo | null] | null = null;
  // What the agent left in $SORTIE_LEARNINGS_FILE, proposed once the run's outcome is known.
  let learned = "";
  /** Set when the sandbox itself went away under the turn (its host died): the run starts again in a fresh one. */
  let lostSandbox: ErrorInfo | null = null;
  try {
    if (resume || followUp) {
      sandbox = await ctx.openSandbox(runSlot(index));
      // The app is served again once the follow-up's turn is over, from what it changed.
      if (followUp && spec.preview) await ctx.previews.stop(index, "follow_up");
      enter(ctx, index, "agent");
    } else {
      sandbox = await provision(ctx, index, spec, signal);
      if (!sandbox) return;
      enter(ctx, index, "agent");
    }
    const placement = placementOf(ctx, index, sandbox);
    const memory = resume || followUp ? memoryOfEarlierTurn(placement, run.memory?.length ?? 0) : await memoryForRun(ctx, index, sandbox, placement);
    // A planner writes its plan to a file of its own beside the read-only checkout.
    const planEnv = spec.plan?.role !== "planner" ? undefined : resume || followUp ? { [PLAN_FILE_VAR]: planFilePath(placement) } : await preparePlanFile(sandbox, placement);
    const turnOf = (prompt: string, resumeSessionId: string | null): AgentTurn => ({
      prompt,
      cwd: placement.repoDir,
      model: run.model ?? spec.model,
      maxTurns: spec.maxTurns,
      resumeSessionId,
      agent: run.agent ?? spec.agent,
      readOnly: placement.level === "analysis",
      placement,
      memory,
      ...(planEnv ? { env: planEnv } : {}),
    });
    let turn: AgentTurnResult | null = null;
    if (!followUp) {
      const prompt = run.promptSuffix ? `${spec.prompt}\n\n${run.promptSuffix}` : spec.prompt;
      turn = await runTurn(ctx, runSlot(index), sandbox, turnOf(prompt, null), signal, resume);
    }
    // Follow-ups queued while a turn ran are delivered, in order, once it ends.
    for (;;) {
      if (signal.aborted || ctx.runOf(index).status !== "running") return;
      if (turn && (!turn.final || turn.final.isError)) break;
      const next = ctx.checkpoints.takeMessage(index);
      if (!next) break;
      ctx.record({ run: index, type: "run.message_delivered", data: { text: next.text, by: next.by } });
      turn = await runTurn(ctx, runSlot(index), sandbox, turnOf(next.text, ctx.runOf(index).sessionId), signal);
    }
    if (!turn) throw new Error("no turn ran");
    if (signal.aborted || ctx.runOf(index).status !== "running") return;
    const open = sandbox;
    const takeLearnings = () =>
      readLearnings(open, placement).catch((error: unknown) => {
        ctx.record({ run: index, type: "memory.error", data: { message: messageOf(error) } });
        return "";
      });
    learned = await takeLearnings();
    const agentName = run.agent ?? spec.agent;
    if (!turn.final) {
      outcome = turnOutcome(turn, agentName, spec.maxTurns);
      return;
    }
    enter(ctx, index, "diffing");
    const base = ctx.runOf(index).baseCommit;
    if (!base) throw new Error("the run has no base commit to diff against");
    /** One more turn in the run's own session (review findings, a plan's problems, strayed ownership). */
    const inSession = async (message: string) => {
      enter(ctx, index, "agent");
      const result = await runTurn(ctx, runSlot(index), open, turnOf(message, ctx.runOf(index).sessionId), signal);
      enter(ctx, index, "diffing");
      return result;
    };
    const note = (type: string, data: Record<string, unknown>) => ctx.record({ run: index, type, data });
    if (placement.level === "analysis") {
      // An analysis run hands back its answer; a checkout it managed to change is a broken wall, not a result.
      const changed = await changesIn(sandbox, placement, base);
      if (changed.length > 0) {
        ctx.record({ run: index, type: "run.isolation_violation", data: { changed: changed.slice(0, 50) } });
        outcome = ["failed", { code: "isolation_violation", message: `the analysis run changed the checkout: ${changed.slice(0, 5).join(", ")}` }];
        return;
      }
      if (spec.plan?.role === "planner" && turnSucceeded(turn)) {
        const taken = await takePlan(open, placement, spec.plan.maxSubtasks, { followUp: inSession, note });
        if (signal.aborted || ctx.runOf(index).status !== "running") return;
        if ("failure" in taken) {
          outcome = ["failed", taken.failure];
          return;
        }
      }
    } else {
      const diff = () => captureDiff(ctx, index, open, placement, base);
      const first = await diff();
      const lane = ctx.runOf(index).review;
      if (lane?.status === "running") {
        // This run's lane was under way when the task agent restarted: its rounds cannot be resumed, the change stands.
        const reason = "the task agent restarted during the review";
        ctx.record({ run: index, type: "review.status", data: { status: "failed", reason } });
      } else if (spec.review && turnSucceeded(turn) && first.stats.files > 0) {
        const last = await reviewChange(reviewLane(ctx, index, spec, open, placement, { agent: agentName, model: run.model ?? spec.model, followUp: inSession, diff }, signal), first);
        if (last) turn = last;
        // The coder's turns after the review may have learned more.
        learned = await takeLearnings();
        if (signal.aborted || ctx.runOf(index).status !== "running") return;
      }
      if (spec.plan?.role === "worker" && turnSucceeded(turn)) {
        // A plan's worker changes only what its subtask owns: what strays goes back once, then the run fails.
        const held = await enforceOwnership(spec.plan.owns, () => ctx.diffs().text(index, Number.POSITIVE_INFINITY), { followUp: inSession, note, diff });
        if (held.turn) turn = held.turn;
        if (signal.aborted || ctx.runOf(index).status !== "running") return;
        if (held.failure) {
          outcome = ["failed", held.failure];
          return;
        }
      }
    }
    keep = spec.keepWorkspaceMinutes > 0;
    outcome = turnOutcome(turn, agentName, spec.maxTurns);
  } catch (error) {
    const live = !signal.aborted && !isTerminal(ctx.runOf(index).status);
    // A first turn whose sandbox vanished is the infrastructure's failure: retried within the run's budget, from the warm snapshot if any.
    const retry = retryOf(error, { stage: "turn", run: ctx.runOf(index), followUp });
    if (live && retry.retry) lostSandbox = retry.failure;
    else if (live) outcome = ["failed", retry.failure];
  } finally {
    ctx.checkpoints.ended(runSlot(index));
    const live = !signal.aborted && !isTerminal(ctx.runOf(index).status);
    // Before the run reads as ended: a judge queued by the last run's end finds its evidence recorded.
    if (live && outcome && learned) {
      await proposeLearnings(memoryContext(ctx), { repo: spec.repo, task: spec.id, run: index, succeeded: outcome[0] === "succeeded", text: learned });
    }
    const lateMessages = outcome !== null && outcome[0] !== "cancelled" && ctx.runOf(index).pendingMessages > 0 && ctx.runOf(index).sessionId !== null;
    if (live && outcome && (keep || lateMessages)) {
      await ctx.record(runEnded(ctx.runOf(index), ...outcome));
      // A message that came while the diff was being taken reopens the run at once.
      await ctx.record(workspaceKept(index, Math.max(spec.keepWorkspaceMinutes, 1)));
      if (lateMessages) await ctx.record(runReopened(index));
      else if (outcome[0] === "succeeded" && spec.preview && sandbox) await startPreview(ctx, index, sandbox, placementOf(ctx, index, sandbox));
    } else if (live) {
      await ctx.destroySandbox(runSlot(index), sandbox);
      if (outcome) await ctx.record(runEnded(ctx.runOf(index), ...outcome));
    }
  }
  if (lostSandbox && !signal.aborted && !isTerminal(ctx.runOf(index).status)) {
    const attempt = ctx.runOf(index).attempts.length;
    const delayMs = backoffMs(attempt, ctx.config().retryBaseMs);
    ctx.record({ run: index, type: "run.retry", data: { attempt: attempt + 1, of: LIMITS.maxInfraRetries, delayMs, error: lostSandbox } });
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    if (!signal.aborted) await driveRun(ctx, index, signal);
  }
}

/** Serves the run's app from its kept workspace; a preview that cannot start is the preview's failure, never the run's. */
async function startPreview(ctx: RunContext, index: number, sandbox: Sandbox, placement: Placement): Promise<void> {
  try {
    await ctx.previews.start(index, sandbox, { cwd: placement.repoDir, confine: placement.confine, env: placement.gitEnv });
  } catch (error) {
    const failure = { code: "preview_failed", message: messageOf(error) };
    ctx.record({ run: index, type: "preview.failed", data: { error: failure, output: "" } });
  }
}

/** Takes the run's diff (as the run's user at the workspace level), stores it and records it; returns its text for a reviewer. */
async function captureDiff(ctx: RunContext, index: number, sandbox: Sandbox, placement: Placement, base: string) {
  const asOwner = placement.level === "workspace" ? (placement.confine ?? undefined) : undefined;
  const taken = await takeDiff(sandbox, placement.repoDir, base, `${placement.scratchDir}/sortie.diff`, placement.gitEnv, asOwner);
  // Root reads the patch only once no process of the run's user is left to swap it for a link.
  const patch = asOwner ? await collectFromUser(sandbox, placement, taken.path) : taken.path;
  const bytes = await ctx.diffs().write(index, await sandbox.readFile(patch));
  const diff = { ...taken.stats, bytes };
  const text = ctx.diffs().text(index, Number.POSITIVE_INFINITY);
  const secretFiles = secretFilesIn(text);
  ctx.record({ run: index, type: "run.diff", data: { ...diff, ...(secretFiles.length ? { secretFiles } : {}) } });
  return { text, stats: taken.stats };
}

/** The narrow view of the run a review lane gets: the coder's sandbox and session, a reviewer slot, and the run's record. */
function reviewLane(ctx: RunContext, index: number, spec: TaskSpec, sandbox: Sandbox, placement: Placement, coder: Omit<ReviewLaneContext["coder"], "sandbox" | "source">, signal: AbortSignal): ReviewLaneContext {
  const slot = reviewSlot(index);
  // In a shared sandbox the coder's own user packs its files; root takes the archive only through collectFromUser.
  const own = placement.level === "workspace" ? (placement.confine ?? undefined) : undefined;
  const source = {
    repoDir: placement.repoDir,
    scratchDir: placement.scratchDir,
    env: placement.gitEnv,
    ...(own ? { confine: own } : {}),
    collect: (file: string) => (own ? collectFromUser(sandbox, placement, file) : Promise.resolve(file)),
  };
  return {
    spec,
    coder: { ...coder, sandbox, source },
    configured: configuredAgents(ctx.env),
    excludes: peerViewExcludes(ctx.config().reviewPeerExcludes),
    openReviewer: () => ctx.openSandbox(slot),
    destroyReviewer: (open) => ctx.destroySandbox(slot, open),
    reviewerTurn: async (open, turn) => {
      enter(ctx, index, "reviewing");
      // What the reviewer spends is the run's (its `review.result` counts it: the CLI's figure, else Sortie's estimate).
      const before = ctx.runOf(index).costUsd;
      const result = await runTurn(ctx, slot, open, turn, signal);
      enter(ctx, index, "diffing");
      const cost = ctx.runOf(index).costUsd - before;
      return result.final && result.final.costUsd === null ? { ...result, final: { ...result.final, costUsd: cost } } : result;
    },
    record: (type, data) => ctx.record({ run: index, type, data }),
    redact: (value) => ctx.redact(value),
    signal,
  };
}

function memoryContext(ctx: RunContext) {
  return { db: ctx.env.DB, config: () => ctx.config(), record: (input: EventInput) => ctx.record(input), redact: (text: string) => ctx.redact(text) };
}

/** The run's first turn: the repository's approved memory delivered; a failure to deliver is an event, and the run goes on without it. */
async function memoryForRun(ctx: RunContext, index: number, sandbox: Sandbox, placement: Placement): Promise<RunMemory> {
  try {
    const { memory } = await deliverMemory(memoryContext(ctx), index, ctx.spec().repo, sandbox, placement);
    return memory;
  } catch (error) {
    ctx.record({ run: index, type: "memory.error", data: { message: messageOf(error) } });
    return memoryOfEarlierTurn(placement, 0);
  }
}

/**
 * Opens the run's sandbox and clones the repo. A failure of the
 * infrastructure (the sandbox did not start, the network cut the clone) is
 * retried with backoff; a wrong repo or branch is not.
 */
async function provision(ctx: RunContext, index: number, spec: TaskSpec, signal: AbortSignal): Promise<Sandbox | undefined> {
  for (let attempt = 0; ; attempt++) {
    let sandbox: Sandbox | undefined;
    try {
      enter(ctx, index, "provisioning");
      const level = levelOf(spec);
      if (level === "workspace") {
        sandbox = await ctx.openSandbox(runSlot(index), sharedSandboxId(spec.repo));
        warnIfUnconfined(ctx, index, sandbox);
        if (signal.aborted) return undefined;
        await prepareWorktree(ctx, index, spec, sandbox, signal);
        if (signal.aborted) {
          // A cancel may have removed the worktree before this run made it: remove it again.
          await ctx.destroySandbox(runSlot(index), sandbox);
          return undefined;
        }
        return sandbox;
      }
      sandbox = await ctx.openSandbox(runSlot(index));
      warnIfUnconfined(ctx, index, sandbox);
      if (signal.aborted) return undefined;
      // Before anything in the sandbox reaches out: the hosts this task asked for, on top of the deployment's.
      if (spec.egress?.length) await sandbox.allowEgress(spec.egress);
      const fleet = await fleetOf(ctx.env);
      const port = ctx.port();
      await reconcileWarmIndex(port, fleet);
      const { commit, source } = await prepareWorkspace({
        sandbox,
        spec,
        repoDir: `${sandbox.workdir}/repo`,
        warm: { findWarm: (key) => fleet.findWarm(key), putWarm: (key, id, bytes, family) => fleet.putWarm(key, id, bytes, family) },
        shared: ctx.sharedWorkspace,
        signal,
        setPhase: (phase) => enter(ctx, index, phase),
        record: (type, data) => ctx.record({ run: index, type, data }),
        dropSnapshot: (id) => port.dropSnapshot(id),
      });
      if (signal.aborted) return undefined;
      if (source !== "clone") ctx.record({ run: index, type: "run.restored", data: { commit, source } });
      // A plan's subtask starts from the base plus the work of what it depends on, committed: its own diff is taken against that (the run's base).
      const role = spec.plan?.role === "worker" && spec.plan.patches.length > 0 ? spec.plan : null;
      if (role) {
        const start = await applyDependencyWork(sandbox, `${sandbox.workdir}/repo`, role);
        ctx.record({ run: index, type: "run.plan_dependencies", data: { patches: role.patches.length, base: commit, commit: start } });
      }
      if (level === "analysis") await lockDownCheckout(sandbox, placementFor(level, sandbox.workdir, spec.id, index, null));
      return sandbox;
    } catch (error) {
      const retry = retryOf(error, { stage: "provision", attempt });
      if (signal.aborted || !retry.retry) throw error;
      const failure = retry.failure;
      const delayMs = backoffMs(attempt, ctx.config().retryBaseMs);
      ctx.record({ run: index, type: "run.retry", data: { attempt: attempt + 1, of: LIMITS.maxInfraRetries, delayMs, error: failure } });
      await ctx.destroySandbox(runSlot(index), sandbox);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      if (signal.aborted) return undefined;
    }
  }
}

/** A sandbox without walls (LOCAL_SANDBOX_UNCONFINED=1 on the local host) is said so in every run it carries. */
function warnIfUnconfined(ctx: RunContext, index: number, sandbox: Sandbox): void {
  if (!sandbox.unconfined) return;
  ctx.record({ run: index, type: "run.unconfined", data: { warning: "unconfined", message: "this run's sandbox has no walls (LOCAL_SANDBOX_UNCONFINED=1): the agent reaches the host's files, network and processes" } });
}

/** A task's isolation level; a task stored before levels existed ran in a sandbox of its own. */
export function levelOf(spec: TaskSpec) {
  return spec.isolation?.level ?? "sandbox";
}

/** Where the run works in its sandbox; a workspace run's user was recorded when its worktree was made. */
function placementOf(ctx: RunContext, index: number, sandbox: Sandbox): Placement {
  const spec = ctx.spec();
  return placementFor(levelOf(spec), sandbox.workdir, spec.id, index, ctx.fold().users[index] ?? null);
}

/**
 * A workspace run: a worktree of the shared sandbox's base clone at the
 * branch's head. Its files come from the template of that commit and setup
 * when an earlier workspace run left one (no setup then); otherwise they are
 * checked out and set up (with the dependency cache) as root, and kept as
 * the template for the next. Then the worktree goes to the run's own user.
 */
async function prepareWorktree(ctx: RunContext, index: number, spec: TaskSpec, sandbox: Sandbox, signal: AbortSignal): Promise<void> {
  enter(ctx, index, "cloning");
  const { commit, uid } = await addWorktree(sandbox, spec, index);
  const placement = placementFor("workspace", sandbox.workdir, spec.id, index, uid);
  ctx.record({ run: index, type: "run.worktree", data: { commit, sandbox: sandbox.id, uid } });
  const fleet = await fleetOf(ctx.env);
  const port = ctx.port();
  await reconcileWarmIndex(port, fleet);
  // Templates live in the shared sandbox they were taken in: the key names it.
  const family = `template:${sandbox.id}:${warmFamilyOf(spec)}`;
  const key = `${family}@${commit}`;
  const template = await fleet.findWarm(key);
  if (template) {
    if (await adoptTemplate(sandbox, placement, template)) {
      await handOverWorktree(sandbox, placement);
      ctx.record({ run: index, type: "run.restored", data: { commit, source: "template" } });
      return;
    }
    ctx.record({ run: index, type: "run.snapshot_missed", data: { snapshot: template, message: "the template is gone" } });
  }
  await populateWorktree(sandbox, placement);
  const warm = { findWarm: (k: string) => fleet.findWarm(k), putWarm: (k: string, id: string, bytes: number, f: string) => fleet.putWarm(k, id, bytes, f) };
  const ran = await setUpCheckout(
    {
      sandbox,
      spec,
      warm,
      signal,
      setPhase: (phase) => enter(ctx, index, phase),
      record: (type, data) => ctx.record({ run: index, type, data }),
      dropSnapshot: (id) => port.dropSnapshot(id),
    },
    placement.repoDir,
  );
  // A template only saves time where setup took some.
  if (ran && !signal.aborted) {
    const taken = await sandbox.snapshot(placement.repoDir).catch((error: unknown) => {
      ctx.record({ run: index, type: "run.snapshot_failed", data: { message: messageOf(error) } });
      return null;
    });
    if (taken) for (const displaced of await fleet.putWarm(key, taken, await dirBytes(sandbox, placement.repoDir), family)) await port.dropSnapshot(displaced);
  }
  await handOverWorktree(sandbox, placement);
}

/** One agent turn in the slot's sandbox; `resume` re-attaches to a process started before a restart. */
export function runTurn(ctx: RunContext, slot: Slot, sandbox: Sandbox, turn: AgentTurn, signal: AbortSignal, resume?: RunProgress): Promise<AgentTurnResult> {
  const adapter = adapterFor(turn.agent ?? "claude-code");
  // What the agent command gets: on Cloudflare a placeholder key (the Worker adds the real one on egress), locally the key itself.
  const model = modelCredentials(ctx.env, adapter.provider);
  const credentials = ctx.port().credentialsForAgent(model.credentials);
  const placed = turn.placement;
  const confine: Confinement | undefined = placed?.confine
    ? { ...placed.confine, ...(turn.readOnly || turn.modelOnly ? { modelOnly: { origins: [model.origin] } } : {}) }
    : undefined;
  return runAgentTurn(
    sandbox,
    adapter,
    { ...turn, credentials: { ...credentials, ...(placed?.gitEnv ?? {}), ...(turn.env ?? {}), ...(turn.memory?.env ?? {}) }, ...(turn.memory ? { preamble: turn.memory.preamble } : {}) },
    {
      signal,
      onEvent: (event) => onAgentEvent(ctx, slot, event),
      onProcessStarted: (processId) => ctx.checkpoints.started(slot, processId),
      // Stored with the events made from that output, never before them: a re-attach resumes where the log ends.
      onOutputConsumed: (offsets) => ctx.checkpoints.consumed(slot, offsets),
    },
    resume ? { processId: resume.processId, from: resume.offsets } : undefined,
    confine,
  );
}

function onAgentEvent(ctx: RunContext, slot: Slot, event: AgentEvent): void {
  // The judge's and a reviewer's agent events are theirs: `judge.*` and `review.*`, not the run's `agent.*`.
  const lane = slot.kind === "judge" ? "judge" : slot.kind === "review" ? "review" : null;
  const run = runOfSlot(slot);
  // The fold (src/events.ts) counts the run's session, tokens and spending from these events.
  ctx.recordOutput({ run, type: lane ? `${lane}.${event.type.replace(/^agent\./, "")}` : event.type, data: event.data });
  if (event.type === "agent.usage" && run !== null && lane !== "judge") checkBudget(ctx, run, lane ? `review:${run}` : `run:${run}`);
}

/** A run's spending so far, its current turn's (or its reviewer's) estimate included, against the task's budget. */
function checkBudget(ctx: RunContext, index: number, turn: string): void {
  const spent = ctx.runOf(index).costUsd + (ctx.fold().estimates[turn] ?? 0);
  if (spent > ctx.task().maxCostUsd) void stopForBudget(ctx, index, spent);
}

/** The run's spending crossed the task's budget: stop its process and end it `failed`, reason `budget`. */
async function stopForBudget(ctx: RunContext, index: number, spent: number): Promise<void> {
  if (isTerminal(ctx.runOf(index).status)) return;
  const limit = ctx.task().maxCostUsd;
  ctx.abort(runSlot(index));
  await ctx.record(runEnded(ctx.runOf(index), "failed", { code: "budget", message: `the run spent about $${spent.toFixed(4)}, over its $${limit} budget` }));
  await ctx.destroySandbox(runSlot(index));
}
