/**
 * Runs' previews in the viewer: each run's app in a sandboxed iframe in its
 * column (with open-in-new-tab and the screenshot the judge saw), and the
 * compare grid with every ready preview of the task side by side.
 *
 * The iframe never carries the viewer's token: the viewer asks the API for a
 * ticket URL, which the browser trades for a cookie scoped to that preview
 * alone. The frame is sandboxed without `allow-same-origin`, so the app runs
 * in an opaque origin and cannot read the viewer's storage.
 */
import { z } from "zod";
import type { PreviewView, RunView, TaskState } from "../../src/schema.ts";
import { h } from "./dom.ts";
import { Unauthorized, api, apiJson } from "./session.ts";

const PreviewSession = z.object({ url: z.string(), ticketUrl: z.string(), expiresAt: z.number() });

/** The iframe's sandbox: scripts and forms run, nothing of the viewer's origin is reachable. */
const FRAME_SANDBOX = "allow-scripts allow-forms allow-popups allow-modals";
/** The preview's cookie lasts ten minutes: a fresh ticket is traded this often while the page shows it. */
const RENEW_MS = 5 * 60_000;

/** Asks for a ticket URL for run `run`'s ready preview. */
async function ticketFor(taskId: string, run: number): Promise<string> {
  return (await apiJson(`/api/tasks/${encodeURIComponent(taskId)}/runs/${run}/preview/session`, PreviewSession, { method: "POST" })).ticketUrl;
}

/**
 * A sandboxed frame showing a run's preview, which keeps its cookie fresh
 * while it is on the page; `show` with a preview that started again (a
 * follow-up's) loads it again.
 */
function previewFrame(taskId: string, run: number, testid: string): { element: HTMLElement; show: (preview: PreviewView) => void } {
  const frame = h("iframe", { class: "preview-frame", sandbox: FRAME_SANDBOX, referrerpolicy: "no-referrer", title: `run ${run}'s preview`, "data-testid": testid, "data-run": run });
  let shown = "";
  let renew: ReturnType<typeof setInterval> | undefined;
  return {
    element: frame,
    show(preview) {
      const key = `${preview.url}@${preview.startedAt}`;
      if (key === shown) return;
      shown = key;
      clearInterval(renew);
      ticketFor(taskId, run).then(
        (ticket) => {
          frame.src = ticket;
          renew = setInterval(() => {
            if (!frame.isConnected) return clearInterval(renew);
            // Trading a new ticket in the background renews the cookie without reloading the app.
            void ticketFor(taskId, run).then((next) => fetch(next, { mode: "no-cors", credentials: "include", redirect: "manual" })).catch(() => undefined);
          }, RENEW_MS);
        },
        (error: unknown) => {
          if (!(error instanceof Unauthorized)) frame.replaceWith(h("p", { class: "error small" }, `Could not open the preview: ${(error as Error).message}`));
        },
      );
    },
  };
}

/** Opens a run's preview in a new tab, through a ticket of its own. */
async function openInTab(taskId: string, run: number): Promise<void> {
  // The tab opens first (a popup must come from the click), then goes to the ticket.
  const tab = window.open("about:blank", "_blank");
  const ticket = await ticketFor(taskId, run);
  if (tab) {
    tab.opener = null;
    tab.location.href = ticket;
  }
}

/** The preview part of a run's column. */
export function previewPanel(taskId: string, index: number): { element: HTMLElement; update: (run: RunView) => void } {
  const status = h("span", { class: "preview-status", "data-testid": "preview-status" });
  const open = h("button", { type: "button", class: "secondary small", "data-testid": "preview-open", onclick: () => void openInTab(taskId, index) }, "Open in new tab");
  const error = h("pre", { class: "error small preview-error", "data-testid": "preview-error", hidden: true });
  const frame = previewFrame(taskId, index, "preview-frame");
  const holder = h("div", { class: "preview-holder", hidden: true }, frame.element);
  const shot = h("img", { class: "preview-shot", alt: `screenshot of run ${index}'s preview`, "data-testid": "preview-screenshot", hidden: true });
  const element = h("section", { class: "preview", "data-testid": "run-preview", "data-run": index, hidden: true }, h("div", { class: "title-row" }, h("h3", {}, "Preview"), status, h("span", { class: "spacer" }), open), error, holder, shot);
  let shotLoaded = false;
  return {
    element,
    update(run) {
      const preview = run.preview;
      element.hidden = !preview && !run.screenshot;
      if (preview) {
        status.textContent = preview.status;
        status.dataset.status = preview.status;
        error.hidden = !preview.error;
        error.textContent = preview.error ? `${preview.error.code}: ${preview.error.message}` : "";
        open.hidden = preview.status !== "ready";
        holder.hidden = preview.status !== "ready";
        if (preview.status === "ready") frame.show(preview);
      }
      if (run.screenshot && !shotLoaded) {
        shotLoaded = true;
        api(`/api/tasks/${encodeURIComponent(taskId)}/runs/${index}/screenshot`).then(
          async (response) => {
            shot.src = URL.createObjectURL(await response.blob());
            shot.hidden = false;
          },
          () => (shotLoaded = false),
        );
      }
    },
  };
}

/** The compare view: every ready preview of the task in one grid, one cell per run. */
export function compareGrid(taskId: string): { element: HTMLElement; update: (task: TaskState) => void } {
  const grid = h("div", { class: "preview-grid", "data-testid": "preview-grid" });
  const toggle = h("button", { type: "button", class: "secondary", "data-testid": "compare-previews" }, "Compare previews");
  const element = h("section", { class: "card compare", "data-testid": "compare", hidden: true }, h("div", { class: "title-row" }, h("h2", {}, "Previews side by side"), h("span", { class: "spacer" }), toggle), grid);
  const cells = new Map<number, { cell: HTMLElement; frame: ReturnType<typeof previewFrame> }>();
  let open = false;
  let latest: TaskState | null = null;
  const draw = () => {
    grid.hidden = !open;
    toggle.textContent = open ? "Hide" : "Compare previews";
    if (!open || !latest) return;
    const ready = latest.runs.filter((run) => run.preview?.status === "ready");
    grid.style.setProperty("--cells", String(Math.max(1, Math.min(ready.length, 4))));
    for (const [run, { cell }] of cells) if (!ready.some((r) => r.index === run)) {
      cell.remove();
      cells.delete(run);
    }
    for (const run of ready) {
      let entry = cells.get(run.index);
      if (!entry) {
        const frame = previewFrame(taskId, run.index, "compare-frame");
        entry = { cell: h("figure", { class: "preview-cell", "data-run": run.index }, h("figcaption", {}, `Run ${run.index}`), frame.element), frame };
        cells.set(run.index, entry);
        grid.append(entry.cell);
      }
      entry.frame.show(run.preview!);
    }
  };
  toggle.addEventListener("click", () => {
    open = !open;
    draw();
  });
  return {
    element,
    update(task) {
      latest = task;
      element.hidden = !task.runs.some((run) => run.preview?.status === "ready");
      draw();
    },
  };
}
