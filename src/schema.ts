/**
 * The shapes Sortie's API, agents, CLI and viewer share. Types come from these
 * schemas (`z.infer`), so a field cannot drift between the API and its readers.
 */
import { z } from "zod";
import { LIMITS } from "./config.ts";
import { isValidBranchName } from "./repo.ts";
import type { FixRequest } from "./fix-request.ts";
import type { PlanRole } from "./plan-schema.ts";

export const TASK_STATUSES = ["queued", "running", "succeeded", "failed", "cancelled", "timed_out"] as const;
export const TaskStatus = z.enum(TASK_STATUSES);
export type TaskStatus = z.infer<typeof TaskStatus>;

/** What a run is doing while `running`. */
export const RunPhase = z.enum(["provisioning", "cloning", "setup", "agent", "diffing", "judging", "reviewing"]);
export type RunPhase = z.infer<typeof RunPhase>;

export const TERMINAL_STATUSES: ReadonlySet<TaskStatus> = new Set(["succeeded", "failed", "cancelled", "timed_out"]);
export const isTerminal = (status: TaskStatus) => TERMINAL_STATUSES.has(status);

/** The agent CLIs a run can use; `claude-code` unless a task or its variant says otherwise. */
export const AGENT_NAMES = ["claude-code", "codex", "opencode", "gemini"] as const;
export const AgentName = z.enum(AGENT_NAMES);
export type AgentName = z.infer<typeof AgentName>;

/**
 * How a run is kept apart: `analysis` reads a read-only checkout with the model
 * API as its only network and hands back an answer, not a diff; `workspace` is
 * a git worktree in a warm sandbox shared by the repository's runs, separated
 * by user; `sandbox` is a dedicated fresh sandbox.
 */
export const ISOLATION_LEVELS = ["analysis", "workspace", "sandbox"] as const;
export const IsolationLevel = z.enum(ISOLATION_LEVELS);
export type IsolationLevel = z.infer<typeof IsolationLevel>;

/** The level a task runs at and why: declared by the task, or inferred from its prompt. */
export const Isolation = z.object({ level: IsolationLevel, inferred: z.boolean(), reason: z.string() });
export type Isolation = z.infer<typeof Isolation>;

export const RunVariant = z
  .object({
    agent: AgentName.optional(),
    model: z.string().regex(/^[A-Za-z0-9._:[\]-]{1,100}$/, "model must be a model id").optional(),
    prompt_suffix: z.string().max(10_000).optional(),
  })
  .strict();
export type RunVariant = z.infer<typeof RunVariant>;

/** Defaults and ceilings of a review lane (rounds of reviewer then coder). */
export const REVIEW_ROUNDS = { default: 2, min: 1, max: 5 } as const;

/** `review` of a task: a read-only peer reviews each run's change, and its findings go back to the coder. */
export const ReviewRequest = z
  .object({
    agent: AgentName.optional(),
    model: z.string().regex(/^[A-Za-z0-9._:[\]-]{1,100}$/, "model must be a model id").optional(),
    rounds: z.int().min(REVIEW_ROUNDS.min, `review.rounds must be at least ${REVIEW_ROUNDS.min}`).max(REVIEW_ROUNDS.max, `review.rounds may be at most ${REVIEW_ROUNDS.max}`).optional(),
  })
  .strict();
export type ReviewRequest = z.infer<typeof ReviewRequest>;

/** The verdict a reviewer writes to $SORTIE_REVIEW_FILE. */
export const ReviewFinding = z
  .object({
    path: z.string().min(1).max(1000),
    line: z.int().min(1).optional(),
    body: z.string().min(1).max(10_000),
    severity: z.enum(["blocker", "major", "minor"]).optional(),
  })
  .strict();
export type ReviewFinding = z.infer<typeof ReviewFinding>;
export const ReviewVerdict = z.object({ verdict: z.enum(["approve", "changes"]), findings: z.array(ReviewFinding).max(100) }).strict();
export type ReviewVerdict = z.infer<typeof ReviewVerdict>;

