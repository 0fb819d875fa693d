/**
 * The integrator: in a sandbox of the plan's own, the base checked out, each
 * subtask's change applied in dependency order and committed on
 * `sortie/plan-<id>`; a conflict goes to an integrator agent run with the
 * subtasks' handoffs; then every acceptance command and the repository's
 * `.sortie/test.sh` run on the combined tree, and the whole change is taken
 * as one diff. A check that fails after a conflict was resolved is the
 * resolution's to answer for: it goes back to the integrator agent once, in
 * this sandbox, and the checks run again. Any other failure it reports; what
 * happens next (the owner's session) is its plan agent's to decide.
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
  /** Hands a check that failed after `resolutions` back to the integrator agent; true when its turn ended well. */
  repairResolution(sandbox: Sandbox, repoDir: string, failing: IntegrationCheck, resolutions: Resolution[]): Promise<boolean>;
  /** Runs the repository's setup (`.sortie/setup.sh`, with the dependency cache) in the combined checkout, before the checks. */
  setUp(sandbox: Sandbox, repoDir: string): Promise<void>;
  /** Keeps the integrated patch; returns its size in bytes. */
  storeDiff(patch: ReadableStream<Uint8Array>): Promise<number>;
}

/** A conflict the integrator agent resolved: whose change conflicted, in which files, and whose changes met there. */
export interface Resolution {
  subtask: string;
  files: string[];
  meeting: string[];
}

/**
 * `failing` is the check that failed, if one did; `integratorAnswered` says it went back to the integrator agent
 * already (the failure followed a resolution), so it is not the owner's to send back to.
 */
export type IntegrationOutcome =
  | { status: "succeeded"; diff: DiffStats; checks: IntegrationCheck[]; resolved: string[]; base: string }
  | { status: "failed"; checks: IntegrationCheck[]; resolved: string[]; error: ErrorInfo; failing: IntegrationCheck | null; integratorAnswered: boolean };

const IDENTITY = { GIT_AUTHOR_NAME: "Sortie", GIT_AUTHOR_EMAIL: "sortie@localhost", GIT_COMMITTER_NAME: "Sortie", GIT_COMMITTER_EMAIL: "sortie@localhost" };
const CHECK_TIMEOUT_MS = 10 * 60_000;
const CHECK_OUTPUT_CHARS = 8000;

/** Stages the tree and prints the files that still hold conflict markers, and any rejected hunk left beside one. */
const MARKERS_LEFT = 'git add -A && (git grep -l -e "^<<<<<<< " -e "^>>>>>>> " --cached -- . || true) && git ls-files -- "*.rej"';

/** The exit status of APPLY_IN_ORDER when a change does not apply; its index is the last line it printed. */
const NOT_APPLIED = 3;
/**
 * Applies and commits, in order from index $SORTIE_FROM, the changes in $SORTIE_PATCH_DIR (`NNN-key.diff`, its commit
 * message beside it in `NNN-key.msg`; an empty file is a subtask that changed nothing). A change that does not
 * apply three-way stops it, leaving its conflicts in the tree.
 */
const APPLY_IN_ORDER = `i=0
for patch in "$SORTIE_PATCH_DIR"/*.diff; do
  if [ "$i" -ge "$SORTIE_FROM" ]; then
    if [ -s "$patch" ] && ! git apply --index --binary --3way "$patch"; then echo "$i"; exit ${NOT_APPLIED}; fi
    git add -A
    git commit -q --allow-empty --no-verify -F "\${patch%.diff}.msg"
  fi
  i=$((i + 1))
done`;

