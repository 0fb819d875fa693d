/**
 * A review lane: when a run's agent turn ends with a change, a reviewer reads
 * it through a peer view (a filtered, read-only copy of the coder's checkout)
 * in a sandbox of its own at the `analysis` level, and writes a verdict. Its
 * findings go back to the coder as a follow-up in the coder's own session, and
 * the next round reviews the new diff. A loop that stops converging (a finding
 * repeated unchanged, a round that changed nothing) escalates instead of
 * spending the remaining rounds. Write authority never leaves the coder.
 */
import { messageOf } from "../errors.ts";
import type { AgentTurnResult } from "../runners/agent.ts";
import { installPeerView, packPeerView, type PeerSource } from "../sandbox/peer-view.ts";
import type { Sandbox } from "../sandbox/port.ts";
import { readFileCapped } from "../sandbox/files.ts";
import { ReviewVerdict, type AgentName, type ReviewFinding, type ReviewRound, type ReviewView, type TaskSpec } from "../schema.ts";
import { ANALYSIS_UID } from "../sandbox/placement.ts";
import type { AgentTurn } from "./run.ts";

/** A marker the reviewer's prompt carries, so tools and stand-ins can tell a reviewing turn from a coding one. */
export const REVIEW_MARKER = "[sortie review]";

/** Largest part of the diff a reviewer is given. */
const REVIEW_DIFF_CHARS = 400_000;
const REVIEWER_MAX_TURNS = 40;
/** Largest verdict file read. */
const REVIEW_FILE_BYTES = 1 << 20;

/** Where a reviewer's files are in its sandbox. */
export function reviewerPaths(workdir: string) {
  const outDir = `${workdir}/review`;
  return { peerDir: `${workdir}/peer`, outDir, verdictFile: `${outDir}/verdict.json`, diffFile: `${workdir}/changes.diff`, home: `${workdir}/agent-home` };
}

/** The CLIs a deployment can run: those whose model key is set. */
export function configuredAgents(env: { ANTHROPIC_API_KEY?: string; OPENAI_API_KEY?: string; GEMINI_API_KEY?: string }): AgentName[] {
  const agents: AgentName[] = [];
  if (env.ANTHROPIC_API_KEY) agents.push("claude-code", "opencode");
  if (env.OPENAI_API_KEY) agents.push("codex");
  if (env.GEMINI_API_KEY) agents.push("gemini");
  return agents;
}

const VENDOR: Record<AgentName, string> = { "claude-code": "anthropic", opencode: "anthropic", codex: "openai", gemini: "google" };

/**
 * The reviewer's CLI and model: the task's `review.agent`/`review.model`
 * when given (a model alone stays with the coder's CLI, whose vendor it
 * names); else, of the CLIs configured, one of another vendor than the
 * coder's, else another CLI, else the coder's own. The coder's model goes
 * with the coder's CLI only.
 */
export function chooseReviewer(review: NonNullable<TaskSpec["review"]>, coder: { agent: AgentName; model: string | null }, configured: AgentName[]): { agent: AgentName; model: string | null } {
  if (review.agent) return { agent: review.agent, model: review.model ?? (review.agent === coder.agent ? coder.model : null) };
  if (review.model) return { agent: coder.agent, model: review.model };
  const otherVendor = configured.find((agent) => VENDOR[agent] !== VENDOR[coder.agent]);
  const otherCli = configured.find((agent) => agent !== coder.agent);
  const agent = otherVendor ?? otherCli ?? coder.agent;
  return { agent, model: review.model ?? (agent === coder.agent ? coder.model : null) };
}

