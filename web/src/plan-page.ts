/**
 * `/plans/<id>`: a plan. Its subtasks drawn as a DAG in columns by depth
 * (each after what it depends on), with each one's status, owned paths, a
 * link to its task page and its handoff; the integration's checks; and while
 * the plan waits for approval, Approve and Edit (the plan's JSON, approved
 * as edited). The page reads the plan again every two seconds until it ends.
 */
import { PlanState, isPlanTerminal, type SubtaskView } from "../../src/plan-schema.ts";
import { formatCost, h, statusBadge } from "./dom.ts";
import { Unauthorized, api, apiJson } from "./session.ts";

const POLL_MS = 2000;

/** Each subtask's column: one more than the deepest of what it depends on. */
export function depths(subtasks: Pick<SubtaskView, "key" | "dependsOn">[]): Map<string, number> {
  const byKey = new Map(subtasks.map((s) => [s.key, s]));
  const depth = new Map<string, number>();
  const of = (key: string, seen: Set<string>): number => {
    const known = depth.get(key);
    if (known !== undefined) return known;
    if (seen.has(key)) return 0;
    seen.add(key);
    const deps = byKey.get(key)?.dependsOn ?? [];
    const value = deps.length === 0 ? 0 : 1 + Math.max(...deps.map((d) => of(d, seen)));
    depth.set(key, value);
    return value;
  };
  for (const s of subtasks) of(s.key, new Set());
  return depth;
}

export function planPage(root: HTMLElement, signal: AbortSignal, id: string): void {
  const base = `/api/plans/${encodeURIComponent(id)}`;
  const head = h("section", { class: "page-head" });
  const failure = h("p", { class: "error", role: "alert", "data-testid": "plan-error", hidden: true });
  const summary = h("p", { "data-testid": "plan-summary" });
  const controls = h("div", { class: "actions", "data-testid": "plan-controls" });
  const dag = h("div", { class: "plan-dag", "data-testid": "plan-dag" });
  const integration = h("section", { class: "card", "data-testid": "plan-integration", hidden: true });
  const editor = h("textarea", { rows: 18, class: "mono", "data-testid": "plan-editor" }) as HTMLTextAreaElement;
  const editing = h("form", { class: "card", hidden: true, "data-testid": "plan-edit-form" }, h("p", { class: "small muted" }, "The plan as JSON. Approving it checks it like the planner's; subtasks you remove never run."), editor, h("button", { type: "submit", "data-testid": "plan-approve-edited" }, "Approve as edited"));
  root.append(head, failure, summary, controls, editing, dag, integration);

  let timer: ReturnType<typeof setTimeout> | undefined;
  signal.addEventListener("abort", () => clearTimeout(timer));

  const showError = (error: unknown) => {
    if (error instanceof Unauthorized || signal.aborted) return;
    failure.textContent = (error as Error).message;
    failure.hidden = false;
  };

  const approve = async (body?: unknown) => {
    try {
      await api(`${base}/approve`, { method: "POST", ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }) });
      editing.hidden = true;
      await load();
    } catch (error) {
      showError(error);
    }
  };

  editing.addEventListener("submit", (event) => {
    event.preventDefault();
    let plan: unknown;
    try {
      plan = JSON.parse(editor.value);
    } catch (error) {
      return showError(new Error(`the plan is not JSON: ${(error as Error).message}`));
    }
    void approve({ plan });
  });

  function draw(plan: PlanState): void {
    head.replaceChildren(h("h1", {}, "Plan ", h("span", { class: "mono" }, plan.id)), statusBadge(plan.status, "plan-status"), h("span", { class: "muted small" }, ` ${plan.repo} · ${formatCost(plan.costUsd)} of ${formatCost(plan.maxCostUsd)}`));
    summary.textContent = plan.plan?.summary ?? (plan.status === "planning" ? "The planner is reading the repository…" : "");
    controls.replaceChildren();
    if (plan.status === "awaiting_approval") {
      controls.append(
        h("button", { type: "button", "data-testid": "plan-approve", onclick: () => void approve() }, "Approve"),
        h("button", { type: "button", class: "secondary", "data-testid": "plan-edit", onclick: () => {
          editor.value = JSON.stringify(plan.plan, null, 2);
          editing.hidden = !editing.hidden;
        } }, "Edit"),
      );
    }
    if (plan.error) controls.append(h("p", { class: "error" }, `${plan.error.code}: ${plan.error.message}`));
    const depth = depths(plan.subtasks);
    const columns = Math.max(0, ...depth.values()) + 1;
    dag.replaceChildren(
      ...Array.from({ length: plan.subtasks.length ? columns : 0 }, (_, column) =>
        h("ol", { class: "plan-column", "data-column": column }, ...plan.subtasks.filter((s) => depth.get(s.key) === column).map(subtaskCard)),
      ),
    );
    const run = plan.integration;
    integration.hidden = !run;
    if (run) {
      integration.replaceChildren(
        h("h2", {}, "Integration ", statusBadge(run.status, "plan-integration-status")),
        h("p", { class: "small" }, `on ${run.branch}${run.diff ? ` · ${run.diff.files} files, +${run.diff.additions} −${run.diff.deletions}` : ""}${run.resolved.length ? ` · conflicts resolved for ${run.resolved.join(", ")}` : ""}`),
        h("ul", { class: "small mono" }, ...run.checks.map((check) => h("li", {}, `${check.exitCode === 0 ? "✓" : `✗ exit ${check.exitCode}`} ${check.command}${check.subtask ? ` (${check.subtask})` : ""}`))),
        run.pullRequest ? h("p", {}, h("a", { href: run.pullRequest.url }, `Pull request #${run.pullRequest.number}`)) : "",
      );
    }
  }

  function subtaskCard(s: SubtaskView): HTMLLIElement {
    return h(
      "li",
      { class: `card plan-subtask`, "data-testid": "plan-subtask", "data-key": s.key, "data-status": s.status },
      h("div", { class: "title-row" }, statusBadge(s.status), h("strong", {}, s.key), h("span", {}, ` ${s.title}`)),
      h("p", { class: "small muted" }, `owns ${s.owns.join(", ")}${s.dependsOn.length ? ` · after ${s.dependsOn.join(", ")}` : ""}${s.costUsd ? ` · ${formatCost(s.costUsd)}` : ""}`),
      s.taskId ? h("p", { class: "small" }, h("a", { href: `/tasks/${s.taskId}`, "data-testid": "plan-subtask-task" }, `task ${s.taskId}`)) : "",
      s.error ? h("p", { class: "error small" }, `${s.error.code}: ${s.error.message}`) : "",
      s.handoff ? h("details", {}, h("summary", {}, "Handoff"), h("pre", { class: "small", "data-testid": "plan-handoff" }, s.handoff)) : "",
    );
  }

  async function load(): Promise<void> {
    clearTimeout(timer);
    try {
      const plan = await apiJson(base, PlanState);
      if (signal.aborted) return;
      failure.hidden = true;
      draw(plan);
      if (!isPlanTerminal(plan.status)) timer = setTimeout(() => void load(), POLL_MS);
    } catch (error) {
      showError(error);
    }
  }
  void load();
}
