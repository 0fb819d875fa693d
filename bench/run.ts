/**
 * `npm run bench`: Sortie's benchmarks against a real `npm run dev -- --demo`
 * (wrangler dev, the local sandbox host, the stand-in model, fixture repos),
 * all on loopback. Starts what it needs, stops it, and never runs longer than
 * TIME_LIMIT_MS. Prints a table per benchmark and writes bench/results.json.
 * load, latency and throughput run on a second dev server whose sandboxes
 * find the stand-in agent CLI (bench/standin-claude/claude) before Claude Code.
 *
 *   npm run bench                      # bundle, parallel, overhead, burst, load, latency, throughput, workspaces, review, fleet, walls, plans
 *   npm run bench -- parallel burst    # only those
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startDevServer, type DevServer } from "../test/support/dev-server.ts";
import { apiOf, scriptedPrompt, standinAgentPrompt } from "./api.ts";
import { BURST_CAP, benchBurst } from "./burst.ts";
import { benchBundle } from "./bundle.ts";
import { benchFleet } from "./fleet.ts";
import { describeCpu, startCpuAccount } from "./cpu.ts";
import { LATENCY_VIEWERS, benchLatency } from "./latency.ts";
import { LOAD_CLIENTS, LOAD_SUBMISSIONS, LOAD_VIEWERS, benchLoad } from "./load.ts";
import { findWorkerd } from "./memory.ts";
import { benchOverhead } from "./overhead.ts";
import { benchParallel } from "./parallel.ts";
import { THROUGHPUT_VIEWERS, benchThroughput } from "./throughput.ts";
import { PLAN_OVERHEAD_GOAL, benchPlans } from "./plans.ts";
import { benchReview } from "./review.ts";
import { benchWalls } from "./walls.ts";
import { benchWorkspaces } from "./workspaces.ts";
import { describeMachine, figureRows, machine, table, type Figure } from "./report.ts";
import type { BenchResult } from "./result.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
const RESULTS = path.join(here, "results.json");
const TIME_LIMIT_MS = 15 * 60_000;
const ALL = ["bundle", "parallel", "overhead", "burst", "load", "latency", "throughput", "workspaces", "review", "fleet", "walls", "plans"] as const;
type BenchName = (typeof ALL)[number];

const TITLES: Record<BenchName, string> = {
  bundle: "Worker bundle size",
  parallel: "Parallel runs: 1 run vs 8 runs of a 10 s task",
  overhead: "Orchestrator overhead: API vs a direct shell script",
  burst: `Burst: 100 tasks at once, MAX_SANDBOXES=${BURST_CAP}`,
  load: `Load: ${LOAD_SUBMISSIONS} submissions from ${LOAD_CLIENTS} clients while ${LOAD_VIEWERS} viewers watch a 20,000-line task (stand-in agent CLI)`,
  latency: `Latency: agent line printed → each of ${LATENCY_VIEWERS} viewers, 2,000 lines/s (stand-in agent CLI)`,
  throughput: `Throughput: one task's events to ${THROUGHPUT_VIEWERS} viewers, printed as fast as possible (stand-in agent CLI)`,
  workspaces: "Workspaces: setup once and fork 8, a warm second task, the dependency cache (npm ci + tsc setup)",
  review: "Review lanes: a review round's own overhead on a 5,000-file repository",
  fleet: "Fleet: 10,000 concurrently live runs against the Fleet Durable Object, in workerd",
  walls: "Walls: what the local sandboxes' walls add, per command and per run",
  plans: `Plans: a 6-subtask plan (3 independent, 3 dependent) against the same 6 tasks by hand, goal ≤ ${PLAN_OVERHEAD_GOAL}×`,
};

/**
 * Which dev server a benchmark needs: `demo` runs the real Claude Code
 * against the stand-in model; `standin-cli` also puts the stand-in agent CLI
 * first on every sandbox's PATH, so an agent can print 20,000 lines.
 */
