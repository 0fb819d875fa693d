/**
 * PlanAgent: one Durable Object per plan, named by the plan id. It plans,
 * assigns and integrates, and never edits a file: the planner is a task at
 * the `analysis` level, each subtask an ordinary task (source `plan`) started
 * through the same launch path as any other, and the integration happens in
 * a sandbox of the plan's own (src/agents/plan-integrate.ts). It holds the
 * plan's state and its own event log, and decides what happens next when one
 * of its tasks reports its end (src/agents/plan-report.ts).
 */
import { Agent, getAgentByName, type Connection, type ConnectionContext, type WSMessage } from "agents";
import { readConfig } from "../config.ts";
import { messageOf } from "../errors.ts";
import { isPlanTerminal, type CreatePlanBody, type PlanState, type PlanStatus, type SubtaskStatus, type SubtaskView } from "../plan-schema.ts";
import { applyPlanEvent, emptyPlanFold, type PlanFold } from "../plan-fold.ts";
import { postOrUpdateMessage, type SlackTarget } from "../publish/slack.ts";
import { planMessage } from "../publish/slack-plan.ts";
import { deploymentRedactor } from "../redact.ts";
import { resolveRepo } from "../repo.ts";
import { runAgentTurn } from "../runners/agent.ts";
import { adapterFor, modelCredentials } from "../runners/index.ts";
import { sandboxPortFor } from "../sandbox/index.ts";
import type { Sandbox } from "../sandbox/port.ts";
import type { CreateTaskBody, ErrorInfo, TaskSpec } from "../schema.ts";
import { deletePlan, insertPlan, savePlan } from "../store/plans.ts";
import { DiffStore } from "../store/diff-store.ts";
import { PLAN_AGENT_SCHEMA } from "../store/agent-schemas.ts";
import { migrateDurable } from "../store/durable-schema.ts";
import { PlanPatches } from "../store/plan-patches.ts";
import { fleetOf } from "./fleet.ts";
import { setUpCheckout } from "./workspace.ts";
import { EventLog } from "../store/event-log.ts";
import { planTask, startTasks } from "./launch.ts";
import { acceptanceFailureMessage, conflictPrompt, handoffPrompt, repairPrompt } from "./plan-handoff.ts";
import { integrate, type IntegrationInput, type IntegrationOutcome } from "../sandbox/integration.ts";
import { PlanSlots } from "./plan-slots.ts";
import { publishPlan } from "./plan-publisher.ts";
import type { PlanReport } from "./plan-report.ts";
import { checkPlan, dependencyOrder, reachability } from "./plan-rules.ts";
import type { Refusal } from "./task-state.ts";
import { ViewedLog, ViewerStreams } from "./viewer-streams.ts";

/** How long a subtask's workspace is kept after it ends, so an integration failure can go back to its session. */
export const SEND_BACK_WINDOW_MINUTES = 30;
/** Times a failure of the integration goes back to the subtask that owns it. */
const SEND_BACKS = 1;
const INTEGRATOR_MAX_TURNS = 40;
/** How often a live plan asks its running tasks whether they ended, in case a report was lost (this agent restarted, say). */
const RECONCILE_SECONDS = 30;

const REQUEST_KEY = "sortie:plan-request";
const SLACK_KEY = "sortie:plan-slack";
const PLANNER_SPEC_KEY = "sortie:plan-planner-spec";
/** Each task's spending last reported, where plans made before the log counted it kept it. */
const legacyCostKey = (taskId: string) => `sortie:plan-cost:${taskId}`;

/** What the plan was asked for, kept for launching its subtasks. */
export interface PlanRequest {
  body: CreatePlanBody;
  createdBy: string;
  origin: string | null;
}

/**
 * The agent keeps no state of its own beside the event log: the plan is the
 * fold of its events (src/plan-fold.ts), kept current as each one is appended.
 */
export class PlanAgent extends Agent<Cloudflare.Env, PlanState | null> {
  static override options = { sendIdentityOnConnect: false };
  override initialState: PlanState | null = null;

  /** The event log and its viewers, made on first use. */
  private viewedLog?: ViewedLog;
  private folded?: PlanFold;
  private diffStore?: DiffStore;
  private planSlots?: PlanSlots;
  private readonly patches: PlanPatches;

