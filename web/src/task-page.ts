/**
 * `/tasks/<id>`: the task's header (repo, prompt, status, elapsed, cost,
 * actions), the judge's verdict, events shared by all runs, and one column per
 * run, all following the task's WebSocket live.
 */
import type { TaskEvent } from "../../src/events.ts";
import { TaskState, isTerminal } from "../../src/schema.ts";
import { formatCost, formatTime, h, setTimer, statusBadge, timer } from "./dom.ts";
import { renderEvent } from "./events.ts";
import { drawFollowUps } from "./follow-ups.ts";
import { compareGrid } from "./previews.ts";
import { runColumn, type RunColumn } from "./run-column.ts";
import { ApiError, Unauthorized, api, apiJson } from "./session.ts";
import { followTask } from "./task-stream.ts";

export function taskPage(root: HTMLElement, signal: AbortSignal, id: string): void {
  root.append(h("p", { class: "muted" }, "Loading…"));
  apiJson(`/api/tasks/${encodeURIComponent(id)}`, TaskState).then(
    (task) => {
      if (!signal.aborted) drawTask(root, signal, task);
    },
    (error: unknown) => {
      if (signal.aborted || error instanceof Unauthorized) return;
      const message = error instanceof ApiError && error.status === 404 ? `There is no task ${id}.` : `Could not load task ${id}: ${(error as Error).message}`;
      root.replaceChildren(h("section", { class: "card" }, h("p", { class: "error", "data-testid": "task-missing" }, message), h("a", { href: "/" }, "Back to the tasks")));
    },
  );
}

