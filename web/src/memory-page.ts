/**
 * `/repos/<owner>/<name>/memory`: a repository's memory under review. Each
 * entry shows its text, status and evidence (the runs that proposed it,
 * whether they succeeded and won), with Approve, Reject and Edit (a
 * supersede); a person can add an entry, and publish the approved ones into
 * the repository's AGENTS.md as a pull request.
 */
import { z } from "zod";
import { MEMORY_STATUSES, MemoryEntry } from "../../src/schema.ts";
import { formatTime, h, statusBadge } from "./dom.ts";
import { Unauthorized, api, apiJson } from "./session.ts";

const MemoryList = z.object({ entries: z.array(MemoryEntry) });
const Published = z.object({ pullRequest: z.object({ number: z.int(), url: z.string() }), branch: z.string() });

/** Proposals first: they are what waits for a person. */
const ORDER = ["proposed", "approved", "expired", "rejected", "superseded"];

export function memoryPage(root: HTMLElement, signal: AbortSignal, repo: string): void {
  const base = `/api/repos/${repo.split("/").map(encodeURIComponent).join("/")}/memory`;
  const params = new URLSearchParams(location.search);
  const status = h("select", { name: "status", "data-testid": "memory-filter" }, h("option", { value: "" }, "every status"), ...MEMORY_STATUSES.map((s) => h("option", { value: s }, s)));
  status.value = params.get("status") ?? "";
  const list = h("ol", { class: "memory-list", "data-testid": "memory-entries" });
  const empty = h("p", { class: "muted", "data-testid": "memory-empty", hidden: true }, "No entries.");
  const failure = h("p", { class: "error", role: "alert", "data-testid": "memory-error", hidden: true });
  const published = h("p", { class: "small", "data-testid": "memory-published", hidden: true });
  const text = h("input", { type: "text", name: "text", maxlength: 500, required: true, placeholder: "A fact about this repository, e.g. Run npm test before pushing.", "data-testid": "memory-new-text" });
  const add = h("form", { class: "memory-add", "data-testid": "memory-add" }, text, h("button", { type: "submit" }, "Add (approved)"));
  const publish = h("button", { type: "button", class: "secondary", "data-testid": "memory-publish" }, "Publish to AGENTS.md");

  root.append(
    h("section", { class: "page-head" }, h("h1", {}, "Memory of ", h("span", { class: "mono", "data-testid": "memory-repo" }, repo)), h("form", { class: "filters", onsubmit: (e: Event) => e.preventDefault() }, status)),
    h("p", { class: "muted small" }, "What agents proposed from their runs and people wrote. Only approved entries reach later runs of this repository, in $SORTIE_MEMORY_FILE."),
    failure,
    h("section", { class: "card" }, add, h("div", { class: "actions" }, publish), published),
    list,
    empty,
  );

  const showError = (error: unknown) => {
    if (error instanceof Unauthorized || signal.aborted) return;
    failure.textContent = (error as Error).message;
    failure.hidden = false;
  };

  const load = async () => {
    try {
      const query = status.value ? `?status=${encodeURIComponent(status.value)}` : "";
      const { entries } = await apiJson(`${base}${query}`, MemoryList);
      if (signal.aborted) return;
      failure.hidden = true;
      const sorted = [...entries].sort((a, b) => ORDER.indexOf(a.status) - ORDER.indexOf(b.status) || b.createdAt - a.createdAt);
      list.replaceChildren(...sorted.map((entry) => entryItem(entry)));
      empty.hidden = entries.length > 0;
    } catch (error) {
      showError(error);
    }
  };

  const send = async (path: string, method: string, body?: unknown) => {
    try {
      await api(path, { method, ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }) });
      await load();
    } catch (error) {
      showError(error);
    }
  };

  function entryItem(entry: MemoryEntry): HTMLLIElement {
    const at = `${base}/${encodeURIComponent(entry.id)}`;
    const editor = h("input", { type: "text", value: entry.text, maxlength: 500, "data-testid": "memory-edit-text" });
    const editing = h(
      "form",
      {
        class: "memory-edit",
        hidden: true,
        onsubmit: (event: Event) => {
          event.preventDefault();
          void send(`${at}/supersede`, "POST", { text: editor.value });
        },
      },
      editor,
      h("button", { type: "submit", "data-testid": "memory-save" }, "Save"),
    );
    const open = entry.status !== "superseded";
    const decided = entry.decidedBy ? `${entry.status} by ${entry.decidedBy}${entry.decidedAt ? `, ${formatTime(entry.decidedAt)}` : ""}` : "";
    return h(
      "li",
      { class: `card memory-entry memory-${entry.status}`, "data-testid": "memory-entry", "data-id": entry.id, "data-status": entry.status },
      h("div", { class: "title-row" }, statusBadge(entry.status, "memory-status"), h("p", { class: "memory-text", "data-testid": "memory-text" }, entry.text)),
      h(
        "p",
        { class: "muted small", "data-testid": "memory-facts" },
        [
          entry.createdBy === "person" ? "written by a person" : `proposed by ${entry.seen} run${entry.seen === 1 ? "" : "s"}`,
          decided,
          entry.lastUsedAt ? `last given to a run ${formatTime(entry.lastUsedAt)}` : "",
          entry.supersededBy ? `replaced by ${entry.supersededBy}` : "",
          `id ${entry.id}`,
        ].filter(Boolean).join(" · "),
      ),
      entry.evidence.length
        ? h(
            "ul",
            { class: "evidence small", "data-testid": "memory-evidence" },
            ...entry.evidence.map((e) =>
              h("li", {}, h("a", { href: `/tasks/${e.task}` }, `task ${e.task}`), ` run ${e.run} · ${e.succeeded ? "succeeded" : "did not succeed"}${e.winner ? " · ★ winner" : ""}`),
            ),
          )
        : "",
      open
        ? h(
            "div",
            { class: "actions" },
            entry.status !== "approved" ? h("button", { type: "button", "data-testid": "memory-approve", onclick: () => void send(`${at}/approve`, "POST") }, "Approve") : "",
            entry.status !== "rejected" ? h("button", { type: "button", class: "danger", "data-testid": "memory-reject", onclick: () => void send(`${at}/reject`, "POST") }, "Reject") : "",
            h("button", { type: "button", class: "secondary", "data-testid": "memory-edit", onclick: () => (editing.hidden = !editing.hidden) }, "Edit"),
          )
        : "",
      editing,
    );
  }

  add.addEventListener("submit", async (event) => {
    event.preventDefault();
    await send(base, "POST", { text: text.value });
    if (failure.hidden) text.value = "";
  });
  publish.addEventListener("click", async () => {
    publish.disabled = true;
    published.hidden = true;
    try {
      const made = Published.parse(await (await api(`${base}/publish`, { method: "POST" })).json());
      published.replaceChildren("Pull request opened: ", h("a", { href: made.pullRequest.url, "data-testid": "memory-pr" }, `#${made.pullRequest.number}`), ` (${made.branch})`);
      published.hidden = false;
    } catch (error) {
      showError(error);
    } finally {
      publish.disabled = false;
    }
  });
  status.addEventListener("change", () => {
    const search = new URLSearchParams(location.search);
    if (status.value) search.set("status", status.value);
    else search.delete("status");
    history.replaceState(null, "", `${location.pathname}${search.size ? `?${search}` : ""}`);
    void load();
  });
  void load();
}
