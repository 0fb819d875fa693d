/**
 * A plan's state is the fold of its own event log, as a task's is
 * (src/events.ts): the PlanAgent keeps nothing else, and what
 * `GET /api/plans/:id` serves is `foldPlan` of the events
 * `GET /api/plans/:id/events` lists.
 *
 * Pure: it imports only the event union and the plan's shapes, so it loads
 * in the Worker, the viewer, the CLI and plain Node.
 *
 * @example foldPlan(events).subtasks[0].status // "succeeded"
 */
import type { TaskEvent } from "./events.ts";
import { isPlanTerminal, type IntegrationView, type PlanFile, type PlanState, type SubtaskView } from "./plan-schema.ts";

/** The plan's state, and what it counts as it goes: the spending each of its tasks reported last. */
export interface PlanFold {
  plan: PlanState | null;
  /** Each task's (and integrator turn's) spending last counted, by its id. */
  spent: Record<string, number>;
}

export function emptyPlanFold(): PlanFold {
  return { plan: null, spent: {} };
}

/** The state a plan's log adds up to. Pure; folding any prefix of a log is safe. */
export function foldPlan(events: readonly TaskEvent[]): PlanState {
  let fold = emptyPlanFold();
  for (const event of events) fold = applyPlanEvent(fold, event);
  if (!fold.plan) throw new TypeError("the log has no plan.created event");
  return fold.plan;
}

/** The subtasks of a plan as written or approved: each pending. */
export function subtaskViews(plan: PlanFile): SubtaskView[] {
  return plan.subtasks.map((s) => ({
    key: s.key,
    title: s.title,
    status: "pending",
    taskId: null,
    dependsOn: s.dependsOn,
    owns: s.owns,
    acceptance: s.acceptance,
    handoff: null,
    diff: null,
    summary: null,
    sentBack: 0,
    costUsd: 0,
    startedAt: null,
    endedAt: null,
    error: null,
  }));
}

/** One step of the fold; returns `fold` itself when the event changes nothing. */
export function applyPlanEvent(fold: PlanFold, event: TaskEvent): PlanFold {
  if (event.type === "plan.created") return { plan: structuredClone(event.data.plan), spent: {} };
  const plan = fold.plan;
  if (!plan) return fold;
  const next = (changes: Partial<PlanState>, spent = fold.spent): PlanFold => ({ plan: { ...plan, ...changes }, spent });
  const patchSubtask = (key: string, patch: (subtask: SubtaskView) => Partial<SubtaskView>): PlanFold => {
    const subtask = plan.subtasks.find((s) => s.key === key);
    return subtask ? next({ subtasks: plan.subtasks.map((s) => (s === subtask ? { ...s, ...patch(s) } : s)) }) : fold;
  };
  const patchIntegration = (patch: Partial<IntegrationView>): PlanFold => (plan.integration ? next({ integration: { ...plan.integration, ...patch } }) : fold);
  const { ts } = event;

  switch (event.type) {
    case "plan.status": {
      const { status } = event.data;
      if (!isPlanTerminal(status)) return next({ status });
      return next({ status, endedAt: ts, error: event.data.error ?? null });
    }
    case "plan.written":
      return event.data.plan ? next({ plan: event.data.plan, subtasks: subtaskViews(event.data.plan) }) : fold;
    case "plan.approved":
      return event.data.plan ? next({ approvedBy: event.data.by, plan: event.data.plan, subtasks: subtaskViews(event.data.plan) }) : next({ approvedBy: event.data.by });
    case "plan.retry": {
      // The subtask and everything that depends on it start over; the plan runs again.
      const again = new Set(event.data.subtasks ?? [event.data.subtask]);
      const fresh = { status: "pending", taskId: null, error: null, startedAt: null, endedAt: null, diff: null, summary: null, sentBack: 0 } as const;
      return next({ status: "running", endedAt: null, error: null, integration: null, subtasks: plan.subtasks.map((s) => (again.has(s.key) ? { ...s, ...fresh } : s)) });
    }
    case "plan.cost": {
      const { task, totalUsd, addedUsd } = event.data;
      const subtasks = plan.subtasks.map((s) => (s.taskId === task ? { ...s, costUsd: s.costUsd + addedUsd } : s));
      return next({ subtasks, costUsd: plan.costUsd + addedUsd }, { ...fold.spent, [task]: totalUsd });
    }

    case "subtask.status": {
      const d = event.data;
      if (d.status === "pending") return fold;
      if (d.status === "running") {
        // Launched (from pending, with its handoff) or sent back (its task's session goes on).
        return patchSubtask(d.key, (s) => ({ status: "running", taskId: d.taskId ?? s.taskId, handoff: d.handoff ?? s.handoff, startedAt: s.status === "pending" ? ts : s.startedAt, endedAt: null }));
      }
      return patchSubtask(d.key, (s) => ({
        status: d.status,
        endedAt: d.endedAt ?? ts,
        error: d.error ?? null,
        diff: d.diff !== undefined ? d.diff : s.diff,
        summary: d.summary !== undefined ? d.summary : s.summary,
      }));
    }
    case "subtask.sent_back":
      return event.data.delivered ? patchSubtask(event.data.key, (s) => ({ sentBack: s.sentBack + 1, endedAt: null })) : fold;

    case "integration.status": {
      const d = event.data;
      if (d.status === "running") {
        const attempts = d.attempt ?? (plan.integration?.attempts ?? 0) + 1;
        return next({ integration: { status: "running", branch: d.branch ?? `sortie/plan-${plan.id}`, diff: null, checks: [], resolved: [], attempts, commit: null, pullRequest: null, error: null } });
      }
      const integration = plan.integration;
      if (!integration) return fold;
      return patchIntegration({
        status: d.status,
        checks: d.results ?? integration.checks,
        resolved: d.resolved ?? integration.resolved,
        ...(d.status === "succeeded" ? { diff: d.diff ?? null, error: null } : { error: d.error ?? null }),
      });
    }
    case "integration.published":
      return patchIntegration({ commit: event.data.commit ?? null, pullRequest: event.data.pullRequest ?? null });
    case "integration.publish_failed":
      return next({ error: event.data.error });
    default:
      return fold;
  }
}