type ServerKind = "demo" | "standin-cli";
const SERVER_OF: Record<Exclude<BenchName, "bundle" | "fleet">, ServerKind> = {
  parallel: "demo",
  overhead: "demo",
  burst: "demo",
  load: "standin-cli",
  latency: "standin-cli",
  throughput: "standin-cli",
  workspaces: "demo",
  review: "demo",
  walls: "demo",
  plans: "demo",
};
// The rate limit on task creation (60 a minute by default) is lifted: burst and load measure the fleet, not the limiter.
const FLEET_ENV = { MAX_SANDBOXES: String(BURST_CAP), MAX_SANDBOXES_PER_CREATOR: String(BURST_CAP), TASK_RATE_LIMIT_PER_MINUTE: "100000" };
const SERVER_ENV: Record<ServerKind, Record<string, string>> = {
  // Set up for the parallel benchmark's fan-out of eight: as many sandboxes kept with their walls up.
  demo: { ...FLEET_ENV, LOCAL_SANDBOX_SPARES: "8" },
  "standin-cli": { ...FLEET_ENV, LOCAL_SANDBOX_EXTRA_PATH: path.join(here, "standin-claude") },
};

const asked = process.argv.slice(2);
const unknown = asked.filter((name) => !(ALL as readonly string[]).includes(name));
if (unknown.length) {
  console.error(`unknown benchmark ${unknown.join(", ")}; choose from ${ALL.join(", ")}`);
  process.exit(2);
}
const selected = ALL.filter((name) => asked.length === 0 || asked.includes(name));

const host = machine();
const startedAt = Date.now();
type Outcome = (BenchResult | { error: string }) & { measuredAt: string };
const results: Partial<Record<BenchName, Outcome>> = {};
let server: DevServer | undefined;

/**
 * What bench/results.json held before this run, benchmark by benchmark, so
 * running some benchmarks keeps the others' last figures (each says when it was measured).
 */
function previousResults(): Partial<Record<BenchName, Outcome>> {
  try {
    const previous = JSON.parse(fs.readFileSync(RESULTS, "utf8")) as { startedAt?: string; benchmarks?: Record<string, Outcome> };
    const kept: Partial<Record<BenchName, Outcome>> = {};
    for (const [name, outcome] of Object.entries(previous.benchmarks ?? {})) {
      if ((ALL as readonly string[]).includes(name)) kept[name as BenchName] = { ...outcome, measuredAt: outcome.measuredAt ?? previous.startedAt ?? "unknown" };
    }
    return kept;
  } catch {
    return {}; // no results yet, or not readable: this run's figures alone
  }
}
const previous = previousResults();

function writeResults(complete: boolean) {
  const benchmarks = Object.fromEntries(
    ALL.flatMap((name) => {
      const outcome = results[name] ?? previous[name];
      return outcome ? [[name, outcome]] : [];
    }),
  );
  const out = { startedAt: new Date(startedAt).toISOString(), durationMs: Date.now() - startedAt, ran: selected, complete, machine: host, benchmarks };
  fs.writeFileSync(RESULTS, `${JSON.stringify(out, null, 2)}\n`);
}

