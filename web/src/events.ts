/**
 * One task event as one list item, carrying its `data-seq`: assistant text,
 * tool calls folded to one line (their input on click), tool results and
 * logs with ANSI colours, and a short line for everything else.
 */
import { AnsiUp } from "ansi_up";
import { agentOutputOf, type TaskEvent } from "../../src/events.ts";
import { formatCost, formatDuration, h } from "./dom.ts";

const ansi = new AnsiUp();
ansi.use_classes = true;

type Data = TaskEvent["data"];
const str = (data: Data, key: string): string => (typeof data[key] === "string" ? (data[key] as string) : "");
const num = (data: Data, key: string): number | null => (typeof data[key] === "number" ? (data[key] as number) : null);

export function renderEvent(event: TaskEvent): HTMLLIElement {
  // Judge and reviewer events mirror the agent's (`judge.text`, `review.tool_call`, …) and draw the same way.
  const output = agentOutputOf(event.type);
  const kind = output ? `agent.${output.kind}` : event.type;
  const item = h("li", { class: `event event-${kind.replace(".", "-")}`, "data-testid": "event", "data-seq": event.seq, "data-type": event.type, title: `#${event.seq} ${new Date(event.ts).toLocaleTimeString()}` });
  item.append(...body(kind, event));
  return item;
}

function body(kind: string, { type, data }: TaskEvent): (Node | string)[] {
  const judge = type.startsWith("judge.") ? h("span", { class: "tag" }, "judge") : type.startsWith("review.") ? h("span", { class: "tag" }, "review") : "";
  switch (kind) {
    case "agent.text":
      return [judge, h("div", { class: "text" }, str(data, "text")), truncated(data)];
    case "run.message":
      return [h("span", { class: "tag" }, `message from ${str(data, "by") || "?"}`), h("div", { class: "text" }, str(data, "text"))];
    case "agent.tool_call":
      return [
        fold(
          [judge, h("span", { class: "tool-name" }, str(data, "name")), " ", h("span", { class: "tool-summary" }, str(data, "summary"))],
          inputView(str(data, "input")),
          "tool-call",
        ),
      ];
    case "agent.tool_result": {
      const text = str(data, "text");
      const error = data.isError === true;
      const lines = text ? text.split("\n").length : 0;
      return [
        fold(
          [h("span", { class: error ? "result-error" : "result-ok" }, error ? "✗ error" : "↳ result"), " ", h("span", { class: "muted" }, firstLine(stripAnsi(text)) || "(no output)"), lines > 1 ? h("span", { class: "muted small" }, ` ${lines} lines`) : ""],
          ansiBlock(text),
          "tool-result",
        ),
        truncated(data),
      ];
    }
    case "log":
      return [h("span", { class: "tag" }, str(data, "stream") || "log"), ansiBlock(str(data, "text"))];
    case "memory.delivered":
    case "memory.proposed": {
      const delivered = type === "memory.delivered";
      const entries = (delivered ? data.entries : [...(Array.isArray(data.proposed) ? data.proposed : []), ...(Array.isArray(data.seen) ? data.seen : [])]) as { id?: unknown; text?: unknown }[];
      const count = Array.isArray(entries) ? entries.length : 0;
      const summary = delivered
        ? `given ${count} memory ${count === 1 ? "entry" : "entries"}`
        : `learned: ${Array.isArray(data.proposed) ? data.proposed.length : 0} new, ${Array.isArray(data.seen) ? data.seen.length : 0} already known`;
      const list = h("ul", { class: "memory-given small", "data-testid": delivered ? "memory-delivered" : "memory-learned" }, ...(Array.isArray(entries) ? entries : []).map((entry) => h("li", { "data-id": String(entry.id ?? "") }, String(entry.text ?? ""))));
      return [h("details", { class: "memory-event", open: delivered }, h("summary", {}, h("span", { class: "tag" }, "memory"), " ", summary), list)];
    }
    case "agent.result": {
      const cost = num(data, "costUsd");
      const ms = num(data, "durationMs");
      const facts = [`${num(data, "numTurns") ?? "?"} turns`, cost === null ? "" : formatCost(cost), ms === null ? "" : formatDuration(ms)].filter(Boolean).join(" · ");
      return [judge, h("div", { class: data.isError === true ? "result-error" : "result-ok" }, `${data.isError === true ? "Agent failed" : "Agent finished"}: ${facts}`), str(data, "text") ? h("div", { class: "text" }, str(data, "text")) : ""];
    }
    default:
      return [judge, h("span", { class: "line" }, lineFor(type, data) ?? lineFor(kind, data) ?? `${type} ${Object.keys(data).length ? JSON.stringify(data) : ""}`.trim())];
  }
}

