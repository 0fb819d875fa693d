/**
 * The task's event log is Sortie's contract: the viewer, the CLI, Slack,
 * the benchmarks and every integration read it, and the task's state is
 * nothing but its fold. Every event Sortie records is a member of
 * `TaskEvent`, a zod union on `type`; an event of an undeclared type cannot
 * be recorded or parsed. `foldTask` turns a log into the state
 * `GET /api/tasks/:id` serves.
 *
 * Pure: it imports zod and other pure modules only, so it loads in the
 * Worker, the viewer, the CLI and plain Node (type stripping).
 *
 * @example foldTask(events).runs[0].status // "succeeded"
 */
import { z } from "zod";
import { estimateCostUsd } from "./runners/pricing.ts";
import { IntegrationCheck, IntegrationView, PlanStatus, SubtaskStatus, type PlanFile, type PlanState } from "./plan-schema.ts";
import { DiffStats, ErrorInfo, FollowUp, Publication, ReviewFinding, TaskState, TaskStatus, isTerminal, type JudgeView, type ReviewView, type RunView } from "./schema.ts";

/** An object with the fields named and whatever else its producer adds. */
const data = <Shape extends z.core.$ZodLooseShape>(shape: Shape) => z.looseObject(shape);
const anyData = data({});
const num = z.number();
const int = z.int();
const str = z.string();
const opt = <T extends z.ZodType>(schema: T) => schema.optional();

// ---- what an agent CLI's output becomes (src/runners), for a run, the judge (`judge.*`) or a reviewer (`review.*`) ----

const text = data({ text: opt(str), truncated: opt(z.boolean()) });
const AGENT_DATA = {
  init: data({ sessionId: opt(str.nullable()), model: opt(str.nullable()), cwd: opt(str.nullable()), tools: opt(z.unknown()), agent: opt(str) }),
  retry: data({ attempt: opt(num), maxRetries: opt(num), delayMs: opt(num) }),
  system: data({ subtype: opt(str.nullable()) }),
  result: data({ isError: z.boolean(), subtype: str, numTurns: opt(num), costUsd: opt(num.nullable()), text: opt(str), sessionId: opt(str.nullable()) }),
  other: data({ kind: opt(str) }),
  usage: data({ model: opt(str.nullable()), inputTokens: opt(num), outputTokens: opt(num), cacheReadTokens: opt(num), cacheWriteTokens: opt(num), cumulative: opt(z.boolean()), messageId: opt(str.nullable()) }),
  text,
  reasoning: text,
  tool_call: data({ id: opt(str.nullable()), name: opt(str.nullable()), summary: opt(str), input: opt(str), truncated: opt(z.boolean()) }),
  tool_result: data({ toolUseId: opt(str.nullable()), isError: opt(z.boolean()), text: opt(str), truncated: opt(z.boolean()) }),
} as const;
type AgentKind = keyof typeof AGENT_DATA;
/** The kinds of agent output, as `agent.<kind>` (a run's), `judge.<kind>` and `review.<kind>`. */
export const AGENT_KINDS = Object.keys(AGENT_DATA) as AgentKind[];

const lane = <Prefix extends string>(prefix: Prefix) =>
  Object.fromEntries(AGENT_KINDS.map((kind) => [`${prefix}.${kind}`, AGENT_DATA[kind]])) as { [K in AgentKind as `${Prefix}.${K}`]: (typeof AGENT_DATA)[K] };

/** What Sortie decided about a pull request it tends (src/agents/tending.ts): each an event `tending.<decision>`. */
export const TENDING_DECISIONS = ["started", "queued", "skipped_pre_existing", "deduplicated", "outsider_ignored", "budget_spent", "stopped", "retry_granted", "fix_ended"] as const;
const tendingData = data({ by: opt(str), followUp: opt(FollowUp) });
const tending = Object.fromEntries(TENDING_DECISIONS.map((decision) => [`tending.${decision}`, tendingData])) as Record<`tending.${(typeof TENDING_DECISIONS)[number]}`, typeof tendingData>;