/** Stops the dev server and removes the temporary directories it named in its output. */
async function stopServer() {
  const running = server;
  server = undefined;
  serverStart = undefined;
  if (!running) return;
  await running.stop();
  const leftovers = [/sandboxes under (\S+)/.exec(running.output())?.[1], running.gitBaseUrl.replace(/^file:\/\//, "")];
  for (const dir of leftovers) if (dir?.startsWith(os.tmpdir())) fs.rmSync(dir, { recursive: true, force: true });
}

/** How often wrangler dev has rebuilt the Worker so far: an edit under src/ while benchmarking restarts every Durable Object. */
function workerReloads(): number {
  return server?.output().match(/Reloading local server/g)?.length ?? 0;
}

async function abort(reason: string, code: number) {
  console.error(`\nbench: ${reason}; stopping`);
  await stopServer();
  writeResults(false);
  process.exit(code);
}

const limit = setTimeout(() => void abort(`over its ${TIME_LIMIT_MS / 60_000} minute limit`, 1), TIME_LIMIT_MS);
process.once("SIGINT", () => void abort("interrupted", 130));
process.once("SIGTERM", () => void abort("terminated", 143));

/**
 * Starts `npm run dev -- --demo` of the kind a benchmark needs (stopping one
 * of the other kind), and sends one unmeasured task through, so the first
 * benchmark does not pay for starting the Durable Objects. A failed start is
 * remembered, not retried.
 */
let serverStart: Promise<DevServer> | undefined;
let serverKind: ServerKind | undefined;
async function devServer(kind: ServerKind): Promise<DevServer> {
  if (serverKind !== kind) {
    // A failed start was already reported to the benchmark that asked for that server.
    if (serverStart) await serverStart.catch(() => undefined);
    await stopServer();
    serverKind = kind;
  }
  serverStart ??= (async () => {
    const t0 = Date.now();
    const env = SERVER_ENV[kind];
    server = await startDevServer(env);
    const shown = Object.entries(env).map(([key, value]) => `${key}=${path.isAbsolute(value) ? path.relative(process.cwd(), value) : value}`).join(" ");
    console.log(`npm run dev -- --demo ready on ${server.url} in ${((Date.now() - t0) / 1000).toFixed(1)} s (${shown})`);
    const api = apiOf(server);
    const prompt = kind === "demo" ? scriptedPrompt("bench: warm-up", [{ text: "Ready." }]) : standinAgentPrompt("bench: warm-up", { lines: 3 });
    const warm = await api.create({ repo: "acme/widgets", prompt });
    const { status } = await api.waitForEnd(warm, 60_000);
    if (status !== "succeeded") throw new Error(`the warm-up task ${warm.id} ended ${status}`);
    return server;
  })();
  return serverStart;
}

async function runOne(name: BenchName): Promise<BenchResult> {
  if (name === "bundle") return benchBundle();
  if (name === "fleet") return benchFleet();
  const dev = await devServer(SERVER_OF[name]);
  const api = apiOf(dev);
  const reloadsBefore = workerReloads();
  const workerd = findWorkerd(dev.pid);
  const cpu = startCpuAccount(dev.pid);
  const result =
    name === "parallel" ? await benchParallel(api, dev.gitBaseUrl)
    : name === "overhead" ? await benchOverhead(api, dev.gitBaseUrl)
    : name === "burst" ? await benchBurst(api)
    : name === "load" ? await benchLoad(api, { workerd, persistTo: dev.persistTo })
    : name === "latency" ? await benchLatency(api, workerd)
    : name === "workspaces" ? await benchWorkspaces(api, dev.gitBaseUrl)
    : name === "review" ? await benchReview(api, dev.gitBaseUrl)
    : name === "walls" ? await benchWalls(api, SERVER_ENV.demo)
    : name === "plans" ? await benchPlans(api)
    : await benchThroughput(api, workerd);
  const reloads = workerReloads() - reloadsBefore;
  if (reloads > 0) {
    result.notes.push(`WARNING: wrangler dev reloaded the Worker ${reloads} time(s) during this benchmark (files it watches changed), restarting every Durable Object; these figures are not representative.`);
  }
  result.details.workerReloads = reloads;
  const share = cpu?.stop();
  if (share) {
    // Another workload on the machine slows everything measured here: say how much there was.
    result.notes.push(describeCpu(share));
    result.details.cpu = share;
  }
  return result;
}

console.log(`Sortie benchmarks on ${describeMachine(host)}`);
let failed = false;
let lastError = "";
try {
  for (const name of selected) {
    console.log(`\n== ${TITLES[name]} ==\nmachine: ${describeMachine(host)}`);
    const t0 = Date.now();
    try {
      const result = await runOne(name);
      results[name] = { ...result, measuredAt: new Date().toISOString() };
      console.log(table(["figure", "value", "goal", ""], figureRows(result.figures)));
      for (const note of result.notes) console.log(note);
    } catch (error) {
      failed = true;
      results[name] = { error: error instanceof Error ? (error.stack ?? error.message) : String(error), measuredAt: new Date().toISOString() };
      // A fetch failure says why only in its cause (refused, reset, timed out).
      const cause = error instanceof Error && error.cause ? ` (${error.cause instanceof Error ? error.cause.message : String(error.cause)})` : "";
      const message = error instanceof Error ? `${error.message}${cause}` : String(error);
      console.error(`${name} failed: ${message === lastError ? "as above" : message}`);
      if (process.env.BENCH_DEBUG && server) console.error(server.output().split("\n").filter((line) => !line.includes("Environment Variable")).slice(-60).join("\n"));
      lastError = message;
    }
    console.log(`(${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  }
} finally {
  await stopServer();
  clearTimeout(limit);
}

const summary: (string | number)[][] = [];
for (const name of selected) {
  const result = results[name];
  if (!result) summary.push([name, "not run", "", "", ""]);
  else if ("error" in result) summary.push([name, "FAILED", "", "", ""]);
  else for (const row of figureRows(result.figures as Figure[])) summary.push([name, ...row]);
}
console.log(`\n== Summary (${((Date.now() - startedAt) / 1000).toFixed(0)} s) ==`);
console.log(table(["benchmark", "figure", "value", "goal", ""], summary));
writeResults(!failed);
console.log(`\nresults written to ${path.relative(process.cwd(), RESULTS)}`);
process.exit(failed ? 1 : 0);
