/** A run's diff, fetched as `text/x-diff` and drawn by diff2html: a file list with stats, each file folding on its header. */
import { Diff2HtmlUI } from "diff2html/lib-esm/ui/js/diff2html-ui-base.js";
import { h } from "./dom.ts";
import { api } from "./session.ts";

/** A reviewer's finding, as the run view carries it. */
export interface Finding {
  path: string;
  line?: number;
  body: string;
  severity?: string;
}

export async function drawDiff(into: HTMLElement, taskId: string, run: number, findings: Finding[] = []): Promise<void> {
  const text = await (await api(`/api/tasks/${taskId}/runs/${run}/diff`)).text();
  if (!text.trim()) {
    into.replaceChildren(h("p", { class: "muted" }, "The run changed nothing."));
    return;
  }
  const target = h("div", { class: "diff-body" });
  into.replaceChildren(target);
  const ui = new Diff2HtmlUI(target, text, {
    outputFormat: "line-by-line",
    drawFileList: true,
    fileListToggle: true,
    fileListStartVisible: true,
    fileContentToggle: true,
    matching: "lines",
    highlight: false,
    synchronisedScroll: false,
    stickyFileHeaders: false,
  });
  ui.draw();
  placeFindings(into, target, findings);
}

/**
 * Puts each finding under its line of the drawn diff (the new file's line
 * number); a finding whose file or line the diff does not show goes in a list above it.
 */
function placeFindings(into: HTMLElement, drawn: HTMLElement, findings: Finding[]): void {
  const unplaced: Finding[] = [];
  for (const finding of findings) {
    const file = [...drawn.querySelectorAll<HTMLElement>(".d2h-file-wrapper")].find((wrapper) => wrapper.querySelector(".d2h-file-name")?.textContent?.trim() === finding.path);
    const row = finding.line === undefined || !file ? undefined : [...file.querySelectorAll<HTMLTableRowElement>("tr")].find((tr) => tr.querySelector(".line-num2")?.textContent?.trim() === String(finding.line));
    if (!row) {
      unplaced.push(finding);
      continue;
    }
    const note = h("tr", { class: "review-finding", "data-testid": "review-finding" }, h("td", { colspan: "2" }, findingText(finding)));
    row.after(note);
  }
  if (unplaced.length) {
    into.prepend(h("ul", { class: "review-findings", "data-testid": "review-findings" }, ...unplaced.map((f) => h("li", {}, `${f.path}${f.line ? `:${f.line}` : ""} `, findingText(f)))));
  }
}

function findingText(finding: Finding): HTMLElement {
  return h("span", { class: "finding-body" }, `${finding.severity ? `[${finding.severity}] ` : ""}${finding.body}`);
}
