/**
 * Where a run works, by isolation level, and the walls around it.
 *
 * - `sandbox`: a dedicated sandbox, the repository at `<workdir>/repo`; the
 *   agent runs as the sandbox's root, which is the run's alone.
 * - `analysis`: a dedicated sandbox too, but the checkout is root's and
 *   read-only to the agent, which runs as an unprivileged user whose only
 *   network is the model API; the run hands back an answer, never a diff.
 * - `workspace`: a git worktree in a warm sandbox shared by the repository's
 *   runs (`ws-…`), created from one base clone kept there. Each worktree and
 *   home belongs to a user of its own (mode 0700), so a run cannot read
 *   another's files; the sandbox, its CPU and its network are shared.
 */
import type { Confinement, Sandbox } from "./port.ts";
import type { IsolationLevel, TaskSpec } from "../schema.ts";

export interface Placement {
  level: IsolationLevel;
  /** The checkout the agent works in. */
  repoDir: string;
  /** A directory of the run's own for Sortie's files (the patch). */
  scratchDir: string;
  /** How the agent process is confined; null runs it as the sandbox's root. */
  confine: Confinement | null;
  /** Environment for the agent and for Sortie's git commands in the checkout. */
  gitEnv: Record<string, string>;
}

/** The one user an analysis run's agent runs as: its sandbox is its own, so one id does. */
export const ANALYSIS_UID = 10001;

/** Sandboxes shared by a repository's `workspace` runs are named `ws-…`. */
export function sharedSandboxId(repo: string): string {
  const slug = repo.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 40);
  return `ws-${slug}-${fnv(repo)}`;
}

export function isSharedSandbox(id: string): boolean {
  return id.startsWith("ws-");
}

/** The worktree's name in the shared sandbox: the task and the run. */
export function treeName(taskId: string, slot: number): string {
  return `${taskId}-${slot}`;
}

/** Where the run's files are, derived again after a restart from what the run recorded (`uid`). */
export function placementFor(level: IsolationLevel, workdir: string, taskId: string, slot: number, uid: number | null): Placement {
  if (level === "workspace") {
    const name = treeName(taskId, slot);
    const home = `${workdir}/homes/${name}`;
    const objects = `${workdir}/homes/${name}-objects`;
    return {
      level,
      repoDir: `${workdir}/trees/${name}`,
      scratchDir: `${workdir}/scratch/${name}`,
      confine: { uid: requireUser(uid, name), home },
      // The base clone's object store is root's: what the agent commits goes to a store of its own.
      gitEnv: { GIT_CONFIG_GLOBAL: `${workdir}/homes/.gitconfig`, GIT_OBJECT_DIRECTORY: objects, GIT_ALTERNATE_OBJECT_DIRECTORIES: `${workdir}/base/.git/objects` },
    };
  }
  if (level === "analysis") {
    return {
      level,
      repoDir: `${workdir}/repo`,
      scratchDir: workdir,
      confine: { uid: ANALYSIS_UID, home: `${workdir}/agent-home` },
      gitEnv: { GIT_CONFIG_GLOBAL: `${workdir}/agent.gitconfig` },
    };
  }
  return { level, repoDir: `${workdir}/repo`, scratchDir: workdir, confine: null, gitEnv: {} };
}

/** A workspace run always has its own user; without one recorded it must not run at all (never as root). */
function requireUser(uid: number | null, tree: string): number {
  if (!uid || uid < 1000) throw new WorktreeError(`worktree ${tree} has no user of its own recorded`);
  return uid;
}

/** Makes the checkout root's and read-only to everyone else, and gives the analysis user a git config that trusts it. */
export async function lockDownCheckout(sandbox: Sandbox, placement: Placement): Promise<void> {
  const result = await sandbox.exec(
    [
      "set -eu",
      'chown -R 0:0 "$SORTIE_REPO"',
      'chmod -R a+rX,go-w "$SORTIE_REPO"',
      'printf "[safe]\\n\\tdirectory = *\\n" > "$SORTIE_GITCONFIG"',
      'chmod 0644 "$SORTIE_GITCONFIG"',
    ].join("\n"),
    { env: { SORTIE_REPO: placement.repoDir, SORTIE_GITCONFIG: placement.gitEnv.GIT_CONFIG_GLOBAL ?? "" }, timeoutMs: 5 * 60_000 },
  );
  if (result.exitCode !== 0) throw new Error(`could not make the checkout read-only: ${result.stderr.trim().slice(0, 500)}`);
}

