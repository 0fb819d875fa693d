/**
 * A task as a Slack message: a pure Block Kit renderer (`taskBlocks`) and the
 * one function that puts it in a channel and keeps it current (`postOrUpdate`).
 * The task agent calls `postOrUpdate` on status changes; it never builds blocks.
 */
import { z } from "zod";
import { SortieError, messageOf } from "../errors.ts";
import { isTerminal, type RunView, type TaskState, type TaskStatus } from "../schema.ts";
import { deploymentRedactor } from "../redact.ts";

/** Button action ids, matched by `POST /slack/interactions`. */
export const SLACK_ACTIONS = { cancel: "sortie_cancel", winner: "sortie_winner", openPr: "sortie_open_pr", approvePlan: "sortie_plan_approve" } as const;

const DEFAULT_API_URL = "https://slack.com/api";
const PROMPT_CHARS = 300;
const DETAIL_CHARS = 300;

type Text = { type: "mrkdwn" | "plain_text"; text: string };
export type SlackButton = {
  type: "button";
  text: { type: "plain_text"; text: string };
  action_id: string;
  value: string;
  style?: "primary" | "danger";
  confirm?: { title: Text; text: Text; confirm: Text; deny: Text };
};
export type SlackBlock =
  | { type: "section"; text: Text; accessory?: SlackButton }
  | { type: "context"; elements: Text[] }
  | { type: "actions"; elements: SlackButton[] }
  | { type: "divider" };

/** A message as Slack's APIs take it: `text` is the notification and screen-reader fallback. */
export interface SlackMessage {
  text: string;
  blocks: SlackBlock[];
}

/** Where a task's message lives: a channel and, once posted with the bot token, its `ts`; or a slash command's `response_url`. */
export const SlackTarget = z.object({
  channel: z.string().min(1),
  ts: z.string().optional(),
  responseUrl: z.url({ protocol: /^https?$/ }).optional(),
});
export type SlackTarget = z.infer<typeof SlackTarget>;

export interface TaskLinks {
  /** The live viewer of this task. */
  viewer: string;
  /** The viewer's page of the task's repository memory, where its runs' proposals are reviewed. */
  memory?: string;
}

/** The links a task's message carries, from the Worker's public origin. */
export function taskLinks(origin: string, taskId: string, repo?: string): TaskLinks {
  return { viewer: `${origin}/tasks/${taskId}`, ...(repo ? { memory: `${origin}/repos/${repo}/memory` } : {}) };
}

const STATUS_EMOJI: Record<TaskStatus, string> = {
  queued: ":hourglass_flowing_sand:",
  running: ":arrows_counterclockwise:",
  succeeded: ":white_check_mark:",
  failed: ":x:",
  cancelled: ":no_entry_sign:",
  timed_out: ":alarm_clock:",
};

/**
 * Renders a task: status, repository, prompt, each run (status or phase, diff
 * stats, cost, duration), the judge's verdict and the winner, a link to the
 * live viewer, and the buttons that act on it.
 *
 * @example await postOrUpdate(env, target, task, taskLinks(origin, task.id))
 */
