/**
 * The shapes of plans: the request that starts one, the plan file a planner
 * writes (and a person may edit), and the plan as the API shows it. Shared by
 * the API, the PlanAgent, the CLI and the viewer.
 */
import { z } from "zod";
import { LIMITS } from "./config.ts";
import { isValidBranchName } from "./repo.ts";
import { AgentName, DiffStats, ErrorInfo, ReviewRequest } from "./schema.ts";

/** Bounds of `maxSubtasks` and its default. */
export const PLAN_SUBTASKS = { default: 8, min: 1, max: 12 } as const;

const modelId = z.string().regex(/^[A-Za-z0-9._:[\]-]{1,100}$/, "model must be a model id");

/** `POST /api/plans`. Unknown fields are refused. */
export const CreatePlanBody = z
  .object({
    repo: z.string().min(1).max(300),
    spec: z.string({ error: "spec is required" }).min(1, "spec must not be empty").max(LIMITS.maxPromptChars),
    branch: z.string().refine(isValidBranchName, "branch is not a valid git branch name").optional(),
    approve: z.enum(["manual", "auto"]).optional(),
    maxSubtasks: z.int().min(PLAN_SUBTASKS.min, `maxSubtasks must be at least ${PLAN_SUBTASKS.min}`).max(PLAN_SUBTASKS.max, `maxSubtasks may be at most ${PLAN_SUBTASKS.max}`).optional(),
    planner: z.object({ agent: AgentName.optional(), model: modelId.optional() }).strict().optional(),
    workers: z
      .object({ agent: AgentName.optional(), model: modelId.optional(), runs: z.int().min(1).max(LIMITS.maxRuns).optional(), judge: z.boolean().optional() })
      .strict()
      .optional(),
    review: ReviewRequest.optional(),
    output: z.enum(["diff", "branch", "draft-pr", "pr"]).optional(),
    /** The budget of the whole plan: planner, workers and integrator together. */
    maxCostUsd: z.number().positive().max(1000).optional(),
    key: z.string().min(1).max(200).regex(/^[\x21-\x7e]+$/, "key must be printable ASCII without spaces").optional(),
  })
  .strict();
export type CreatePlanBody = z.infer<typeof CreatePlanBody>;

/** A subtask's key: a slug, used in claim keys (`plan:<id>:<key>`) and branch names. */
export const SubtaskKey = z.string().regex(/^[a-z0-9][a-z0-9-]{0,39}$/, "a subtask key is a slug: lowercase letters, digits and dashes, at most 40");

/** A repository-relative glob: no leading slash, no `..`, no backslash. */
export const OwnsGlob = z
  .string()
  .min(1, "an owns glob must not be empty")
  .max(300)
  .refine((glob) => !glob.startsWith("/") && !glob.split("/").includes("..") && !glob.includes("\\"), "an owns glob is repository-relative (no leading /, no ..)");

export const PlanSubtask = z
  .object({
    key: SubtaskKey,
    title: z.string().min(1).max(200),
    prompt: z.string().min(1).max(LIMITS.maxPromptChars),
    owns: z.array(OwnsGlob).min(1, "owns must list at least one glob").max(50),
    dependsOn: z.array(SubtaskKey).max(PLAN_SUBTASKS.max).default([]),
    acceptance: z.array(z.string().min(1).max(2000)).max(20).default([]),
  })
  .strict();
export type PlanSubtask = z.infer<typeof PlanSubtask>;

/** The plan file the planner writes to `$SORTIE_PLAN_FILE`, and what a person sends when approving an edited plan. */
export const PlanFile = z
  .object({
    summary: z.string().min(1).max(20_000),
    subtasks: z.array(PlanSubtask).min(1, "a plan needs at least one subtask"),
  })
  .strict();
export type PlanFile = z.infer<typeof PlanFile>;

export const PLAN_STATUSES = ["planning", "awaiting_approval", "running", "integrating", "succeeded", "failed", "cancelled"] as const;
export const PlanStatus = z.enum(PLAN_STATUSES);
export type PlanStatus = z.infer<typeof PlanStatus>;
export const isPlanTerminal = (status: PlanStatus) => status === "succeeded" || status === "failed" || status === "cancelled";