  constructor(ctx: DurableObjectState, env: Cloudflare.Env) {
    super(ctx, env);
    // The plan's tables, made (or brought up to date) once per instance, never on a query's path.
    migrateDurable(ctx.storage, "plan-agent", PLAN_AGENT_SCHEMA);
    this.patches = new PlanPatches(ctx.storage.sql);
  }
  /** Decisions run one at a time: a report that arrives while one runs waits its turn. */
  private turn: Promise<void> = Promise.resolve();
  private integration: AbortController | null = null;
  /** Subtask tasks recorded running whose start has not returned yet: none may be cancelled before it exists. */
  private readonly starting = new Set<string>();
  private scrub?: <T>(value: T) => T;
  /** Push tokens minted during this instance's life, redacted like the configured secrets. */
  private readonly extraSecrets = new Set<string>();

  private get viewed(): ViewedLog {
    this.viewedLog ??= new ViewedLog(this.ctx.storage, () => this.getConnections(), () => (this.current ? JSON.stringify({ type: "cf_agent_state", state: this.current }) : null));
    return this.viewedLog;
  }

  private get events(): EventLog {
    return this.viewed.events;
  }

  private get viewers(): ViewerStreams {
    return this.viewed.viewers;
  }

  private get slots(): PlanSlots {
    this.planSlots ??= new PlanSlots({
      env: this.env,
      kv: this.ctx.storage.kv,
      planId: () => this.require().id,
      creator: () => this.require().createdBy,
      record: (type, data) => this.record(type, data),
    });
    return this.planSlots;
  }

  private get diffs(): DiffStore {
    this.diffStore ??= new DiffStore(this.ctx.storage.sql);
    return this.diffStore;
  }

  // ---- the plan's surface (RPC from the Worker and its tasks) ----------

  /** The fleet grants the integrator's or the publisher's sandbox slot (plan-slots.ts); false if nothing waits for it. */
  grantRun(slot: number): boolean {
    return this.slots.granted(slot);
  }

  /** Whether the slot is still held (asked by the fleet's sweeper). */
  holdsSlot(slot: number): boolean {
    return this.slots.holds(slot);
  }

  /**
   * Creates the plan and starts its planner. If the planner cannot start, the
   * plan's row goes again and the refusal is returned: nothing half-created.
   */
  async create(plan: PlanState, request: PlanRequest, planner: TaskSpec): Promise<{ plan: PlanState } | Refusal> {
    if (this.current) return { plan: this.current };
    await insertPlan(this.env.DB, plan);
    try {
      await startTasks(this.env, { specs: [planner], starter: { name: planner.createdBy } });
    } catch (error) {
      await deletePlan(this.env.DB, plan.id);
      const status = typeof (error as { status?: unknown }).status === "number" ? (error as { status: number }).status : 500;
      return { refused: { code: (error as { code?: string }).code ?? "planner_failed", message: messageOf(error), status: status === 409 ? 409 : 400 } };
    }
    this.ctx.storage.kv.put(REQUEST_KEY, request);
    this.ctx.storage.kv.put(PLANNER_SPEC_KEY, planner);
    this.record("plan.created", { plan: { ...plan, plannerTaskId: planner.id } });
    this.record("plan.status", { status: "planning", planner: planner.id });
    await this.scheduleEvery(RECONCILE_SECONDS, "reconcile");
    return { plan: this.require() };
  }

  view(): PlanState | null {
    return this.current;
  }

  readEvents(after: number, limit: number): { ndjson: string; count: number; lastSeq: number } {
    const page = this.events.page(after, limit);
    return { ndjson: page.map((event) => `${JSON.stringify(event)}\n`).join(""), count: page.length, lastSeq: page.at(-1)?.seq ?? after };
  }

  diffChunkCount(): number {
    return this.diffs.chunkCount(0);
  }

  diffChunk(index: number): Uint8Array | null {
    return this.diffs.chunk(0, index);
  }

  /** Hands the plan a Slack message to keep current (posted by the Slack trigger): posted now, updated at every status. */
  async followInSlack(target: SlackTarget, origin: string): Promise<void> {
    this.ctx.storage.kv.put(SLACK_KEY, { target, origin });
    await this.updateSlack();
  }

  /**
   * A task of this plan ended (or ended again after a send-back). The
   * decision is queued, not awaited: a task that reports while this agent is
   * cancelling it must not wait on the cancel.
   */
  taskEnded(report: PlanReport): void {
    this.later(() => this.onTaskEnded(report));
  }