const diffStats = { files: int, additions: int, deletions: int };
/**
 * A plan as its events carry it: checked for its shape, not its limits. What is recorded is redacted, and a
 * redaction may lengthen a field past PlanFile's bounds; the plan was checked in full before it was recorded.
 */
const loosePlanFile = z.looseObject({ summary: str, subtasks: z.array(z.looseObject({ key: str, owns: z.array(str), dependsOn: z.array(str) })) }) as unknown as z.ZodType<PlanFile>;
const loosePlanState = z.looseObject({ id: str, repo: str, status: PlanStatus, subtasks: z.array(z.looseObject({ key: str })) }) as unknown as z.ZodType<PlanState>;
const reviewer = z.looseObject({ agent: str, model: str.nullable() });

/** Every event type Sortie records, and the shape of its `data`. */
export const EVENT_DATA = {
  // The task.
  "task.created": data({ task: TaskState }),
  "task.status": data({ status: TaskStatus, runs: opt(int), reason: opt(str), error: opt(ErrorInfo) }),
  "task.winner": data({ run: int, by: str }),
  // A run's life.
  "run.queued": data({ position: opt(z.union([int, z.null()])) }),
  "run.status": data({ status: TaskStatus, phase: opt(str.nullable()), error: opt(ErrorInfo) }),
  "run.restart": data({ phase: opt(str.nullable()) }),
  "run.reattach": data({ processId: opt(str) }),
  "run.retry": data({ attempt: int, of: int, delayMs: num, error: ErrorInfo }),
  "run.watchdog": data({ strikes: int }),
  "run.unconfined": data({ warning: str, message: str }),
  "run.isolation_violation": data({ changed: z.array(str) }),
  "run.diff": data({ ...diffStats, bytes: int, secretFiles: opt(z.array(str)) }),
  "run.message": data({ text: str, by: str, delivery: opt(str) }),
  "run.message_delivered": data({ text: str, by: str }),
  "run.reopened": data({}),
  "run.workspace_kept": data({ until: num }),
  "run.workspace_released": data({}),
  // Where a run's workspace came from, and its setup.
  "run.cloned": data({ commit: str }),
  "run.restored": data({ commit: str, source: z.enum(["snapshot", "warm", "template"]) }),
  "run.worktree": data({ commit: str, sandbox: opt(str), uid: opt(int) }),
  "run.setup": data({ durationMs: opt(num) }),
  "run.dependencies_restored": data({ dirs: opt(z.array(str)) }),
  "run.cache_not_saved": data({ message: opt(str) }),
  "run.snapshot_failed": data({ message: opt(str) }),
  "run.snapshot_missed": data({ message: opt(str) }),
  log: data({ stream: opt(str), text: opt(str), phase: opt(str), truncated: opt(z.boolean()) }),
  "sandbox.destroyed": data({ sandbox: str }),
  "sandbox.worktree_removed": data({ sandbox: str }),
  "sandbox.destroy_failed": data({ sandbox: str, message: str }),
  // What the agents said and did.
  ...lane("agent"),
  ...lane("judge"),
  ...lane("review"),
  // The judge.
  "judge.queued": data({ candidates: z.array(int) }),
  "judge.status": data({ status: TaskStatus, winner: opt(int.nullable()), ranking: opt(z.array(int)), reasons: opt(str), costUsd: opt(num), error: opt(ErrorInfo) }),
  // A run's review lane.
  "review.status": data({ status: str, reason: opt(str.nullable()), message: opt(str), reviewer: opt(reviewer), rounds: opt(int) }),
  "review.round": data({
    round: int,
    status: str,
    verdict: z.enum(["approve", "changes"]).nullable(),
    findings: z.array(ReviewFinding),
    reviewer,
    costUsd: opt(num),
    startedAt: opt(num),
    endedAt: opt(num.nullable()),
    reason: opt(str.nullable()),
    error: opt(ErrorInfo.nullable()),
  }),
  "review.feedback": data({ round: int, findings: int, text: str }),
  "review.reviewer_started": data({ round: int }),
  // Publication.
  "publish.status": data({ status: TaskStatus, output: opt(Publication.shape.output), branch: opt(str), by: opt(str), commit: opt(str.nullable()), pullRequest: opt(Publication.shape.pullRequest), error: opt(ErrorInfo) }),
  "publish.skipped": data({ code: str, message: str }),
  "publish.token_minted": data({ kind: str }),
  "publish.pushed": data({ branch: str, commit: str }),
  "publish.pull_request": data({ number: int, url: str }),
  "publish.commented": anyData,
  "publish.review_posted": anyData,
  "publish.review_failed": data({ message: str }),
  ...tending,
  "tending.error": data({ message: str }),
  // A run's preview: the app its workspace serves.
  "preview.starting": data({ command: str, port: int, url: str, startedAt: num }),
  "preview.ready": data({ url: str, port: int, ms: num }),
  "preview.output": data({ stream: str, text: str, truncated: opt(z.boolean()) }),
  "preview.failed": data({ error: ErrorInfo, output: str }),
  "preview.stopped": data({ reason: str }),
  "preview.restarting": data({ reason: str }),
  "preview.screenshot": data({ file: str, bytes: int, kept: z.boolean() }),
  "preview.screenshot_skipped": data({ reason: str }),
  "preview.screenshot_failed": data({ message: str }),
  // A plan's own log (src/agents/plan-agent.ts, `run` null), and its roles in a task's.
  "plan.created": data({ plan: loosePlanState }),
  "plan.status": data({ status: PlanStatus, planner: opt(str), error: opt(ErrorInfo) }),
  "plan.written": data({ summary: opt(str), subtasks: z.array(z.looseObject({ key: str })), plan: opt(loosePlanFile) }),
  "plan.approved": data({ by: str, edited: opt(z.boolean()), removed: opt(z.array(str)), plan: opt(loosePlanFile) }),
  "plan.retry": data({ subtask: str, by: opt(str), subtasks: opt(z.array(str)) }),
  "plan.cost": data({ task: str, totalUsd: num, addedUsd: num }),
  "plan.error": data({ message: str }),
  "plan.queued": data({ slot: z.enum(["integrator", "publisher"]), position: num }),
  "plan.slack_failed": data({ message: str }),
  "plan.report_failed": data({ plan: str, message: str }),
  "subtask.status": data({
    key: str,
    status: SubtaskStatus,
    taskId: opt(str),
    error: opt(ErrorInfo.nullable()),
    dependency: opt(str),
    handoff: opt(str),
    endedAt: opt(num),
    diff: opt(DiffStats.nullable()),
    summary: opt(str.nullable()),
  }),
  "subtask.sent_back": data({ key: str, delivered: opt(z.boolean()), taskId: opt(str), reason: opt(str) }),
  "integration.status": data({
    status: IntegrationView.shape.status,
    branch: opt(str),
    attempt: opt(int),
    error: opt(ErrorInfo),
    diff: opt(DiffStats.nullable()),
    /** How many acceptance checks ran (`results` holds them). */
    checks: opt(int),
    results: opt(z.array(IntegrationCheck)),
    resolved: opt(z.array(str)),
  }),
  "integration.conflict": data({ subtask: opt(str), files: opt(z.array(str)) }),
  "integration.agent": data({ files: opt(z.array(str)), repair: opt(str), exitCode: opt(num.nullable()), isError: opt(z.boolean()), costUsd: opt(num.nullable()) }),
  "integration.resolved": data({ subtask: opt(str), files: opt(z.array(str)), ok: opt(z.boolean()) }),
  "integration.repair": data({ command: str, exitCode: opt(num.nullable()), subtask: opt(str.nullable()), ok: opt(z.boolean()), refused: opt(str) }),
  "integration.check": data({ command: str, exitCode: opt(num.nullable()), subtask: opt(str.nullable()) }),
  "integration.published": data({ branch: str, commit: opt(str.nullable()), pullRequest: opt(IntegrationView.shape.pullRequest) }),
  "integration.publish_failed": data({ error: ErrorInfo }),
  "integration.setup": data({ durationMs: opt(num) }),
  "integration.setup_log": data({ stream: opt(str), text: opt(str) }),
  "integration.snapshot_missed": data({ message: opt(str) }),
  "integration.snapshot_failed": data({ message: opt(str) }),
  "integration.dependencies_restored": data({ dirs: opt(z.array(str)) }),
  "integration.cache_not_saved": data({ message: opt(str) }),
  "run.plan_file": data({ valid: z.boolean(), attempt: opt(int), errors: opt(z.array(z.unknown())), subtasks: opt(z.array(str)), plan: opt(loosePlanFile) }),
  "run.plan_ownership": data({ attempt: int, outside: z.array(str), owns: z.array(str) }),
  "run.plan_dependencies": data({ patches: int, base: str, commit: str }),
  // Repository memory.
  "memory.delivered": data({ entries: z.array(z.looseObject({ id: str, text: str })) }),
  "memory.proposed": data({ proposed: z.array(z.looseObject({ id: str })), seen: z.array(z.looseObject({ id: str })) }),
  "memory.ignored": anyData,
  "memory.error": data({ message: str }),
  // What the task told the outside, and what failed around it.
  "notify.sent": anyData,
  "notify.failed": anyData,
  "slack.error": data({ message: str }),
  "claim.lost": data({ key: str }),
  "index.error": data({ message: str }),
  "audit.error": data({ action: str, message: str }),
} as const;

