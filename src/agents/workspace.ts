/**
 * Preparing a run's workspace: a clone and the setup step, done once and
 * shared. The first run of a task clones, sets up and snapshots; the task's
 * other runs restore that snapshot instead of repeating the work; later tasks
 * on the same repository, branch and base commit restore a warm snapshot.
 */
import { cacheEnv, findSetup, lockfileHash, runSetup } from "../runners/setup.ts";
import { dirBytes, dirExists, headCommit, remoteHead } from "../sandbox/files.ts";
import type { Sandbox } from "../sandbox/port.ts";
import type { TaskSpec } from "../schema.ts";

export interface WarmSnapshots {
  findWarm(key: string): Promise<string | null>;
  /** Records a warm snapshot of `bytes`; an older one of the same `family` is outdated by it. Returns the ids it displaced, to drop. */
  putWarm(key: string, snapshotId: string, bytes: number, family: string): Promise<string[]>;
}

export interface WorkspaceContext {
  sandbox: Sandbox;
  spec: TaskSpec;
  repoDir: string;
  warm: WarmSnapshots;
  /** The task's own snapshot: the first run to get here makes it, the others wait for it. */
  shared: { snapshot?: Promise<string | null> };
  signal: AbortSignal;
  setPhase(phase: "cloning" | "setup"): void;
  record(type: string, data: Record<string, unknown>): void;
  dropSnapshot(snapshotId: string): Promise<void>;
}

export type WorkspaceSource = "clone" | "snapshot" | "warm";

/** What a warm snapshot is of, but for the commit: the repository, the branch and the setup. */
export function warmFamilyOf(spec: TaskSpec): string {
  return `${spec.repo}@${spec.branch ?? "HEAD"}#${shortHash(spec.setup ?? "")}`;
}

export async function prepareWorkspace(ctx: WorkspaceContext): Promise<{ commit: string; source: WorkspaceSource }> {
  const { sandbox, spec, repoDir } = ctx;
  const head = await remoteHead(sandbox, spec.cloneUrl, spec.branch);
  const family = warmFamilyOf(spec);
  const key = head ? `${family}@${head}` : null;

  if (key) {
    const warm = await ctx.warm.findWarm(key);
    if (warm && (await tryRestore(ctx, warm, head!))) return { commit: head!, source: "warm" };
  }
  if (ctx.shared.snapshot) {
    const snapshot = await ctx.shared.snapshot;
    if (snapshot && head && (await tryRestore(ctx, snapshot, head))) return { commit: head, source: "snapshot" };
  }

  let made!: (snapshot: string | null) => void;
  ctx.shared.snapshot ??= new Promise((resolve) => (made = resolve));
  const mine = made !== undefined;
  try {
    ctx.setPhase("cloning");
    const { commit } = await sandbox.checkout(spec.cloneUrl, { dir: repoDir, branch: spec.branch });
    ctx.record("run.cloned", { commit });
    await setUpCheckout(ctx, repoDir);
    const bytes = await dirBytes(sandbox, repoDir);
    const snapshot = await sandbox.snapshot(repoDir).catch((error: unknown) => {
      // A snapshot only saves the other runs time: without one they clone and set up themselves.
      ctx.record("run.snapshot_failed", { message: error instanceof Error ? error.message : String(error) });
      return null;
    });
    // Setup takes a while: a branch that moved meanwhile has a newer snapshot coming, which this one must not replace.
    if (snapshot && key && commit === head && (await remoteHead(sandbox, spec.cloneUrl, spec.branch)) === head) {
      for (const displaced of await ctx.warm.putWarm(key, snapshot, bytes, family)) await ctx.dropSnapshot(displaced);
    }
    if (mine) made(snapshot);
    return { commit, source: "clone" };
  } catch (error) {
    if (mine) made(null);
    throw error;
  }
}

/** Directories package managers install into inside a checkout: kept per lockfile, restored before setup. */
const DEPENDENCY_DIRS = ["node_modules", ".venv"] as const;