  /** Approves the plan as written, or an edited plan (checked like the planner's); subtasks left out never run. */
  async approve(edited: unknown, by: string): Promise<{ plan: PlanState } | Refusal> {
    const plan = this.require();
    if (plan.status !== "awaiting_approval") return { refused: { code: "not_awaiting_approval", message: `plan ${plan.id} is ${plan.status}, not awaiting approval`, status: 409 } };
    let chosen = plan.plan!;
    if (edited !== undefined) {
      const check = checkPlan(edited, plan.maxSubtasks);
      if ("errors" in check) return { refused: { code: "invalid_plan", message: `the edited plan is invalid: ${check.errors.join("; ")}`, status: 400 } };
      chosen = check.plan;
    }
    const removed = plan.plan!.subtasks.map((s) => s.key).filter((key) => !chosen.subtasks.some((s) => s.key === key));
    this.record("plan.approved", { by, edited: edited !== undefined, removed, subtasks: chosen.subtasks.map((s) => s.key), ...(edited !== undefined ? { plan: chosen } : {}) });
    this.setStatus("running");
    this.later(() => this.advance());
    return { plan: this.require() };
  }

  /** Ends the plan `cancelled`: the planner or every subtask still going is cancelled with it. */
  async cancel(by: string): Promise<{ plan: PlanState } | Refusal> {
    const plan = this.require();
    if (isPlanTerminal(plan.status)) return { refused: { code: "plan_finished", message: `plan ${plan.id} already ended ${plan.status}`, status: 409 } };
    // Ended first: the tasks' reports of their own cancellation then find the plan over and change nothing.
    this.finish("cancelled", { code: "cancelled", message: `cancelled by ${by}` });
    await this.stopEverything(plan, `cancelled by ${by}`);
    await this.index();
    return { plan: this.require() };
  }

  /** Runs a failed (or blocked, or cancelled) subtask again, and everything that depends on it. */
  async retrySubtask(key: string, by: string): Promise<{ plan: PlanState } | Refusal> {
    const plan = this.require();
    const subtask = plan.subtasks.find((s) => s.key === key);
    if (!subtask) return { refused: { code: "invalid_subtask", message: `plan ${plan.id} has no subtask ${key}`, status: 400 } };
    if (!["failed", "blocked", "cancelled"].includes(subtask.status)) return { refused: { code: "subtask_not_failed", message: `subtask ${key} is ${subtask.status}; only a failed one is retried`, status: 409 } };
    if (plan.status !== "failed" && plan.status !== "running") return { refused: { code: "plan_not_retryable", message: `plan ${plan.id} is ${plan.status}`, status: 409 } };
    const reach = reachability(plan.subtasks);
    const again = new Set([key, ...plan.subtasks.filter((s) => reach.get(s.key)!.has(key)).map((s) => s.key)]);
    this.record("plan.retry", { subtask: key, by, subtasks: [...again] });
    this.record("plan.status", { status: "running" });
    this.later(() => this.advance());
    await this.index();
    return { plan: this.require() };
  }

  // ---- deciding ---------------------------------------------------------

  /** Runs `step` after every decision before it. */
  private decide(step: () => Promise<void>): Promise<void> {
    const next = this.turn.then(step).catch((error: unknown) => this.record("plan.error", { message: messageOf(error) }));
    this.turn = next;
    return next;
  }

  /** A decision that may take long (launches, an integration), in the background: the caller is not held. */
  private later(step: () => Promise<void>): void {
    void this.keepAliveWhile(() => this.decide(step));
  }

  /** Schedule callback: a running task that ended without this agent hearing of it is reported now. */
  async reconcile(): Promise<void> {
    const plan = this.current;
    if (!plan || isPlanTerminal(plan.status)) {
      for (const schedule of await this.listSchedules()) if (schedule.callback === "reconcile") await this.cancelSchedule(schedule.id);
      return;
    }
    const live = [plan.status === "planning" ? plan.plannerTaskId : null, ...plan.subtasks.filter((s) => s.status === "running").map((s) => s.taskId)].filter((id): id is string => !!id);
    for (const id of live) {
      const report = await (await getAgentByName(this.env.TaskAgent, id)).planReport();
      if (report) this.later(() => this.onTaskEnded(report));
    }
  }