/** The files an analysis run changed (a changed HEAD counts too): empty when the checkout is as it was. */
export async function changesIn(sandbox: Sandbox, placement: Placement, base: string): Promise<string[]> {
  const result = await sandbox.exec('cd "$SORTIE_REPO" && git status --porcelain --untracked-files=all && test "$(git rev-parse HEAD)" = "$SORTIE_BASE" || echo "HEAD moved"', {
    env: { SORTIE_REPO: placement.repoDir, SORTIE_BASE: base, ...placement.gitEnv },
  });
  return result.stdout.split("\n").map((line) => line.trim()).filter(Boolean);
}

/**
 * Brings the shared sandbox's base clone to the branch's head and adds the
 * run's worktree there, owned by a user no other worktree has. The lock
 * serializes worktree changes between the runs that share the sandbox.
 */
const WORKTREE_SCRIPT = `set -eu
cd "$SORTIE_WORKDIR"
mkdir -p trees homes scratch
chmod 0711 trees homes scratch
exec 9> .sortie.lock
flock 9
git config --global safe.directory '*'
printf '[safe]\\n\\tdirectory = *\\n' > homes/.gitconfig
chmod 0644 homes/.gitconfig
if [ ! -d base/.git ]; then
  rm -rf base
  git init -q base
  git -C base remote add origin "$SORTIE_REPO_URL"
fi
# A base left half made (no origin) or locked by a fetch that was killed is made again.
rm -f base/.git/shallow.lock
git -C base remote get-url origin > /dev/null 2>&1 || { rm -rf base; git init -q base; git -C base remote add origin "$SORTIE_REPO_URL"; }
git -C base fetch -q --depth=1 origin "$SORTIE_REF"
commit=$(git -C base rev-parse FETCH_HEAD)
rm -rf "trees/$SORTIE_TREE" "homes/$SORTIE_TREE" "homes/$SORTIE_TREE-objects" "scratch/$SORTIE_TREE"
# Trees nobody took away (a removal that failed) go once idle for longer than a kept workspace may live.
for stale in $(find trees -mindepth 1 -maxdepth 1 -type d -mmin +1500 2>/dev/null); do
  owner=$(stat -c %u "$stale")
  if [ "$owner" -ge 1000 ] && ! pgrep -U "$owner" > /dev/null; then
    awk -v t="$PWD/$stale" 'index($2, t) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do umount -l "$m" || true; done
    name=$(basename "$stale")
    rm -rf "$stale" "homes/$name" "homes/$name-objects" "scratch/$name" "collected/$name-sortie.diff"
  fi
done
git -C base worktree prune
# Without a checkout: the files come from a template of this commit, or from \`populateWorktree\`.
git -C base worktree add -q --detach --no-checkout "$PWD/trees/$SORTIE_TREE" "$commit"
# A run's user is taken from the moment its scratch directory is its (the tree is handed over after setup).
used=$(stat -c %u trees/*/ scratch/*/ 2>/dev/null | sort -u)
# Each sandbox's users start at SORTIE_UID_BASE (the local host gives every sandbox its own range).
uid_base=\${SORTIE_UID_BASE:-20000}
uid=""
for candidate in $(seq $((uid_base + 1)) $((uid_base + 999))); do
  # Free: no worktree owns it, and no process of an earlier run still runs as it.
  if ! printf '%s\\n' "$used" | grep -qx "$candidate" && ! pgrep -U "$candidate" > /dev/null; then uid=$candidate; break; fi
done
test -n "$uid"
# Root's until setup is over (root inside the walls may enter only what root owns); handOverWorktree gives it away.
chmod 0700 "trees/$SORTIE_TREE"
mkdir -p "scratch/$SORTIE_TREE"
chown "$uid:$uid" "scratch/$SORTIE_TREE"
chmod 0700 "scratch/$SORTIE_TREE"
echo "SORTIE_COMMIT=$commit"
echo "SORTIE_UID=$uid"
`;