/** A subtask's place: waiting for its dependencies, running as a task, ended, or never run (blocked by a failed dependency). */
export const SUBTASK_STATUSES = ["pending", "running", "succeeded", "failed", "cancelled", "blocked"] as const;
export const SubtaskStatus = z.enum(SUBTASK_STATUSES);
export type SubtaskStatus = z.infer<typeof SubtaskStatus>;

export const SubtaskView = z.object({
  key: z.string(),
  title: z.string(),
  status: SubtaskStatus,
  taskId: z.string().nullable(),
  dependsOn: z.array(z.string()),
  owns: z.array(z.string()),
  acceptance: z.array(z.string()),
  /** The prompt the subtask's task was given (src/agents/plan-handoff.ts), once it started. */
  handoff: z.string().nullable(),
  diff: DiffStats.nullable(),
  /** The end of the worker's last message: what its dependents read of it. */
  summary: z.string().nullable(),
  /** Times a problem of the integration was sent back to it. */
  sentBack: z.int(),
  costUsd: z.number(),
  startedAt: z.number().nullable(),
  endedAt: z.number().nullable(),
  error: ErrorInfo.nullable(),
});
export type SubtaskView = z.infer<typeof SubtaskView>;

export const IntegrationCheck = z.object({ command: z.string(), exitCode: z.int(), subtask: z.string().nullable(), output: z.string() });
export type IntegrationCheck = z.infer<typeof IntegrationCheck>;

export const IntegrationView = z.object({
  status: z.enum(["running", "succeeded", "failed"]),
  branch: z.string(),
  diff: DiffStats.nullable(),
  checks: z.array(IntegrationCheck),
  /** Subtasks whose changes conflicted and were resolved by the integrator agent. */
  resolved: z.array(z.string()),
  attempts: z.int(),
  /** The pushed commit of `sortie/plan-<id>` and its pull request, when the plan's output asked for them. */
  commit: z.string().nullable(),
  pullRequest: z.object({ number: z.int(), url: z.string() }).nullable(),
  error: ErrorInfo.nullable(),
});
export type IntegrationView = z.infer<typeof IntegrationView>;

/** What a PlanAgent holds and broadcasts as its state. */
export const PlanState = z.object({
  id: z.string(),
  repo: z.string(),
  spec: z.string(),
  branch: z.string().nullable(),
  status: PlanStatus,
  approve: z.enum(["manual", "auto"]),
  maxSubtasks: z.int(),
  output: z.enum(["diff", "branch", "draft-pr", "pr"]),
  createdBy: z.string(),
  createdAt: z.number(),
  endedAt: z.number().nullable(),
  plannerTaskId: z.string().nullable(),
  plan: PlanFile.nullable(),
  approvedBy: z.string().nullable(),
  subtasks: z.array(SubtaskView),
  integration: IntegrationView.nullable(),
  costUsd: z.number(),
  maxCostUsd: z.number(),
  key: z.string().nullable(),
  error: ErrorInfo.nullable(),
});
export type PlanState = z.infer<typeof PlanState>;

/** A plan as the API returns it: the state plus where to watch it. */
export type PlanView = PlanState & { url: string; ws: string };

/** `POST /api/plans/:id/approve`: nothing, or an edited plan. */
export const ApprovePlanBody = z.object({ plan: z.unknown().optional() }).strict();

/** `POST /api/plans/:id/retry`. */
export const RetrySubtaskBody = z.object({ subtask: SubtaskKey }).strict();

/** Query of `GET /api/plans`. */
export const ListPlansQuery = z
  .object({ status: PlanStatus.optional(), repo: z.string().max(300).optional(), limit: z.coerce.number().int().min(1).max(100).default(20) })
  .strict();

/** Listing row of `GET /api/plans`, from the D1 index. */
export const PlanSummary = z.object({
  id: z.string(),
  repo: z.string(),
  spec: z.string(),
  status: PlanStatus,
  subtasks: z.int(),
  createdBy: z.string(),
  createdAt: z.number(),
  endedAt: z.number().nullable(),
  costUsd: z.number(),
  error: ErrorInfo.nullable(),
});
export type PlanSummary = z.infer<typeof PlanSummary>;

/** A task's part in a plan (`TaskSpec.plan`): the planner, or the worker of one subtask with the dependencies' patches it starts from. */
export type PlanRole =
  | { id: string; role: "planner"; maxSubtasks: number }
  | { id: string; role: "worker"; subtask: string; owns: string[]; patches: string[] };