  private async onTaskEnded(report: PlanReport): Promise<void> {
    const plan = this.current;
    if (!plan) return;
    this.countCost(report.task.id, report.task.costUsd);
    if (report.task.id === plan.plannerTaskId) return this.plannerEnded(report);
    const subtask = plan.subtasks.find((s) => s.taskId === report.task.id);
    // A subtask that is not running has had its report already (the reconciler and the task may both bring one).
    if (!subtask || subtask.status !== "running" || isPlanTerminal(plan.status)) return this.index();
    const { task } = report;
    const status: SubtaskStatus = task.status === "succeeded" ? "succeeded" : task.status === "cancelled" ? "cancelled" : "failed";
    if (status === "succeeded") this.patches.put(subtask.key, report.diff ?? "");
    const run = report.run !== null ? task.runs[report.run] : undefined;
    this.record("subtask.status", {
      key: subtask.key,
      status,
      taskId: task.id,
      ...(task.error ? { error: task.error } : {}),
      ...(task.endedAt ? { endedAt: task.endedAt } : {}),
      diff: run?.diff ?? null,
      summary: report.summary ? report.summary.slice(-2000) : null,
    });
    if (this.overBudget()) return;
    this.later(() => this.advance());
    await this.index();
  }

  private async plannerEnded(report: PlanReport): Promise<void> {
    const plan = this.require();
    if (plan.status !== "planning") return this.index();
    if (report.task.status !== "succeeded" || !report.plan) {
      const error = report.task.error && ["invalid_plan", "budget"].includes(report.task.error.code) ? report.task.error : { code: "planner_failed", message: `the planner ended ${report.task.status}: ${report.task.error?.message ?? "no plan was written"}` };
      this.finish("failed", error);
      return this.index();
    }
    // The planner's run checked it; checked again here, the plan trusted is the one this agent read.
    const check = checkPlan(report.plan, plan.maxSubtasks);
    if ("errors" in check) {
      this.finish("failed", { code: "invalid_plan", message: `the plan is invalid: ${check.errors.join("; ")}` });
      return this.index();
    }
    this.record("plan.written", { summary: check.plan.summary, subtasks: check.plan.subtasks.map((s) => ({ key: s.key, dependsOn: s.dependsOn, owns: s.owns })), plan: check.plan });
    if (this.overBudget()) return;
    if (plan.approve === "auto") {
      this.record("plan.approved", { by: "auto", edited: false, removed: [], subtasks: check.plan.subtasks.map((s) => s.key) });
      this.setStatus("running");
      this.later(() => this.advance());
    } else {
      this.setStatus("awaiting_approval");
    }
    await this.index();
  }

  /** Starts what may start, blocks what cannot, and integrates or ends the plan once every subtask has ended. */
  private async advance(): Promise<void> {
    let plan = this.require();
    if (plan.status !== "running" && plan.status !== "integrating") return;
    if (plan.status === "running") {
      for (const subtask of dependencyOrder(plan.subtasks)) {
        if (subtask.status !== "pending") continue;
        const current = this.require().subtasks;
        const deps = subtask.dependsOn.map((key) => current.find((s) => s.key === key)!);
        const stopped = deps.find((d) => d.status === "failed" || d.status === "blocked" || d.status === "cancelled");
        if (stopped) {
          const error = { code: "dependency_failed", message: `"${stopped.key}" ${stopped.status === "blocked" ? "was blocked" : `ended ${stopped.status}`}` };
          this.record("subtask.status", { key: subtask.key, status: "blocked", dependency: stopped.key, error });
          continue;
        }
        if (deps.every((d) => d.status === "succeeded")) await this.launch(subtask.key);
      }
    }
    plan = this.require();
    if (isPlanTerminal(plan.status) || !plan.subtasks.every((s) => ["succeeded", "failed", "blocked", "cancelled"].includes(s.status))) return this.index();
    const failed = plan.subtasks.filter((s) => s.status !== "succeeded");
    if (failed.length > 0) {
      const owner = failed.find((s) => s.error?.code === "ownership_violation");
      const first = owner ?? failed.find((s) => s.status === "failed") ?? failed[0]!;
      const code = owner ? "ownership_violation" : "subtask_failed";
      this.finish("failed", { code, message: `subtask "${first.key}" ${first.status}: ${first.error?.message ?? "no reason given"}` });
      return this.index();
    }
    await this.integrateAll();
  }

