/**
 * What the local backend's walls cost. A sandbox's walls are built once
 * (container/wall-env.ts) and hold a wall server that starts its commands.
 * Per command: `exec("true")` in a sandbox whose walls are up, on a walled
 * host against one started unconfined, both in this process. Building the
 * walls: a new sandbox's first command, which waits for them when nothing
 * else (a clone) runs meanwhile. Per run: one task through the API on the
 * walled demo server against the same task on a second server started with
 * LOCAL_SANDBOX_UNCONFINED=1, the two taken in turn so that both see the
 * same machine; medians of eleven.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import { startLocalSandboxHost } from "../container/local-host.ts";
import { startDevServer } from "../test/support/dev-server.ts";
import { apiOf, hold, scriptedPrompt, type Api } from "./api.ts";
import { median, round, type Figure } from "./report.ts";
import type { BenchResult } from "./result.ts";

const COMMANDS = 20;
const SANDBOXES = 7;
const REPEATS = 11;
const TIMEOUT_MS = 60_000;
export const WALLS_GOAL_MS = 150;

const PROMPT = scriptedPrompt("bench: walls", [
  { tool: "Write", input: { file_path: "BENCH.md", content: "# Bench\n\nWritten by the walls benchmark.\n" } },
  hold(1000),
  { text: "Wrote BENCH.md." },
]);

/** Medians, in ms, of a new sandbox's first `exec("true")` and of `exec("true")` once it is up, on a host walled or not. */
async function commandMs(unconfined: boolean): Promise<{ first: number; each: number }> {
  const token = randomUUID();
  const host = await startLocalSandboxHost({ token, unconfined });
  const headers = { authorization: `Bearer ${token}` };
  const exec = async (base: string) => {
    const result = (await (await fetch(`${base}/exec`, { method: "POST", headers, body: JSON.stringify({ command: "true" }) })).json()) as { exitCode: number };
    if (result.exitCode !== 0) throw new Error(`exec true exited ${result.exitCode}`);
  };
  try {
    const firsts: number[] = [];
    const times: number[] = [];
    for (let s = 0; s < SANDBOXES; s++) {
      const base = `${host.url}/v1/sandboxes/bench-${randomUUID().slice(0, 8)}`;
      const t0 = performance.now();
      await fetch(base, { method: "POST", headers });
      await exec(base);
      firsts.push(performance.now() - t0);
      for (let i = 0; s === 0 && i < COMMANDS + 3; i++) {
        const t1 = performance.now();
        await exec(base);
        if (i >= 3) times.push(performance.now() - t1);
      }
      await fetch(base, { method: "DELETE", headers });
    }
    return { first: median(firsts.slice(1)), each: median(times) };
  } finally {
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
  const bare = await startDevServer({ ...serverEnv, LOCAL_SANDBOX_UNCONFINED: "1" });
  const walledRuns: number[] = [];
  const bareRuns: number[] = [];
  try {
    const unconfined = apiOf(bare);
    await taskMs(walled);
    await taskMs(unconfined);
    for (let i = 0; i < REPEATS; i++) {
      walledRuns.push(await taskMs(walled));
      bareRuns.push(await taskMs(unconfined));
    }
  } finally {
    await bare.stop();
  }
  const perCommand = walledCommand.each - bareCommand.each;
  const building = walledCommand.first - bareCommand.first;
  const perRun = median(walledRuns) - median(bareRuns);
  const figures: Figure[] = [
    { name: `exec \`true\` in a sandbox whose walls are up, walled / unconfined (median of ${COMMANDS})`, value: `${round(walledCommand.each, 1)} / ${round(bareCommand.each, 1)} ms` },
    { name: "time the walls add per command", value: round(perCommand, 1), unit: "ms", goal: `< ${WALLS_GOAL_MS} ms`, met: perCommand < WALLS_GOAL_MS },
    { name: `a new sandbox's first command, walled / unconfined (median of ${SANDBOXES - 1})`, value: `${round(walledCommand.first, 1)} / ${round(bareCommand.first, 1)} ms` },
    { name: "building a sandbox's walls, when nothing runs meanwhile", value: Math.round(building), unit: "ms" },
    { name: `one task, walled / unconfined (median of ${REPEATS}, taken in turn)`, value: `${round(median(walledRuns) / 1000)} / ${round(median(bareRuns) / 1000)} s` },
    { name: "time the walls add per run", value: Math.round(perRun), unit: "ms", goal: `< ${WALLS_GOAL_MS} ms`, met: perRun < WALLS_GOAL_MS },
  ];
  const notes = [`Each task (ms): walled ${walledRuns.map(Math.round).join(", ")}; unconfined ${bareRuns.map(Math.round).join(", ")}.`];
  return { figures, notes, details: { walledCommand, bareCommand, perCommand, building, walledRuns, bareRuns, perRun, goalMs: WALLS_GOAL_MS } };
}
