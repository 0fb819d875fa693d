/** A run's diff, fetched as `text/x-diff` and drawn by diff2html: a file list with stats, each file folding on its header. */
import { Diff2HtmlUI } from "diff2html/lib-esm/ui/js/diff2html-ui-base.js";
import { h } from "./dom.ts";
import { api } from "./session.ts";

export async function drawDiff(into: HTMLElement, taskId: string, run: number): Promise<void> {
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
}
