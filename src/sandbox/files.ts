/**
 * The file and git operations jobs need from a sandbox, as typed calls: what
 * runs in the sandbox's shell is written here, once, with every path and
 * value passed in environment variables. `src/agents` decides what to do
 * and calls these; it composes no shell of its own.
 */
import type { Confinement, ExecOptions, Sandbox } from "./port.ts";

/** A user of the sandbox: its uid and home, for commands that must run as it. */
export type SandboxUser = Pick<Confinement, "uid" | "home">;

/** Why a typed operation failed, in the sandbox's own words (stderr). */
export class SandboxFileError extends Error {
  constructor(what: string, stderr: string) {
    super(`${what}: ${stderr.trim().slice(0, 300) || "no output"}`);
    this.name = "SandboxFileError";
  }
}

/** Root's own commands (outside a local sandbox's walls) when a user is named, for chown and friends. */
const asRoot = (user: SandboxUser | null | undefined): ExecOptions => (user ? { bookkeeping: true } : {});

/** Makes `dir` (mode 0700), owned by `owner` when given. */
export async function makePrivateDir(sandbox: Sandbox, dir: string, owner?: SandboxUser | null): Promise<void> {
  const made = await sandbox.exec(owner ? 'install -d -m 0700 -o "$SORTIE_UID" -g "$SORTIE_UID" "$SORTIE_DIR"' : 'install -d -m 0700 "$SORTIE_DIR"', {
    env: { SORTIE_DIR: dir, ...(owner ? { SORTIE_UID: String(owner.uid) } : {}) },
    ...asRoot(owner),
  });
  if (made.exitCode !== 0) throw new SandboxFileError(`could not make ${dir}`, made.stderr);
}

/** Makes `file` read-only (0400), and `owner`'s when given. */
export async function handOverReadOnly(sandbox: Sandbox, file: string, owner?: SandboxUser | null): Promise<void> {
  const done = await sandbox.exec(owner ? 'chown "$SORTIE_UID:$SORTIE_UID" "$SORTIE_FILE" && chmod 0400 "$SORTIE_FILE"' : 'chmod 0400 "$SORTIE_FILE"', {
    env: { SORTIE_FILE: file, ...(owner ? { SORTIE_UID: String(owner.uid) } : {}) },
    ...asRoot(owner),
  });
  if (done.exitCode !== 0) throw new SandboxFileError(`could not hand over ${file}`, done.stderr);
}

/**
 * At most `maxBytes` of `file`, read as `reader` when given (so a link it
 * planted reaches nothing it could not read itself); null when there is no
 * such plain file (with `plainOnly`, a link counts as none).
 */
export async function readFileCapped(sandbox: Sandbox, file: string, maxBytes: number, options: { reader?: SandboxUser | null; plainOnly?: boolean } = {}): Promise<string | null> {
  const test = options.plainOnly ? '[ -f "$SORTIE_FILE" ] && [ ! -L "$SORTIE_FILE" ]' : '[ -f "$SORTIE_FILE" ]';
  const read = await sandbox.exec(`if ${test}; then head -c "$SORTIE_BYTES" -- "$SORTIE_FILE"; else exit ${NO_FILE}; fi`, {
    env: { SORTIE_FILE: file, SORTIE_BYTES: String(maxBytes) },
    ...(options.reader ? { confine: { uid: options.reader.uid, home: options.reader.home } } : {}),
  });
  if (read.exitCode === NO_FILE) return null;
  if (read.exitCode !== 0) throw new SandboxFileError(`could not read ${file}`, read.stderr);
  return read.stdout;
}

/** The exit status of a read that found no such file. */
const NO_FILE = 3;

/** Whether `dir` exists. */
export async function dirExists(sandbox: Sandbox, dir: string): Promise<boolean> {
  return (await sandbox.exec('test -d "$SORTIE_DIR"', { env: { SORTIE_DIR: dir }, bookkeeping: true })).exitCode === 0;
}

/** How many bytes a directory holds (for the warm snapshots' size cap); 0 if unknown. du follows no links and runs nothing it finds. */
export async function dirBytes(sandbox: Sandbox, dir: string): Promise<number> {
  const result = await sandbox.exec('du -sb "$SORTIE_DIR" | cut -f1', { env: { SORTIE_DIR: dir }, bookkeeping: true });
  return Number(result.stdout.trim()) || 0;
}