/** The one-line events: phases, statuses, queue places, retries, the sandbox's end. */
function lineFor(type: string, data: Data): string | null {
  const error = typeof data.error === "object" && data.error !== null && "message" in data.error ? ` (${String(data.error.message)})` : typeof data.error === "string" ? ` (${data.error})` : "";
  switch (type) {
    case "task.status":
      return `task ${str(data, "status")}${error}`;
    case "run.status":
      return data.phase ? `phase: ${str(data, "phase")}` : `run ${str(data, "status")}${error}`;
    case "run.queued":
      return `queued for a sandbox, position ${num(data, "position") ?? "?"}`;
    case "run.cloned":
      return `cloned at ${str(data, "commit").slice(0, 12)}`;
    case "agent.init":
      return `${str(data, "agent") || "Claude Code"} started${str(data, "model") ? ` · ${str(data, "model")}` : ""}`;
    case "agent.system":
      return `${str(data, "agent") || "Claude Code"}: ${str(data, "subtype") || "system message"}`;
    case "agent.retry":
      return `API retry ${num(data, "attempt") ?? "?"}/${num(data, "maxRetries") ?? "?"}${str(data, "error") ? `: ${str(data, "error")}` : ""}`;
    case "run.retry":
      return `retrying (${num(data, "attempt") ?? "?"} of ${num(data, "of") ?? "?"})${error}`;
    case "run.diff": {
      const files = num(data, "files") ?? 0;
      return `diff: ${files} file${files === 1 ? "" : "s"}, +${num(data, "additions") ?? 0} −${num(data, "deletions") ?? 0}`;
    }
    case "agent.usage":
      return `tokens: ${num(data, "inputTokens") ?? 0} in, ${num(data, "outputTokens") ?? 0} out, cache ${num(data, "cacheReadTokens") ?? 0} read / ${num(data, "cacheWriteTokens") ?? 0} written`;
    case "run.workspace_kept":
      return `workspace kept until ${num(data, "until") === null ? "?" : new Date(num(data, "until")!).toLocaleTimeString()}`;
    case "run.message_delivered":
      return "follow-up message handed to the agent";
    case "run.watchdog":
      return `the sandbox did not answer (strike ${num(data, "strikes") ?? "?"})`;
    case "run.reattach":
      return "re-attached to the running agent";
    case "sandbox.destroyed":
      return "sandbox destroyed";
    case "sandbox.worktree_removed":
      return "worktree removed (the shared sandbox stays warm)";
    case "run.worktree":
      return `worktree at ${str(data, "commit").slice(0, 12)} in ${str(data, "sandbox")}, user ${num(data, "uid") ?? "?"}`;
    case "run.unconfined":
      return `⚠ warning: unconfined — ${str(data, "message")}`;
    case "run.isolation_violation":
      return `the analysis run changed the checkout: ${Array.isArray(data.changed) ? data.changed.slice(0, 5).join(", ") : "?"}`;
    case "run.snapshot_failed":
      return `no snapshot taken${error || (str(data, "message") ? ` (${str(data, "message")})` : "")}`;
    case "judge.status":
      return `judge ${str(data, "status")}${num(data, "winner") !== null ? ` · winner run ${num(data, "winner")}` : ""}${error}`;
    case "judge.queued":
      return `judge queued for runs ${Array.isArray(data.candidates) ? data.candidates.join(", ") : "?"}`;
    case "task.winner":
      return `winner: run ${num(data, "run") ?? "?"} (picked by ${str(data, "by")})`;
    case "review.status":
      return `review ${str(data, "status").replace("_", " ")}${str(data, "reason") ? `: ${str(data, "reason")}` : ""}`;
    case "review.round": {
      const findings = Array.isArray(data.findings) ? data.findings.length : 0;
      return `review round ${num(data, "round") ?? "?"}: ${str(data, "verdict") || "no verdict"}, ${findings} finding${findings === 1 ? "" : "s"}${error}`;
    }
    case "review.feedback":
      return `${num(data, "findings") ?? "?"} findings handed to the coder`;
    case "memory.ignored":
      return `memory: ignored ${num(data, "beyondLimit") ?? 0} learnings past the first ${num(data, "limit") ?? "?"} and ${num(data, "tooLong") ?? 0} longer than ${num(data, "maxChars") ?? "?"} characters`;
    case "memory.error":
      return `memory: ${str(data, "message")}`;
    default:
      return null;
  }
}

function fold(summary: (Node | string)[], content: Node, kind: string): HTMLDetailsElement {
  return h("details", { class: kind, "data-testid": kind }, h("summary", {}, ...summary), content);
}

function ansiBlock(text: string): HTMLPreElement {
  const pre = h("pre", { class: "code ansi" });
  // ansi_up escapes the text before adding its colour spans.
  pre.innerHTML = ansi.ansi_to_html(text);
  return pre;
}

function truncated(data: Data): Node | string {
  return data.truncated === true ? h("div", { class: "muted small" }, "(cut at 16 KiB)") : "";
}

/** A tool's input, one field after another, strings as written (a command, a file's content) rather than JSON-escaped. */
function inputView(text: string): HTMLElement {
  let input: unknown;
  try {
    input = JSON.parse(text);
  } catch {
    return h("pre", { class: "code" }, text);
  }
  if (typeof input !== "object" || input === null || Array.isArray(input)) return h("pre", { class: "code" }, JSON.stringify(input, null, 2));
  return h(
    "dl",
    { class: "tool-input" },
    ...Object.entries(input).flatMap(([key, value]) => [h("dt", {}, key), h("dd", {}, h("pre", { class: "code" }, typeof value === "string" ? value : JSON.stringify(value, null, 2)))]),
  );
}

function firstLine(text: string): string {
  const line = text.trim().split("\n", 1)[0] ?? "";
  return line.length > 160 ? `${line.slice(0, 159)}…` : line;
}

function stripAnsi(text: string): string {
  return text.replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, "");
}
