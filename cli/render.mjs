/** How tasks and events look in a terminal: colours, durations, costs, and one renderer per event type. */

export const TERMINAL = new Set(["succeeded", "failed", "cancelled", "timed_out"]);

const STYLES = { bold: [1, 22], dim: [2, 22], red: [31, 39], green: [32, 39], yellow: [33, 39], blue: [34, 39], magenta: [35, 39], cyan: [36, 39] };

/** Whether to colour a stream: a terminal, and NO_COLOR (https://no-color.org) unset or empty. */
export function wantsColor(stream, env = process.env) {
  return Boolean(stream.isTTY) && !env.NO_COLOR;
}

/**
 * ANSI styling functions that do nothing when `enabled` is false.
 * @returns {Record<keyof typeof STYLES, (text: unknown) => string>}
 */
export function palette(enabled) {
  return Object.fromEntries(
    Object.entries(STYLES).map(([name, [open, close]]) => [name, enabled ? (text) => `\x1b[${open}m${text}\x1b[${close}m` : (text) => String(text)]),
  );
}

/** The colour that says how a status went. */
export function statusColor(c, status) {
  if (status === "succeeded") return c.green;
  if (status === "failed") return c.red;
  if (status === "cancelled" || status === "timed_out") return c.yellow;
  if (status === "running") return c.cyan;
  return c.dim;
}

export function formatCost(usd) {
  if (!usd) return "$0";
  return usd < 1 ? `$${usd.toFixed(4)}` : `$${usd.toFixed(2)}`;
}