export type EventType = keyof typeof EVENT_DATA;
export const EVENT_TYPES = Object.keys(EVENT_DATA) as EventType[];

const envelope = { seq: int, ts: num, run: int.nullable() };
const member = <T extends EventType>(type: T) => z.object({ ...envelope, type: z.literal(type), data: EVENT_DATA[type] });

/** One entry of a task's event log: `seq` is per task, starts at 1 and never skips; `run` names the run it belongs to (null: the task's). */
export type TaskEvent = { [T in EventType]: { seq: number; ts: number; run: number | null; type: T; data: z.infer<(typeof EVENT_DATA)[T]> } }[EventType];
export const TaskEvent: z.ZodType<TaskEvent> = z.discriminatedUnion(
  "type",
  EVENT_TYPES.map(member) as unknown as [ReturnType<typeof member<EventType>>, ...ReturnType<typeof member<EventType>>[]],
) as unknown as z.ZodType<TaskEvent>;

/** Whether `type` is one Sortie declares. */
export function isEventType(type: string): type is EventType {
  return Object.hasOwn(EVENT_DATA, type);
}

/** Checks an event's `type` and `data` against the union: what is not declared is refused with a message saying what is wrong. */
export function parseEvent(event: { seq: number; ts: number; run: number | null; type: string; data: unknown }): TaskEvent {
  if (!isEventType(event.type)) throw new TypeError(`undeclared event type ${JSON.stringify(event.type)} (src/events.ts declares every event Sortie records)`);
  const parsed = EVENT_DATA[event.type].safeParse(event.data);
  if (!parsed.success) throw new TypeError(`event ${event.type} has data of the wrong shape: ${z.prettifyError(parsed.error)}`);
  return event as TaskEvent;
}

