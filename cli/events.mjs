/** One renderer per event type: what `sortie logs` and `--follow` print for each event. */
import { agentOutputOf } from "../src/events.ts";
import { cut, firstLine, formatCost, formatDiff, formatDuration, statusColor, TERMINAL } from "./style.mjs";

/** How many lines of a tool's output to show; the rest is counted, not printed. */
const TOOL_RESULT_LINES = 4;
const RUN_COLORS = ["cyan", "magenta", "blue", "yellow", "green"];

/**
 * Turns events into printable lines. Runs are prefixed `[n]` when the task
 * has several, the judge's turns `[judge]`; event types without a renderer
 * are shown dimmed as their type and data, so nothing new goes unseen.
 * @param {{ c: ReturnType<typeof palette>, multiRun: boolean, width: number }} options
 * @returns {(event: { seq: number, run: number | null, type: string, data: Record<string, any> }) => string[]}
 */
export function eventRenderer({ c, multiRun, width }) {
  // Each run's working directory, from its agent.init, so paths print relative to the repo.
  const cwds = new Map();
  return (event) => {
    if (event.type.endsWith(".init") && typeof event.data?.cwd === "string") cwds.set(event.type + event.run, event.data.cwd);
    const cwd = cwds.get(event.type.replace(/\.[a-z_]+$/, ".init") + event.run);
    if (cwd && /\.tool_(call|result)$/.test(event.type)) event = { ...event, data: relativeTo(cwd, event.data) };
    const lane = agentOutputOf(event.type)?.lane;
    const judging = lane === "judge" || event.type.startsWith("judge.");
    const reviewing = lane === "review" || event.type.startsWith("review.");
    const prefix = judging ? `${c.magenta("[judge]")} ` : reviewing ? `${c.magenta(`[review${event.run !== null && multiRun ? ` ${event.run}` : ""}]`)} ` : multiRun && event.run !== null ? `${c[RUN_COLORS[event.run % RUN_COLORS.length]](`[${event.run}]`)} ` : "";
    const room = Math.max(20, width - [...prefix.replace(/\x1b\[\d+m/g, "")].length);
    const lines = linesOf(event, c, room);
    return lines.map((line) => `${prefix}${line}`);
  };
}

function relativeTo(cwd, data) {
  const strip = (text) => (typeof text === "string" ? text.split(`${cwd}/`).join("").split(cwd).join(".") : text);
  return { ...data, summary: strip(data.summary), text: strip(data.text) };
}

function linesOf(event, c, width) {
  const d = event.data ?? {};
  // The judge's and a reviewer's agent output draws like a run's (src/events.ts says which events those are).
  const output = agentOutputOf(event.type);
  const kind = output ? `agent.${output.kind}` : event.type;
  const failure = (label) => c.red(`${label}${d.error ? `: ${d.error.message ?? d.error} (${d.error.code ?? "error"})` : ""}`);
  switch (kind) {
    case "task.status":
      if (TERMINAL.has(d.status)) return [d.error ? failure(`task ${d.status}`) : statusColor(c, d.status)(c.bold(`task ${d.status}`))];
      return [c.bold(`task ${d.status}${d.runs > 1 ? ` (${d.runs} runs)` : ""}${d.reason ? ` (${d.reason})` : ""}`)];
    case "run.status":
      if (d.phase) return [c.dim(`· ${d.phase}`)];
      if (TERMINAL.has(d.status)) return [d.error ? failure(`run ${d.status}`) : statusColor(c, d.status)(`run ${d.status}`)];
      return [c.dim(`· ${d.status}`)];
    case "run.queued":
      return [c.dim(`· waiting for a sandbox${d.position ? ` (position ${d.position})` : ""}`)];
    case "run.cloned":
      return [c.dim(`· cloned at ${String(d.commit ?? "").slice(0, 12)}`)];
    case "run.retry":
      return [c.yellow(`sandbox trouble (${d.error?.message ?? d.error?.code ?? "unknown"}); retry ${d.attempt}/${d.of} in ${formatDuration(d.delayMs)}`)];
    case "run.reattach":
      return [c.dim("· re-attached to the running agent")];
    case "run.watchdog":
      return [c.yellow(`watchdog: the sandbox did not answer (strike ${d.strikes})`)];
    case "run.diff":
      return [`diff: ${formatDiff(d)}`];
    case "run.message":
      return [c.cyan(`» ${d.by ?? "someone"}${d.delivery === "after_turn" ? " (after this turn)" : ""}: ${firstLine(d.text ?? "")}`), ...String(d.text ?? "").trimEnd().split("\n").slice(1).map((line) => c.cyan(`  ${line}`))];
    case "run.message_delivered":
      return [c.dim("· follow-up message delivered")];
    case "run.workspace_kept":
      return [c.dim(`· workspace kept for follow-ups until ${new Date(d.until).toLocaleTimeString()}`)];
    case "agent.init":
      return [c.dim(`· ${d.agent ?? "claude code"}${d.model ? ` · ${d.model}` : ""}${d.sessionId ? ` · session ${d.sessionId}` : ""}`)];
    case "agent.text":
      return String(d.text ?? "").trimEnd().split("\n");
    case "agent.tool_call":
    {
      const name = String(d.name ?? "tool");
      return [`${c.bold(`▸ ${name}`)} ${cut(firstLine(d.summary ?? ""), width - name.length - 3)}`];
    }
    case "agent.tool_result":
      return toolResult(d, c, width);
    case "agent.retry":
      return [c.yellow(`model API retry ${d.attempt ?? "?"}/${d.maxRetries ?? "?"} in ${formatDuration(d.delayMs)}${d.error ? `: ${d.error}` : ""}`)];
    case "agent.result":
      if (d.isError) return [c.red(`✗ agent stopped: ${d.subtype}${d.text ? `: ${firstLine(d.text)}` : ""}`)];
      return [c.green(`✓ agent done: ${d.numTurns ?? "?"} turns · ${formatCost(d.costUsd)} · ${formatDuration(d.durationMs)}`)];
    case "agent.system":
    case "agent.other":
    case "agent.usage":
      return [];
    case "log":
      return String(d.text ?? "").trimEnd().split("\n").map((line) => (d.stream === "stderr" ? c.yellow(line) : c.dim(line)));
    case "judge.queued":
      return [c.dim(`· queued for runs ${(d.candidates ?? []).join(", ")}`)];
    case "judge.status":
      if (d.status === "running") return [c.dim("· reviewing the diffs")];
      if (d.status === "succeeded") return [c.green(`picked run ${d.winner}${d.ranking?.length ? ` (ranking ${d.ranking.join(" > ")})` : ""}`), ...(d.reasons ? String(d.reasons).trimEnd().split("\n").map((l) => c.dim(l)) : [])];
      return [failure(`judge ${d.status}`)];
    case "task.winner":
      return [c.green(`winner: run ${d.run}${d.by ? ` (picked by ${d.by})` : ""}`)];
    case "review.status":
      return d.status === "running" ? [c.dim(`· reviewing with ${d.reviewer?.agent ?? "?"}, at most ${d.rounds ?? "?"} rounds`)] : [c.yellow(`review ${String(d.status).replace("_", " ")}${d.reason ? `: ${d.reason}` : ""}`)];
    case "review.round": {
      const head = `round ${d.round}: ${d.verdict ?? "no verdict"}${d.status && d.status !== "running" ? ` · review ${String(d.status).replace("_", " ")}` : ""}`;
      const findings = (d.findings ?? []).map((f) => c.dim(`  ${f.path}${f.line ? `:${f.line}` : ""}${f.severity ? ` [${f.severity}]` : ""} ${f.body}`));
      return [d.verdict === "approve" ? c.green(head) : d.error ? failure(head) : c.yellow(head), ...findings];
    }
    case "review.feedback":
      return [c.dim(`· ${d.findings} finding${d.findings === 1 ? "" : "s"} handed to the coder`)];
    case "sandbox.destroyed":
      return [c.dim("· sandbox destroyed")];
    case "sandbox.destroy_failed":
      return [c.red(`could not destroy sandbox ${d.sandbox}: ${d.message}`)];
    case "claim.lost":
      return [c.yellow(`lost the claim on ${d.key}`)];
    case "publish.status":
      if (d.status === "queued") return [c.dim(`· publishing ${d.output === "branch" ? "the branch" : d.output === "draft-pr" ? "a draft pull request" : "a pull request"}${d.branch ? ` from ${d.branch}` : ""}`)];
      if (d.status === "running") return [];
      if (d.status === "succeeded") return [c.green(`published: ${d.pullRequest?.url ?? `branch at ${String(d.commit ?? "").slice(0, 12)}`}`)];
      return [failure(`publishing ${d.status}`)];
    case "publish.skipped":
      return [c.yellow(`not published: ${d.message} (${d.code})`)];
    case "notify.sent":
      return [c.dim(`· notified (${d.status})`)];
    case "notify.failed":
      return [c.red(`notification failed: ${d.message ?? `HTTP ${d.status}`}`)];
    case "index.error":
    case "audit.error":
      return [c.red(`${event.type}: ${d.message}`)];
    default:
      if (d.error) return [failure(event.type)];
      if (event.type.startsWith("publish.")) return [c.dim(`· ${event.type.slice("publish.".length).replace(/_/g, " ")}${typeof d.url === "string" ? ` ${d.url}` : ""}`)];
      if (typeof d.text === "string") return [`${c.dim(`${event.type}:`)} ${d.text.trimEnd()}`];
      return [c.dim(cut(`${event.type} ${JSON.stringify(d)}`, width))];
  }
}

function toolResult(d, c, width) {
  const style = d.isError ? c.red : c.dim;
  const all = String(d.text ?? "").trimEnd().split("\n");
  if (all.length === 1 && all[0] === "") return [style("  (no output)")];
  const shown = all.slice(0, TOOL_RESULT_LINES).map((line) => style(`  ${cut(line, width - 2)}`));
  if (all.length > TOOL_RESULT_LINES) shown.push(style(`  … ${all.length - TOOL_RESULT_LINES} more line${all.length - TOOL_RESULT_LINES === 1 ? "" : "s"}`));
  return shown;
}
