/**
 * `npm run bench`: Sortie's benchmarks against a real `npm run dev -- --demo`
 * (wrangler dev, the local sandbox host, the stand-in model, fixture repos),
 * all on loopback. Starts what it needs, stops it, and never runs longer than
 * TIME_LIMIT_MS. Prints a table per benchmark and writes bench/results.json.
 *
 *   npm run bench                      # bundle, parallel, overhead, burst
 *   npm run bench -- parallel burst    # only those
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startDevServer, type DevServer } from "../test/support/dev-server.ts";
import { apiOf, scriptedPrompt } from "./api.ts";
import { BURST_CAP, benchBurst } from "./burst.ts";
import { benchBundle } from "./bundle.ts";
import { benchOverhead } from "./overhead.ts";
import { benchParallel } from "./parallel.ts";
import { describeMachine, figureRows, machine, table, type Figure } from "./report.ts";
import type { BenchResult } from "./result.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
const RESULTS = path.join(here, "results.json");
const TIME_LIMIT_MS = 9 * 60_000;
const ALL = ["bundle", "parallel", "overhead", "burst"] as const;
type BenchName = (typeof ALL)[number];

const TITLES: Record<BenchName, string> = {
  bundle: "Worker bundle size",
  parallel: "Parallel runs: 1 run vs 8 runs of a 10 s task",
  overhead: "Orchestrator overhead: API vs a direct shell script",
  burst: `Burst: 100 tasks at once, MAX_SANDBOXES=${BURST_CAP}`,
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
const results: Partial<Record<BenchName, BenchResult | { error: string }>> = {};
let server: DevServer | undefined;

function writeResults(complete: boolean) {
  const out = { startedAt: new Date(startedAt).toISOString(), durationMs: Date.now() - startedAt, complete, machine: host, benchmarks: results };
  fs.writeFileSync(RESULTS, `${JSON.stringify(out, null, 2)}\n`);
}

/** Stops the dev server and removes the temporary directories it named in its output. */
async function stopServer() {
  const running = server;
  server = undefined;
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
 * Starts `npm run dev -- --demo` the first time a benchmark needs it, and
 * sends one unmeasured task through, so the first benchmark does not pay for
 * starting the Durable Objects. A failed start is remembered, not retried.
 */
let serverStart: Promise<DevServer> | undefined;
function devServer(): Promise<DevServer> {
  serverStart ??= (async () => {
    const t0 = Date.now();
    server = await startDevServer({ MAX_SANDBOXES: String(BURST_CAP), MAX_SANDBOXES_PER_CREATOR: String(BURST_CAP) });
    console.log(`npm run dev -- --demo ready on ${server.url} in ${((Date.now() - t0) / 1000).toFixed(1)} s (MAX_SANDBOXES=${BURST_CAP})`);
    const api = apiOf(server);
    const warm = await api.create({ repo: "acme/widgets", prompt: scriptedPrompt("bench: warm-up", [{ text: "Ready." }]) });
    await api.waitForEnd(warm, 60_000);
    return server;
  })();
  return serverStart;
}

async function runOne(name: BenchName): Promise<BenchResult> {
  if (name === "bundle") return benchBundle();
  const dev = await devServer();
  const api = apiOf(dev);
  const reloadsBefore = workerReloads();
  const result = name === "parallel" ? await benchParallel(api, dev.gitBaseUrl) : name === "overhead" ? await benchOverhead(api, dev.gitBaseUrl) : await benchBurst(api);
  const reloads = workerReloads() - reloadsBefore;
  if (reloads > 0) {
    result.notes.push(`WARNING: wrangler dev reloaded the Worker ${reloads} time(s) during this benchmark (files it watches changed), restarting every Durable Object; these figures are not representative.`);
  }
  result.details.workerReloads = reloads;
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
      results[name] = result;
      console.log(table(["figure", "value", "goal", ""], figureRows(result.figures)));
      for (const note of result.notes) console.log(note);
    } catch (error) {
      failed = true;
      results[name] = { error: error instanceof Error ? (error.stack ?? error.message) : String(error) };
      const message = error instanceof Error ? error.message : String(error);
      console.error(`${name} failed: ${message === lastError ? "as above" : message}`);
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