/**
 * Where an event came from: the lane (`agent` for a run's own turns, `judge`,
 * `review`) and the kind of agent output, or null for Sortie's own events.
 * The one place that reads `judge.text` and `review.tool_call` as agent output.
 */
export function agentOutputOf(type: string): { lane: "agent" | "judge" | "review"; kind: AgentKind } | null {
  const dot = type.indexOf(".");
  const prefix = type.slice(0, dot);
  const kind = type.slice(dot + 1) as AgentKind;
  if ((prefix === "agent" || prefix === "judge" || prefix === "review") && Object.hasOwn(AGENT_DATA, kind)) return { lane: prefix, kind };
  return null;
}

// ---- the fold ----------------------------------------------------------

/** The task's state, and what it is still counting: each slot's estimated spending in the turn under way. */
export interface TaskFold {
  task: TaskState | null;
  /** Sortie's estimate of the current turn's spending, per run (`run:i`) and reviewer (`review:i`), until the CLI reports its figure. */
  estimates: Record<string, number>;
  /** What the task's jobs read back from the log but the task does not show: each run's closing words (its last `agent.result`), */
  summaries: Record<number, string>;
  /** the user each workspace run works as (`run.worktree`), */
  users: Record<number, number>;
  /** and the plan a planner wrote (its last valid `run.plan_file`). */
  writtenPlan: PlanFile | null;
}

