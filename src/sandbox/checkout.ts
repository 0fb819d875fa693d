import type { CheckoutResult, ExecResult } from "./port.ts";

/**
 * Clones `$SORTIE_REPO_URL` into `$SORTIE_DIR` (at `$SORTIE_BRANCH` when set) and
 * prints the commit it landed on. The URL and branch arrive as variables, so
 * nothing a user typed is ever parsed by the shell.
 *
 * A clone that fails prints why, from exit statuses alone (never git's words):
 * the remote answers and lacks the branch (`git ls-remote --exit-code` exits 2),
 * the remote answers (`other`), its host cannot be reached at all (`network`:
 * a TCP connection to it fails), or it is reachable but has no such
 * repository (`not_found`).
 */
export const CLONE_SCRIPT = [
  "set -u",
  'if [ -n "$SORTIE_BRANCH" ]; then git clone --quiet --depth 1 --branch "$SORTIE_BRANCH" -- "$SORTIE_REPO_URL" "$SORTIE_DIR";',
  'else git clone --quiet --depth 1 -- "$SORTIE_REPO_URL" "$SORTIE_DIR"; fi',
  "status=$?",
  'if [ "$status" -ne 0 ]; then',
  "  export GIT_TERMINAL_PROMPT=0",
  '  if git ls-remote --quiet -- "$SORTIE_REPO_URL" HEAD >/dev/null 2>&1; then',
  "    reason=other",
  '    if [ -n "$SORTIE_BRANCH" ]; then git ls-remote --quiet --exit-code --heads -- "$SORTIE_REPO_URL" "$SORTIE_BRANCH" >/dev/null 2>&1; [ $? -eq 2 ] && reason=branch_not_found; fi',
  "  else",
  '    case "$SORTIE_REPO_URL" in',
  "      http://*|https://*)",
  '        hostport=${SORTIE_REPO_URL#*://}; hostport=${hostport%%/*}; hostport=${hostport##*@}; host=${hostport%:*}; port=${hostport##*:}',
  '        if [ "$port" = "$hostport" ]; then case "$SORTIE_REPO_URL" in https://*) port=443;; *) port=80;; esac; fi',
  '        if timeout 10 bash -c \'exec 3<>"/dev/tcp/$0/$1"\' "$host" "$port" 2>/dev/null; then reason=not_found; else reason=network; fi;;',
  '      *) reason=not_found;;',
  "    esac",
  "  fi",
  '  printf "SORTIE_CLONE_FAILURE=%s\\n" "$reason"',
  '  exit "$status"',
  "fi",
  'printf "SORTIE_BASE=%s\\n" "$(git -C "$SORTIE_DIR" rev-parse HEAD)"',
].join("\n");

/** Why a clone failed: only a `network` failure is worth another try. */
export const CLONE_FAILURES = ["network", "not_found", "branch_not_found", "auth", "other"] as const;
export type CloneFailure = (typeof CLONE_FAILURES)[number];

/** Reads the commit from a clone's output, or throws with git's own words and the reason the script found. */
export function parseCloneOutput(result: ExecResult): CheckoutResult {
  const commit = /SORTIE_BASE=([0-9a-f]{40})/.exec(result.stdout)?.[1];
  if (result.exitCode !== 0 || !commit) {
    const reason = /^SORTIE_CLONE_FAILURE=(\w+)$/m.exec(result.stdout)?.[1];
    const said = result.stderr.trim() || result.stdout.replace(/^SORTIE_CLONE_FAILURE=.*$/m, "").trim() || `git clone exited ${result.exitCode}`;
    throw new CloneError(said, CLONE_FAILURES.find((known) => known === reason) ?? "other");
  }
  return { commit };
}

/** The repository could not be cloned (unknown repo, bad branch, no access, no network), and why. */
export class CloneError extends Error {
  readonly reason: CloneFailure;

  constructor(message: string, reason: CloneFailure = "other") {
    super(message);
    this.name = "CloneError";
    this.reason = reason;
  }
}
