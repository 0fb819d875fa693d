/** Limits and defaults, read from the Worker's vars once per request or agent. */
export interface SortieConfig {
  sandboxBackend: "cloudflare" | "local";
  gitBaseUrl: string;
  defaultTimeoutMinutes: number;
  maxTimeoutMinutes: number;
  defaultMaxTurns: number;
  maxTurnsLimit: number;
  maxBodyBytes: number;
  maxPromptChars: number;
  maxRuns: number;
  viewerTokenTtlSeconds: number;
  /** Live sandboxes across the fleet; runs beyond it wait in the queue. */
  maxSandboxes: number;
  maxSandboxesPerCreator: number;
  /** First delay of the backoff between retries of an infrastructure failure. */
  retryBaseMs: number;
  defaultMaxCostUsd: number;
  /** How long a warm workspace snapshot is reused by later tasks. */
  warmSnapshotTtlMinutes: number;
  /** How many warm snapshots (workspaces, dependency directories) are kept at most, and how many bytes all of them together. */
  warmSnapshotMax: number;
  warmSnapshotMaxBytes: number;
  /** Task creations a caller may make per minute, unless its token says otherwise. */
  taskRateLimitPerMinute: number;
  /** How long a finished run's workspace is kept for follow-ups, unless the task says otherwise. */
  followUpWindowMinutes: number;
  /** GitHub's REST API (another for GitHub Enterprise Server or a stand-in). */
  githubApiUrl: string;
  /** `author_association` values whose `/sortie …` issue comments start a task. */
  githubTriggerAssociations: string[];
  /** Names and directories a reviewer's peer view leaves out on top of the built-in list (src/sandbox/peer-view.ts). */
  reviewPeerExcludes: string[];
  /** Days an approved memory entry may go undelivered before it becomes `expired`. */
  memoryTtlDays: number;
  /** Successful runs that must propose an entry independently for it to be approved without a person; null: never. */
  memoryAutoApproveSeen: number | null;
  /** Fix runs Sortie makes on one of its pull requests, across every trigger. */
  prFixMaxAttempts: number;
  /** How long a preview's command has to answer on its port (at most 60 s). */
  previewReadyMs: number;
}

/**
 * The plain vars of wrangler.jsonc (a test keeps the two lists equal). Every
 * other string binding is a secret: redaction scrubs its value wherever it appears.
 */
export const PLAIN_VARS: ReadonlySet<string> = new Set([
  "SANDBOX_BACKEND", "GIT_BASE_URL", "SANDBOX_EGRESS_ALLOW", "DEFAULT_TIMEOUT_MINUTES", "MAX_TIMEOUT_MINUTES", "DEFAULT_MAX_TURNS",
  "MAX_BODY_BYTES", "MAX_SANDBOXES", "MAX_SANDBOXES_PER_CREATOR", "RETRY_BASE_MS", "DEFAULT_MAX_COST_USD", "TASK_RATE_LIMIT_PER_MINUTE",
  "WARM_SNAPSHOT_TTL_MINUTES", "WARM_SNAPSHOT_MAX", "WARM_SNAPSHOT_MAX_BYTES", "BACKUP_BUCKET_NAME", "FOLLOWUP_WINDOW_MINUTES",
  "ANTHROPIC_BASE_URL", "OPENAI_BASE_URL", "GEMINI_BASE_URL", "LOCAL_SANDBOX_URL", "SLACK_API_URL", "SLACK_ALLOWED_USERS",
  "GITHUB_API_URL", "GITHUB_APP_ID", "GITHUB_TRIGGER_ASSOCIATIONS", "REVIEW_PEER_EXCLUDE", "MEMORY_TTL_DAYS", "MEMORY_AUTO_APPROVE_SEEN",
  "PR_FIX_MAX_ATTEMPTS", "PREVIEW_HOSTNAME", "PREVIEW_READY_SECONDS",
]);

