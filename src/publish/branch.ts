/**
 * Pushes a run's change as a branch, from a publisher sandbox of its own:
 * a fresh clone, the stored patch applied, one commit, one push. The agent's
 * sandbox never sees the write token; this step never runs the agent.
 */
import type { Sandbox } from "../sandbox/port.ts";

const PUSH_SCRIPT = [
  "set -eu",
  'git clone --quiet --depth 1 ${SORTIE_BASE_BRANCH:+--branch "$SORTIE_BASE_BRANCH"} -- "$SORTIE_REPO_URL" "$SORTIE_DIR"',
  'cd "$SORTIE_DIR"',
  'git checkout --quiet -b "$SORTIE_BRANCH"',
  'git apply --index --binary "$SORTIE_PATCH"',
  'git -c user.name="$SORTIE_AUTHOR_NAME" -c user.email="$SORTIE_AUTHOR_EMAIL" commit --quiet --no-verify -F "$SORTIE_MESSAGE"',
  // The token reaches git as configuration in the environment of this one command: never in argv, a URL or a file.
  'git push --quiet origin "HEAD:refs/heads/$SORTIE_BRANCH"',
  'printf "SORTIE_COMMIT=%s\\n" "$(git rev-parse HEAD)"',
].join("\n");

export interface PushRequest {
  repoUrl: string;
  /** Branch the run started from; empty for the repository's default branch. */
  baseBranch: string | null;
  branch: string;
  /** Where the patch and the commit message lie in the publisher sandbox. */
  patchPath: string;
  messagePath: string;
  /** Git configuration that lets this push authenticate (from `Sandbox.grantGitAccess`); empty when the remote needs none. */
  gitEnv: Record<string, string>;
}

export async function pushBranch(sandbox: Sandbox, request: PushRequest): Promise<{ commit: string }> {
  const result = await sandbox.exec(PUSH_SCRIPT, {
    env: {
      SORTIE_REPO_URL: request.repoUrl,
      SORTIE_BASE_BRANCH: request.baseBranch ?? "",
      SORTIE_DIR: `${sandbox.workdir}/publish`,
      SORTIE_BRANCH: request.branch,
      SORTIE_PATCH: request.patchPath,
      SORTIE_MESSAGE: request.messagePath,
      SORTIE_AUTHOR_NAME: "Sortie",
      SORTIE_AUTHOR_EMAIL: "sortie@users.noreply.github.com",
      GIT_TERMINAL_PROMPT: "0",
      ...request.gitEnv,
    },
    timeoutMs: 5 * 60_000,
  });
  const commit = /SORTIE_COMMIT=([0-9a-f]{40})/.exec(result.stdout)?.[1];
  if (result.exitCode !== 0 || !commit) {
    throw new Error(`push of ${request.branch} failed (exit ${result.exitCode}): ${(result.stderr || result.stdout).trim().slice(0, 1000)}`);
  }
  return { commit };
}

/**
 * A fix on a branch that already exists (a tended pull request's): cloned at
 * the branch, checked to be still at `expectHead` (else someone else pushed,
 * and nothing is pushed over their work), the patch applied as one new
 * commit on top, or, with `mergeBranch`, as a merge commit whose second
 * parent is that branch's head, and pushed fast-forward only: never forced.
 */
const FIX_SCRIPT = [
  "set -eu",
  'git clone --quiet --depth 1 --branch "$SORTIE_BRANCH" -- "$SORTIE_REPO_URL" "$SORTIE_DIR"',
  'cd "$SORTIE_DIR"',
  'head=$(git rev-parse HEAD)',
  'if [ "$head" != "$SORTIE_EXPECT_HEAD" ]; then printf "SORTIE_HEAD_MOVED=%s\\n" "$head"; exit 3; fi',
  'git apply --index --binary "$SORTIE_PATCH"',
  'if [ -n "$SORTIE_MERGE_BRANCH" ]; then',
  '  git fetch --quiet --depth 1 origin "refs/heads/$SORTIE_MERGE_BRANCH"',
  '  commit=$(git commit-tree "$(git write-tree)" -p HEAD -p FETCH_HEAD -F "$SORTIE_MESSAGE")',
  '  git reset --quiet --soft "$commit"',
  "else",
  '  git commit --quiet --no-verify -F "$SORTIE_MESSAGE"',
  "fi",
  'git push --quiet origin "HEAD:refs/heads/$SORTIE_BRANCH"',
  'printf "SORTIE_COMMIT=%s\\n" "$(git rev-parse HEAD)"',
].join("\n");

export interface FixPushRequest extends Omit<PushRequest, "baseBranch"> {
  /** The head the fix started from. */
  expectHead: string;
  /** Record the commit as a merge of this branch (a resolved merge conflict). */
  mergeBranch: string | null;
}

/** Pushes a fix onto an existing branch; `moved` is the branch's head when someone else pushed meanwhile. */
export async function pushFixCommit(sandbox: Sandbox, request: FixPushRequest): Promise<{ commit: string } | { moved: string }> {
  const author = { name: "Sortie", email: "sortie@users.noreply.github.com" };
  const result = await sandbox.exec(FIX_SCRIPT, {
    env: {
      SORTIE_REPO_URL: request.repoUrl,
      SORTIE_DIR: `${sandbox.workdir}/publish`,
      SORTIE_BRANCH: request.branch,
      SORTIE_EXPECT_HEAD: request.expectHead,
      SORTIE_MERGE_BRANCH: request.mergeBranch ?? "",
      SORTIE_PATCH: request.patchPath,
      SORTIE_MESSAGE: request.messagePath,
      GIT_AUTHOR_NAME: author.name,
      GIT_AUTHOR_EMAIL: author.email,
      GIT_COMMITTER_NAME: author.name,
      GIT_COMMITTER_EMAIL: author.email,
      GIT_TERMINAL_PROMPT: "0",
      ...request.gitEnv,
    },
    timeoutMs: 5 * 60_000,
  });
  const moved = /SORTIE_HEAD_MOVED=([0-9a-f]{40})/.exec(result.stdout)?.[1];
  if (moved) return { moved };
  const commit = /SORTIE_COMMIT=([0-9a-f]{40})/.exec(result.stdout)?.[1];
  if (result.exitCode !== 0 || !commit) {
    throw new Error(`push of a fix to ${request.branch} failed (exit ${result.exitCode}): ${(result.stderr || result.stdout).trim().slice(0, 1000)}`);
  }
  return { commit };
}
