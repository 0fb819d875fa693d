/** `/`: tasks newest first, filtered by status and repo, refreshed every few seconds. */
import { z } from "zod";
import { TASK_STATUSES, TaskSummary } from "../../src/schema.ts";
import { formatCost, formatTime, h, statusBadge, timer } from "./dom.ts";
import { Unauthorized, apiJson } from "./session.ts";

const POLL_MS = 2500;
const PAGE_SIZE = 50;

const TaskList = z.object({ tasks: z.array(TaskSummary), nextCursor: z.string().nullable() });

export function dashboardPage(root: HTMLElement, signal: AbortSignal): void {
  const params = new URLSearchParams(location.search);
  const status = h("select", { name: "status", "data-testid": "filter-status" }, h("option", { value: "" }, "any status"), ...TASK_STATUSES.map((s) => h("option", { value: s }, s.replace("_", " "))));
  status.value = params.get("status") ?? "";
  const repo = h("input", { name: "repo", type: "search", placeholder: "owner/name", "data-testid": "filter-repo", value: params.get("repo") ?? "" });
  const rows = h("tbody");
  const empty = h("p", { class: "muted", "data-testid": "no-tasks", hidden: true }, "No tasks match.");
  const failure = h("p", { class: "error", role: "alert", hidden: true });
  const more = h("button", { type: "button", class: "secondary", "data-testid": "load-more", hidden: true }, "Older tasks");

  root.append(
    h("section", { class: "page-head" }, h("h1", {}, "Tasks"), h("form", { class: "filters", onsubmit: (e: Event) => e.preventDefault() }, status, repo)),
    failure,
    h(
      "table",
      { class: "tasks", "data-testid": "task-table" },
      h("thead", {}, h("tr", {}, ...["Status", "Task", "Repo", "Source", "Runs", "Cost", "Changes", "Duration", "Created"].map((label) => h("th", {}, label)))),
      rows,
    ),
    empty,
    more,
  );

  // The first page is polled; older pages, once asked for, are kept and merged under it.
  let firstPage: TaskSummary[] = [];
  let older: TaskSummary[] = [];
  let cursor: string | null = null;
  const drawn = new Map<string, { json: string; row: HTMLTableRowElement }>();

  const query = (after?: string) => {
    const search = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (status.value) search.set("status", status.value);
    if (repo.value.trim()) search.set("repo", repo.value.trim());
    if (after) search.set("cursor", after);
    return `/api/tasks?${search}`;
  };

  const draw = () => {
    const seen = new Set<string>();
    const tasks = [...firstPage, ...older].filter((task) => !seen.has(task.id) && seen.add(task.id));
    const rowsNow = tasks.map((task) => {
      const json = JSON.stringify(task);
      const known = drawn.get(task.id);
      if (known?.json === json) return known.row;
      const row = taskRow(task);
      drawn.set(task.id, { json, row });
      return row;
    });
    rows.replaceChildren(...rowsNow);
    empty.hidden = tasks.length > 0;
    more.hidden = cursor === null;
  };

  const refresh = async () => {
    try {
      const page = await apiJson(query(), TaskList);
      if (signal.aborted) return;
      firstPage = page.tasks;
      if (older.length === 0) cursor = page.nextCursor;
      failure.hidden = true;
      draw();
    } catch (error) {
      if (signal.aborted || error instanceof Unauthorized) return;
      failure.textContent = `Could not load tasks: ${(error as Error).message}`;
      failure.hidden = false;
    }
  };

  const refilter = () => {
    const search = new URLSearchParams();
    if (status.value) search.set("status", status.value);
    if (repo.value.trim()) search.set("repo", repo.value.trim());
    history.replaceState(null, "", search.size ? `/?${search}` : "/");
    older = [];
    cursor = null;
    void refresh();
  };
  status.addEventListener("change", refilter);
  let typing: ReturnType<typeof setTimeout> | undefined;
  repo.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(refilter, 300);
  });
  more.addEventListener("click", async () => {
    if (!cursor) return;
    try {
      const page = await apiJson(query(cursor), TaskList);
      older = [...older, ...page.tasks];
      cursor = page.nextCursor;
      draw();
    } catch (error) {
      if (error instanceof Unauthorized) return;
      failure.textContent = `Could not load older tasks: ${(error as Error).message}`;
      failure.hidden = false;
    }
  });

  void refresh();
  const poll = setInterval(refresh, POLL_MS);
  signal.addEventListener("abort", () => {
    clearInterval(poll);
    clearTimeout(typing);
  });
}

function taskRow(task: TaskSummary): HTMLTableRowElement {
  const href = `/tasks/${task.id}`;
  const changes = task.files === null ? "–" : `${task.files} file${task.files === 1 ? "" : "s"} +${task.additions ?? 0} −${task.deletions ?? 0}`;
  return h(
    "tr",
    { "data-testid": "task-row", "data-task-id": task.id, "data-status": task.status },
    h("td", {}, statusBadge(task.status)),
    h("td", { class: "prompt-cell" }, h("a", { href, title: task.prompt }, firstLine(task.prompt)), task.error ? h("div", { class: "error small" }, task.error.message) : null),
    h("td", { class: "mono" }, task.repo),
    h("td", {}, task.source, h("div", { class: "muted small" }, task.createdBy)),
    h("td", { class: "num" }, task.runs),
    h("td", { class: "num" }, formatCost(task.costUsd)),
    h("td", { class: "mono small" }, changes),
    h("td", { class: "num" }, timer(task.startedAt, task.startedAt === null ? null : task.endedAt)),
    h("td", { class: "muted small" }, formatTime(task.createdAt)),
  );
}

function firstLine(text: string): string {
  const line = text.split("\n", 1)[0]!.trim();
  return line.length > 120 ? `${line.slice(0, 119)}…` : line || "(empty prompt)";
}