/** Runs the integration; never throws for what a subtask did (a conflict, a failing check), only for a broken sandbox. */
export async function integrate(ctx: IntegrationContext): Promise<IntegrationOutcome> {
  const { sandbox } = ctx;
  const repoDir = `${sandbox.workdir}/repo`;
  const { commit: base } = await sandbox.checkout(ctx.cloneUrl, { dir: repoDir, branch: ctx.branch });
  const git = (script: string, env: Record<string, string> = {}) => sandbox.exec(`set -eu\ncd "$SORTIE_REPO"\n${script}`, { env: { SORTIE_REPO: repoDir, ...IDENTITY, ...env }, timeoutMs: 5 * 60_000 });
  const resolutions: Resolution[] = [];
  const resolved: string[] = [];
  const failed = (error: ErrorInfo, checks: IntegrationCheck[] = [], failing: IntegrationCheck | null = null, integratorAnswered = false): IntegrationOutcome => ({ status: "failed", checks, resolved, error, failing, integratorAnswered });
  // Every change and its commit message as files, written together; then one script applies and commits them in
  // order, up to the first that does not apply (each command in a sandbox costs a round trip).
  const patchDir = `${sandbox.workdir}/patches`;
  const fileOf = (index: number) => `${patchDir}/${String(index).padStart(3, "0")}-${ctx.subtasks[index]!.key}`;
  await Promise.all(ctx.subtasks.flatMap((subtask, index) => [
    sandbox.writeFile(`${fileOf(index)}.diff`, subtask.patch.trim() === "" ? "" : subtask.patch),
    sandbox.writeFile(`${fileOf(index)}.msg`, `${subtask.key}: ${subtask.title}\n`),
  ]));
  const created = await git('git checkout -q -B "$SORTIE_BRANCH"', { SORTIE_BRANCH: ctx.planBranch });
  if (created.exitCode !== 0) throw new Error(`could not make the plan's branch: ${created.stderr.trim().slice(0, 300)}`);
  for (let from = 0; from < ctx.subtasks.length; ) {
    const applied = await git(APPLY_IN_ORDER, { SORTIE_PATCH_DIR: patchDir, SORTIE_FROM: String(from) });
    if (applied.exitCode === 0) break;
    const index = Number(applied.stdout.trim().split("\n").pop());
    if (applied.exitCode !== NOT_APPLIED || !Number.isInteger(index) || index < from || index >= ctx.subtasks.length) {
      throw new Error(`could not apply the subtasks' changes: ${applied.stderr.trim().slice(0, 300)}`);
    }
    const subtask = ctx.subtasks[index]!;
    const file = `${fileOf(index)}.diff`;
    let conflicted = (await git("git diff --name-only --diff-filter=U")).stdout.split("\n").filter(Boolean);
    if (conflicted.length === 0) {
      // No three-way merge was possible (the patch's preimage is not in this repository): what applies is applied, the rest left as .rej files.
      await git('git apply --reject --binary "$SORTIE_PATCH" || true', { SORTIE_PATCH: file });
      conflicted = (await git("git ls-files --others --exclude-standard -- '*.rej'")).stdout.split("\n").filter(Boolean).map((rej) => rej.replace(/\.rej$/, ""));
    }
    ctx.record("integration.conflict", { subtask: subtask.key, files: conflicted, message: applied.stderr.trim().slice(0, 1000) });
    if (conflicted.length === 0) {
      return failed({ code: "integration_conflict", message: `the change of "${subtask.key}" does not apply: ${applied.stderr.trim().slice(0, 300)}` });
    }
    const meeting = ctx.subtasks.slice(0, index + 1).filter((s) => s === subtask || pathsMeet(s.patch, conflicted));
    const ended = await ctx.resolveConflict(sandbox, repoDir, conflicted, meeting);
    const markers = (await git(MARKERS_LEFT)).stdout.split("\n").filter(Boolean);
    ctx.record("integration.resolved", { subtask: subtask.key, files: conflicted, ok: ended && markers.length === 0, markers });
    if (!ended || markers.length > 0) {
      return failed({ code: "integration_conflict", message: `the integrator could not resolve the conflict of "${subtask.key}" in ${conflicted.join(", ")}` });
    }
    resolved.push(subtask.key);
    resolutions.push({ subtask: subtask.key, files: conflicted, meeting: meeting.map((s) => s.key) });
    const committed = await git('git add -A && git commit -q --allow-empty --no-verify -F "$SORTIE_MESSAGE_FILE"', { SORTIE_MESSAGE_FILE: `${fileOf(index)}.msg` });
    if (committed.exitCode !== 0) throw new Error(`could not commit "${subtask.key}": ${committed.stderr.trim().slice(0, 300)}`);
    from = index + 1;
  }
  try {
    await ctx.setUp(sandbox, repoDir);
  } catch (error) {
    return failed({ code: "setup_failed", message: `the repository's setup failed on the combined change: ${messageOf(error)}` });
  }
  // A check the tree of a resolution fails: `.sortie/test.sh`, or the acceptance of a subtask whose change met in it.
  const resolutionsOwn = (check: IntegrationCheck) => resolutions.length > 0 && (check.subtask === null || resolutions.some((r) => r.meeting.includes(check.subtask!)));
  let checks = await runChecks(ctx, repoDir);
  let failing = checks.find((check) => check.exitCode !== 0) ?? null;
  let repair: "fixed" | "failed" | null = null;
  if (failing && resolutionsOwn(failing)) {
    repair = (await repairResolution(ctx, git, repoDir, failing, resolutions)) ? "fixed" : "failed";
    if (repair === "fixed") {
      checks = await runChecks(ctx, repoDir);
      failing = checks.find((check) => check.exitCode !== 0) ?? null;
    }
  }
  if (failing) {
    // The integrator had its one turn at a failure of its resolutions; any other failure is its owner's.
    const integratorAnswered = repair !== null && resolutionsOwn(failing);
    const of = failing.subtask === null ? "the repository's .sortie/test.sh" : `\`${failing.command}\` (of "${failing.subtask}")`;
    const after = repair === "fixed" ? ", after the integrator's fix of its conflict resolution" : repair === "failed" ? "; the integrator's fix of its conflict resolution failed or was refused" : "";
    return failed({ code: "check_failed", message: `${of} exited ${failing.exitCode}${after}` }, checks, failing, integratorAnswered);
  }
  const taken = await takeDiff(sandbox, repoDir, base, `${sandbox.workdir}/plan.diff`);
  const bytes = await ctx.storeDiff(await sandbox.readFile(taken.path));
  return { status: "succeeded", diff: { ...taken.stats, bytes }, checks, resolved, base };
}

