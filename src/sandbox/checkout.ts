import type { CheckoutResult, ExecResult } from "./port.ts";

/**
 * Clones `$SORTIE_REPO_URL` into `$SORTIE_DIR` (at `$SORTIE_BRANCH` when set) and
 * prints the commit it landed on. The URL and branch arrive as variables, so
 * nothing a user typed is ever parsed by the shell.
 */
export const CLONE_SCRIPT = [
  "set -eu",
  'if [ -n "$SORTIE_BRANCH" ]; then git clone --quiet --depth 1 --branch "$SORTIE_BRANCH" -- "$SORTIE_REPO_URL" "$SORTIE_DIR";',
  'else git clone --quiet --depth 1 -- "$SORTIE_REPO_URL" "$SORTIE_DIR"; fi',
  'printf "SORTIE_BASE=%s\\n" "$(git -C "$SORTIE_DIR" rev-parse HEAD)"',
].join("\n");

/** Reads the commit from a clone's output, or throws with git's own words. */
export function parseCloneOutput(result: ExecResult): CheckoutResult {
  const commit = /SORTIE_BASE=([0-9a-f]{40})/.exec(result.stdout)?.[1];
  if (result.exitCode !== 0 || !commit) {
    throw new CloneError(result.stderr.trim() || result.stdout.trim() || `git clone exited ${result.exitCode}`);
  }
  return { commit };
}

/** The repository could not be cloned (unknown repo, bad branch, no access). */
export class CloneError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CloneError";
  }
}
