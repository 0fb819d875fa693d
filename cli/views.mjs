/** Whole-task views: `sortie show`, the `sortie ls` table, the live status line and the summary after following. */
import { cut, firstLine, formatAge, formatCost, formatDiff, formatDuration, statusColor, TERMINAL } from "./style.mjs";

/** Whether a task did what was asked: it succeeded, and the branch or pull request it asked for (if any) was made. */
export const taskSucceeded = (task) => task.status === "succeeded" && (!task.publication || task.publication.status === "succeeded");

/** The last line of a followed task: how it ended, what it cost, and what to do next. */
export function summaryLine(task, c) {
  const took = task.startedAt && task.endedAt ? ` in ${formatDuration(task.endedAt - task.startedAt)}` : "";
  const mark = taskSucceeded(task) ? "✓" : "✗";
  const diffs = task.runs.filter((run) => run.diff).map((run) => (task.runs.length > 1 ? `run ${run.index}: ${formatDiff(run.diff)}` : formatDiff(run.diff)));
  const parts = [`${mark} ${task.status}${took}`, formatCost(task.costUsd), ...diffs];
  if (task.winner) parts.push(`winner run ${task.winner.run}`);
  const published = publicationText(task.publication);
  if (published) parts.push(published);
  let line = statusColor(c, task.status)(c.bold(parts.join(" · ")));
  if (task.error) line += c.red(`: ${task.error.message} (${task.error.code})`);
  if (task.runs.some((run) => run.diff?.files)) line += c.dim(`\n  sortie diff ${task.id}${task.runs.length > 1 && !task.winner ? " --run N" : ""} | git apply`);
  return line;
}

/** Where the change went: the pull request, the pushed branch, or why not. */
function publicationText(publication) {
  if (!publication) return "";
  if (publication.status === "succeeded") return publication.pullRequest ? `pull request ${publication.pullRequest.url}` : `pushed ${publication.branch}`;
  if (TERMINAL.has(publication.status)) return `publishing ${publication.status}${publication.error ? `: ${publication.error.message}` : ""}`;
  return `publishing (${publication.status})`;
}

/** The live status line: the task's status, each running run's phase, and the elapsed time. */
export function statusText(task, now = Date.now()) {
  const since = task.startedAt ?? task.createdAt;
  // Whole seconds: the line is redrawn four times a second, and milliseconds would flicker.
  const seconds = since ? Math.max(0, Math.floor((now - since) / 1000)) : null;
  const elapsed = seconds === null ? "" : seconds < 60 ? `${seconds}s` : formatDuration(seconds * 1000);
  const runs = task.runs.length > 1
    ? task.runs.map((run) => `${run.index}:${run.phase ?? run.status}`).join(" ")
    : task.runs[0]?.phase ?? "";
  const queued = task.runs.find((run) => run.status === "queued" && run.queuePosition);
  const publishing = task.publication && !TERMINAL.has(task.publication.status) ? publicationText(task.publication) : "";
  return [task.status, runs, queued && task.runs.length === 1 ? `queue position ${queued.queuePosition}` : "", publishing, elapsed].filter(Boolean).join(" · ");
}

/** `sortie show`: the task, then one block per run, then the judge and the winner. */
export function taskDetails(task, c) {
  const out = [];
  out.push(`${c.bold(task.id)}  ${statusColor(c, task.status)(task.status)}  ${task.repo}${task.branch ? `@${task.branch}` : ""}  ${formatCost(task.costUsd)}`);
  const took = task.startedAt ? formatDuration((task.endedAt ?? Date.now()) - task.startedAt) : "not started";
  out.push(c.dim(`created ${formatAge(task.createdAt)} ago · ${task.endedAt ? "took" : "running for"} ${took}${task.model ? ` · model ${task.model}` : ""} · ${task.source} by ${task.createdBy}`));
  out.push(...String(task.prompt).trimEnd().split("\n").slice(0, 6).map((line) => `  ${c.dim("│")} ${line}`));
  if (task.isolation) out.push(c.dim(`isolation ${task.isolation.level}: ${task.isolation.reason}${task.isolation.inferred ? " (inferred)" : ""}`));
  if (task.error) out.push(c.red(`error: ${task.error.message} (${task.error.code})`));
  for (const run of task.runs) {
    const fields = [
      statusColor(c, run.status)(run.status + (run.phase ? ` (${run.phase})` : "")),
      formatCost(run.costUsd),
      formatDuration(run.durationMs),
      run.numTurns !== null && run.numTurns !== undefined ? `${run.numTurns} turns` : null,
      run.inputTokens || run.outputTokens ? `${run.inputTokens ?? 0} in / ${run.outputTokens ?? 0} out tokens` : null,
      formatDiff(run.diff),
      run.agent && run.agent !== "claude-code" ? run.agent : null,
      run.isolation && run.isolation !== "sandbox" ? `isolation ${run.isolation}` : null,
      run.review ? `review ${run.review.status.replace("_", " ")} (${run.review.rounds.length} round${run.review.rounds.length === 1 ? "" : "s"})` : null,
      run.model ? `model ${run.model}` : null,
      run.queuePosition ? `queue position ${run.queuePosition}` : null,
      run.pendingMessages ? `${run.pendingMessages} message${run.pendingMessages === 1 ? "" : "s"} waiting` : null,
      run.workspaceUntil && run.workspaceUntil > Date.now() ? `workspace kept until ${new Date(run.workspaceUntil).toLocaleTimeString()}` : null,
      run.preview ? `preview ${run.preview.status}${run.preview.status === "ready" ? ` ${run.preview.url}` : ""}${run.preview.error ? `: ${run.preview.error.code}` : ""}` : null,
      run.memory?.length ? `given ${run.memory.length} memory ${run.memory.length === 1 ? "entry" : "entries"}` : null,
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
  if (task.learnings?.proposed || task.learnings?.seen) {
    out.push(`${c.bold("learnings")}  ${task.learnings.proposed} new, ${task.learnings.seen} already known · sortie memory ${task.repo}`);
  }
  if (task.publication) {
    const p = task.publication;
    const where = p.status === "succeeded" ? ` · ${publicationText(p)}` : "";
    out.push(`${c.bold("publication")}  ${statusColor(c, p.status)(p.status)} · ${p.output} of run ${p.run}${where}`);
    if (p.error) out.push(c.red(`  error: ${p.error.message} (${p.error.code})`));
  }
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