  private async launch(key: string): Promise<void> {
    const plan = this.require();
    const request = this.ctx.storage.kv.get<PlanRequest>(REQUEST_KEY)!;
    const subtask = plan.plan!.subtasks.find((s) => s.key === key)!;
    const ordered = dependencyOrder(plan.plan!.subtasks);
    const needed = reachability(plan.plan!.subtasks).get(key)!;
    const dependencies = plan.subtasks.filter((s) => subtask.dependsOn.includes(s.key));
    const handoff = handoffPrompt(plan.plan!, subtask, dependencies);
    const remaining = plan.maxCostUsd - plan.costUsd;
    const { body } = request;
    const taskBody: CreateTaskBody = {
      repo: plan.repo,
      prompt: handoff,
      ...(plan.branch ? { branch: plan.branch } : {}),
      ...(body.workers?.agent ? { agent: body.workers.agent } : {}),
      ...(body.workers?.model ? { model: body.workers.model } : {}),
      ...(body.workers?.runs ? { runs: body.workers.runs } : {}),
      ...(body.workers?.judge ? { judge: body.workers.judge } : {}),
      ...(body.review ? { review: body.review } : {}),
      isolation: "sandbox",
      key: `plan:${plan.id}:${key}`,
      maxCostUsd: Math.max(0.01, Math.min(1000, remaining)),
      keepWorkspaceMinutes: SEND_BACK_WINDOW_MINUTES,
    };
    let spec: TaskSpec;
    try {
      spec = planTask(this.env, { body: taskBody, source: "plan", createdBy: plan.createdBy, ...(request.origin ? { origin: request.origin } : {}) });
      const patches = ordered.filter((s) => needed.has(s.key)).map((s) => this.patches.get(s.key));
      spec.plan = { id: plan.id, role: "worker", subtask: key, owns: subtask.owns, patches };
      this.record("subtask.status", { key, status: "running", taskId: spec.id, handoff });
      this.starting.add(spec.id);
      try {
        await startTasks(this.env, { specs: [spec], starter: { name: spec.createdBy } });
      } finally {
        this.starting.delete(spec.id);
      }
    } catch (error) {
      const failure = { code: (error as { code?: string }).code ?? "launch_failed", message: messageOf(error) };
      this.record("subtask.status", { key, status: "failed", error: failure });
      return;
    }
    // The plan ended (or went on without this task) while it was being started, and stopEverything passed it by: it ends too.
    const now = this.require();
    const owner = now.subtasks.find((s) => s.key === key);
    if (isPlanTerminal(now.status) || owner?.taskId !== spec.id || owner.status === "cancelled") {
      await (await getAgentByName(this.env.TaskAgent, spec.id)).cancel(`plan ${now.id}: ${isPlanTerminal(now.status) ? `the plan ended ${now.status}` : `subtask ${key} went on without this task`}`);
    }
  }

  /**
   * Integrates every subtask's change in a sandbox of the plan's own, under the fleet's caps; then publishes (from
   * a sandbox of its own, once the integration's is gone and its slot given back) or sends a failure back.
   */
  private async integrateAll(): Promise<void> {
    const plan = this.require();
    const branch = `sortie/plan-${plan.id}`;
    const attempts = (plan.integration?.attempts ?? 0) + 1;
    this.record("integration.status", { status: "running", branch, attempt: attempts });
    if (plan.status !== "integrating") this.setStatus("integrating");
    await this.index();
    const abort = new AbortController();
    this.integration = abort;
    let outcome: IntegrationOutcome;
    try {
      outcome = await this.slots.hold("integrator", abort.signal, () => this.integrateInSandbox(plan, branch, abort.signal));
    } catch (error) {
      if (abort.signal.aborted) return;
      const failure = { code: "integration_failed", message: messageOf(error) };
      this.record("integration.status", { status: "failed", branch, error: failure });
      this.finish("failed", failure);
      return;
    } finally {
      this.integration = null;
      await this.index();
    }
    if (abort.signal.aborted || this.require().status !== "integrating") return;
    await this.concludeIntegration(outcome, branch);
    await this.index();
  }

  /** What follows an integration: publication and the plan's end, or a failure sent back to its owner, or the plan's end. */
  private async concludeIntegration(outcome: IntegrationOutcome, branch: string): Promise<void> {
    const current = this.require();
    if (outcome.status === "succeeded") {
      this.record("integration.status", { status: "succeeded", branch, diff: outcome.diff, checks: outcome.checks.length, results: outcome.checks, resolved: outcome.resolved });
      await this.publishAndFinish();
      return;
    }
    this.record("integration.status", { status: "failed", branch, error: outcome.error, results: outcome.checks, resolved: outcome.resolved });
    const owner = outcome.failing?.subtask ? current.subtasks.find((s) => s.key === outcome.failing!.subtask) : undefined;
    // A failure the integrator answered already (it followed a conflict resolution) is not sent to an owner as well.
    if (owner && outcome.failing && !outcome.integratorAnswered && owner.sentBack < SEND_BACKS && owner.taskId && (await this.sendBack(owner, acceptanceFailureMessage(outcome.failing.command, outcome.failing.exitCode, outcome.failing.output)))) return;
    this.finish("failed", outcome.error);
  }