/** The fold of no events: no task. */
export function emptyFold(): TaskFold {
  return { task: null, estimates: {}, summaries: {}, users: {}, writtenPlan: null };
}

/** The state a log adds up to. Pure; folding any prefix of a log is safe. */
export function foldTask(events: readonly TaskEvent[]): TaskState {
  let fold = emptyFold();
  for (const event of events) fold = applyEvent(fold, event);
  if (!fold.task) throw new TypeError("the log has no task.created event");
  return fold.task;
}

/**
 * One step of the fold: the state after `event`. Returns `fold` itself when
 * the event changes nothing, so a caller can tell whether state moved.
 */
export function applyEvent(fold: TaskFold, event: TaskEvent): TaskFold {
  if (event.type === "task.created") return { ...emptyFold(), task: structuredClone(event.data.task) };
  const task = fold.task;
  if (!task) return fold;
  const next = (changes: Partial<TaskState>, estimates = fold.estimates): TaskFold => ({ ...fold, task: { ...task, ...changes }, estimates });
  const run = event.run === null ? undefined : task.runs[event.run];
  const patchRun = (patch: Partial<RunView>, estimates = fold.estimates): TaskFold =>
    run ? next({ runs: task.runs.map((r) => (r === run ? { ...r, ...patch } : r)) }, estimates) : fold;
  const { ts } = event;

  switch (event.type) {
    case "task.status": {
      const { status } = event.data;
      if (status === "queued") return fold;
      if (status === "running") return next({ status, startedAt: task.startedAt ?? ts, endedAt: null, error: null });
      const costUsd = task.runs.reduce((sum, r) => sum + r.costUsd, 0) + (task.judge?.costUsd ?? 0);
      return next({ status, endedAt: ts, error: event.data.error ?? null, costUsd });
    }
    case "task.winner":
      return next({ winner: { run: event.data.run, by: event.data.by, at: ts } });

    case "run.status": {
      if (!run) return fold;
      const { status } = event.data;
      if (status === "running") return patchRun({ status, phase: (event.data.phase ?? null) as RunView["phase"], startedAt: run.startedAt ?? ts });
      if (!isTerminal(status)) return patchRun({ status });
      return patchRun({ status, phase: null, endedAt: ts, durationMs: run.startedAt ? ts - run.startedAt : null, error: event.data.error ?? null });
    }
    case "run.reopened":
      return patchRun({ status: "queued", phase: null, endedAt: null, durationMs: null, error: null, workspaceUntil: null });
    case "run.message":
      return run ? patchRun({ pendingMessages: run.pendingMessages + 1 }) : fold;
    case "run.message_delivered":
      return run ? patchRun({ pendingMessages: Math.max(0, run.pendingMessages - 1) }) : fold;
    case "run.workspace_kept":
      return patchRun({ workspaceUntil: event.data.until });
    case "run.workspace_released":
      return patchRun({ workspaceUntil: null });
    case "run.retry":
      return run ? patchRun({ attempts: [...run.attempts, { at: ts, code: event.data.error.code, message: event.data.error.message }], sessionId: null }) : fold;
    case "run.diff": {
      if (!run) return fold;
      const { files, additions, deletions, bytes, secretFiles } = event.data;
      const { secretFiles: _dropped, ...rest } = run;
      return next({ runs: task.runs.map((r) => (r === run ? { ...rest, diff: { files, additions, deletions, bytes }, ...(secretFiles?.length ? { secretFiles } : {}) } : r)) });
    }
    case "run.cloned":
      return patchRun({ baseCommit: event.data.commit, workspace: "clone" });
    case "run.restored":
      return patchRun({ baseCommit: event.data.commit, workspace: event.data.source === "template" ? "warm" : event.data.source });
    case "run.plan_dependencies":
      return patchRun({ baseCommit: event.data.commit });
    case "run.worktree": {
      const placed = patchRun({ baseCommit: event.data.commit, workspace: "worktree" });
      return run && event.data.uid !== undefined ? { ...placed, users: { ...fold.users, [run.index]: event.data.uid } } : placed;
    }
    case "run.plan_file":
      return event.data.valid && event.data.plan ? { ...fold, writtenPlan: event.data.plan } : fold;
    case "preview.starting":
      return patchRun({ preview: { status: "starting", url: event.data.url, startedAt: event.data.startedAt } });
    case "preview.ready":
      return run?.preview ? patchRun({ preview: { status: "ready", url: event.data.url, startedAt: run.preview.startedAt } }) : fold;
    case "preview.stopped":
      return run?.preview ? patchRun({ preview: { status: "stopped", url: run.preview.url, startedAt: run.preview.startedAt } }) : fold;
    case "preview.failed":
      return run ? patchRun({ preview: { status: "failed", url: run.preview?.url ?? "", startedAt: run.preview?.startedAt ?? ts, error: event.data.error } }) : fold;
    case "preview.screenshot":
      return event.data.kept ? patchRun({ screenshot: true }) : fold;
    case "memory.delivered":
      return event.data.entries.length > 0 ? patchRun({ memory: event.data.entries.map((entry) => entry.id) }) : fold;
    case "memory.proposed": {
      const before = task.learnings ?? { proposed: 0, seen: 0 };
      return next({ learnings: { proposed: before.proposed + event.data.proposed.length, seen: before.seen + event.data.seen.length } });
    }

    // A run's own agent output: its session, tokens and spending.
    case "agent.init":
      return run && typeof event.data.sessionId === "string" && event.data.sessionId !== run.sessionId ? patchRun({ sessionId: event.data.sessionId }) : fold;
    case "agent.usage": {
      if (!run) return fold;
      const usage = event.data;
      // A CLI that reports its session's running total (Codex) gives this turn's share as what the run has not counted yet.
      const inputTokens = usage.cumulative === true ? Math.max(0, Number(usage.inputTokens) - run.inputTokens) : Number(usage.inputTokens);
      const outputTokens = usage.cumulative === true ? Math.max(0, Number(usage.outputTokens) - run.outputTokens) : Number(usage.outputTokens);
      const key = `run:${run.index}`;
      const estimate = (fold.estimates[key] ?? 0) + priced(usage, inputTokens, outputTokens, run.model ?? task.model);
      return patchRun({ inputTokens: run.inputTokens + inputTokens, outputTokens: run.outputTokens + outputTokens }, { ...fold.estimates, [key]: estimate });
    }
    case "agent.result": {
      if (!run) return fold;
      const key = `run:${run.index}`;
      // The CLI's own figure replaces this turn's estimate (a CLI that prices nothing keeps it); turns of follow-ups add up.
      const reported = typeof event.data.costUsd === "number" ? event.data.costUsd : (fold.estimates[key] ?? 0);
      const { [key]: _spent, ...estimates } = fold.estimates;
      const ended = patchRun(
        {
          costUsd: run.costUsd + reported,
          numTurns: (run.numTurns ?? 0) + (Number(event.data.numTurns) || 0),
          ...(typeof event.data.sessionId === "string" ? { sessionId: event.data.sessionId } : {}),
        },
        estimates,
      );
      return { ...ended, summaries: { ...fold.summaries, [run.index]: String(event.data.text ?? "") } };
    }
    // A reviewer's spending is its run's.
    case "review.usage": {
      if (!run) return fold;
      const inputTokens = Number(event.data.inputTokens) || 0;
      const outputTokens = Number(event.data.outputTokens) || 0;
      const key = `review:${run.index}`;
      const estimate = (fold.estimates[key] ?? 0) + priced(event.data, inputTokens, outputTokens, task.model);
      return patchRun({ inputTokens: run.inputTokens + inputTokens, outputTokens: run.outputTokens + outputTokens }, { ...fold.estimates, [key]: estimate });
    }
    case "review.result": {
      if (!run) return fold;
      const key = `review:${run.index}`;
      const cost = typeof event.data.costUsd === "number" ? event.data.costUsd : (fold.estimates[key] ?? 0);
      const { [key]: _spent, ...estimates } = fold.estimates;
      return patchRun({ costUsd: run.costUsd + cost }, estimates);
    }
    case "review.status": {
      if (!run) return fold;
      if (event.data.status === "running") return patchRun({ review: { status: "running", rounds: [], reason: null } });
      const review: ReviewView = { ...(run.review ?? { rounds: [] }), status: event.data.status as ReviewView["status"], reason: event.data.message ?? event.data.reason ?? null };
      return patchRun({ review });
    }
    case "review.round": {
      if (!run) return fold;
      const d = event.data;
      const round = { verdict: d.verdict, findings: d.findings, reviewer: { agent: d.reviewer.agent, model: d.reviewer.model }, startedAt: d.startedAt ?? ts, endedAt: d.endedAt ?? ts, costUsd: d.costUsd, error: d.error ?? null } as ReviewView["rounds"][number];
      return patchRun({ review: { status: d.status as ReviewView["status"], rounds: [...(run.review?.rounds ?? []), round], reason: d.reason ?? null } });
    }

    case "judge.status": {
      if (!task.judge) return fold;
      const d = event.data;
      if (d.status === "running") return next({ judge: { ...task.judge, status: "running" } });
      const judge: JudgeView = {
        status: d.status,
        winner: d.winner ?? task.judge.winner,
        ranking: d.ranking ?? task.judge.ranking,
        reasons: d.reasons ?? task.judge.reasons,
        costUsd: d.costUsd ?? task.judge.costUsd,
        error: d.error ?? null,
      };
      // The judge's winner becomes the task's unless one was picked already.
      const winner = typeof d.winner === "number" && !task.winner ? { run: d.winner, by: "judge", at: ts } : task.winner;
      return next({ judge, winner });
    }

    case "publish.status": {
      const d = event.data;
      if (d.status === "queued") {
        return next({
          publication: { status: "queued", output: d.output ?? "pr", run: event.run ?? 0, branch: d.branch ?? "", commit: null, pullRequest: null, by: d.by ?? "sortie", error: null },
        });
      }
      if (!task.publication) return fold;
      if (d.status === "running") return next({ publication: { ...task.publication, status: "running" } });
      return next({
        publication: { ...task.publication, status: d.status, commit: d.commit ?? task.publication.commit, pullRequest: d.pullRequest ?? task.publication.pullRequest, error: d.error ?? null },
      });
    }

    default: {
      // A tending decision keeps the publication's follow-ups current.
      if (!event.type.startsWith("tending.") || !task.publication) return fold;
      const followUp = (event.data as { followUp?: z.infer<typeof FollowUp> }).followUp;
      if (!followUp) return fold;
      const earlier = task.publication.followUps ?? [];
      const known = earlier.find((f) => f.task === followUp.task);
      const followUps = known ? earlier.map((f) => (f === known ? { ...f, status: followUp.status, commit: followUp.commit } : f)) : [...earlier, followUp];
      return next({ publication: { ...task.publication, followUps } });
    }
  }
}

/** What usage costs, priced by its model (else the run's or task's). */
function priced(usage: z.infer<typeof AGENT_DATA.usage>, inputTokens: number, outputTokens: number, fallbackModel: string | null): number {
  return estimateCostUsd({
    model: usage.model ?? fallbackModel ?? null,
    inputTokens,
    outputTokens,
    cacheReadTokens: Number(usage.cacheReadTokens) || 0,
    cacheWriteTokens: Number(usage.cacheWriteTokens) || 0,
  } as Parameters<typeof estimateCostUsd>[0]);
}