export function taskBlocks(task: TaskState, links: TaskLinks): SlackBlock[] {
  const where = task.branch ? `${task.repo}@${task.branch}` : task.repo;
  const blocks: SlackBlock[] = [
    { type: "section", text: mrkdwn(`${STATUS_EMOJI[task.status]} *${label(task.status)}* · \`${escapeMrkdwn(where)}\` · task \`${task.id}\``) },
    { type: "section", text: mrkdwn(quote(cut(task.prompt, PROMPT_CHARS))) },
  ];
  if (task.error && task.status !== "succeeded") blocks.push({ type: "context", elements: [mrkdwn(`:warning: ${escapeMrkdwn(cut(task.error.message, DETAIL_CHARS))}`)] });
  blocks.push({ type: "divider" });

  const choosing = task.runs.length > 1;
  for (const run of task.runs) {
    const block: SlackBlock = { type: "section", text: mrkdwn(runLine(run, task.winner?.run === run.index)) };
    // One button per section: Slack wants action ids unique within a block.
    if (choosing && run.status === "succeeded" && run.diff) {
      block.accessory = button(`Pick run ${run.index}`, SLACK_ACTIONS.winner, `${task.id}:${run.index}`);
    }
    blocks.push(block);
  }

  const verdict = judgeLine(task);
  if (verdict) blocks.push({ type: "context", elements: [mrkdwn(verdict)] });
  if (task.winner) blocks.push({ type: "context", elements: [mrkdwn(`:trophy: Winner: run ${task.winner.run}, picked by ${escapeMrkdwn(task.winner.by)}`)] });

  const proposed = task.learnings?.proposed ?? 0;
  if (isTerminal(task.status) && proposed > 0) {
    const count = `${proposed} new ${proposed === 1 ? "learning" : "learnings"} proposed`;
    blocks.push({ type: "context", elements: [mrkdwn(`:brain: ${links.memory ? `<${escapeUrl(links.memory)}|${count}>` : count} for \`${escapeMrkdwn(task.repo)}\`'s memory`)] });
  }

  const totals = [`<${escapeUrl(links.viewer)}|Open the live viewer>`, `cost ${dollars(task.costUsd)}`, `by ${escapeMrkdwn(task.createdBy)}`];
  blocks.push({ type: "context", elements: [mrkdwn(totals.join(" · "))] });

  const buttons: SlackButton[] = [];
  if (!isTerminal(task.status)) {
    buttons.push({
      ...button("Cancel", SLACK_ACTIONS.cancel, task.id, "danger"),
      confirm: { title: plain("Cancel this task?"), text: plain("Every run stops and its sandbox is destroyed."), confirm: plain("Cancel it"), deny: plain("Keep running") },
    });
  }
  if (task.runs.some((run) => run.status === "succeeded" && run.diff && run.diff.files > 0)) {
    buttons.push(button("Open PR", SLACK_ACTIONS.openPr, task.id));
  }
  if (buttons.length > 0) blocks.push({ type: "actions", elements: buttons });
  return blocks;
}

/** The one-line fallback of a task's message (notifications, screen readers). */
export function taskText(task: TaskState): string {
  return `Sortie task ${task.id} ${label(task.status).toLowerCase()}: ${task.repo}: ${cut(task.prompt, 100)}`;
}

/**
 * Posts the task's message to `target`, or updates it if it was posted before,
 * and returns the target to use next time (with the `ts` Slack assigned).
 * With `SLACK_BOT_TOKEN` it uses `chat.postMessage`, then `chat.update`; without
 * it, the slash command's `response_url` (`replace_original`), which Slack
 * honours up to five times within 30 minutes of the command.
 *
 * @example target = await postOrUpdate(env, target, task, taskLinks(origin, task.id))
 */
export async function postOrUpdate(env: Cloudflare.Env, target: SlackTarget, task: TaskState, links: TaskLinks): Promise<SlackTarget> {
  return postOrUpdateMessage(env, target, { text: taskText(task), blocks: taskBlocks(task, links) });
}

/** Posts `message` to the target, or updates it where it was posted before; returns where it is now. */
export async function postOrUpdateMessage(env: Cloudflare.Env, target: SlackTarget, message: SlackMessage): Promise<SlackTarget> {
  const token = env.SLACK_BOT_TOKEN;
  if (token) {
    if (target.ts) {
      await callSlackApi(env, "chat.update", { channel: target.channel, ts: target.ts, ...message });
      return target;
    }
    const posted = await callSlackApi(env, "chat.postMessage", { channel: target.channel, ...message });
    // Slack answers with the channel it really posted in (a user id becomes a DM channel).
    if (!posted.ts) throw new SortieError("slack_api_error", "chat.postMessage answered without the message's ts", 502);
    return { ...target, channel: posted.channel ?? target.channel, ts: posted.ts };
  }
  if (target.responseUrl) {
    await respondToSlack(env, target.responseUrl, { ...message, response_type: "in_channel", replace_original: true });
    return target;
  }
  throw new SortieError("slack_not_configured", "SLACK_BOT_TOKEN is not set and the target has no response_url, so the task's message cannot be posted", 503);
}

/** A reply through an interaction's or a command's `response_url` (no token needed). */
export async function respondToSlack(
  env: Cloudflare.Env,
  responseUrl: string,
  message: Partial<SlackMessage> & { text: string; response_type?: "ephemeral" | "in_channel"; replace_original?: boolean },
): Promise<void> {
  const body = JSON.stringify(deploymentRedactor(env)(message));
  const response = await fetch(responseUrl, { method: "POST", headers: { "content-type": "application/json; charset=utf-8" }, body });
  if (!response.ok) {
    throw new SortieError("slack_response_failed", `Slack refused the response_url post: ${response.status} ${cut(await response.text(), 200)}`, 502);
  }
}

