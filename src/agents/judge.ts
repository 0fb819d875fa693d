/**
 * The judge: a reviewer that sees only the task's prompt and the candidate
 * diffs (never a run's sandbox, never a credential to push) and names the best.
 */

/** A marker the judge prompt carries, so tools and stand-ins can tell a judging turn from a coding one. */
export const JUDGE_MARKER = "[sortie judge]";
/** The fleet slot a task's judge occupies (runs are 0–7). */
export const JUDGE_SLOT = 1000;
/** Largest part of one candidate diff the judge is shown. */
export const JUDGE_DIFF_CHARS = 200_000;

export interface Candidate {
  run: number;
  file: string;
  files: number;
  additions: number;
  deletions: number;
}

export interface Verdict {
  winner: number;
  ranking: number[];
  reasons: string;
}

/** The reviewer's instructions: read the diffs from files, answer with one JSON object. */
export function judgePrompt(taskPrompt: string, candidates: Candidate[]): string {
  const list = candidates
    .map((c) => `- run ${c.run}: ${c.file} (${c.files} files, +${c.additions} -${c.deletions})`)
    .join("\n");
  return [
    `${JUDGE_MARKER} You are reviewing ${candidates.length} candidate changes made by independent coding agents for the same task.`,
    "Read each candidate diff from its file in the current directory. Do not modify anything.",
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
