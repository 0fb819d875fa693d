/**
 * A review round's own overhead on a repository of 5,000 files: packing the
 * peer view in the coder's sandbox, starting the reviewer's sandbox and
 * installing the view there, up to the moment the reviewer's agent is
 * started (the `review.reviewer_started` event's `preparedMs`), so the
 * model's time is not in it. Real tasks through the API, real Claude Code for
 * the coder and the reviewer against the stand-in model.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import type { LoggedEvent } from "../src/schema.ts";
import { scriptedPrompt, type Api } from "./api.ts";
import { median, round, type Figure } from "./report.ts";
import type { BenchResult } from "./result.ts";

const REPO = "bench/files5000";
const FILES = 5000;
const TASKS = 3;
export const REVIEW_OVERHEAD_GOAL_MS = 2000;
const run = promisify(execFile);
const GIT_ENV = { ...process.env, GIT_AUTHOR_NAME: "Bench", GIT_AUTHOR_EMAIL: "bench@example.com", GIT_COMMITTER_NAME: "Bench", GIT_COMMITTER_EMAIL: "bench@example.com" };

/**
 * A bare repository of FILES small source files in 100 directories, under the
 * dev server's file:// git base. Asynchronous on purpose: a blocked event loop
 * would let the API client's idle connection to the dev server go stale.
 */
export async function createRepo(gitBaseUrl: string): Promise<void> {
  const bare = path.join(gitBaseUrl.replace(/^file:\/\//, ""), `${REPO}.git`);
  if (fs.existsSync(bare)) return;
  const work = await fs.promises.mkdtemp(path.join(os.tmpdir(), "sortie-bench-files-"));
  for (let i = 0; i < FILES; i++) {
    const dir = path.join(work, "src", `part${i % 100}`);
    await fs.promises.mkdir(dir, { recursive: true });
    await fs.promises.writeFile(path.join(dir, `module${i}.ts`), `export const value${i} = ${i};\nexport function twice${i}(x: number) {\n  return x * 2 + value${i};\n}\n`);
  }
  const git = (args: string[], cwd = work) => run("git", args, { cwd, env: GIT_ENV });
  await git(["init", "-q", "-b", "main"]);
  await git(["add", "-A"]);
  await git(["commit", "-q", "-m", `${FILES} files`]);
  await fs.promises.mkdir(path.dirname(bare), { recursive: true });
  await git(["clone", "-q", "--bare", work, bare]);
  await fs.promises.rm(work, { recursive: true, force: true });
}

export async function benchReview(api: Api, gitBaseUrl: string): Promise<BenchResult> {
  await createRepo(gitBaseUrl);
  const prepared: number[] = [];
  const rounds: number[] = [];
  let files = 0;
  let bytes = 0;
  for (let i = 0; i < TASKS; i++) {
    const created = await api.create({
      repo: REPO,
      review: { agent: "claude-code", rounds: 1 },
      prompt: scriptedPrompt(`bench: review overhead ${i}`, [{ tool: "Write", input: { file_path: "src/part0/new.ts", content: "export const added = 1;\n" } }, { text: "Added." }]),
    });
    const end = await api.waitForEnd(created, 300_000);
    const events: LoggedEvent[] = await api.events(created.id);
    const started = events.find((e) => e.type === "review.reviewer_started");
    const done = events.find((e) => e.type === "review.round");
    if (end.status !== "succeeded" || !started || !done) throw new Error(`review bench: task ${created.id} ended ${end.status} without a review round`);
    prepared.push(Number(started.data.preparedMs));
    const laneStart = events.find((e) => e.type === "review.status")!;
    rounds.push(done.ts - laneStart.ts);
    files = Number(started.data.files);
    bytes = Number(started.data.peerViewBytes);
  }
  const overhead = median(prepared);
  const figures: Figure[] = [
    { name: `review round overhead, ${FILES}-file repository (peer view + reviewer sandbox, no model time), median of ${TASKS}`, value: round(overhead / 1000, 2), unit: "s", goal: `< ${REVIEW_OVERHEAD_GOAL_MS / 1000} s`, met: overhead < REVIEW_OVERHEAD_GOAL_MS },
    { name: "whole review round with the reviewer's Claude Code turn, median", value: round(median(rounds) / 1000, 2), unit: "s" },
  ];
  return {
    figures,
    notes: [`peer view: ${files} files, ${(bytes / 1e6).toFixed(1)} MB base64; each round's overhead: ${prepared.map((ms) => `${ms} ms`).join(", ")}`],
    details: { preparedMs: prepared, roundMs: rounds, files, peerViewBytes: bytes },
  };
}