/** Adds the run's worktree in the shared sandbox; returns the commit it is at and the user it belongs to. */
export async function addWorktree(sandbox: Sandbox, spec: TaskSpec, slot: number): Promise<{ commit: string; uid: number }> {
  const result = await sandbox.exec(WORKTREE_SCRIPT, {
    env: {
      SORTIE_WORKDIR: sandbox.workdir,
      SORTIE_REPO_URL: spec.cloneUrl,
      SORTIE_REF: spec.branch ? `refs/heads/${spec.branch}` : "HEAD",
      SORTIE_TREE: treeName(spec.id, slot),
    },
    timeoutMs: 10 * 60_000,
    bookkeeping: true,
  });
  const commit = /^SORTIE_COMMIT=([0-9a-f]{40})$/m.exec(result.stdout)?.[1];
  const uid = Number(/^SORTIE_UID=(\d+)$/m.exec(result.stdout)?.[1]);
  if (result.exitCode !== 0 || !commit || !uid) {
    throw new WorktreeError(`could not add a worktree for ${spec.repo}: ${(result.stderr || result.stdout).trim().slice(-1000)}`);
  }
  return { commit, uid };
}

/** Checks the worktree's files out (no template of its commit was there to restore). */
export async function populateWorktree(sandbox: Sandbox, placement: Placement): Promise<void> {
  const result = await sandbox.exec('git -C "$SORTIE_TREE" reset -q --hard', { env: { SORTIE_TREE: placement.repoDir }, timeoutMs: 10 * 60_000 });
  if (result.exitCode !== 0) throw new WorktreeError(`could not check the worktree out: ${result.stderr.trim().slice(0, 500)}`);
}

/**
 * Fills a new worktree from a template: a snapshot of an earlier worktree
 * of the same commit and setup, taken right after its setup, restored
 * copy-on-write. The template's `.git` file names the earlier worktree, so
 * this one's is put back, and its index is built from HEAD. False when the
 * template is gone.
 */
export async function adoptTemplate(sandbox: Sandbox, placement: Placement, template: string): Promise<boolean> {
  const read = await sandbox.exec('cat "$SORTIE_TREE/.git"', { env: { SORTIE_TREE: placement.repoDir } });
  const gitFile = read.stdout.trim();
  if (read.exitCode !== 0 || !gitFile.startsWith("gitdir: ")) throw new WorktreeError(`worktree ${placement.repoDir} has no .git file`);
  try {
    await sandbox.restore(template, placement.repoDir);
  } catch {
    // Gone (dropped, expired): nothing was restored, so the worktree is checked out as usual.
    return false;
  }
  // From here the tree holds the template, whose .git names another worktree: a failure must not fall back to git commands there.
  const result = await sandbox.exec('printf \'%s\\n\' "$SORTIE_GITFILE" > "$SORTIE_TREE/.git" && git -C "$SORTIE_TREE" reset -q', {
    env: { SORTIE_TREE: placement.repoDir, SORTIE_GITFILE: gitFile },
    timeoutMs: 10 * 60_000,
  });
  if (result.exitCode !== 0) throw new WorktreeError(`could not adopt the template: ${result.stderr.trim().slice(0, 500)}`);
  return true;
}

/** After setup (which ran as root), hands the worktree, its git metadata and its object store to the run's user. */
export async function handOverWorktree(sandbox: Sandbox, placement: Placement): Promise<void> {
  const uid = placement.confine?.uid;
  const result = await sandbox.exec(
    [
      "set -eu",
      'meta=$(git -C "$SORTIE_TREE" rev-parse --absolute-git-dir)',
      'mkdir -p "$SORTIE_OBJECTS"',
      'scratch="$(dirname "$(dirname "$SORTIE_TREE")")/scratch/$(basename "$SORTIE_TREE")"',
      'chown -R "$SORTIE_UID:$SORTIE_UID" "$SORTIE_TREE" "$meta" "$SORTIE_OBJECTS" "$scratch"',
      'chmod 0700 "$SORTIE_TREE" "$meta" "$SORTIE_OBJECTS" "$scratch"',
    ].join("\n"),
    { env: { SORTIE_TREE: placement.repoDir, SORTIE_OBJECTS: placement.gitEnv.GIT_OBJECT_DIRECTORY ?? "", SORTIE_UID: String(uid) }, timeoutMs: 5 * 60_000, bookkeeping: true },
  );
  if (result.exitCode !== 0) throw new WorktreeError(`could not hand the worktree over: ${result.stderr.trim().slice(0, 500)}`);
}