/** The reviewer's instructions: the task verbatim, where the change and the peer view are, and the verdict's format. */
export function reviewPrompt(taskPrompt: string, round: number, rounds: number, paths: ReturnType<typeof reviewerPaths>, stats: { files: number; additions: number; deletions: number }): string {
  return [
    `${REVIEW_MARKER} You are reviewing a change another coding agent made for the task below (review round ${round} of at most ${rounds}).`,
    `The change is the diff at ${paths.diffFile} (${stats.files} files, +${stats.additions} -${stats.deletions}).`,
    `A read-only copy of the coder's workspace after the change is at $SORTIE_PEER_DIR (${paths.peerDir}); secrets, links and dependency directories are left out.`,
    "You may read anything there and run the repository's linters and tests in your own sandbox; you cannot change the coder's files.",
    "Report only real problems with this change: bugs, missing parts of the task, broken tests. Do not re-report what an earlier round's fix resolved.",
    `Write your verdict as JSON to the file at $SORTIE_REVIEW_FILE (${paths.verdictFile}), nothing else:`,
    '{"verdict": "approve" | "changes", "findings": [{"path": "<repository-relative path>", "line": <line in the new file, optional>, "body": "<what is wrong and what to do>", "severity": "blocker" | "major" | "minor"}]}',
    "Use \"approve\" with no findings when the change does the task well.",
    "",
    "The task the coder was given:",
    "<task>",
    taskPrompt,
    "</task>",
  ].join("\n");
}

/** The follow-up the coder gets: each finding's body verbatim, with its path and line. */
export function findingsMessage(round: number, findings: ReviewFinding[]): string {
  const lines = findings.map((f, i) => `${i + 1}. ${f.path}${f.line ? `:${f.line}` : ""}${f.severity ? ` [${f.severity}]` : ""}\n${f.body}`);
  return [`A reviewer read your change (review round ${round}) and asks for changes. Address each finding in this workspace:`, "", ...lines].join("\n");
}

/** Reads a verdict file's text: the verdict, or what is wrong with it, in words the reviewer can act on. */
export function parseReviewVerdict(text: string | null): { verdict: ReviewVerdict } | { error: string } {
  if (text === null || text.trim() === "") return { error: "no verdict file was written at $SORTIE_REVIEW_FILE" };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return { error: `the verdict file is not JSON: ${messageOf(error)}` };
  }
  const parsed = ReviewVerdict.safeParse(json);
  if (!parsed.success) return { error: `the verdict file does not match the format: ${parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ")}` };
  if (parsed.data.verdict === "changes" && parsed.data.findings.length === 0) return { error: 'a "changes" verdict needs at least one finding' };
  return { verdict: parsed.data };
}

const normalise = (text: string) => text.trim().replace(/\s+/g, " ");

/** A turn that ended as a success: a result, no error, exit 0, turns not used up. */
export function turnSucceeded(turn: AgentTurnResult): boolean {
  return !!turn.final && !turn.final.isError && turn.exitCode === 0 && turn.final.subtype !== "error_max_turns";
}

/** Findings of `next` that `previous` already made: the same body on the same path (whatever the line). */
export function repeatedFindings(previous: ReviewFinding[], next: ReviewFinding[]): ReviewFinding[] {
  const seen = new Set(previous.map((f) => `${f.path}\u0000${normalise(f.body)}`));
  return next.filter((f) => seen.has(`${f.path}\u0000${normalise(f.body)}`));
}

/** What a review lane borrows from the run it reviews. */
export interface ReviewLaneContext {
  spec: TaskSpec;
  coder: {
    agent: AgentName;
    model: string | null;
    sandbox: Sandbox;
    /** The coder's checkout as a peer view's source: where it is, and who packs it. */
    source: PeerSource;
    /** Delivers a follow-up in the coder's session and returns its turn. */
    followUp(message: string): Promise<AgentTurnResult>;
    /** Takes the coder's diff again; returns its text and stats. */
    diff(): Promise<{ text: string; stats: { files: number; additions: number; deletions: number } }>;
  };
  configured: AgentName[];
  excludes: readonly string[];
  openReviewer(): Promise<Sandbox>;
  destroyReviewer(sandbox: Sandbox): Promise<void>;
  reviewerTurn(sandbox: Sandbox, turn: AgentTurn): Promise<AgentTurnResult>;
  /** Records an event of the lane; the run's `review` is their fold (src/events.ts). */
  record(type: string, data: Record<string, unknown>): void;
  /** Scrubs the deployment's secrets from what the reviewer wrote, before anyone (the coder first) reads it. */
  redact<T>(value: T): T;
  signal: AbortSignal;
}

/**
 * Runs the lane on the coder's current change (`diff`). Returns the coder's
 * last turn when findings were delivered (its result is the run's now), else null.
 */
