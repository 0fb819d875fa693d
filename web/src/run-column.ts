/** One run of a task as a column: its status and facts, its events as they arrive, then its diff. */
import type { TaskEvent } from "../../src/events.ts";
import type { RunView, TaskState } from "../../src/schema.ts";
import { drawDiff } from "./diff.ts";
import { formatCost, h, setTimer, statusBadge, timer } from "./dom.ts";
import { renderEvent } from "./events.ts";
import { previewPanel } from "./previews.ts";
import { Unauthorized } from "./session.ts";

/** How close to the bottom (px) a reader must be for new events to keep the list scrolled down. */
const STICK_PX = 48;

export interface RunColumn {
  element: HTMLElement;
  append: (event: TaskEvent) => void;
  update: (run: RunView, task: TaskState) => void;
}

export function runColumn(taskId: string, index: number, pickWinner: (run: number) => void): RunColumn {
  const status = h("span", { "data-testid": "run-status" });
  const phase = h("span", { class: "phase", "data-testid": "run-phase" });
  const elapsed = timer(null, null, "run-elapsed");
  const facts = h("div", { class: "run-facts muted small", "data-testid": "run-facts" });
  const isolation = h("span", { class: "isolation-badge", "data-testid": "run-isolation", hidden: true });
  const review = h("p", { class: "review-status", "data-testid": "run-review", hidden: true });
  const agent = h("span", { class: "agent-badge", "data-testid": "run-agent" });
  const variant = h("div", { class: "muted small", hidden: true });
  const error = h("p", { class: "error small", "data-testid": "run-error", hidden: true });
  const winnerBadge = h("span", { class: "winner-badge", "data-testid": "run-winner", hidden: true }, "★ winner");
  const pick = h("button", { type: "button", class: "secondary small", "data-testid": "pick-winner", "data-run": index, onclick: () => pickWinner(index) }, "Pick winner");
  const events = h("ol", { class: "events", "data-testid": "run-events" });
  const diff = h("section", { class: "diff", "data-testid": "run-diff", hidden: true });
  const preview = previewPanel(taskId, index);
  const element = h(
    "section",
    { class: "run", "data-testid": "run-column", "data-run": index },
    h("header", { class: "run-head" }, h("div", { class: "run-title" }, h("h2", {}, `Run ${index}`), status, agent, isolation, phase, winnerBadge, h("span", { class: "spacer" }), elapsed, pick), variant, facts, review, error),
    preview.element,
    events,
    diff,
  );
  let diffState: "none" | "loading" | "drawn" = "none";
  // What the drawn diff shows: a new diff (a reviewed coder's fix) or a new review round draws it again.
  let drawnKey = "";
  const keyOf = (run: RunView) => `${run.diff?.bytes ?? 0}:${run.diff?.additions ?? 0}:${run.review?.rounds.length ?? 0}:${run.review?.status ?? ""}`;

  const loadDiff = async (run: RunView) => {
    diffState = "loading";
    drawnKey = keyOf(run);
    diff.hidden = false;
    if (!diff.querySelector(".diff-body")) diff.replaceChildren(h("p", { class: "muted" }, "Loading the diff…"));
    try {
      await drawDiff(diff, taskId, index, run.review?.rounds.at(-1)?.findings ?? []);
      diffState = "drawn";
    } catch (failure) {
      // The next state change tries again.
      diffState = "none";
      if (!(failure instanceof Unauthorized)) diff.replaceChildren(h("p", { class: "error" }, `Could not load the diff: ${(failure as Error).message}`));
    }
  };

  return {
    element,
    append(event) {
      const atBottom = events.scrollHeight - events.scrollTop - events.clientHeight < STICK_PX;
      events.append(renderEvent(event));
      if (atBottom) events.scrollTop = events.scrollHeight;
    },
    update(run, task) {
      status.replaceChildren(statusBadge(run.status));
      agent.textContent = run.agent ?? "claude-code";
      isolation.hidden = !run.isolation;
      isolation.textContent = run.isolation ?? "";
      isolation.dataset.level = run.isolation ?? "";
      isolation.title = task.isolation
        ? `isolation ${task.isolation.level}: ${task.isolation.reason}${task.isolation.inferred ? " (inferred)" : ""}`
        : "";
      phase.textContent = run.status === "queued" && run.queuePosition ? `#${run.queuePosition} in queue` : (run.phase ?? "");
      setTimer(elapsed, run.startedAt, run.startedAt === null ? null : run.endedAt);
      const parts = [
        run.numTurns !== null ? `${run.numTurns} turns` : null,
        formatCost(run.costUsd),
        run.diff ? `${run.diff.files} file${run.diff.files === 1 ? "" : "s"} +${run.diff.additions} −${run.diff.deletions}` : null,
        run.attempts.length ? `${run.attempts.length} retr${run.attempts.length === 1 ? "y" : "ies"}` : null,
        run.baseCommit ? `base ${run.baseCommit.slice(0, 8)}` : null,
        run.workspace ? `from ${run.workspace}` : null,
        run.memory?.length ? `given ${run.memory.length} memory ${run.memory.length === 1 ? "entry" : "entries"}` : null,
      ];
      facts.textContent = parts.filter(Boolean).join(" · ");
      variant.hidden = !run.model && !run.promptSuffix;
      variant.textContent = [run.model && `model ${run.model}`, run.promptSuffix && `+ “${run.promptSuffix}”`].filter(Boolean).join(" · ");
      error.hidden = !run.error;
      error.textContent = run.error ? `${run.error.code}: ${run.error.message}` : "";
      const won = task.winner?.run === index;
      element.classList.toggle("is-winner", won);
      winnerBadge.hidden = !won;
      winnerBadge.textContent = won ? `★ winner (${task.winner!.by})` : "";
      pick.disabled = won || run.status !== "succeeded" || !run.diff;
      pick.title = pick.disabled && !won ? "only a succeeded run with a diff can win" : "";
      review.hidden = !run.review;
      review.textContent = run.review ? `review ${run.review.status.replace("_", " ")} · ${run.review.rounds.length} round${run.review.rounds.length === 1 ? "" : "s"}${run.review.reason ? ` · ${run.review.reason}` : ""}` : "";
      review.dataset.status = run.review?.status ?? "";
      preview.update(run);
      if (run.diff && (diffState === "none" || (diffState === "drawn" && keyOf(run) !== drawnKey))) void loadDiff(run);
    },
  };
}
