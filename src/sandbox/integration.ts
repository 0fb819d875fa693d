/**
 * The integrator: in a sandbox of the plan's own, the base checked out, each
 * subtask's change applied in dependency order and committed on
 * `sortie/plan-<id>`; a conflict goes to an integrator agent run with the
 * subtasks' handoffs; then every acceptance command and the repository's
 * `.sortie/test.sh` run on the combined tree, and the whole change is taken
 * as one diff. It never decides what happens after a failure: it reports.
 */
import { messageOf } from "../errors.ts";
import { takeDiff } from "../publish/diff.ts";
import type { IntegrationCheck } from "../plan-schema.ts";
import type { Sandbox } from "./port.ts";
import type { DiffStats, ErrorInfo } from "../schema.ts";

/** One subtask's part of the integration, in dependency order. */
export interface IntegrationInput {
  key: string;
  title: string;
  patch: string;
  acceptance: string[];
  handoff: string;
}

/** What the integration borrows from its plan agent. */
export interface IntegrationContext {
  sandbox: Sandbox;
  cloneUrl: string;
  branch: string | null;
  /** The branch the combined change is committed on: `sortie/plan-<id>`. */
  planBranch: string;
  subtasks: IntegrationInput[];
  record(type: string, data: Record<string, unknown>): void;
  /** Hands conflicted files to the integrator agent; true when its turn ended well (markers are checked after). */
  resolveConflict(sandbox: Sandbox, repoDir: string, files: string[], subtasks: IntegrationInput[]): Promise<boolean>;
  /** Runs the repository's setup (`.sortie/setup.sh`, with the dependency cache) in the combined checkout, before the checks. */
  setUp(sandbox: Sandbox, repoDir: string): Promise<void>;
  /** Keeps the integrated patch; returns its size in bytes. */
  storeDiff(patch: ReadableStream<Uint8Array>): Promise<number>;
}

export type IntegrationOutcome =
  | { status: "succeeded"; diff: DiffStats; checks: IntegrationCheck[]; resolved: string[]; base: string }
  | { status: "failed"; checks: IntegrationCheck[]; resolved: string[]; error: ErrorInfo; failing: IntegrationCheck | null };

const IDENTITY = { GIT_AUTHOR_NAME: "Sortie", GIT_AUTHOR_EMAIL: "sortie@localhost", GIT_COMMITTER_NAME: "Sortie", GIT_COMMITTER_EMAIL: "sortie@localhost" };
const CHECK_TIMEOUT_MS = 10 * 60_000;
const CHECK_OUTPUT_CHARS = 8000;