/** What setting up a checkout borrows: the sandbox, the task, the warm index and the event log. */
export type SetupContext = Pick<WorkspaceContext, "sandbox" | "spec" | "warm" | "signal" | "setPhase" | "record" | "dropSnapshot">;

/**
 * Runs the setup step in a checkout with the dependency cache of its
 * lockfile: the package managers' caches (SORTIE_CACHE_DIR and the variables
 * of cacheEnv), and the dependency directories (node_modules, .venv) the
 * last setup with the same lockfile left, restored copy-on-write, so an
 * `npm install` finds its work done. After a successful setup both are kept
 * for the next run; a new lockfile starts empty. Returns whether there was
 * a setup to run.
 */
export async function setUpCheckout(ctx: SetupContext, repoDir: string): Promise<boolean> {
  const { sandbox, spec } = ctx;
  const command = await findSetup(sandbox, repoDir, spec.setup);
  if (!command) return false;
  const lockHash = await lockfileHash(sandbox, repoDir);
  const cacheKey = `${spec.repo.replace("/", "--")}-${lockHash}`;
  const cache = await sandbox.cacheDir(cacheKey);
  // What a setup installs depends on its command too: another task's setup never hands its node_modules to this one.
  const depsFamily = (dir: string) => `deps:${spec.repo}@${spec.branch ?? "HEAD"}#${shortHash(spec.setup ?? "")}:${dir}`;
  const depsKey = (dir: string) => `${depsFamily(dir)}@${lockHash}`;
  const restored: string[] = [];
  if (lockHash !== "none") {
    for (const dir of DEPENDENCY_DIRS) {
      const snapshot = await ctx.warm.findWarm(depsKey(dir));
      if (!snapshot) continue;
      try {
        await sandbox.restore(snapshot, `${repoDir}/${dir}`);
        restored.push(dir);
      } catch (error) {
        ctx.record("run.snapshot_missed", { snapshot, message: error instanceof Error ? error.message : String(error) });
      }
    }
  }
  if (restored.length) ctx.record("run.dependencies_restored", { dirs: restored, lockfile: lockHash });
  const started = Date.now();
  let succeeded = false;
  try {
    await runSetup(
      sandbox,
      { repoDir, command, env: cache ? cacheEnv(cache) : {}, signal: ctx.signal },
      (stream, text) => ctx.record("log", { stream, text, phase: "setup" }),
      () => ctx.setPhase("setup"),
    );
    succeeded = true;
  } finally {
    // Kept for later runs after a setup that succeeded; a failed setup's half-filled cache goes.
    if (cache) {
      await sandbox.finishCache(cacheKey, cache, succeeded).catch((error: unknown) => {
        ctx.record("run.cache_not_saved", { message: error instanceof Error ? error.message : String(error) });
      });
    }
  }
  ctx.record("run.setup", { durationMs: Date.now() - started, cache: cache !== null, dependencies: restored });
  if (lockHash === "none") return true;
  for (const dir of DEPENDENCY_DIRS) {
    if (restored.includes(dir)) continue;
    if (!(await dirExists(sandbox, `${repoDir}/${dir}`))) continue;
    const bytes = await dirBytes(sandbox, `${repoDir}/${dir}`);
    const snapshot = await sandbox.snapshot(`${repoDir}/${dir}`).catch(() => null);
    if (snapshot) for (const displaced of await ctx.warm.putWarm(depsKey(dir), snapshot, bytes, depsFamily(dir))) await ctx.dropSnapshot(displaced);
  }
  return true;
}

async function tryRestore(ctx: WorkspaceContext, snapshot: string, head: string): Promise<boolean> {
  try {
    await ctx.sandbox.restore(snapshot, ctx.repoDir);
    return (await headCommit(ctx.sandbox, ctx.repoDir)) === head;
  } catch (error) {
    ctx.record("run.snapshot_missed", { snapshot, message: error instanceof Error ? error.message : String(error) });
    return false;
  }
}

function shortHash(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return hash.toString(36);
}
