/**
 * Publishing a repository's approved memory as a pull request: in a
 * publisher sandbox of its own, the repository's `AGENTS.md` gets its managed
 * section (src/publish/agents-md.ts) rewritten, and the change goes out
 * through the same steps as a run's (pushBranch with a token minted right
 * before, then the pull request).
 */
import { readConfig } from "../config.ts";
import { SortieError, messageOf } from "../errors.ts";
import { newTaskId } from "../ids.ts";
import { withMemorySection } from "../publish/agents-md.ts";
import { pushBranch } from "../publish/branch.ts";
import { defaultBranch, mintPushToken, openPullRequest } from "../publish/github.ts";
import { deploymentRedactor } from "../redact.ts";
import { resolveRepo } from "../repo.ts";
import { sandboxPortFor } from "../sandbox/index.ts";
import { readFileCapped, stagedPatch } from "../sandbox/files.ts";
import type { Sandbox } from "../sandbox/port.ts";
import { listMemory } from "../store/memory.ts";

export interface MemoryPublication {
  repo: string;
  branch: string;
  commit: string;
  pullRequest: { number: number; url: string };
  /** The approved entries the section carries. */
  entries: string[];
}

/**
 * Opens a pull request that writes `repo`'s approved entries into its
 * `AGENTS.md`. 409 when there is none to publish, or when the file already
 * carries exactly these.
 */
export async function publishMemory(env: Cloudflare.Env, input: { repo: string; by: string }): Promise<MemoryPublication> {
  const entries = await listMemory(env.DB, input.repo, "approved");
  if (entries.length === 0) throw new SortieError("nothing_to_publish", `${input.repo} has no approved memory entries to publish`, 409);
  const config = readConfig(env);
  const { cloneUrl } = resolveRepo(input.repo, config.gitBaseUrl);
  const port = sandboxPortFor(env, config);
  const sandbox = await port.open(`memory-${newTaskId()}`);
  const secrets: string[] = [];
  try {
    const patchPath = `${sandbox.workdir}/memory.patch`;
    const messagePath = `${sandbox.workdir}/message.txt`;
    await sectionPatch(sandbox, cloneUrl, entries.map((entry) => entry.text), patchPath);
    const title = `Sortie: repository memory (${entries.length} ${entries.length === 1 ? "entry" : "entries"})`;
    const body = [
      `Writes the ${entries.length} approved repository-memory ${entries.length === 1 ? "entry" : "entries"} of \`${input.repo}\` into the managed section of \`AGENTS.md\`.`,
      "",
      `Published by ${input.by} through Sortie; the entries are reviewed in Sortie, and publishing again replaces the section.`,
    ].join("\n");
    await sandbox.writeFile(messagePath, `${title}\n\n${body}\n`);
    const minted = await mintPushToken(env, input.repo);
    secrets.push(minted.token);
    // A local remote is written, not reached: the grant opens its directory to this sandbox's git instead.
    const access = await sandbox.grantGitAccess(cloneUrl, /^https?:/.test(cloneUrl) ? minted.token : "");
    const branch = `sortie/memory/${Date.now().toString(36)}`;
    let commit: string;
    try {
      ({ commit } = await pushBranch(sandbox, { repoUrl: cloneUrl, baseBranch: null, branch, patchPath, messagePath, gitEnv: access?.env ?? {} }));
    } finally {
      await access?.revoke();
    }
    const base = await defaultBranch(env, minted.token, input.repo);
    const pullRequest = await openPullRequest(env, minted.token, { repo: input.repo, head: branch, base, title, body });
    return { repo: input.repo, branch, commit, pullRequest, entries: entries.map((entry) => entry.id) };
  } catch (error) {
    if (error instanceof SortieError) throw error;
    throw new SortieError("publish_failed", deploymentRedactor(env, secrets)(messageOf(error)), 502);
  } finally {
    await sandbox.destroy();
  }
}

/** Clones the repository and writes the patch that gives its AGENTS.md the managed section. */
async function sectionPatch(sandbox: Sandbox, cloneUrl: string, entries: string[], patchPath: string): Promise<void> {
  const dir = `${sandbox.workdir}/source`;
  await sandbox.checkout(cloneUrl, { dir, timeoutMs: 5 * 60_000 });
  const file = `${dir}/AGENTS.md`;
  const current = await readFileCapped(sandbox, file, AGENTS_MD_BYTES);
  const next = withMemorySection(current, entries);
  if (next === current) throw new SortieError("memory_published", "AGENTS.md already carries exactly these approved entries", 409);
  await sandbox.writeFile(file, next);
  await stagedPatch(sandbox, dir, "AGENTS.md", patchPath);
}

/** Largest AGENTS.md read (a repository's own is far smaller). */
const AGENTS_MD_BYTES = 4 << 20;
