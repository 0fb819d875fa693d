/**
 * The run's change as a patch: everything in the working tree against the
 * base commit, untracked and binary files included, in the form `git apply`
 * takes. Written to a file in the sandbox and read back as a stream, so a
 * large diff never sits whole in memory.
 */
import type { DiffStats } from "../schema.ts";
import type { Confinement, Sandbox } from "../sandbox/port.ts";

const DIFF_SCRIPT = [
  "set -eu",
  'cd "$SORTIE_REPO"',
  "git add -A",
  'git -c core.quotepath=off diff --cached --binary --no-color --no-ext-diff --full-index "$SORTIE_BASE" > "$SORTIE_OUT"',
  'git diff --cached --numstat "$SORTIE_BASE"',
  'printf "SORTIE_BYTES=%s\\n" "$(wc -c < "$SORTIE_OUT")"',
].join("\n");

export interface TakenDiff {
  stats: DiffStats;
  /** Where the patch lies in the sandbox; read it with `sandbox.readFile`. */
  path: string;
}

/**
 * Stages everything, writes the patch against `base`, and counts it. `env` is
 * the checkout's git environment (a worktree's object stores); `confine` runs
 * git as the user who owns the checkout, so nothing the agent wrote into it
 * (a git config, a hook, a filter) ever runs with more rights than the agent had.
 */
export async function takeDiff(sandbox: Sandbox, repoDir: string, base: string, out: string, env: Record<string, string> = {}, confine?: Confinement): Promise<TakenDiff> {
  const result = await sandbox.exec(DIFF_SCRIPT, { env: { ...env, SORTIE_REPO: repoDir, SORTIE_BASE: base, SORTIE_OUT: out }, timeoutMs: 5 * 60_000, ...(confine ? { confine } : {}) });
  if (result.exitCode !== 0) throw new Error(`git diff failed (${result.exitCode}): ${result.stderr.trim().slice(0, 1000)}`);
  return { stats: parseNumstat(result.stdout), path: out };
}

/** Counts files, added and deleted lines from `git diff --numstat` (binary files count as files only). */
export function parseNumstat(output: string): DiffStats {
  let files = 0;
  let additions = 0;
  let deletions = 0;
  let bytes = 0;
  for (const line of output.split("\n")) {
    const size = /^SORTIE_BYTES=\s*(\d+)/.exec(line);
    if (size) {
      bytes = Number(size[1]);
      continue;
    }
    const match = /^(\d+|-)\t(\d+|-)\t/.exec(line);
    if (!match) continue;
    files += 1;
    if (match[1] !== "-") additions += Number(match[1]);
    if (match[2] !== "-") deletions += Number(match[2]);
  }
  return { files, additions, deletions, bytes };
}