export async function reviewChange(ctx: ReviewLaneContext, first: { text: string; stats: { files: number; additions: number; deletions: number } }): Promise<AgentTurnResult | null> {
  let ended: ReviewView | null = null;
  try {
    return await runLane(ctx, first, (review) => (ended = review));
  } catch (error) {
    if (ended && (ended as ReviewView).status === "running") {
      ended = { ...(ended as ReviewView), status: "failed", reason: messageOf(error) };
      ctx.record("review.status", { status: "failed", reason: messageOf(error) });
    }
    throw error;
  } finally {
    // A lane that ends without a verdict on its state (the run was stopped, a step failed) says so.
    const last = ended as ReviewView | null;
    if (last?.status === "running") {
      const reason = ctx.signal.aborted ? "the run was stopped during the review" : "the review ended early";
      ctx.record("review.status", { status: "failed", reason });
    }
  }
}

async function runLane(ctx: ReviewLaneContext, first: { text: string; stats: { files: number; additions: number; deletions: number } }, track: (review: ReviewView) => void): Promise<AgentTurnResult | null> {
  const review = ctx.spec.review!;
  const reviewer = chooseReviewer(review, { agent: ctx.coder.agent, model: ctx.coder.model }, ctx.configured);
  const rounds: ReviewRound[] = [];
  let state: ReviewView = { status: "running", rounds, reason: null };
  const set = (next: ReviewView, type: string, data: Record<string, unknown>) => {
    state = next;
    track(next);
    ctx.record(type, data);
  };
  set(state, "review.status", { status: "running", reviewer, rounds: review.rounds });
  let current = first;
  let lastTurn: AgentTurnResult | null = null;
  for (let round = 1; round <= review.rounds; round++) {
    if (ctx.signal.aborted) return lastTurn;
    const startedAt = Date.now();
    const outcome = await reviewRound(ctx, round, reviewer, current);
    const entry: ReviewRound = { verdict: outcome.verdict?.verdict ?? null, findings: outcome.verdict?.findings ?? [], reviewer, startedAt, endedAt: Date.now(), costUsd: outcome.costUsd, error: outcome.error };
    rounds.push(entry);
    const roundData = { round, verdict: entry.verdict, findings: entry.findings, reviewer, costUsd: outcome.costUsd, startedAt, endedAt: entry.endedAt, ...(outcome.error ? { error: outcome.error } : {}) };
    if (ctx.signal.aborted) return lastTurn;
    if (!outcome.verdict) {
      set({ status: "failed", rounds, reason: outcome.error?.message ?? null }, "review.round", { ...roundData, status: "failed", reason: outcome.error?.message ?? null });
      return lastTurn;
    }
    if (outcome.verdict.verdict === "approve") {
      set({ status: "approved", rounds, reason: null }, "review.round", { ...roundData, status: "approved" });
      return lastTurn;
    }
    const previous = rounds.at(-2);
    const repeated = previous ? repeatedFindings(previous.findings, entry.findings) : [];
    if (repeated.length > 0) {
      const reason = `a finding came back unchanged: ${repeated[0]!.path}: ${normalise(repeated[0]!.body).slice(0, 200)}`;
      set({ status: "needs_attention", rounds, reason }, "review.round", { ...roundData, status: "needs_attention", reason });
      return lastTurn;
    }
    if (round === review.rounds) {
      const reason = `the ${review.rounds} review rounds are spent`;
      set({ status: "changes_requested", rounds, reason }, "review.round", { ...roundData, status: "changes_requested", reason });
      return lastTurn;
    }
    set({ status: "running", rounds, reason: null }, "review.round", { ...roundData, status: "running" });
    const message = findingsMessage(round, entry.findings);
    ctx.record("review.feedback", { round, findings: entry.findings.length, text: message });
    lastTurn = await ctx.coder.followUp(message);
    if (ctx.signal.aborted) return lastTurn;
    if (!turnSucceeded(lastTurn)) {
      const failure = "the coder's turn on the findings did not succeed";
      set({ status: "failed", rounds, reason: failure }, "review.status", { status: "failed", reason: "coder_turn_failed", message: failure });
      return lastTurn;
    }
    const next = await ctx.coder.diff();
    if (next.text === current.text) {
      const reason = "the coder's turn on the findings did not change the diff";
      set({ status: "needs_attention", rounds, reason }, "review.status", { status: "needs_attention", reason });
      return lastTurn;
    }
    current = next;
  }
  return lastTurn;
}