  /** The integrated change out (unless the plan's output is the diff alone), then the plan's end. */
  private async publishAndFinish(): Promise<void> {
    if (this.require().output !== "diff") await this.publish();
    this.finish(this.require().error ? "failed" : "succeeded", this.require().error);
    await this.index();
  }

  /** The integration proper, in a fresh sandbox destroyed after it whatever happened. */
  private async integrateInSandbox(plan: PlanState, branch: string, signal: AbortSignal): Promise<IntegrationOutcome> {
    const config = readConfig(this.env);
    const port = sandboxPortFor(this.env, config);
    const sandboxId = `${plan.id}-integrate`;
    let sandbox: Sandbox | undefined;
    try {
      // A fresh sandbox for every attempt: nothing of an earlier one carries over.
      await port.destroy(sandboxId);
      sandbox = await port.open(sandboxId);
      const ordered = dependencyOrder(plan.plan!.subtasks);
      const subtasks: IntegrationInput[] = ordered.map((s) => ({ key: s.key, title: s.title, patch: this.patches.get(s.key), acceptance: s.acceptance, handoff: plan.subtasks.find((v) => v.key === s.key)?.handoff ?? s.prompt }));
      return await integrate({
        sandbox,
        cloneUrl: resolveRepo(plan.repo, config.gitBaseUrl).cloneUrl,
        branch: plan.branch,
        planBranch: branch,
        subtasks,
        record: (type, data) => this.record(type, data),
        resolveConflict: (open, repoDir, files, meeting) =>
          this.integratorTurn(open, repoDir, conflictPrompt(plan.plan!.summary, files, meeting.map((s) => ({ key: s.key, handoff: s.handoff }))), { files }, signal),
        repairResolution: (open, repoDir, failing, resolutions) =>
          this.integratorTurn(open, repoDir, repairPrompt(plan.plan!.summary, failing, resolutions), { files: resolutions.flatMap((r) => r.files), repair: failing.command }, signal),
        setUp: (open, repoDir) => this.setUp(open, repoDir, signal),
        storeDiff: (patch) => this.diffs.write(0, patch),
      });
    } finally {
      if (sandbox) await sandbox.destroy().catch((error: unknown) => this.record("plan.error", { message: `could not destroy the integration sandbox: ${messageOf(error)}` }));
    }
  }

  /** Pushes the integrated diff (and opens its pull request) from a publisher sandbox of its own, under the fleet's caps; a failure is the plan's error, the diff stays. */
  private async publish(): Promise<void> {
    const plan = this.require();
    const config = readConfig(this.env);
    const port = sandboxPortFor(this.env, config);
    const sandboxId = `${plan.id}-publish`;
    const request = this.ctx.storage.kv.get<PlanRequest>(REQUEST_KEY);
    const abort = new AbortController();
    this.integration = abort;
    try {
      await this.slots.hold("publisher", abort.signal, async () => {
        let sandbox: Sandbox | undefined;
        try {
          sandbox = await port.open(sandboxId);
          const patch = this.diffs.text(0, Number.POSITIVE_INFINITY);
          const published = await publishPlan({
            env: this.env,
            plan,
            cloneUrl: resolveRepo(plan.repo, config.gitBaseUrl).cloneUrl,
            sandbox,
            patch,
            viewerUrl: request?.origin ? `${request.origin}/plans/${plan.id}` : null,
            addSecret: (secret) => {
              this.extraSecrets.add(secret);
              this.scrub = undefined;
            },
          });
          this.record("integration.published", { branch: this.require().integration!.branch, commit: published.commit, pullRequest: published.pullRequest });
        } finally {
          if (sandbox) await sandbox.destroy().catch((error: unknown) => this.record("plan.error", { message: `could not destroy the publisher sandbox: ${messageOf(error)}` }));
        }
      });
    } catch (error) {
      if (abort.signal.aborted) return;
      const failure = { code: "publish_failed", message: messageOf(error) };
      this.record("integration.publish_failed", { error: failure });
    } finally {
      this.integration = null;
    }
  }

  /** Sends a failure of the integration back to the owner's session; false when its task takes no more messages. */
  private async sendBack(owner: SubtaskView, message: string): Promise<boolean> {
    const task = await getAgentByName(this.env.TaskAgent, owner.taskId!);
    const outcome = await task.message(message, undefined, "sortie");
    if ("refused" in outcome) {
      this.record("subtask.sent_back", { key: owner.key, delivered: false, reason: outcome.refused.message });
      return false;
    }
    this.record("subtask.sent_back", { key: owner.key, delivered: true, taskId: owner.taskId });
    this.record("subtask.status", { key: owner.key, status: "running", taskId: owner.taskId });
    return true;
  }

