/**
 * Fast workspaces on the local backend, with a fixture repository whose
 * setup really installs (npm ci of a lockfile, from the npm registry) and
 * builds (tsc): setup once and fork 8, a warm second task, and the
 * dependency cache. Each figure comes from the task's own events: when each
 * run's agent phase began, what setup printed, which runs restored a snapshot.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { LoggedEvent, TaskView } from "../src/schema.ts";
import { scriptedPrompt, type Api } from "./api.ts";
import { round, seconds, table, type Figure } from "./report.ts";
import type { BenchResult } from "./result.ts";

const REPO = "bench/installs";
const TIMEOUT_MS = 300_000;
export const FORK_GOAL = 1.5;
export const WARM_START_GOAL = 5;
export const CACHE_GOAL = 3;

const GIT_ENV = { ...process.env, GIT_AUTHOR_NAME: "Bench", GIT_AUTHOR_EMAIL: "bench@example.com", GIT_COMMITTER_NAME: "Bench", GIT_COMMITTER_EMAIL: "bench@example.com" };

/** Installs, then builds; prints how long each took, in lines the benchmark reads back from the setup log. */
const SETUP = `#!/usr/bin/env bash
set -eu
t0=$(date +%s%N)
npm install --prefer-offline --no-audit --no-fund --ignore-scripts --loglevel=error
t1=$(date +%s%N)
echo "sortie-bench install_ms=$(( (t1 - t0) / 1000000 ))"
./node_modules/.bin/tsc -p .
t2=$(date +%s%N)
echo "sortie-bench build_ms=$(( (t2 - t1) / 1000000 ))"
`;

const PACKAGE = {
  name: "installs",
  private: true,
  type: "module",
  dependencies: { hono: "4.13.19", zod: "4.6.7", "@octokit/rest": "22.0.1", "date-fns": "4.1.0" },
  devDependencies: { typescript: "5.9.3" },
};

