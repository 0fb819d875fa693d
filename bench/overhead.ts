/**
 * Orchestrator overhead: one task end to end through the API, against the
 * same three steps run by a plain shell script on this machine (clone, the
 * same Claude Code run against a stand-in model, the staged diff). Both sides
 * alternate, five times each, and the medians are compared.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startAnthropicStandin } from "../test/standins/anthropic.mjs";
import { hold, phasesOf, scriptedPrompt, PHASE_NAMES, type Api } from "./api.ts";
import { median, round, table, type Figure } from "./report.ts";
import type { BenchResult } from "./result.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const REPEATS = 5;
const TIMEOUT_MS = 60_000;
export const OVERHEAD_GOAL = 1.1;

/** About two seconds of real work: a file written, then a Bash step that waits. */
const PROMPT = scriptedPrompt("bench: overhead", [
  { tool: "Write", input: { file_path: "BENCH.md", content: "# Bench\n\nWritten by the overhead benchmark.\n" } },
  hold(2000),
  { text: "Wrote BENCH.md." },
]);

/** What Sortie's sandbox does, as one shell script: the same clone, Claude Code command line and diff. */
const DIRECT_SCRIPT = [
  "set -eu",
  'git clone --quiet --depth 1 -- "$BENCH_REPO_URL" "$BENCH_DIR/repo"',
  'cd "$BENCH_DIR/repo"',
  `printf '%s' "$BENCH_PROMPT" | claude -p --output-format stream-json --verbose --dangerously-skip-permissions --max-turns 50 > "$BENCH_DIR/stream.jsonl"`,
  "git add -A",
  'git diff --cached --binary > "$BENCH_DIR/change.diff"',
].join("\n");

async function direct(repoUrl: string, modelUrl: string): Promise<{ ms: number; ok: boolean; diffBytes: number; detail: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sortie-bench-direct-"));
  for (const sub of ["home", "tmp"]) fs.mkdirSync(path.join(dir, sub));
  // The environment the local sandbox host gives a run, and nothing else from this shell.
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
    ANTHROPIC_BASE_URL: modelUrl,
    ANTHROPIC_API_KEY: "sk-ant-bench",
    BENCH_REPO_URL: repoUrl,
    BENCH_DIR: dir,
    BENCH_PROMPT: PROMPT,
  };
  try {
    const started = performance.now();
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn("bash", ["-c", DIRECT_SCRIPT], { env: env as NodeJS.ProcessEnv, stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      const timer = setTimeout(() => child.kill("SIGKILL"), TIMEOUT_MS);
      child.on("error", reject);
      child.on("close", (code) => {
        clearTimeout(timer);
        resolve({ code, stderr });
      });
    });
    const ms = performance.now() - started;
    const result = fs.existsSync(path.join(dir, "stream.jsonl"))
      ? fs.readFileSync(path.join(dir, "stream.jsonl"), "utf8").split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { type: string; subtype?: string }).find((e) => e.type === "result")
      : undefined;
    const diffBytes = fs.existsSync(path.join(dir, "change.diff")) ? fs.statSync(path.join(dir, "change.diff")).size : 0;
    const ok = code === 0 && result?.subtype === "success" && diffBytes > 0;
    return { ms, ok, diffBytes, detail: ok ? "" : `exit ${code}, result ${result?.subtype ?? "none"}, diff ${diffBytes} bytes: ${stderr.slice(0, 300)}` };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function viaApi(api: Api) {
  const postedAt = Date.now();
  const created = await api.create({ repo: "acme/widgets", prompt: PROMPT });
  const end = await api.waitForEnd(created, TIMEOUT_MS);
  const task = await api.task(created.id);
  const events = await api.settledEvents(created.id, 1);
  return {
    id: created.id,
    ms: end.endedAt - postedAt,
    ok: end.status === "succeeded" && (task.runs[0]?.diff?.files ?? 0) > 0,
    status: end.status,
    phases: phasesOf(events, 0, task.createdAt),
    /** POST sent → task created in its agent, and task ended → this process heard of it. */
    edges: { toCreated: task.createdAt - postedAt, toHeard: end.endedAt - (task.endedAt ?? end.endedAt) },
  };
}

export async function benchOverhead(api: Api, gitBaseUrl: string): Promise<BenchResult> {
  const model = await startAnthropicStandin();
  const repoUrl = `${gitBaseUrl}/acme/widgets.git`;
  try {
    // One unmeasured round of each, so neither side pays for cold caches.
    await viaApi(api);
    await direct(repoUrl, model.url);
    const apiRuns: Awaited<ReturnType<typeof viaApi>>[] = [];
    const directRuns: Awaited<ReturnType<typeof direct>>[] = [];
    for (let i = 0; i < REPEATS; i++) {
      apiRuns.push(await viaApi(api));
      directRuns.push(await direct(repoUrl, model.url));
    }
    const apiMs = median(apiRuns.map((r) => r.ms));
    const directMs = median(directRuns.map((r) => r.ms));
    const ratio = round(apiMs / directMs);
    const failures = [...apiRuns.filter((r) => !r.ok).map((r) => `API task ${r.id} ended ${r.status}`), ...directRuns.filter((r) => !r.ok).map((r) => `direct run: ${r.detail}`)];
    const figures: Figure[] = [
      { name: "through the API (median of 5)", value: round(apiMs / 1000), unit: "s" },
      { name: "direct shell script (median of 5)", value: round(directMs / 1000), unit: "s" },
      { name: "API / direct", value: ratio, goal: `< ${OVERHEAD_GOAL}`, met: ratio < OVERHEAD_GOAL && failures.length === 0 },
    ];
    const phaseMedian = (name: (typeof PHASE_NAMES)[number]) => {
      const values = apiRuns.map((r) => r.phases[name]).filter((v): v is number => v !== null);
      return values.length ? Math.round(median(values)) : "-";
    };
    const notes = [
      `Each round (ms): API ${apiRuns.map((r) => Math.round(r.ms)).join(", ")}; direct ${directRuns.map((r) => Math.round(r.ms)).join(", ")}.`,
      "Where the API run's time went (ms, medians, from event timestamps):",
      table(["POST→created", ...PHASE_NAMES, "ended→heard"], [[Math.round(median(apiRuns.map((r) => r.edges.toCreated))), ...PHASE_NAMES.map(phaseMedian), Math.round(median(apiRuns.map((r) => r.edges.toHeard)))]]),
      ...failures.map((f) => `WARNING: ${f}`),
    ];
    return { figures, notes, details: { repeats: REPEATS, goal: OVERHEAD_GOAL, apiMs, directMs, ratio, apiRuns, directRuns } };
  } finally {
    await model.close();
  }
}
