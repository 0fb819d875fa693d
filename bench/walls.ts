/**
 * What the local backend's walls cost. Per command: `exec("true")` in a
 * sandbox of a walled host against one of a host started unconfined, both in
 * this process (the wrap by @anthropic-ai/sandbox-runtime, bubblewrap's
 * namespaces, the proxy bridge). Per run: one task through the API on the
 * walled demo server against the same task on a second server started with
 * LOCAL_SANDBOX_UNCONFINED=1; medians of five.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import { startLocalSandboxHost } from "../container/local-host.ts";
import { startDevServer } from "../test/support/dev-server.ts";
import { apiOf, hold, scriptedPrompt, type Api } from "./api.ts";
import { median, round, type Figure } from "./report.ts";
import type { BenchResult } from "./result.ts";

const COMMANDS = 20;
const REPEATS = 5;
const TIMEOUT_MS = 60_000;
export const WALLS_GOAL_MS = 150;

const PROMPT = scriptedPrompt("bench: walls", [
  { tool: "Write", input: { file_path: "BENCH.md", content: "# Bench\n\nWritten by the walls benchmark.\n" } },
  hold(1000),
  { text: "Wrote BENCH.md." },
]);

/** Median milliseconds of `exec("true")` in one sandbox of a host, walled or not. */
async function commandMs(unconfined: boolean): Promise<number> {
  const token = randomUUID();
  const host = await startLocalSandboxHost({ token, unconfined });
  const headers = { authorization: `Bearer ${token}` };
  const base = `${host.url}/v1/sandboxes/bench-${randomUUID().slice(0, 8)}`;
  try {
    await fetch(base, { method: "POST", headers });
    const times: number[] = [];
    for (let i = 0; i < COMMANDS + 3; i++) {
      const t0 = performance.now();
      const result = (await (await fetch(`${base}/exec`, { method: "POST", headers, body: JSON.stringify({ command: "true" }) })).json()) as { exitCode: number };
      if (result.exitCode !== 0) throw new Error(`exec true exited ${result.exitCode}`);
      if (i >= 3) times.push(performance.now() - t0);
    }
    return median(times);
  } finally {
    await fetch(base, { method: "DELETE", headers });
    await host.close();
    fs.rmSync(host.root, { recursive: true, force: true });
  }
}

async function taskMs(api: Api): Promise<number> {
  const postedAt = Date.now();
  const created = await api.create({ repo: "acme/widgets", prompt: PROMPT });
  const end = await api.waitForEnd(created, TIMEOUT_MS);
  if (end.status !== "succeeded") throw new Error(`task ${created.id} ended ${end.status}`);
  return end.endedAt - postedAt;
}

export async function benchWalls(walled: Api, serverEnv: Record<string, string>): Promise<BenchResult> {
  const walledCommand = await commandMs(false);
  const bareCommand = await commandMs(true);
  await taskMs(walled);
  const walledRuns: number[] = [];
  for (let i = 0; i < REPEATS; i++) walledRuns.push(await taskMs(walled));
  const bare = await startDevServer({ ...serverEnv, LOCAL_SANDBOX_UNCONFINED: "1" });
  const bareRuns: number[] = [];
  try {
    const api = apiOf(bare);
    await taskMs(api);
    for (let i = 0; i < REPEATS; i++) bareRuns.push(await taskMs(api));
  } finally {
    await bare.stop();
  }
  const perCommand = walledCommand - bareCommand;
  const perRun = median(walledRuns) - median(bareRuns);
  const figures: Figure[] = [
    { name: "exec `true`, walled / unconfined (median of 20)", value: `${round(walledCommand, 1)} / ${round(bareCommand, 1)} ms` },
    { name: "time the walls add per command", value: round(perCommand, 1), unit: "ms", goal: `< ${WALLS_GOAL_MS} ms`, met: perCommand < WALLS_GOAL_MS },
    { name: "one task, walled / unconfined (median of 5)", value: `${round(median(walledRuns) / 1000)} / ${round(median(bareRuns) / 1000)} s` },
    { name: "time the walls add per run", value: Math.round(perRun), unit: "ms" },
  ];
  const notes = [`Each task (ms): walled ${walledRuns.map(Math.round).join(", ")}; unconfined ${bareRuns.map(Math.round).join(", ")}.`];
  return { figures, notes, details: { walledCommand, bareCommand, perCommand, walledRuns, bareRuns, perRun, goalMs: WALLS_GOAL_MS } };
}