export const REVIEW_STATUSES = ["running", "approved", "changes_requested", "needs_attention", "failed"] as const;
export const ReviewRound = z.object({
  verdict: z.enum(["approve", "changes"]).nullable(),
  findings: z.array(ReviewFinding),
  reviewer: z.object({ agent: AgentName, model: z.string().nullable() }),
  startedAt: z.number(),
  endedAt: z.number().nullable(),
  costUsd: z.number().optional(),
  error: z.object({ code: z.string(), message: z.string() }).nullable().optional(),
});
export type ReviewRound = z.infer<typeof ReviewRound>;
export const ReviewView = z.object({ status: z.enum(REVIEW_STATUSES), rounds: z.array(ReviewRound), reason: z.string().nullable().optional() });
export type ReviewView = z.infer<typeof ReviewView>;

export const ErrorInfo = z.object({ code: z.string(), message: z.string() });
export type ErrorInfo = z.infer<typeof ErrorInfo>;

/** Defaults and bounds of a run's preview: the port its command listens on, and how long it may take to answer. */
export const PREVIEW = { defaultPort: 8080, minPort: 1024, maxPort: 65_535, defaultPath: "/", readyTimeoutMs: 60_000 } as const;

/** `preview` of a task: a command that serves the app a run built, started in its kept workspace once its turn succeeded. */
export const PreviewRequest = z
  .object({
    command: z.string().trim().min(1, "preview.command must not be empty").max(10_000),
    port: z.int().min(PREVIEW.minPort, `preview.port must be between ${PREVIEW.minPort} and ${PREVIEW.maxPort}`).max(PREVIEW.maxPort, `preview.port must be between ${PREVIEW.minPort} and ${PREVIEW.maxPort}`).optional(),
    path: z.string().regex(/^\/[\x21-\x7e]*$/, "preview.path must start with / and hold no spaces").max(2000).optional(),
  })
  .strict();
export type PreviewRequest = z.infer<typeof PreviewRequest>;

export const PREVIEW_STATUSES = ["starting", "ready", "failed", "stopped"] as const;
/** A run's preview as the API shows it: `url` is absolute (the orchestrator's `/preview/<task>/<run>/`, or the sandbox's exposed host). */
export const PreviewView = z.object({
  status: z.enum(PREVIEW_STATUSES),
  url: z.string(),
  startedAt: z.number(),
  error: ErrorInfo.optional(),
});
export type PreviewView = z.infer<typeof PreviewView>;

/** The body of `POST /api/tasks`. Unknown fields are refused, so a typo is an error, not a silent default. */
export const CreateTaskBody = z
  .object({
    repo: z.string().min(1).max(300),
    prompt: z.string().min(1, "prompt must not be empty").max(LIMITS.maxPromptChars),
    branch: z
      .string()
      .refine(isValidBranchName, "branch is not a valid git branch name")
      .optional(),
    model: z
      .string()
      .regex(/^[A-Za-z0-9._:[\]-]{1,100}$/, "model must be a model id such as claude-sonnet-4-5")
      .optional(),
    maxTurns: z.int().min(1).max(LIMITS.maxTurnsLimit).optional(),
    /** The agent CLI every run uses unless its variant names another. */
    agent: AgentName.optional(),
    /** The isolation level, or `auto` to infer it from the prompt (default `sandbox`). */
    isolation: z.enum([...ISOLATION_LEVELS, "auto"]).optional(),
    /** Hosts this task's sandboxes may reach besides the deployment's allowlist: `api.example.com` or `*.example.com`. */
    egress: z
      .array(z.string().regex(/^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/, "egress hosts are names such as api.example.com or *.example.com"))
      .max(20)
      .optional(),
    timeoutMinutes: z.number().min(0.01).optional(),
    /** A setup command run after the clone, before the agent (else the repository's .sortie/setup.sh, if any). */
    setup: z.string().min(1).max(10_000).optional(),
    /** Parallel attempts at the same task, each in its own sandbox (best-of-N). */
    runs: z.int().min(1, "runs must be at least 1").max(LIMITS.maxRuns, `runs may be at most ${LIMITS.maxRuns}`).optional(),
    /** Per-run differences: variant i applies to run i. */
    variants: z.array(RunVariant).max(LIMITS.maxRuns).optional(),
    /** When every run has ended, a reviewer in a fresh sandbox ranks the diffs. */
    judge: z.boolean().optional(),
    /** A read-only peer reviews each run's change; its findings go back to the coder for at most `rounds` rounds. */
    review: ReviewRequest.optional(),
    /** A canonical name for the work (`github:acme/widgets#123`): one live task per key. */
    key: z.string().min(1).max(200).regex(/^[\x21-\x7e]+$/, "key must be printable ASCII without spaces").optional(),
    /** Take the key from the task holding it (which is cancelled). */
    supersede: z.boolean().optional(),
    /** Stop a run whose spending crosses this many US dollars (reason `budget`). */
    maxCostUsd: z.number().positive().max(1000).optional(),
    /** How long a finished run's workspace stays for follow-up messages. */
    keepWorkspaceMinutes: z.number().min(0).max(24 * 60).optional(),
    /** What the task hands back: the diff (default), a pushed branch, or a (draft) pull request of the winning run. */
    output: z.enum(["diff", "branch", "draft-pr", "pr"]).optional(),
    /** Let a diff that adds files looking like secrets (.env, keys…) be published. */
    allowSecretFiles: z.boolean().optional(),
    /** Serve the app each run built: `command` with PORT set, in the run's kept workspace, at the run's preview URL. */
    preview: PreviewRequest.optional(),
    /** Told the outcome when the task ends. */
    notify: z
      .object({
        webhook: z.url({ protocol: /^https?$/ }).max(2000).optional(),
        slackChannel: z.string().regex(/^[A-Z0-9]{6,20}$/, "slackChannel must be a Slack channel id such as C0123456").optional(),
      })
      .strict()
      .refine((n) => n.webhook || n.slackChannel, "notify needs a webhook or a slackChannel")
      .optional(),
  })
  .strict()
  .refine((body) => !body.variants || body.variants.length <= (body.runs ?? 1), {
    message: "variants must not outnumber runs",
    path: ["variants"],
  })
  .refine((body) => !body.supersede || body.key, { message: "supersede needs a key", path: ["supersede"] });
