/**
 * The card of the pull request a task opened, when Sortie tends it: each fix
 * run it made there since (red check, review, request, conflict), linked to
 * that run's own page, with what it pushed.
 */
import type { TaskState } from "../../src/schema.ts";
import { formatTime, h } from "./dom.ts";

export function drawFollowUps(panel: HTMLElement, task: TaskState): void {
  const publication = task.publication;
  const followUps = publication?.followUps ?? [];
  panel.hidden = !publication?.pullRequest || followUps.length === 0;
  if (panel.hidden || !publication?.pullRequest) return;
  panel.replaceChildren(
    h("div", { class: "title-row" }, h("h2", {}, "Follow-ups on "), h("a", { href: publication.pullRequest.url, class: "mono" }, `#${publication.pullRequest.number}`)),
    h(
      "ol",
      { class: "small", "data-testid": "follow-ups" },
      ...followUps.map((f) =>
        h(
          "li",
          {},
          h("a", { href: `/tasks/${encodeURIComponent(f.task)}`, class: "mono" }, f.task),
          ` · ${f.trigger} by ${f.by} · ${f.status}${f.commit ? ` ${f.commit.slice(0, 12)}` : ""} · ${formatTime(f.at)}`,
        ),
      ),
    ),
  );
}
