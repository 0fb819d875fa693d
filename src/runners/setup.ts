/**
 * The repository's setup step (install dependencies, build), run once after
 * the clone and before the agent: `setup` from the task, or the repository's
 * own `.sortie/setup.sh`. Its output is streamed line by line.
 */
import type { Sandbox } from "../sandbox/port.ts";
import { LineSplitter } from "./lines.ts";

export class SetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SetupError";
  }
}

/** Lockfiles whose content decides what a dependency cache holds. */
const LOCKFILES = "package-lock.json npm-shrinkwrap.json pnpm-lock.yaml yarn.lock bun.lockb Cargo.lock go.sum poetry.lock uv.lock Pipfile.lock requirements.txt Gemfile.lock";

/** A short hash of the repository's lockfiles, for the dependency cache's key. */
export async function lockfileHash(sandbox: Sandbox, repoDir: string): Promise<string> {
  const script = `cd "$SORTIE_REPO" && found=$(ls -1 ${LOCKFILES} 2>/dev/null || true) && if [ -z "$found" ]; then echo none; else cat $found | sha256sum | cut -c1-16; fi`;
  const result = await sandbox.exec(script, { env: { SORTIE_REPO: repoDir } });
  return result.stdout.trim() || "none";
}

/** Package managers' cache locations, all under one shared directory. */
export function cacheEnv(dir: string): Record<string, string> {
  return {
    SORTIE_CACHE_DIR: dir,
    npm_config_cache: `${dir}/npm`,
    npm_config_store_dir: `${dir}/pnpm`,
    YARN_CACHE_FOLDER: `${dir}/yarn`,
    PIP_CACHE_DIR: `${dir}/pip`,
    UV_CACHE_DIR: `${dir}/uv`,
    CARGO_HOME: `${dir}/cargo`,
    GOMODCACHE: `${dir}/go/mod`,
    GOCACHE: `${dir}/go/build`,
  };
}

/**
 * Runs the setup command if there is one; returns false when there is none.
 * A non-zero exit throws SetupError with the last lines it printed.
 */
/** The setup command to run: the task's own, else the repository's `.sortie/setup.sh`, else none. */
export async function findSetup(sandbox: Sandbox, repoDir: string, command: string | null): Promise<string | null> {
  if (command) return command;
  const found = await sandbox.exec('test -f "$SORTIE_REPO/.sortie/setup.sh"', { env: { SORTIE_REPO: repoDir }, bookkeeping: true });
  return found.exitCode === 0 ? "bash .sortie/setup.sh" : null;
}

export async function runSetup(
  sandbox: Sandbox,
  options: { repoDir: string; command: string | null; env: Record<string, string>; signal?: AbortSignal },
  onLine: (stream: "stdout" | "stderr", text: string) => void,
  onStart: () => void = () => {},
): Promise<boolean> {
  const command = await findSetup(sandbox, options.repoDir, options.command);
  if (!command) return false;
  onStart();
  // The command travels in a variable, like every other user input.
  const { processId } = await sandbox.startProcess('bash -c "$SORTIE_SETUP"', { cwd: options.repoDir, env: { ...options.env, SORTIE_SETUP: command } });
  const splitters = { stdout: new LineSplitter(), stderr: new LineSplitter() };
  const tail: string[] = [];
  const take = (stream: "stdout" | "stderr", line: string) => {
    tail.push(line);
    if (tail.length > 5) tail.shift();
    onLine(stream, line);
  };
  for await (const output of sandbox.streamProcess(processId, { signal: options.signal })) {
    if (output.kind === "exit") {
      for (const stream of ["stdout", "stderr"] as const) for (const line of splitters[stream].flush()) take(stream, line);
      if (output.exitCode !== 0) throw new SetupError(`setup exited ${output.exitCode}: ${tail.join("\n").slice(-1000)}`);
      // What setup made (node_modules, build output) is not the agent's change: keep it out of the diff.
      // Worktrees share one exclude file: a path already listed is not listed again.
      await sandbox.exec(
        'cd "$SORTIE_REPO" && exclude="$(git rev-parse --git-path info/exclude)" && mkdir -p "$(dirname "$exclude")" && touch "$exclude" && git ls-files --others --exclude-standard --directory | sed "s|^|/|" | while read -r p; do grep -qxF "$p" "$exclude" || printf "%s\\n" "$p" >> "$exclude"; done',
        { env: { SORTIE_REPO: options.repoDir } },
      );
      return true;
    }
    for (const line of splitters[output.kind].push(output.data)) take(output.kind, line);
  }
  return true;
}