/** Runs the integration; never throws for what a subtask did (a conflict, a failing check), only for a broken sandbox. */
export async function integrate(ctx: IntegrationContext): Promise<IntegrationOutcome> {
  const { sandbox } = ctx;
  const repoDir = `${sandbox.workdir}/repo`;
  const { commit: base } = await sandbox.checkout(ctx.cloneUrl, { dir: repoDir, branch: ctx.branch });
  const git = (script: string, env: Record<string, string> = {}) => sandbox.exec(`set -eu\ncd "$SORTIE_REPO"\n${script}`, { env: { SORTIE_REPO: repoDir, ...IDENTITY, ...env }, timeoutMs: 5 * 60_000 });
  const created = await git('git checkout -q -B "$SORTIE_BRANCH"', { SORTIE_BRANCH: ctx.planBranch });
  if (created.exitCode !== 0) throw new Error(`could not make the plan's branch: ${created.stderr.trim().slice(0, 300)}`);
  const resolved: string[] = [];
  for (const [index, subtask] of ctx.subtasks.entries()) {
    const file = `${sandbox.workdir}/patches/${String(index).padStart(3, "0")}-${subtask.key}.diff`;
    await sandbox.writeFile(file, subtask.patch);
    const applied = subtask.patch.trim() === "" ? { exitCode: 0, stderr: "" } : await git('git apply --index --binary --3way "$SORTIE_PATCH"', { SORTIE_PATCH: file });
    if (applied.exitCode !== 0) {
      let conflicted = (await git("git diff --name-only --diff-filter=U")).stdout.split("\n").filter(Boolean);
      if (conflicted.length === 0) {
        // No three-way merge was possible (the patch's preimage is not in this repository): what applies is applied, the rest left as .rej files.
        await git('git apply --reject --binary "$SORTIE_PATCH" || true', { SORTIE_PATCH: file });
        conflicted = (await git("git ls-files --others --exclude-standard -- '*.rej'")).stdout.split("\n").filter(Boolean).map((rej) => rej.replace(/\.rej$/, ""));
      }
      ctx.record("integration.conflict", { subtask: subtask.key, files: conflicted, message: applied.stderr.trim().slice(0, 1000) });
      if (conflicted.length === 0) {
        return { status: "failed", checks: [], resolved, failing: null, error: { code: "integration_conflict", message: `the change of "${subtask.key}" does not apply: ${applied.stderr.trim().slice(0, 300)}` } };
      }
      const meeting = ctx.subtasks.slice(0, index + 1).filter((s) => s === subtask || pathsMeet(s.patch, conflicted));
      const ended = await ctx.resolveConflict(sandbox, repoDir, conflicted, meeting);
      const markers = (await git('git add -A && (git grep -l -e "^<<<<<<< " -e "^>>>>>>> " --cached -- . || true) && git ls-files -- "*.rej"')).stdout.split("\n").filter(Boolean);
      ctx.record("integration.resolved", { subtask: subtask.key, files: conflicted, ok: ended && markers.length === 0, markers });
      if (!ended || markers.length > 0) {
        return { status: "failed", checks: [], resolved, failing: null, error: { code: "integration_conflict", message: `the integrator could not resolve the conflict of "${subtask.key}" in ${conflicted.join(", ")}` } };
      }
      resolved.push(subtask.key);
    }
    const committed = await git('git add -A && git commit -q --allow-empty --no-verify -m "$SORTIE_MESSAGE"', { SORTIE_MESSAGE: `${subtask.key}: ${subtask.title}` });
    if (committed.exitCode !== 0) throw new Error(`could not commit "${subtask.key}": ${committed.stderr.trim().slice(0, 300)}`);
  }
  try {
    await ctx.setUp(sandbox, repoDir);
  } catch (error) {
    return { status: "failed", checks: [], resolved, failing: null, error: { code: "setup_failed", message: `the repository's setup failed on the combined change: ${messageOf(error)}` } };
  }
  const checks: IntegrationCheck[] = [];
  const runCheck = async (command: string, subtask: string | null) => {
    const result = await sandbox.exec('cd "$SORTIE_REPO" && bash -c "$SORTIE_CHECK" 2>&1', { env: { SORTIE_REPO: repoDir, SORTIE_CHECK: command }, timeoutMs: CHECK_TIMEOUT_MS }).catch((error: unknown) => ({ exitCode: -1, stdout: messageOf(error), stderr: "" }));
    const check = { command, exitCode: result.exitCode, subtask, output: `${result.stdout}${result.stderr}`.slice(-CHECK_OUTPUT_CHARS) };
    checks.push(check);
    ctx.record("integration.check", { command, exitCode: check.exitCode, subtask });
    return check;
  };
  for (const subtask of ctx.subtasks) {
    for (const command of subtask.acceptance) {
      const check = await runCheck(command, subtask.key);
      if (check.exitCode !== 0) return { status: "failed", checks, resolved, failing: check, error: { code: "check_failed", message: `\`${command}\` (of "${subtask.key}") exited ${check.exitCode}` } };
    }
  }
  const hasTest = await sandbox.exec('test -f "$SORTIE_REPO/.sortie/test.sh"', { env: { SORTIE_REPO: repoDir } });
  if (hasTest.exitCode === 0) {
    const check = await runCheck("bash .sortie/test.sh", null);
    if (check.exitCode !== 0) return { status: "failed", checks, resolved, failing: check, error: { code: "check_failed", message: `the repository's .sortie/test.sh exited ${check.exitCode}` } };
  }
  const taken = await takeDiff(sandbox, repoDir, base, `${sandbox.workdir}/plan.diff`);
  const bytes = await ctx.storeDiff(await sandbox.readFile(taken.path));
  return { status: "succeeded", diff: { ...taken.stats, bytes }, checks, resolved, base };
}

/** Whether a patch touches one of `files`. */
function pathsMeet(patch: string, files: string[]): boolean {
  return files.some((file) => patch.includes(` b/${file}\n`));
}