export type CreateTaskBody = z.infer<typeof CreateTaskBody>;

/** `POST /api/batches`: independent tasks created together. */
export const CreateBatchBody = z
  .object({ tasks: z.array(z.unknown()).min(1, "a batch needs at least one task").max(LIMITS.maxBatchTasks) })
  .strict();

/** `POST /api/schedules`: a task created at every tick of a 5-field cron expression (UTC). */
export const CreateScheduleBody = z.object({ cron: z.string().min(9).max(100), task: z.unknown() }).strict();

/** `POST /api/tasks/:id/messages`: continue a run's Claude Code session. */
export const FollowUpBody = z.object({ text: z.string().min(1, "text must not be empty").max(LIMITS.maxPromptChars), run: z.int().min(0).optional() }).strict();

/** `POST /api/tasks/:id/publish`: push the winning (or given) run and open its pull request. */
export const PublishBody = z.object({ run: z.int().min(0).optional(), output: z.enum(["branch", "draft-pr", "pr"]).optional() }).strict();

/** `POST /api/tasks/:id/winner`. */
export const PickWinnerBody = z.object({ run: z.int().min(0) }).strict();

/** Query of `GET /api/tasks`. */
export const ListTasksQuery = z
  .object({
    status: TaskStatus.optional(),
    repo: z.string().max(300).optional(),
    limit: z.coerce.number().int().min(1).max(100).default(20),
    cursor: z.string().max(200).optional(),
  })
  .strict();


export const DiffStats = z.object({
  files: z.int(),
  additions: z.int(),
  deletions: z.int(),
  bytes: z.int(),
});
export type DiffStats = z.infer<typeof DiffStats>;

export const Attempt = z.object({ at: z.number(), code: z.string(), message: z.string() });