export function formatDuration(ms) {
  if (ms === null || ms === undefined) return "-";
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

export function formatAge(ts, now = Date.now()) {
  const s = Math.max(0, Math.round((now - ts) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export function formatDiff(diff) {
  if (!diff) return "no diff";
  return `${diff.files} file${diff.files === 1 ? "" : "s"} +${diff.additions} -${diff.deletions}`;
}

/** Cuts `text` to `width` characters, marking the cut with an ellipsis. */
export function cut(text, width) {
  const chars = [...String(text)];
  return chars.length <= width ? chars.join("") : `${chars.slice(0, Math.max(0, width - 1)).join("")}…`;
}

const firstLine = (text) => String(text).split("\n", 1)[0];

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
  return (event) => {
    const judging = event.type.startsWith("judge.");
    const prefix = judging ? `${c.magenta("[judge]")} ` : multiRun && event.run !== null ? `${c[RUN_COLORS[event.run % RUN_COLORS.length]](`[${event.run}]`)} ` : "";
    const room = Math.max(20, width - [...prefix.replace(/\x1b\[\d+m/g, "")].length);
    const lines = linesOf(event, c, room);
    return lines.map((line) => `${prefix}${line}`);
  };
}

function linesOf(event, c, width) {
  const d = event.data ?? {};
  const kind = event.type.replace(/^judge\.(?=text|tool_call|tool_result|init|retry|result|system|other)/, "agent.");
  const failure = (label) => c.red(`${label}${d.error ? `: ${d.error.message ?? d.error} (${d.error.code ?? "error"})` : ""}`);
  switch (kind) {
    case "task.status":
      if (TERMINAL.has(d.status)) return [d.error ? failure(`task ${d.status}`) : statusColor(c, d.status)(c.bold(`task ${d.status}`))];
      return [c.bold(`task ${d.status}${d.runs > 1 ? ` (${d.runs} runs)` : ""}`)];
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
    case "agent.init":
      return [c.dim(`· claude code${d.model ? ` · ${d.model}` : ""}${d.sessionId ? ` · session ${d.sessionId}` : ""}`)];
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
      return [];
    case "log":
      return String(d.text ?? "").trimEnd().split("\n").map((line) => (d.stream === "stderr" ? c.yellow(line) : c.dim(line)));
    case "judge.queued":
      return [c.dim(`· judge queued for runs ${(d.candidates ?? []).join(", ")}`)];
    case "judge.status":
      if (d.status === "running") return [c.dim("· judge reviewing the diffs")];
      if (d.status === "succeeded") return [c.green(`judge picked run ${d.winner}${d.ranking?.length ? ` (ranking ${d.ranking.join(" > ")})` : ""}`), ...(d.reasons ? String(d.reasons).trimEnd().split("\n").map((l) => c.dim(l)) : [])];
      return [failure(`judge ${d.status}`)];
    case "task.winner":
      return [c.green(`winner: run ${d.run}${d.by ? ` (picked by ${d.by})` : ""}`)];
    case "sandbox.destroyed":
      return [c.dim("· sandbox destroyed")];
    case "sandbox.destroy_failed":
      return [c.red(`could not destroy sandbox ${d.sandbox}: ${d.message}`)];
    case "claim.lost":
      return [c.yellow(`lost the claim on ${d.key}`)];
    case "index.error":
      return [c.red(`index error: ${d.message}`)];
    default:
      if (d.error) return [failure(event.type)];
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

/** The last line of a followed task: how it ended, what it cost, and what to do next. */
export function summaryLine(task, c) {
  const took = task.startedAt && task.endedAt ? ` in ${formatDuration(task.endedAt - task.startedAt)}` : "";
  const mark = task.status === "succeeded" ? "✓" : "✗";
  const diffs = task.runs.filter((run) => run.diff).map((run) => (task.runs.length > 1 ? `run ${run.index}: ${formatDiff(run.diff)}` : formatDiff(run.diff)));
  const parts = [`${mark} ${task.status}${took}`, formatCost(task.costUsd), ...diffs];
  if (task.winner) parts.push(`winner run ${task.winner.run}`);
  let line = statusColor(c, task.status)(c.bold(parts.join(" · ")));
  if (task.error) line += c.red(`: ${task.error.message} (${task.error.code})`);
  if (task.runs.some((run) => run.diff)) line += c.dim(`\n  sortie diff ${task.id}${task.runs.length > 1 && !task.winner ? " --run N" : ""} | git apply`);
  return line;
}

/** The live status line: the task's status, each running run's phase, and the elapsed time. */
export function statusText(task, now = Date.now()) {
  const since = task.startedAt ?? task.createdAt;
  const elapsed = since ? formatDuration(Math.max(0, now - since)) : "";
  const runs = task.runs.length > 1
    ? task.runs.map((run) => `${run.index}:${run.phase ?? run.status}`).join(" ")
    : task.runs[0]?.phase ?? "";
  const queued = task.runs.find((run) => run.status === "queued" && run.queuePosition);
  return [task.status, runs, queued && task.runs.length === 1 ? `queue position ${queued.queuePosition}` : "", elapsed].filter(Boolean).join(" · ");
}

/** `sortie show`: the task, then one block per run, then the judge and the winner. */
export function taskDetails(task, c) {
  const out = [];
  out.push(`${c.bold(task.id)}  ${statusColor(c, task.status)(task.status)}  ${task.repo}${task.branch ? `@${task.branch}` : ""}  ${formatCost(task.costUsd)}`);
  const took = task.startedAt ? formatDuration((task.endedAt ?? Date.now()) - task.startedAt) : "not started";
  out.push(c.dim(`created ${formatAge(task.createdAt)} ago · ${task.endedAt ? "took" : "running for"} ${took}${task.model ? ` · model ${task.model}` : ""} · ${task.source} by ${task.createdBy}`));
  out.push(...String(task.prompt).trimEnd().split("\n").slice(0, 6).map((line) => `  ${c.dim("│")} ${line}`));
  if (task.error) out.push(c.red(`error: ${task.error.message} (${task.error.code})`));
  for (const run of task.runs) {
    const fields = [
      statusColor(c, run.status)(run.status + (run.phase ? ` (${run.phase})` : "")),
      formatCost(run.costUsd),
      formatDuration(run.durationMs),
      run.numTurns !== null && run.numTurns !== undefined ? `${run.numTurns} turns` : null,
      run.inputTokens || run.outputTokens ? `${run.inputTokens ?? 0} in / ${run.outputTokens ?? 0} out tokens` : null,
      formatDiff(run.diff),
      run.model ? `model ${run.model}` : null,
      run.queuePosition ? `queue position ${run.queuePosition}` : null,
    ].filter(Boolean);
    const crown = task.winner?.run === run.index ? c.green(" ★ winner") : "";
    out.push(`${c.bold(`run ${run.index}`)}  ${fields.join(" · ")}${crown}`);
    out.push(c.dim(`  branch ${run.branch}${run.baseCommit ? ` from ${run.baseCommit.slice(0, 12)}` : ""}`));
    if (run.error) out.push(c.red(`  error: ${run.error.message} (${run.error.code})`));
    for (const attempt of run.attempts ?? []) out.push(c.yellow(`  retried after: ${attempt.message} (${attempt.code})`));
  }
  if (task.judge) {
    const j = task.judge;
    const verdict = j.winner !== null ? `picked run ${j.winner}${j.ranking.length ? `, ranking ${j.ranking.join(" > ")}` : ""}` : "";
    out.push(`${c.bold("judge")}  ${statusColor(c, j.status)(j.status)}${verdict ? ` · ${verdict}` : ""} · ${formatCost(j.costUsd)}`);
    if (j.reasons) out.push(...String(j.reasons).trimEnd().split("\n").map((line) => c.dim(`  ${line}`)));
    if (j.error) out.push(c.red(`  error: ${j.error.message} (${j.error.code})`));
  }
  if (task.winner) out.push(`${c.bold("winner")}  run ${task.winner.run} (picked by ${task.winner.by})`);
  return out.join("\n");
}

/** `sortie ls`: aligned columns, the prompt cut to what is left of the terminal's width. */
export function taskTable(tasks, c, width, now = Date.now()) {
  const header = ["ID", "STATUS", "REPO", "RUNS", "COST", "AGE", "PROMPT"];
  const rows = tasks.map((t) => [t.id, t.status, t.repo, String(t.runs), formatCost(t.costUsd), formatAge(t.createdAt, now), firstLine(t.prompt)]);
  const widths = header.slice(0, -1).map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const used = widths.reduce((sum, w) => sum + w + 2, 0);
  const promptWidth = Math.max(10, width - used);
  const line = (cells, styleStatus) =>
    cells
      .map((cell, i) => {
        if (i === cells.length - 1) return cut(cell, promptWidth);
        const padded = cell.padEnd(widths[i]);
        return i === 1 && styleStatus ? statusColor(c, cell)(padded) : padded;
      })
      .join("  ");
  return [c.bold(line(header, false)), ...rows.map((row) => line(row, true))].join("\n");
}