/**
 * Takes a file the run's user wrote (the patch) into root's hands: every
 * process of that user is ended first, so none can swap the file for a link
 * to something only root may read while root copies it; a link or anything
 * but a plain file is refused. Returns the copy's path.
 */
export async function collectFromUser(sandbox: Sandbox, placement: Placement, file: string): Promise<string> {
  const uid = placement.confine?.uid;
  if (!uid) return file;
  const into = `${sandbox.workdir}/collected/${file.split("/").slice(-2).join("-")}`;
  const result = await sandbox.exec(
    [
      "set -eu",
      'pkill -KILL -U "$SORTIE_UID" || true',
      'for _ in $(seq 1 50); do pgrep -U "$SORTIE_UID" > /dev/null || break; sleep 0.1; done',
      'if pgrep -U "$SORTIE_UID" > /dev/null; then echo "processes of user $SORTIE_UID survive" >&2; exit 1; fi',
      'if [ -L "$SORTIE_FROM" ] || [ ! -f "$SORTIE_FROM" ]; then echo "$SORTIE_FROM is not a plain file" >&2; exit 1; fi',
      'mkdir -p "$(dirname "$SORTIE_TO")" && chmod 0700 "$(dirname "$SORTIE_TO")"',
      'cp --no-dereference -- "$SORTIE_FROM" "$SORTIE_TO"',
    ].join("\n"),
    { env: { SORTIE_UID: String(uid), SORTIE_FROM: file, SORTIE_TO: into }, timeoutMs: 5 * 60_000, bookkeeping: true },
  );
  if (result.exitCode !== 0) throw new WorktreeError(`could not collect ${file}: ${result.stderr.trim().slice(0, 500)}`);
  return into;
}

/** Removes the run's worktree, home and scratch from the shared sandbox; the base clone stays warm. */
export async function removeWorktree(sandbox: Sandbox, taskId: string, slot: number): Promise<void> {
  const result = await sandbox.exec(
    [
      "set -eu",
      'cd "$SORTIE_WORKDIR"',
      "exec 9> .sortie.lock",
      "flock 9",
      // The run's agent may still be running (a cancel, a timeout): end every process of its user first.
      'uid=$(stat -c %u "trees/$SORTIE_TREE" 2>/dev/null || true)',
      'if [ -n "$uid" ] && [ "$uid" -ge 1000 ]; then pkill -KILL -U "$uid" || true; fi',
      // A dependency directory restored copy-on-write is a mount inside the tree.
      `awk -v t="$PWD/trees/$SORTIE_TREE" 'index($2, t) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do umount -l "$m" || true; done`,
      'rm -rf "trees/$SORTIE_TREE" "homes/$SORTIE_TREE" "homes/$SORTIE_TREE-objects" "scratch/$SORTIE_TREE" "collected/$SORTIE_TREE-sortie.diff"',
      "if [ -d base/.git ]; then git -C base worktree prune; fi",
    ].join("\n"),
    { env: { SORTIE_WORKDIR: sandbox.workdir, SORTIE_TREE: treeName(taskId, slot) }, timeoutMs: 5 * 60_000, bookkeeping: true },
  );
  if (result.exitCode !== 0) throw new Error(`could not remove worktree ${treeName(taskId, slot)}: ${result.stderr.trim().slice(0, 500)}`);
}

/** The worktree could not be made (the repository or branch is unreachable, or git failed). */
export class WorktreeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WorktreeError";
  }
}

function fnv(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return hash.toString(36);
}