/**
 * The integrator agent's turn at a check its resolutions broke, committed on the branch if it ended well, left no
 * conflict marker or rejected hunk, and changed none of the repository's own checks (`.sortie/`: a fix may not
 * pass a test by rewriting it). A fix refused is undone. True when one was committed.
 */
async function repairResolution(
  ctx: IntegrationContext,
  git: (script: string, env?: Record<string, string>) => Promise<{ exitCode: number; stdout: string; stderr: string }>,
  repoDir: string,
  failing: IntegrationCheck,
  resolutions: Resolution[],
): Promise<boolean> {
  const ended = await ctx.repairResolution(ctx.sandbox, repoDir, failing, resolutions);
  const touched = ended ? (await git("git add -A && git diff --cached --name-only")).stdout.split("\n").filter(Boolean) : [];
  const checksChanged = touched.filter((file) => file.startsWith(".sortie/"));
  const markers = ended ? (await git(MARKERS_LEFT)).stdout.split("\n").filter(Boolean) : [];
  const committed = ended && checksChanged.length === 0 && markers.length === 0
    ? (await git('git commit -q --allow-empty --no-verify -m "$SORTIE_MESSAGE"', { SORTIE_MESSAGE: `integrator: fix \`${failing.command}\` after resolving conflicts` })).exitCode === 0
    : false;
  if (!committed) await git("git reset -q --hard HEAD");
  const refused = checksChanged.length > 0 ? `it changed the repository's checks: ${checksChanged.join(", ")}` : markers.length > 0 ? `it left conflicts in ${markers.join(", ")}` : undefined;
  ctx.record("integration.repair", { command: failing.command, exitCode: failing.exitCode, subtask: failing.subtask, ok: committed, ...(refused ? { refused } : {}) });
  return committed;
}

/**
 * Every subtask's acceptance commands in dependency order, then `.sortie/test.sh` when the tree has one, up to the
 * first that fails.
 */
async function runChecks(ctx: IntegrationContext, repoDir: string): Promise<IntegrationCheck[]> {
  const { sandbox } = ctx;
  const checks: IntegrationCheck[] = [];
  const runCheck = async (command: string, subtask: string | null) => {
    const result = await sandbox.exec('cd "$SORTIE_REPO" && bash -c "$SORTIE_CHECK" 2>&1', { env: { SORTIE_REPO: repoDir, SORTIE_CHECK: command }, timeoutMs: CHECK_TIMEOUT_MS }).catch((error: unknown) => ({ exitCode: -1, stdout: messageOf(error), stderr: "" }));
    const check = { command, exitCode: result.exitCode, subtask, output: `${result.stdout}${result.stderr}`.slice(-CHECK_OUTPUT_CHARS) };
    checks.push(check);
    ctx.record("integration.check", { command, exitCode: check.exitCode, subtask });
    return check.exitCode === 0;
  };
  for (const subtask of ctx.subtasks) {
    for (const command of subtask.acceptance) if (!(await runCheck(command, subtask.key))) return checks;
  }
  const hasTest = await sandbox.exec('test -f "$SORTIE_REPO/.sortie/test.sh"', { env: { SORTIE_REPO: repoDir } });
  if (hasTest.exitCode === 0) await runCheck("bash .sortie/test.sh", null);
  return checks;
}

/** Whether a patch touches one of `files`. */
function pathsMeet(patch: string, files: string[]): boolean {
  return files.some((file) => patch.includes(` b/${file}\n`));
}