function drawTask(root: HTMLElement, signal: AbortSignal, initial: TaskState): void {
  let task = initial;
  const path = `/api/tasks/${encodeURIComponent(task.id)}`;

  const status = h("span", { "data-testid": "task-status" });
  const connection = h("span", { class: "connection muted small", "data-testid": "connection" }, "connecting…");
  const elapsed = timer(null, null, "task-elapsed");
  const cost = h("span", { "data-testid": "task-cost" });
  const winner = h("span", { "data-testid": "winner" });
  const taskError = h("p", { class: "error", "data-testid": "task-error", hidden: true });
  const actionError = h("p", { class: "error", role: "alert", "data-testid": "action-error", hidden: true });
  const cancel = h("button", { type: "button", class: "danger", "data-testid": "cancel" }, "Cancel");
  const openPr = h("button", { type: "button", class: "secondary", "data-testid": "open-pr", disabled: true, title: "not configured" }, "Open PR");
  const judge = h("section", { class: "card verdict", "data-testid": "judge", hidden: true });
  const followUps = h("section", { class: "card", "data-testid": "pull-request-follow-ups", hidden: true });
  const shared = h("ol", { class: "events shared", "data-testid": "shared-events" });
  const runs = h("div", { class: "runs", "data-testid": "runs" });
  const compare = compareGrid(task.id);
  runs.style.setProperty("--runs", String(task.runs.length));

  const fact = (label: string, value: Node | string) => h("div", {}, h("dt", {}, label), h("dd", {}, value));
  root.replaceChildren(
    h(
      "section",
      { class: "card task-head", "data-testid": "task-header" },
      h("div", { class: "title-row" }, h("h1", { class: "mono", "data-testid": "task-repo" }, task.repo), status, h("span", { class: "spacer" }), connection),
      h("pre", { class: "prompt", "data-testid": "task-prompt" }, task.prompt),
      h(
        "dl",
        { class: "facts" },
        fact("elapsed", elapsed),
        fact("cost", cost),
        fact("runs", String(task.runs.length)),
        fact("branch", task.branch ?? "default"),
        fact("source", `${task.source} · ${task.createdBy}`),
        fact("created", formatTime(task.createdAt)),
        fact("winner", winner),
        fact("memory", h("a", { href: `/repos/${task.repo}/memory`, "data-testid": "task-memory-link" }, "repository memory")),
        planOf(task.key) ? fact("plan", h("a", { href: `/plans/${planOf(task.key)!.id}`, "data-testid": "task-plan-link" }, `plan ${planOf(task.key)!.id}, subtask ${planOf(task.key)!.subtask}`)) : "",
      ),
      taskError,
      h("div", { class: "actions" }, cancel, openPr),
      actionError,
    ),
    judge,
    followUps,
    h("details", { class: "card shared-strip", open: true }, h("summary", {}, "Task events"), shared),
    compare.element,
    runs,
  );

  const columns: RunColumn[] = task.runs.map((run) => runColumn(task.id, run.index, (index) => act(`${path}/winner`, { run: index })));
  runs.append(...columns.map((column) => column.element));

  const render = () => {
    status.replaceChildren(statusBadge(task.status));
    setTimer(elapsed, task.startedAt ?? task.createdAt, task.endedAt);
    // The task's own total is summed when it ends; until then its runs' (and the judge's) costs add up live.
    cost.textContent = formatCost(Math.max(task.costUsd, task.runs.reduce((sum, run) => sum + run.costUsd, task.judge?.costUsd ?? 0)));
    winner.textContent = task.winner ? `run ${task.winner.run} (by ${task.winner.by})` : "–";
    taskError.hidden = !task.error;
    taskError.textContent = task.error ? `${task.error.code}: ${task.error.message}` : "";
    cancel.disabled = isTerminal(task.status);
    drawJudge(judge, task);
    drawFollowUps(followUps, task);
    task.runs.forEach((run, i) => columns[i]?.update(run, task));
    compare.update(task);
  };

  /** Cancel and Pick winner: both answer with the task as it now is. */
  async function act(url: string, body?: unknown) {
    actionError.hidden = true;
    try {
      const init: RequestInit = body === undefined ? { method: "POST" } : { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
      const next = TaskState.parse(await (await api(url, init)).json());
      if (!signal.aborted) {
        task = next;
        render();
      }
    } catch (error) {
      if (error instanceof Unauthorized || signal.aborted) return;
      actionError.textContent = (error as Error).message;
      actionError.hidden = false;
    }
  }
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    await act(`${path}/cancel`);
  });

  const append = (event: TaskEvent) => {
    const column = event.run === null ? undefined : columns[event.run];
    if (column) column.append(event);
    else shared.append(renderEvent(event));
  };

  render();
  followTask(task.id, signal, {
    onEvent: append,
    onState(state) {
      task = state;
      render();
    },
    onConnection(state) {
      connection.textContent = state === "live" ? "● live" : "reconnecting…";
      connection.dataset.state = state;
    },
    async beforeReconnect() {
      task = await apiJson(path, TaskState);
      if (!signal.aborted) render();
    },
  });
}

function drawJudge(panel: HTMLElement, task: TaskState): void {
  const verdict = task.judge;
  panel.hidden = !verdict;
  if (!verdict) return;
  const ranking = verdict.ranking.length ? verdict.ranking.map((run, place) => `${place + 1}. run ${run}`).join("  ·  ") : "no ranking yet";
  panel.replaceChildren(
    h("div", { class: "title-row" }, h("h2", {}, "Judge"), statusBadge(verdict.status, "judge-status"), verdict.winner !== null ? h("span", { class: "winner-badge", "data-testid": "judge-winner" }, `★ picks run ${verdict.winner}`) : ""),
    h("p", { class: "mono small", "data-testid": "judge-ranking" }, ranking),
    verdict.reasons ? h("p", { class: "reasons", "data-testid": "judge-reasons" }, verdict.reasons) : "",
    verdict.error ? h("p", { class: "error small" }, `${verdict.error.code}: ${verdict.error.message}`) : "",
  );
}

/** The plan a subtask's task belongs to, read from its claim key `plan:<plan id>:<subtask key>`. */
function planOf(key: string | null): { id: string; subtask: string } | null {
  const match = /^plan:([a-z0-9]+):([a-z0-9-]+)$/.exec(key ?? "");
  return match ? { id: match[1]!, subtask: match[2]! } : null;
}