interface RoundOutcome {
  verdict: ReviewVerdict | null;
  costUsd: number;
  error: { code: string; message: string } | null;
}

/** One round: a fresh reviewer sandbox with the peer view and the diff, the reviewer's turn, its verdict (one retry if invalid). */
async function reviewRound(ctx: ReviewLaneContext, round: number, reviewer: { agent: AgentName; model: string | null }, change: { text: string; stats: { files: number; additions: number; deletions: number } }): Promise<RoundOutcome> {
  let sandbox: Sandbox | undefined;
  let costUsd = 0;
  const began = Date.now();
  try {
    const peer = await packPeerView(ctx.coder.sandbox, ctx.coder.source, ctx.excludes);
    sandbox = await ctx.openReviewer();
    const paths = reviewerPaths(sandbox.workdir);
    await installPeerView(sandbox, peer.archive, { peerDir: paths.peerDir, outDir: paths.outDir, uid: ANALYSIS_UID });
    await sandbox.writeFile(paths.diffFile, change.text.slice(0, REVIEW_DIFF_CHARS));
    // The round's own cost in time, before the model is asked anything: the benchmark's figure.
    ctx.record("review.reviewer_started", { round, files: peer.files, peerViewBytes: peer.archive.length, preparedMs: Date.now() - began, sandbox: sandbox.id });
    const confine = { uid: ANALYSIS_UID, home: paths.home };
    const env = { SORTIE_PEER_DIR: paths.peerDir, SORTIE_REVIEW_FILE: paths.verdictFile };
    const turnOf = (prompt: string, resumeSessionId: string | null): AgentTurn => ({
      prompt,
      cwd: paths.peerDir,
      model: reviewer.model,
      maxTurns: REVIEWER_MAX_TURNS,
      resumeSessionId,
      agent: reviewer.agent,
      // The CLI may write (its verdict file); the walls are the OS's: its own user, a root-owned view, the model API as its only network.
      readOnly: false,
      modelOnly: true,
      placement: { confine, gitEnv: {} },
      env,
    });
    let turn = await ctx.reviewerTurn(sandbox, turnOf(reviewPrompt(ctx.spec.prompt, round, ctx.spec.review!.rounds, paths, change.stats), null));
    costUsd += turn.final?.costUsd ?? 0;
    let read = parseReviewVerdict(await readAsReviewer(sandbox, paths.verdictFile, confine));
    if ("error" in read && !ctx.signal.aborted) {
      // One more chance, in the reviewer's own session when it has one, with what was wrong.
      const retry = `Your verdict could not be used: ${read.error}. Write it again to $SORTIE_REVIEW_FILE in the format given.`;
      const prompt = reviewPrompt(ctx.spec.prompt, round, ctx.spec.review!.rounds, paths, change.stats);
      turn = await ctx.reviewerTurn(sandbox, turn.sessionId ? turnOf(retry, turn.sessionId) : turnOf(`${prompt}\n\n${retry}`, null));
      costUsd += turn.final?.costUsd ?? 0;
      read = parseReviewVerdict(await readAsReviewer(sandbox, paths.verdictFile, confine));
    }
    if ("error" in read) return { verdict: null, costUsd, error: { code: "invalid_verdict", message: read.error } };
    return { verdict: ctx.redact(read.verdict), costUsd, error: null };
  } catch (error) {
    return { verdict: null, costUsd, error: { code: "review_failed", message: messageOf(error) } };
  } finally {
    if (sandbox) await ctx.destroyReviewer(sandbox);
  }
}

/** The verdict file, read as the reviewer's own user: a link it planted there reaches nothing it could not read itself. */
async function readAsReviewer(sandbox: Sandbox, file: string, confine: { uid: number; home: string }): Promise<string | null> {
  return readFileCapped(sandbox, file, REVIEW_FILE_BYTES, { reader: confine });
}
