/**
 * The judge: a reviewer that sees only the task's prompt and the candidate
 * diffs (never a run's sandbox, never a credential to push) and names the best.
 * It is queued once every run has ended, and works in a sandbox of its own.
 */
import { messageOf } from "../errors.ts";
import type { AgentTurnResult } from "../runners/agent.ts";
import { markMemoryWinner } from "../store/memory.ts";
import { writeBinaryFile } from "../sandbox/files.ts";
import type { Sandbox, SandboxPort } from "../sandbox/port.ts";
import { PREVIEW, isTerminal, type TaskSpec, type EventInput, type JudgeView, type ReviewView, type TaskState } from "../schema.ts";
import type { DiffStore } from "../store/diff-store.ts";
import type { PreviewTarget } from "./preview.ts";
import type { AgentTurn } from "./run.ts";
import type { ScreenshotStore } from "../store/screenshot-store.ts";
import { judgeSlot, type Slot } from "./slot.ts";
import { classify } from "./failures.ts";
import type { TaskCheckpoints } from "./checkpoints.ts";

/** A marker the judge prompt carries, so tools and stand-ins can tell a judging turn from a coding one. */
export const JUDGE_MARKER = "[sortie judge]";
/** Largest part of one candidate diff the judge is shown. */
export const JUDGE_DIFF_CHARS = 200_000;

export interface Candidate {
  run: number;
  file: string;
  files: number;
  additions: number;
  deletions: number;
  /** What the run's reviewer concluded, when the task has review lanes. */
  review?: string;
  /** The PNG of the run's preview in $SORTIE_SCREENSHOTS_DIR, when the task has previews and it was ready. */
  screenshot?: string;
}

export interface Verdict {
  winner: number;
  ranking: number[];
  reasons: string;
}

/** The reviewer's instructions: read the diffs from files, answer with one JSON object. */
export function judgePrompt(taskPrompt: string, candidates: Candidate[]): string {
  const list = candidates
    .map((c) => `- run ${c.run}: ${c.file} (${c.files} files, +${c.additions} -${c.deletions})${c.review ? `\n  its reviewer: ${c.review}` : ""}${c.screenshot ? `\n  its running app: $SORTIE_SCREENSHOTS_DIR/${c.screenshot}` : ""}`)
    .join("\n");
  const seen = candidates.some((c) => c.screenshot)
    ? ["Each run's app was also started and photographed: the PNG named in its line, in the directory at $SORTIE_SCREENSHOTS_DIR. Look at them, and say in your reasons what you saw."]
    : [];
  return [
    `${JUDGE_MARKER} You are reviewing ${candidates.length} candidate changes made by independent coding agents for the same task.`,
    "Read each candidate diff from its file in the current directory. Do not modify anything.",
    ...seen,
    "Judge correctness first, then completeness, then simplicity and style.",
    'Answer with only one JSON object, no prose around it: {"winner": <run number>, "ranking": [<run numbers, best first>], "reasons": "<two or three sentences>"}',
    "",
    "Candidates:",
    list,
    "",
    "The task the agents were given:",
    "<task>",
    taskPrompt,
    "</task>",
  ].join("\n");
}

/** A run's review in a line or a few for the judge: its status, rounds, and the last round's findings. */
export function reviewSummary(review: ReviewView): string {
  const last = review.rounds.at(-1);
  const findings = last?.findings.map((f) => `${f.path}${f.line ? `:${f.line}` : ""}: ${f.body.replace(/\s+/g, " ").slice(0, 300)}`) ?? [];
  return `${review.status.replace("_", " ")} after ${review.rounds.length} round${review.rounds.length === 1 ? "" : "s"}${findings.length ? `; last findings: ${findings.join(" | ")}` : ""}`;
}

/** Reads the verdict from the reviewer's final text; null if it names no valid candidate. */
export function parseVerdict(text: string, runs: number[]): Verdict | null {
  const start = text.indexOf("{");
  const end = text.lastIndexOf("}");
  if (start < 0 || end <= start) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text.slice(start, end + 1));
  } catch {
    return null;
  }
  if (!parsed || typeof parsed !== "object") return null;
  const { winner, ranking, reasons } = parsed as Record<string, unknown>;
  if (typeof winner !== "number" || !runs.includes(winner)) return null;
  const order = Array.isArray(ranking) ? ranking.filter((r): r is number => typeof r === "number" && runs.includes(r)) : [];
  return {
    winner,
    ranking: order.length ? [...new Set(order)] : [winner],
    reasons: typeof reasons === "string" ? reasons.slice(0, 2000) : Array.isArray(reasons) ? reasons.map(String).join(" ").slice(0, 2000) : "",
  };
}

/** What judging borrows from its task agent. */
export interface JudgeContext {
  env: Cloudflare.Env;
  /** Where the judge's process was read to (src/agents/checkpoints.ts). */
  checkpoints: TaskCheckpoints;
  diffs(): DiffStore;
  task(): TaskState;
  record(input: EventInput): void;
  openSandbox(slot: Slot, shared?: string): Promise<Sandbox>;
  destroySandbox(slot: Slot, open?: Sandbox): Promise<void>;
  runTurn(slot: Slot, sandbox: Sandbox, turn: AgentTurn, signal: AbortSignal): Promise<AgentTurnResult>;
  /** Carries out the task's next step (decide.ts): once the judge has ended, the task ends. */
  advance(): Promise<void>;
  spec(): TaskSpec;
  port(): SandboxPort;
  /** Where a run's live preview is served, for its screenshot. */
  previewTarget(index: number): PreviewTarget | null;
  screenshots(): ScreenshotStore;
}