/** The part of a Web API answer Sortie reads (`chat.postMessage` adds `channel` and `ts`). */
const SlackApiResult = z.object({ ok: z.boolean(), error: z.string().optional(), channel: z.string().optional(), ts: z.string().optional() });
type SlackApiResult = z.infer<typeof SlackApiResult>;

/** Calls a Slack Web API method with the bot token; Slack's `ok: false` becomes an error naming its code. */
async function callSlackApi(env: Cloudflare.Env, method: string, body: Record<string, unknown>): Promise<SlackApiResult> {
  const base = (env.SLACK_API_URL || DEFAULT_API_URL).replace(/\/+$/, "");
  let response: Response;
  try {
    response = await fetch(`${base}/${method}`, {
      method: "POST",
      headers: { authorization: `Bearer ${env.SLACK_BOT_TOKEN}`, "content-type": "application/json; charset=utf-8" },
      body: JSON.stringify(deploymentRedactor(env)(body)),
    });
  } catch (error) {
    throw new SortieError("slack_api_error", `${method} could not reach Slack: ${messageOf(error)}`, 502, { cause: error });
  }
  if (response.status === 429) {
    throw new SortieError("slack_rate_limited", `${method} was rate limited; Slack asks to retry after ${response.headers.get("retry-after") ?? "?"} s`, 502);
  }
  const result = SlackApiResult.safeParse(await response.json().catch(() => null));
  if (!response.ok || !result.success || !result.data.ok) {
    const reason = result.success ? (result.data.error ?? "no reason given") : `HTTP ${response.status}, not a Web API answer`;
    throw new SortieError("slack_api_error", `${method} failed: ${reason}`, 502);
  }
  return result.data;
}

function runLine(run: RunView, winner: boolean): string {
  const state =
    run.status === "running" && run.phase ? `running (${run.phase})`
    : run.status === "queued" && run.queuePosition ? `queued (#${run.queuePosition} in line)`
    : run.status.replace("_", " ");
  const parts = [`${winner ? ":trophy:" : STATUS_EMOJI[run.status]} *Run ${run.index}*${run.model ? ` \`${escapeMrkdwn(run.model)}\`` : ""}: ${state}`];
  if (run.diff) parts.push(`${run.diff.files} ${run.diff.files === 1 ? "file" : "files"} +${run.diff.additions} −${run.diff.deletions}`);
  if (run.costUsd > 0) parts.push(dollars(run.costUsd));
  if (run.durationMs !== null) parts.push(duration(run.durationMs));
  if (run.review) parts.push(`review ${run.review.status.replace("_", " ")} (${run.review.rounds.length} ${run.review.rounds.length === 1 ? "round" : "rounds"})`);
  let line = parts.join(" · ");
  if (run.error) line += `\n_${escapeMrkdwn(cut(run.error.message, DETAIL_CHARS))}_`;
  return line;
}

function judgeLine(task: TaskState): string | null {
  const judge = task.judge;
  if (!judge) return null;
  if (judge.status === "succeeded" && judge.winner !== null) {
    return `:scales: The judge picked run ${judge.winner} (ranking ${judge.ranking.join(" › ")}): ${escapeMrkdwn(cut(judge.reasons, DETAIL_CHARS))}`;
  }
  if (judge.error) return `:scales: The judge ${judge.status.replace("_", " ")}: ${escapeMrkdwn(cut(judge.error.message, DETAIL_CHARS))}`;
  return `:scales: The judge is ${judge.status.replace("_", " ")}`;
}

function label(status: TaskStatus): string {
  const text = status.replace("_", " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export function button(text: string, actionId: string, value: string, style?: "primary" | "danger"): SlackButton {
  return { type: "button", text: plain(text), action_id: actionId, value, ...(style ? { style } : {}) };
}

export function mrkdwn(text: string): Text {
  return { type: "mrkdwn", text };
}

function plain(text: string): { type: "plain_text"; text: string } {
  return { type: "plain_text", text };
}

/** Slack's mrkdwn reads `<…>` as links and mentions (`<!channel>`); user text must not. */
export function escapeMrkdwn(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function escapeUrl(url: string): string {
  return url.replace(/[<>|]/g, encodeURIComponent);
}

function quote(text: string): string {
  return escapeMrkdwn(text)
    .split("\n")
    .map((line) => `>${line}`)
    .join("\n");
}

function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

function dollars(usd: number): string {
  return `$${usd < 0.01 && usd > 0 ? usd.toFixed(4) : usd.toFixed(2)}`;
}

function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = Math.round(ms / 1000);
  if (seconds < 60) return `${seconds} s`;
  return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
}
