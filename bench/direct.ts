/**
 * A run without Sortie: the steps a sandbox performs (clone, the same Claude
 * Code command line, the staged diff) as one shell script on this machine,
 * with the environment the local sandbox host gives a run. The baseline the
 * orchestrator is measured against.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

const DIRECT_SCRIPT = [
  "set -eu",
  'git clone --quiet --depth 1 -- "$BENCH_REPO_URL" "$BENCH_DIR/repo"',
  'cd "$BENCH_DIR/repo"',
  `printf '%s' "$BENCH_PROMPT" | claude -p --output-format stream-json --verbose --dangerously-skip-permissions --max-turns 50 > "$BENCH_DIR/stream.jsonl"`,
  "git add -A",
  'git diff --cached --binary > "$BENCH_DIR/change.diff"',
].join("\n");

export interface DirectRun {
  ms: number;
  /** Claude Code reported success (and, if a diff was expected, one was taken). */
  ok: boolean;
  diffBytes: number;
  detail: string;
}

export async function runDirect(options: { repoUrl: string; modelUrl: string; prompt: string; expectDiff: boolean; timeoutMs: number }): Promise<DirectRun> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sortie-bench-direct-"));
  for (const sub of ["home", "tmp"]) fs.mkdirSync(path.join(dir, sub));
  const env: Record<string, string> = {
    PATH: `${path.join(root, "node_modules", ".bin")}:${process.env.PATH ?? "/usr/bin:/bin"}`,
    HOME: path.join(dir, "home"),
    TMPDIR: path.join(dir, "tmp"),
    LANG: "C.UTF-8",
    TERM: "dumb",
    IS_SANDBOX: "1",
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
    DISABLE_AUTOUPDATER: "1",
    GIT_AUTHOR_NAME: "Bench",
    GIT_AUTHOR_EMAIL: "bench@example.com",
    GIT_COMMITTER_NAME: "Bench",
    GIT_COMMITTER_EMAIL: "bench@example.com",
    GIT_TERMINAL_PROMPT: "0",
    ANTHROPIC_BASE_URL: options.modelUrl,
    ANTHROPIC_API_KEY: "sk-ant-bench",
    BENCH_REPO_URL: options.repoUrl,
    BENCH_DIR: dir,
    BENCH_PROMPT: options.prompt,
  };
  try {
    const started = performance.now();
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn("bash", ["-c", DIRECT_SCRIPT], { env: env as NodeJS.ProcessEnv, stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs);
      child.on("error", reject);
      child.on("close", (code) => {
        clearTimeout(timer);
        resolve({ code, stderr });
      });
    });
    const ms = performance.now() - started;
    const streamFile = path.join(dir, "stream.jsonl");
    const lines = fs.existsSync(streamFile) ? fs.readFileSync(streamFile, "utf8").split("\n").filter((line) => line.startsWith("{")) : [];
    const result = lines.map((line) => JSON.parse(line) as { type: string; subtype?: string }).find((event) => event.type === "result");
    const diffFile = path.join(dir, "change.diff");
    const diffBytes = fs.existsSync(diffFile) ? fs.statSync(diffFile).size : 0;
    const ok = code === 0 && result?.subtype === "success" && (!options.expectDiff || diffBytes > 0);
    return { ms, ok, diffBytes, detail: ok ? "" : `exit ${code}, result ${result?.subtype ?? "none"}, diff ${diffBytes} bytes: ${stderr.slice(0, 300)}` };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