/** Writes the text `base64` decodes to as the binary file `file`: files travel into a sandbox as text. */
export async function writeBinaryFile(sandbox: Sandbox, file: string, bytes: Uint8Array): Promise<void> {
  let binary = "";
  for (let at = 0; at < bytes.length; at += 0x8000) binary += String.fromCharCode(...bytes.subarray(at, at + 0x8000));
  await sandbox.writeFile(`${file}.b64`, btoa(binary));
  const decoded = await sandbox.exec('base64 -d "$SORTIE_IN" > "$SORTIE_OUT" && rm -f "$SORTIE_IN"', { env: { SORTIE_IN: `${file}.b64`, SORTIE_OUT: file }, bookkeeping: true });
  if (decoded.exitCode !== 0) throw new SandboxFileError(`could not write ${file}`, decoded.stderr);
}

/** The commit a checkout's HEAD is at, or null if it cannot be read. */
export async function headCommit(sandbox: Sandbox, repoDir: string): Promise<string | null> {
  const check = await sandbox.exec('git -C "$SORTIE_REPO" rev-parse HEAD', { env: { SORTIE_REPO: repoDir } });
  const commit = check.stdout.trim();
  return check.exitCode === 0 && /^[0-9a-f]{40}$/.test(commit) ? commit : null;
}

/** The commit a branch (or the default branch) points at, asked of the remote without cloning; null if unknown. */
export async function remoteHead(sandbox: Sandbox, url: string, branch: string | null): Promise<string | null> {
  const result = await sandbox.exec('git ls-remote -- "$SORTIE_REPO_URL" "${SORTIE_BRANCH:-HEAD}"', {
    env: { SORTIE_REPO_URL: url, SORTIE_BRANCH: branch ? `refs/heads/${branch}` : "" },
    timeoutMs: 60_000,
    bookkeeping: true,
  });
  return result.exitCode === 0 ? (/^([0-9a-f]{40})\s/m.exec(result.stdout)?.[1] ?? null) : null;
}

/** Stages `file` in the checkout at `repoDir` and writes the staged change, binary-safe, to `patchPath`. */
export async function stagedPatch(sandbox: Sandbox, repoDir: string, file: string, patchPath: string): Promise<void> {
  const diff = await sandbox.exec('cd "$SORTIE_DIR" && git add -- "$SORTIE_FILE" && git diff --cached --binary > "$SORTIE_PATCH"', { env: { SORTIE_DIR: repoDir, SORTIE_FILE: file, SORTIE_PATCH: patchPath } });
  if (diff.exitCode !== 0) throw new SandboxFileError(`could not take the change of ${file}`, diff.stderr);
}

/** Applies `patches` in order on the checkout at `repoDir` and commits them as one commit; returns it. */
export async function commitPatches(sandbox: Sandbox, repoDir: string, patches: readonly string[], message: string): Promise<string> {
  const dir = `${sandbox.workdir}/patches-${Date.now().toString(36)}`;
  for (const [index, patch] of patches.entries()) await sandbox.writeFile(`${dir}/${String(index).padStart(3, "0")}.diff`, patch);
  const result = await sandbox.exec(
    [
      "set -eu",
      'cd "$SORTIE_REPO"',
      'for patch in "$SORTIE_PATCHES"/*.diff; do git apply --index --binary "$patch"; done',
      'git -c user.name=Sortie -c user.email=sortie@localhost commit -q --allow-empty --no-verify -m "$SORTIE_MESSAGE"',
      "git rev-parse HEAD",
    ].join("\n"),
    { env: { SORTIE_REPO: repoDir, SORTIE_PATCHES: dir, SORTIE_MESSAGE: message }, timeoutMs: 5 * 60_000 },
  );
  if (result.exitCode !== 0) throw new SandboxFileError("could not apply the patches", result.stderr);
  const commit = result.stdout.trim().split("\n").at(-1) ?? "";
  if (!/^[0-9a-f]{40}$/.test(commit)) throw new SandboxFileError("could not read the commit of the patches", result.stderr);
  return commit;
}

/** Whether the sandbox still runs a command (the watchdog's probe). */
export async function answers(sandbox: Sandbox): Promise<boolean> {
  try {
    return (await sandbox.exec("true", { timeoutMs: 10_000 })).exitCode === 0;
  } catch {
    return false;
  }
}
