/** The look of the CLI: which statuses are final, colours, and how durations, costs, ages and diffs are written. */

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
  if (diff.files === 0) return "no changes";
  return `${diff.files} file${diff.files === 1 ? "" : "s"} +${diff.additions} -${diff.deletions}`;
}

/** Cuts `text` to `width` characters, marking the cut with an ellipsis. */
export function cut(text, width) {
  const chars = [...String(text)];
  return chars.length <= width ? chars.join("") : `${chars.slice(0, Math.max(0, width - 1)).join("")}…`;
}

/** The first line of a text, for one-line views. */
export const firstLine = (text) => String(text).split("\n", 1)[0];