/** Hard ceilings that no configuration raises. */
export const LIMITS = {
  maxPromptChars: 100_000,
  maxRuns: 8,
  /** Retries of an infrastructure failure (sandbox start, clone over the network). */
  maxInfraRetries: 3,
  maxBatchTasks: 50,
  maxTurnsLimit: 500,
  /** Bytes of one stored diff chunk: well under the 2 MB SQLite row limit. */
  diffChunkBytes: 256 * 1024,
  /** Largest text kept in one event; the rest is cut and flagged `truncated`. */
  eventTextChars: 16 * 1024,
  /** Events served per page to a reconnecting viewer or the NDJSON endpoint. */
  eventPage: 500,
  /** Events appended within this many milliseconds are stored in one transaction (viewers get them in frames: viewerFrameMs)… */
  eventBatchMs: 25,
  /** …or as soon as this many are waiting. */
  eventBatchMax: 500,
  /**
   * Stored batches go to the viewers together while the last frame is younger than this many milliseconds…
   * (a frame costs every socket a send: a fast stream goes out in few large frames)
   */
  viewerFrameMs: 25,
  /** …and until they make this many characters (the batch that gets them there goes with them). */
  viewerFrameBytes: 128 * 1024,
  /** Bytes sent to one viewer and not yet acknowledged, past which it gets nothing more until it reads (then it catches up by seq). */
  viewerBacklogBytes: 1024 * 1024,
  /** Events per frame while a viewer catches up from the stored log. */
  viewerCatchUpPage: 200,
  /** Largest GitHub webhook delivery read; issue and comment bodies are at most 65,536 characters each. */
  githubWebhookBytes: 1024 * 1024,
  /** Learnings Sortie takes from one run's `$SORTIE_LEARNINGS_FILE`; the rest are ignored with an event. */
  memoryLearningsPerRun: 20,
  /** Longest repository-memory entry, proposed or written by a person. */
  memoryEntryChars: 500,
  /** Most approved entries one run is given (the most recently used first). */
  memoryDelivered: 200,
  /** Most of `$SORTIE_LEARNINGS_FILE` Sortie reads. */
  memoryLearningsFileBytes: 64 * 1024,
  /** The merge-conflict poll of a tended pull request: its first delay (five minutes), doubled while nothing changes, up to the last (an hour). */
  pullPollFirstSeconds: 5 * 60,
  pullPollMaxSeconds: 60 * 60,
} as const;

export function readConfig(env: Cloudflare.Env): SortieConfig {
  const backend = env.SANDBOX_BACKEND === "local" ? "local" : "cloudflare";
  const maxSandboxes = positive(env.MAX_SANDBOXES, 10);
  return {
    sandboxBackend: backend,
    gitBaseUrl: (env.GIT_BASE_URL || "https://github.com").replace(/\/+$/, ""),
    defaultTimeoutMinutes: positive(env.DEFAULT_TIMEOUT_MINUTES, 30),
    maxTimeoutMinutes: positive(env.MAX_TIMEOUT_MINUTES, 120),
    defaultMaxTurns: positive(env.DEFAULT_MAX_TURNS, 50),
    maxTurnsLimit: LIMITS.maxTurnsLimit,
    maxBodyBytes: positive(env.MAX_BODY_BYTES, 256 * 1024),
    maxPromptChars: LIMITS.maxPromptChars,
    maxRuns: LIMITS.maxRuns,
    viewerTokenTtlSeconds: 60 * 60,
    maxSandboxes,
    maxSandboxesPerCreator: Math.min(maxSandboxes, positive(env.MAX_SANDBOXES_PER_CREATOR, maxSandboxes)),
    retryBaseMs: positive(env.RETRY_BASE_MS, 1000),
    defaultMaxCostUsd: positive(env.DEFAULT_MAX_COST_USD, 10),
    taskRateLimitPerMinute: positive(env.TASK_RATE_LIMIT_PER_MINUTE, 60),
    warmSnapshotTtlMinutes: nonNegative(env.WARM_SNAPSHOT_TTL_MINUTES, 60),
    warmSnapshotMax: positive(env.WARM_SNAPSHOT_MAX, 20),
    warmSnapshotMaxBytes: positive(env.WARM_SNAPSHOT_MAX_BYTES, 10 * 2 ** 30),
    followUpWindowMinutes: nonNegative(env.FOLLOWUP_WINDOW_MINUTES, 15),
    githubApiUrl: (env.GITHUB_API_URL || "https://api.github.com").replace(/\/+$/, ""),
    githubTriggerAssociations: list(env.GITHUB_TRIGGER_ASSOCIATIONS, ["OWNER", "MEMBER", "COLLABORATOR"]).map((value) => value.toUpperCase()),
    reviewPeerExcludes: list(env.REVIEW_PEER_EXCLUDE, []),
    memoryTtlDays: positive(env.MEMORY_TTL_DAYS, 90),
    memoryAutoApproveSeen: positive(env.MEMORY_AUTO_APPROVE_SEEN, 0) || null,
    prFixMaxAttempts: Math.floor(positive(env.PR_FIX_MAX_ATTEMPTS, 3)),
    previewReadyMs: Math.min(positive(env.PREVIEW_READY_SECONDS, 60), 60) * 1000,
  };
}

function positive(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

/** A comma-separated var as a list; unset or empty gives the fallback. */
function list(value: string | undefined, fallback: string[]): string[] {
  const items = (value ?? "").split(",").map((item) => item.trim()).filter(Boolean);
  return items.length > 0 ? items : fallback;
}

function nonNegative(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return value !== undefined && value !== "" && Number.isFinite(n) && n >= 0 ? n : fallback;
}