  /** The repository's setup in the integration's checkout, as a run's (src/agents/workspace.ts), with the planner's spec for the repository and branch. */
  private async setUp(sandbox: Sandbox, repoDir: string, signal: AbortSignal): Promise<void> {
    const spec = this.ctx.storage.kv.get<TaskSpec>(PLANNER_SPEC_KEY);
    if (!spec) throw new Error("the plan has no planner spec to set up from");
    const fleet = await fleetOf(this.env);
    const port = sandboxPortFor(this.env, readConfig(this.env));
    await setUpCheckout(
      {
        sandbox,
        spec,
        warm: { findWarm: (key) => fleet.findWarm(key), putWarm: (key, id, bytes, family) => fleet.putWarm(key, id, bytes, family) },
        signal,
        setPhase: () => {},
        record: (type, data) => this.record(type === "log" ? "integration.setup_log" : `integration.${type.replace(/^run\./, "")}`, data),
        dropSnapshot: (id) => port.dropSnapshot(id),
      },
      repoDir,
    );
  }

  /** A turn of the integrator agent in the integration sandbox (a conflict to resolve, or a check its resolution broke); its spending is the plan's. */
  private async integratorTurn(sandbox: Sandbox, repoDir: string, prompt: string, about: { files: string[]; repair?: string }, signal: AbortSignal): Promise<boolean> {
    const plan = this.require();
    const request = this.ctx.storage.kv.get<PlanRequest>(REQUEST_KEY)!;
    const adapter = adapterFor(request.body.workers?.agent ?? "claude-code");
    const model = modelCredentials(this.env, adapter.provider);
    const credentials = sandboxPortFor(this.env, readConfig(this.env)).credentialsForAgent(model.credentials);
    const result = await runAgentTurn(
      sandbox,
      adapter,
      { prompt, cwd: repoDir, maxTurns: INTEGRATOR_MAX_TURNS, model: request.body.workers?.model ?? null, credentials },
      { onEvent: () => {}, onProcessStarted: () => {}, onOutputConsumed: () => {}, signal },
    );
    const cost = result.final?.costUsd ?? 0;
    this.countCost(`${plan.id}-integrator-${Date.now()}`, cost);
    this.record("integration.agent", { ...about, exitCode: result.exitCode, isError: result.final?.isError ?? true, costUsd: cost });
    return !!result.final && !result.final.isError && result.exitCode === 0;
  }

  // ---- ending -------------------------------------------------------------

  /** Cancels the planner, every subtask still going, and a running integration (`plan`: as it was before it ended). */
  private async stopEverything(plan: PlanState, reason: string): Promise<void> {
    this.integration?.abort();
    const live = [plan.status === "planning" ? plan.plannerTaskId : null, ...plan.subtasks.filter((s) => s.status === "running").map((s) => s.taskId)]
      .filter((id): id is string => !!id && !this.starting.has(id));
    await Promise.all(
      live.map(async (id) => {
        const task = await getAgentByName(this.env.TaskAgent, id);
        await task.cancel(`plan ${plan.id}: ${reason}`);
      }),
    );
    const current = this.require();
    for (const subtask of current.subtasks.filter((s) => s.status === "running" || s.status === "pending")) {
      this.record("subtask.status", { key: subtask.key, status: "cancelled", error: { code: "cancelled", message: reason } });
    }
  }

  /** The plan's spending crossed its budget: everything stops, and the plan fails `budget`. */
  private overBudget(): boolean {
    const plan = this.require();
    if (plan.costUsd <= plan.maxCostUsd || isPlanTerminal(plan.status)) return false;
    const error = { code: "budget", message: `the plan spent about $${plan.costUsd.toFixed(4)}, over its $${plan.maxCostUsd} budget` };
    this.later(async () => {
      const before = this.require();
      if (isPlanTerminal(before.status)) return;
      this.finish("failed", error);
      await this.stopEverything(before, "over the plan's budget");
      await this.index();
    });
    return true;
  }

  private finish(status: Extract<PlanStatus, "succeeded" | "failed" | "cancelled">, error: ErrorInfo | null): void {
    const plan = this.require();
    if (isPlanTerminal(plan.status)) return;
    this.record("plan.status", { status, ...(error ? { error } : {}) });
    this.later(() => this.updateSlack());
  }