/** The reviewer: a fresh sandbox holding only the candidate diffs, and Claude Code asked to rank them. */
export async function driveJudge(ctx: JudgeContext, signal: AbortSignal): Promise<void> {
  const task = ctx.task();
  const judge = task.judge!;
  ctx.record({ run: null, type: "judge.status", data: { status: "running" } });
  let sandbox: Sandbox | undefined;
  try {
    sandbox = await ctx.openSandbox(judgeSlot);
    const dir = `${sandbox.workdir}/candidates`;
    const candidates: Candidate[] = [];
    for (const run of task.runs) {
      if (run.status !== "succeeded" || !run.diff) continue;
      const file = `run-${run.index}.diff`;
      await sandbox.writeFile(`${dir}/${file}`, ctx.diffs().text(run.index, JUDGE_DIFF_CHARS));
      candidates.push({ run: run.index, file, files: run.diff.files, additions: run.diff.additions, deletions: run.diff.deletions, ...(run.review ? { review: reviewSummary(run.review) } : {}) });
    }
    const screenshots = `${sandbox.workdir}/screenshots`;
    if (ctx.spec().preview) await photographPreviews(ctx, sandbox, screenshots, candidates, signal);
    const env = candidates.some((c) => c.screenshot) ? { SORTIE_SCREENSHOTS_DIR: screenshots } : undefined;
    const turn = await ctx.runTurn(judgeSlot, sandbox, { prompt: judgePrompt(task.prompt, candidates), cwd: dir, model: task.model, maxTurns: 20, ...(env ? { env } : {}) }, signal);
    if (signal.aborted) return;
    const costUsd = turn.final?.costUsd ?? 0;
    const verdict = turn.final ? parseVerdict(turn.final.text, candidates.map((c) => c.run)) : null;
    if (!verdict) {
      await endJudge(ctx, { ...judge, status: "failed", costUsd, error: { code: "no_verdict", message: `the reviewer gave no valid verdict: ${(turn.final?.text ?? `exit ${turn.exitCode}`).slice(0, 300)}` } });
      return;
    }
    await endJudge(ctx, { status: "succeeded", winner: verdict.winner, ranking: verdict.ranking, reasons: verdict.reasons, costUsd, error: null });
  } catch (error) {
    if (!signal.aborted) await endJudge(ctx, { ...judge, status: "failed", error: classify(error) });
  } finally {
    ctx.checkpoints.ended(judgeSlot);
    if (!signal.aborted) await ctx.destroySandbox(judgeSlot, sandbox);
  }
}

/**
 * Waits for the candidates' previews to leave `starting`, then takes a PNG of
 * each ready one (outside its sandbox: the backend's browser), keeps it with
 * the task and puts it in `dir` of the judge's sandbox as `run-<n>.png`. A
 * preview that failed, or a screenshot that could not be taken, leaves that
 * candidate without one, and says so in an event.
 */
async function photographPreviews(ctx: JudgeContext, sandbox: Sandbox, dir: string, candidates: Candidate[], signal: AbortSignal): Promise<void> {
  const deadline = Date.now() + PREVIEW.readyTimeoutMs + 15_000;
  const settled = () => candidates.every((c) => {
    const status = ctx.task().runs[c.run]?.preview?.status;
    return status !== undefined && status !== "starting";
  });
  while (!settled() && Date.now() < deadline && !signal.aborted) await new Promise((resolve) => setTimeout(resolve, 250));
  for (const candidate of candidates) {
    const target = ctx.task().runs[candidate.run]?.preview?.status === "ready" ? ctx.previewTarget(candidate.run) : null;
    if (!target || signal.aborted) continue;
    try {
      const png = await ctx.port().screenshot(target.sandboxId, target.port, target.path);
      if (!png) {
        ctx.record({ run: candidate.run, type: "preview.screenshot_skipped", data: { reason: "this sandbox backend takes no screenshots" } });
        continue;
      }
      const file = `run-${candidate.run}.png`;
      await writeBinaryFile(sandbox, `${dir}/${file}`, png);
      candidate.screenshot = file;
      // A kept screenshot sets the run's `screenshot` (the fold of this event).
      const kept = ctx.screenshots().put(candidate.run, png);
      ctx.record({ run: candidate.run, type: "preview.screenshot", data: { file, bytes: png.byteLength, kept } });
    } catch (error) {
      ctx.record({ run: candidate.run, type: "preview.screenshot_failed", data: { message: messageOf(error) } });
    }
  }
}

/** Records the judge's outcome; its winner becomes the task's unless one was picked already. */
export async function endJudge(ctx: JudgeContext, judge: JudgeView): Promise<void> {
  const task = ctx.task();
  if (!task.judge || isTerminal(task.judge.status)) return;
  // The fold makes the judge's winner the task's unless one was picked already.
  ctx.record({ run: null, type: "judge.status", data: { status: judge.status, winner: judge.winner, ranking: judge.ranking, reasons: judge.reasons, costUsd: judge.costUsd, ...(judge.error ? { error: judge.error } : {}) } });
  // The runs' learnings record which of them won.
  const winner = ctx.task().winner;
  if (winner) await markMemoryWinner(ctx.env.DB, task.id, winner.run).catch((error: unknown) => ctx.record({ run: null, type: "memory.error", data: { message: messageOf(error) } }));
  await ctx.advance();
}