export const RunView = z.object({
  index: z.int(),
  status: TaskStatus,
  agent: AgentName.optional(),
  model: z.string().nullable(),
  /** The run's isolation level (the task's), recorded where the run is shown. */
  isolation: IsolationLevel.optional(),
  promptSuffix: z.string().nullable(),
  /** Infrastructure failures retried before this attempt, oldest first. */
  attempts: z.array(Attempt),
  phase: RunPhase.nullable(),
  branch: z.string(),
  sessionId: z.string().nullable(),
  baseCommit: z.string().nullable(),
  startedAt: z.number().nullable(),
  endedAt: z.number().nullable(),
  durationMs: z.number().nullable(),
  numTurns: z.number().nullable(),
  costUsd: z.number(),
  diff: DiffStats.nullable(),
  /** Where the workspace came from: its own clone, the task's snapshot, a warm snapshot of an earlier task, or a worktree of a shared sandbox. */
  workspace: z.enum(["clone", "snapshot", "warm", "worktree"]).nullable().optional(),
  /** Files in the diff that look like secrets; such a run is not published unless the task allows it. */
  secretFiles: z.array(z.string()).optional(),
  error: ErrorInfo.nullable(),
  inputTokens: z.int(),
  outputTokens: z.int(),
  /** Follow-up messages waiting for the current turn to end. */
  pendingMessages: z.int(),
  /** Until when the finished run's workspace is kept for follow-ups (null: gone or never kept). */
  workspaceUntil: z.number().nullable(),
  /** 1-based place in the fleet queue while the run waits for a sandbox. */
  queuePosition: z.int().nullable().optional(),
  /** The review lane of the run's change, when the task asked for one. */
  review: ReviewView.nullable().optional(),
  /** The repository-memory entries the run was given in `$SORTIE_MEMORY_FILE` (ids; the `memory.delivered` event has their texts). */
  memory: z.array(z.string()).optional(),
  /** The app the run built, served from its kept workspace (tasks with `preview`). */
  preview: PreviewView.nullable().optional(),
  /** Whether a screenshot of the run's preview is kept (`GET /api/tasks/:id/runs/:n/screenshot`). */
  screenshot: z.boolean().optional(),
});
export type RunView = z.infer<typeof RunView>;

export const JudgeView = z.object({
  status: TaskStatus,
  winner: z.int().nullable(),
  ranking: z.array(z.int()),
  reasons: z.string(),
  costUsd: z.number(),
  error: ErrorInfo.nullable(),
});
export type JudgeView = z.infer<typeof JudgeView>;

export const Winner = z.object({ run: z.int(), by: z.string(), at: z.number() });

/** A fix run Sortie made on the pull request a publication opened (a red check, a review, a conflict, a request). */
export const FollowUp = z.object({
  task: z.string(),
  trigger: z.enum(["check", "review", "command", "conflict"]),
  by: z.string(),
  at: z.number(),
  status: z.enum(["running", "pushed", "no_change", "failed"]),
  commit: z.string().nullable(),
});
export type FollowUp = z.infer<typeof FollowUp>;

/** The winning run's change leaving Sortie: a pushed branch, then maybe a pull request. */
export const Publication = z.object({
  status: TaskStatus,
  output: z.enum(["branch", "draft-pr", "pr"]),
  run: z.int(),
  branch: z.string(),
  commit: z.string().nullable(),
  pullRequest: z.object({ number: z.int(), url: z.string() }).nullable(),
  by: z.string(),
  error: ErrorInfo.nullable(),
  /** The fix runs Sortie made on the pull request since, oldest first. */
  followUps: z.array(FollowUp).optional(),
});
export type Publication = z.infer<typeof Publication>;

/** What the task agent holds, persists and broadcasts as its state. */
export const TaskState = z.object({
  id: z.string(),
  repo: z.string(),
  branch: z.string().nullable(),
  prompt: z.string(),
  model: z.string().nullable(),
  maxTurns: z.int(),
  timeoutMinutes: z.number(),
  source: z.enum(["api", "slack", "github", "schedule", "plan"]),
  createdBy: z.string(),
  status: TaskStatus,
  createdAt: z.number(),
  startedAt: z.number().nullable(),
  endedAt: z.number().nullable(),
  costUsd: z.number(),
  error: ErrorInfo.nullable(),
  key: z.string().nullable(),
  maxCostUsd: z.number(),
  isolation: Isolation.optional(),
  runs: z.array(RunView),
  judge: JudgeView.nullable(),
  winner: Winner.nullable(),
  output: z.enum(["diff", "branch", "draft-pr", "pr"]),
  publication: Publication.nullable(),
  /** What the task's runs added to their repository's memory: new proposals, and known entries they proposed again. */
  learnings: z.object({ proposed: z.int(), seen: z.int() }).optional(),
});
export type TaskState = z.infer<typeof TaskState>;

/** A task as the API returns it: the state plus where to watch it. */
export type TaskView = TaskState & { url: string; ws: string };