  // ---- state --------------------------------------------------------------

  private setStatus(status: PlanStatus): void {
    this.record("plan.status", { status });
    this.later(() => this.updateSlack());
  }

  /** Brings the plan's Slack message (if it has one) up to date; a failure is an event, the plan goes on. */
  private async updateSlack(): Promise<void> {
    const followed = this.ctx.storage.kv.get<{ target: SlackTarget; origin: string }>(SLACK_KEY);
    if (!followed) return;
    try {
      const target = await postOrUpdateMessage(this.env, followed.target, planMessage(this.require(), followed.origin));
      this.ctx.storage.kv.put(SLACK_KEY, { ...followed, target });
    } catch (error) {
      this.record("plan.slack_failed", { message: messageOf(error) });
    }
  }

  /** Counts a task's (or an integrator turn's) spending as it stands now: only what is new since it was last counted. */
  private countCost(taskId: string, total: number): void {
    const before = this.fold.spent[taskId] ?? this.ctx.storage.kv.get<number>(legacyCostKey(taskId)) ?? 0;
    if (total === before) return;
    this.record("plan.cost", { task: taskId, totalUsd: total, addedUsd: total - before });
  }

  /**
   * Appends an event and folds it into the plan. It is stored at once, and
   * before viewers get the state that followed from it.
   */
  private record(type: string, data: Record<string, unknown>): void {
    // The fold is read before the event is appended: read after, it would count the event twice.
    const before = this.fold;
    const event = this.events.append({ run: null, type, data: this.redact(data) });
    this.events.flush();
    this.folded = applyPlanEvent(before, event);
    if (this.folded !== before) this.viewedLog?.viewers.publishState();
  }

  /** The fold of the whole log, read once per instance and kept current by `record`. */
  private get fold(): PlanFold {
    if (this.folded) return this.folded;
    let fold = emptyPlanFold();
    for (let after = 0, page = this.events.page(0); page.length > 0; after = page.at(-1)!.seq, page = this.events.page(after)) {
      for (const event of page) fold = applyPlanEvent(fold, event);
    }
    if (!fold.plan && this.events.lastSeq > 0 && super.state) {
      // A plan stored before its log held its creation: its last saved state becomes its creation, once, and what follows folds onto it.
      const created = this.events.append({ run: null, type: "plan.created", data: { plan: super.state } });
      this.events.flush();
      fold = applyPlanEvent(fold, created);
    }
    this.folded = fold;
    return fold;
  }

  /** The plan as its log tells it, or null if no plan has this id. */
  private get current(): PlanState | null {
    return this.fold.plan;
  }

  /** Keeps the D1 index current; a failure is an event, and the next change writes it again. */
  private async index(): Promise<void> {
    const plan = this.current;
    if (!plan) return;
    await savePlan(this.env.DB, plan).catch((error: unknown) => this.record("index.error", { message: messageOf(error) }));
  }

  private redact<T>(value: T): T {
    this.scrub ??= deploymentRedactor(this.env, this.extraSecrets);
    return this.scrub(value);
  }

  private require(): PlanState {
    if (!this.current) throw new Error("no such plan");
    return this.current;
  }

  override validateStateChange(_next: PlanState | null, source: Connection | "server"): void {
    if (source !== "server") throw new Error("plan state is read-only for clients");
  }

  /**
   * On a wake during an integration: the integration that was under way is lost, so it runs again; one that had
   * succeeded was being published, so that starts again (a fleet slot kept from before is given back first).
   */
  override async onStart(): Promise<void> {
    const plan = this.current;
    if (plan?.status !== "integrating" || this.integration) return;
    if (plan.integration?.status === "running") this.later(() => this.integrateAll());
    else if (plan.integration?.status === "succeeded") this.later(() => this.publishAndFinish());
  }

  // ---- viewers ------------------------------------------------------------

  override onConnect(connection: Connection, ctx: ConnectionContext): void {
    this.viewers.connect(connection, ctx.request.url);
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    if (ViewerStreams.isAck(message)) return this.viewers.acknowledgeText(ws, message);
    return this.lifecycle.webSocketMessage(ws, message);
  }

  override onMessage(connection: Connection, message: WSMessage): void {
    if (typeof message === "string") this.viewers.acknowledgeText(connection, message);
  }

  override onClose(connection: Connection): void {
    this.viewers.remove(connection);
  }

  override shouldSendProtocolMessages(): boolean {
    return false;
  }
}