/** Creates the bare fixture repository beside the demo's, its lockfile resolved from the registry. */
function createRepo(gitBaseUrl: string): { bare: string; work: string } {
  const bare = path.join(gitBaseUrl.replace(/^file:\/\//, ""), `${REPO}.git`);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "sortie-bench-installs-"));
  const git = (...args: string[]) => execFileSync("git", args, { cwd: work, env: GIT_ENV, stdio: "pipe" });
  git("init", "-q", "-b", "main");
  fs.writeFileSync(path.join(work, "package.json"), `${JSON.stringify(PACKAGE, null, 2)}\n`);
  execFileSync("npm", ["install", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: work, stdio: "pipe" });
  fs.writeFileSync(path.join(work, "tsconfig.json"), JSON.stringify({ compilerOptions: { target: "es2022", module: "nodenext", strict: true, outDir: "dist", skipLibCheck: true }, include: ["src"] }));
  fs.mkdirSync(path.join(work, "src"));
  fs.writeFileSync(path.join(work, "src", "index.ts"), 'import { Hono } from "hono";\nimport { z } from "zod";\nexport const app = new Hono().get("/", (c) => c.json(z.object({ ok: z.boolean() }).parse({ ok: true })));\n');
  fs.writeFileSync(path.join(work, ".gitignore"), "node_modules\ndist\n");
  fs.mkdirSync(path.join(work, ".sortie"));
  fs.writeFileSync(path.join(work, ".sortie", "setup.sh"), SETUP, { mode: 0o755 });
  git("add", "-A");
  git("commit", "-q", "-m", "initial");
  fs.mkdirSync(path.dirname(bare), { recursive: true });
  execFileSync("git", ["clone", "-q", "--bare", work, bare], { env: GIT_ENV });
  git("remote", "add", "origin", bare);
  return { bare, work };
}

/** A new commit on main: the README, or (`lockfile`) the lockfile's name too, which gives the cache a new key. */
function pushCommit(work: string, label: string, lockfile = false): void {
  const git = (...args: string[]) => execFileSync("git", args, { cwd: work, env: GIT_ENV, stdio: "pipe" });
  fs.writeFileSync(path.join(work, "README.md"), `# installs\n\n${label}\n`);
  if (lockfile) {
    for (const file of ["package.json", "package-lock.json"]) {
      const json = JSON.parse(fs.readFileSync(path.join(work, file), "utf8"));
      json.name = `installs-${label}`;
      if (file === "package-lock.json") json.packages[""].name = json.name;
      fs.writeFileSync(path.join(work, file), `${JSON.stringify(json, null, 2)}\n`);
    }
  }
  git("add", "-A");
  git("commit", "-q", "-m", label);
  git("push", "-q", "origin", "main");
}

interface Measured {
  id: string;
  /** From the task's creation to each run's agent phase, ms. */
  readyMs: number[];
  /** What each run's workspace came from. */
  sources: (string | null | undefined)[];
  setups: number;
  setupMs: number[];
  installMs: number[];
}

async function measure(api: Api, body: Record<string, unknown>, label: string): Promise<Measured> {
  const created = await api.create({ repo: REPO, prompt: scriptedPrompt(`bench: workspaces, ${label}`, [{ text: "Ready." }]), ...body });
  const end = await api.waitForEnd(created, TIMEOUT_MS);
  const task: TaskView = await api.task(created.id);
  if (end.status !== "succeeded") throw new Error(`${label}: task ${created.id} ended ${end.status}: ${JSON.stringify(task.runs.map((r) => r.error))}`);
  const events: LoggedEvent[] = await api.events(created.id);
  const readyMs = task.runs.map((run) => {
    const agent = events.find((e) => e.run === run.index && e.type === "run.status" && e.data.phase === "agent");
    if (!agent) throw new Error(`${label}: run ${run.index} never reached its agent`);
    return agent.ts - task.createdAt;
  });
  const logs = events.filter((e) => e.type === "log" && e.data.phase === "setup").map((e) => String(e.data.text));
  return {
    id: created.id,
    readyMs,
    sources: task.runs.map((run) => run.workspace),
    setups: events.filter((e) => e.type === "run.setup").length,
    setupMs: events.filter((e) => e.type === "run.setup").map((e) => Number(e.data.durationMs)),
    installMs: logs.flatMap((line) => /sortie-bench install_ms=(\d+)/.exec(line)?.[1] ?? []).map(Number),
  };
}

export async function benchWorkspaces(api: Api, gitBaseUrl: string): Promise<BenchResult> {
  const { work } = createRepo(gitBaseUrl);
  try {
    // A new lockfile: its cache is empty, so this install downloads everything.
    pushCommit(work, "cold-cache", true);
    const cold = await measure(api, {}, "cold: clone, install with an empty cache, build");
    // The same commit again: the warm snapshot of the first task.
    const warm = await measure(api, {}, "warm: second task, unchanged repository");
    // A new commit, same lockfile: clone and set up again, the install from the cache.
    pushCommit(work, "warm-cache");
    const one = await measure(api, {}, "one run, warm cache");
    pushCommit(work, "fork-8");
    const eight = await measure(api, { runs: 8 }, "eight runs, warm cache");
    // The workspace level: worktrees of a shared sandbox (the first makes its base clone).
    const firstWorktree = await measure(api, { isolation: "workspace" }, "workspace level, first");
    const secondWorktree = await measure(api, { isolation: "workspace" }, "workspace level, second");

    const fork = Math.max(...eight.readyMs) / one.readyMs[0]!;
    const warmStart = cold.readyMs[0]! / warm.readyMs[0]!;
    const coldInstall = cold.installMs[0]!;
    const warmInstall = one.installMs[0]!;
    const cache = coldInstall / warmInstall;
    const figures: Figure[] = [
      { name: "8 runs / 1 run, time until every agent starts (setup once, fork 8)", value: round(fork), goal: `≤ ${FORK_GOAL}`, met: fork <= FORK_GOAL },
      { name: "cold task / warm second task, time until the agent starts", value: round(warmStart, 1), unit: "×", goal: `≥ ${WARM_START_GOAL}`, met: warmStart >= WARM_START_GOAL },
      { name: "install with an empty cache / with a warm cache", value: round(cache, 1), unit: "×", goal: `≥ ${CACHE_GOAL}`, met: cache >= CACHE_GOAL },
    ];
    const rows = [
      ["cold (clone, empty cache)", seconds(cold.readyMs[0]!), cold.sources.join(","), cold.setups, seconds(coldInstall)],
      ["warm second task", seconds(warm.readyMs[0]!), warm.sources.join(","), warm.setups, "-"],
      ["1 run, warm cache", seconds(one.readyMs[0]!), one.sources.join(","), one.setups, seconds(warmInstall)],
      ["8 runs, warm cache (slowest)", seconds(Math.max(...eight.readyMs)), summarize(eight.sources), eight.setups, eight.installMs.map(seconds).join(", ")],
      ["workspace level, first", seconds(firstWorktree.readyMs[0]!), firstWorktree.sources.join(","), firstWorktree.setups, firstWorktree.installMs.map(seconds).join(", ")],
      ["workspace level, second", seconds(secondWorktree.readyMs[0]!), secondWorktree.sources.join(","), secondWorktree.setups, secondWorktree.installMs.map(seconds).join(", ")],
    ];
    return {
      figures,
      notes: [
        "Time from POST /api/tasks to each run's agent phase; setup is `npm install` of hono, zod, @octokit/rest, date-fns and typescript (from registry.npmjs.org), then `tsc`.",
        table(["task", "until agent", "workspace", "setups", "install"], rows),
      ],
      details: { cold, warm, one, eight, firstWorktree, secondWorktree, fork, warmStart, cache },
    };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

function summarize(sources: (string | null | undefined)[]): string {
  const counts = new Map<string, number>();
  for (const source of sources) counts.set(String(source), (counts.get(String(source)) ?? 0) + 1);
  return [...counts].map(([source, n]) => `${n}×${source}`).join(" ");
}