/** The request a trigger hands to a task agent: validated input plus who asked. */
export interface TaskSpec {
  id: string;
  repo: string;
  cloneUrl: string;
  branch: string | null;
  prompt: string;
  model: string | null;
  agent: AgentName;
  isolation: Isolation;
  /** Extra hosts the task's sandboxes may reach (cloudflare backend). */
  egress: string[];
  maxTurns: number;
  timeoutMinutes: number;
  source: TaskState["source"];
  createdBy: string;
  runs: RunVariant[];
  judge: boolean;
  /** The review lane every run's change goes through; null for none. */
  review: { agent: AgentName | null; model: string | null; rounds: number } | null;
  key: string | null;
  maxCostUsd: number;
  keepWorkspaceMinutes: number;
  notify: { webhook?: string; slackChannel?: string } | null;
  output: "diff" | "branch" | "draft-pr" | "pr";
  allowSecretFiles: boolean;
  setup: string | null;
  /** The command that serves each run's app, with its port and the path to open; null for none. */
  preview?: { command: string; port: number; path: string } | null;
  /** The Worker's public origin when the task was created, for links in pull requests and messages. */
  origin: string | null;
  /** A fix run on a pull request Sortie tends: started from its branch, pushed onto it as a new commit. */
  tending?: FixRequest;
  /** The task is a plan's planner or the worker of one of its subtasks (src/agents/plan-agent.ts). */
  plan?: PlanRole;
}

/**
 * Any entry of a task's event log as JSON, for readers that take every event
 * alike (tests, benchmarks). The declared events and their data are
 * `TaskEvent` in src/events.ts.
 */
export const LoggedEvent = z.object({
  seq: z.int(),
  ts: z.number(),
  run: z.int().nullable(),
  type: z.string(),
  data: z.record(z.string(), z.unknown()),
});
export type LoggedEvent = z.infer<typeof LoggedEvent>;

/** The part of an event its producer supplies; the log adds `seq` and `ts` and checks it against src/events.ts. */
export type EventInput = Omit<LoggedEvent, "seq" | "ts">;

/** Listing row of `GET /api/tasks`, from the D1 index. */
export const TaskSummary = z.object({
  id: z.string(),
  repo: z.string(),
  prompt: z.string(),
  status: TaskStatus,
  source: z.string(),
  createdBy: z.string(),
  createdAt: z.number(),
  startedAt: z.number().nullable(),
  endedAt: z.number().nullable(),
  runs: z.int(),
  costUsd: z.number(),
  files: z.int().nullable(),
  additions: z.int().nullable(),
  deletions: z.int().nullable(),
  error: ErrorInfo.nullable(),
});
export type TaskSummary = z.infer<typeof TaskSummary>;

/** Where a repository-memory entry stands: proposed by runs, decided by a person, or retired. */
export const MEMORY_STATUSES = ["proposed", "approved", "rejected", "expired", "superseded"] as const;
export const MemoryStatus = z.enum(MEMORY_STATUSES);
export type MemoryStatus = z.infer<typeof MemoryStatus>;

/** A run that proposed an entry: whether it succeeded, and whether it was its task's winner. */
export const MemoryEvidence = z.object({ task: z.string(), run: z.int(), succeeded: z.boolean(), winner: z.boolean() });
export type MemoryEvidence = z.infer<typeof MemoryEvidence>;

/** One fact about a repository, as `GET /api/repos/:owner/:name/memory` lists it. */
export const MemoryEntry = z.object({
  id: z.string(),
  text: z.string(),
  status: MemoryStatus,
  evidence: z.array(MemoryEvidence),
  /** How many runs proposed it. */
  seen: z.int(),
  createdAt: z.number(),
  /** `person` for an entry a person wrote, `agent` for one runs proposed. */
  createdBy: z.string(),
  decidedBy: z.string().optional(),
  decidedAt: z.number().optional(),
  lastUsedAt: z.number().optional(),
  /** The entry that replaced this one (status `superseded`). */
  supersededBy: z.string().optional(),
});
export type MemoryEntry = z.infer<typeof MemoryEntry>;

/** `POST /api/repos/:owner/:name/memory` and `…/memory/:id/supersede`: a person's entry. */
export const MemoryTextBody = z
  .object({ text: z.string().trim().min(1, "text must not be empty").max(LIMITS.memoryEntryChars, `text may be at most ${LIMITS.memoryEntryChars} characters`) })
  .strict();

/** Query of `GET /api/repos/:owner/:name/memory`; an empty `status=` lists every status. */
export const ListMemoryQuery = z.object({ status: z.union([MemoryStatus, z.literal("").transform(() => undefined)]).optional() }).strict();

/** The entries a run was given in `$SORTIE_MEMORY_FILE` (the `memory.delivered` event's data). */
export const MemoryDelivery = z.object({ entries: z.array(z.object({ id: z.string(), text: z.string() })) });
