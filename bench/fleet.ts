/**
 * The Fleet at scale: bench/fleet/fleet.test.ts in workerd (its own Vitest
 * config, apart from the test suites), 10,000 concurrently live runs against
 * the real Fleet Durable Object. Reads the line it prints and turns it into
 * figures: the Fleet's capacity in operations a second, the load 10,000 live
 * runs put on it, and latencies.
 */
import path from "node:path";
import { root, runCommand } from "./command.ts";
import type { Figure } from "./report.ts";
import type { BenchResult } from "./result.ts";

/** The Fleet should hold 10,000 live runs at no more than this share of its measured capacity. */
export const FLEET_HEADROOM_GOAL = 0.5;

interface Latency {
  ops: number;
  p50Ms: number;
  p99Ms: number;
  byOp: Record<string, { count: number; p50Ms: number; p99Ms: number }>;
}

interface FleetResult {
  live: number;
  queued: number;
  creators: number;
  cap: number;
  perCreatorCap: number;
  busiestCreatorLive: number;
  fill: { runs: number; seconds: number; claims: Latency } & Latency;
  slots: { concurrency: number; seconds: number; opsPerSecond: number; demandOpsPerSecond: number; demandShare: number } & Latency;
  claimShard: { concurrency: number; shards: number; keys: number; seconds: number; opsPerSecond: number; demandOpsPerSecond: number; demandShare: number } & Latency;
  demand: { opsPerSecond: number; renewalsPerSecond: number; churnPerSecond: number; runMinutes: number };
  paced: { seconds: number; opsPerSecond: number } & Latency;
  sweep: { seconds: number };
  demandShareOfCapacity: number;
}

export async function benchFleet(): Promise<BenchResult> {
  const vitest = path.join(root, "node_modules", ".bin", "vitest");
  const output = await runCommand(vitest, ["run", "--config", "bench/fleet/vitest.config.ts"], 600_000);
  const line = output.split("\n").find((text) => text.includes("FLEET_BENCH "));
  if (!line) throw new Error(`the Fleet benchmark printed no result:\n${output.slice(-4000)}`);
  const r = JSON.parse(line.slice(line.indexOf("FLEET_BENCH ") + "FLEET_BENCH ".length)) as FleetResult;
  const ops = (latency: Latency) =>
    Object.entries(latency.byOp)
      .map(([op, l]) => `${op} ${l.p50Ms}/${l.p99Ms} ms (${l.count})`)
      .join(", ");
  const figures: Figure[] = [
    { name: "live runs held (cap; busiest creator / its cap)", value: `${r.live} (${r.cap}; ${r.busiestCreatorLive}/${r.perCreatorCap})` },
    { name: "fill: grants a second (10 runs per call)", value: Math.round(r.fill.runs / r.fill.seconds), unit: "runs/s" },
    { name: `slot Fleet: capacity (ops/s, ${r.slots.concurrency} callers), p99 at capacity`, value: `${r.slots.opsPerSecond} ops/s, ${r.slots.p99Ms} ms` },
    { name: `slot Fleet: the load of ${r.live} live runs / capacity`, value: `${r.slots.demandOpsPerSecond} / ${r.slots.opsPerSecond} = ${r.slots.demandShare}`, goal: `≤ ${FLEET_HEADROOM_GOAL}`, met: r.slots.demandShare <= FLEET_HEADROOM_GOAL },
    { name: `one of ${r.claimShard.shards} claims shards: capacity (renewals/s), p99 at capacity`, value: `${r.claimShard.opsPerSecond} ops/s, ${r.claimShard.p99Ms} ms` },
    { name: `one claims shard: its share of ${r.demand.renewalsPerSecond} renewals/s / capacity`, value: `${r.claimShard.demandOpsPerSecond} / ${r.claimShard.opsPerSecond} = ${r.claimShard.demandShare}`, goal: `≤ ${FLEET_HEADROOM_GOAL}`, met: r.claimShard.demandShare <= FLEET_HEADROOM_GOAL },
    { name: `all of it at once: ${r.demand.opsPerSecond} ops/s (renewal every 30 s, ${r.demand.runMinutes}-minute runs)`, value: r.paced.opsPerSecond, unit: "ops/s achieved" },
    { name: "at that load: latency p50 / p99", value: `${r.paced.p50Ms} / ${r.paced.p99Ms} ms` },
    { name: `one sweeper pass (asks about the 1,000 of ${r.live} live slots asked longest ago)`, value: r.sweep.seconds, unit: "s" },
  ];
  const notes = [
    `Fill: ${r.fill.runs} runs (${r.live} granted, ${r.queued} queued) in ${r.fill.seconds} s; ${r.live} claims, p99 ${r.fill.claims.p99Ms} ms.`,
    `Slot Fleet saturated (${r.slots.ops} operations in ${r.slots.seconds} s), p50/p99 by operation: ${ops(r.slots)}. Claims shard claims-0 saturated (${r.claimShard.keys} of the ${r.live} keys): ${ops(r.claimShard)}.`,
    "In wrangler dev and Vitest every Durable Object shares one workerd thread, so the paced load, spread over 9 objects, measures them on one CPU; on Cloudflare each is an isolate of its own.",
    `Paced at ${r.demand.opsPerSecond} ops/s (${r.demand.renewalsPerSecond} renewals/s, ${r.demand.churnPerSecond} runs ending and starting a second, a queue position read per churn): achieved ${r.paced.opsPerSecond} ops/s; ${ops(r.paced)}.`,
  ];
  return { figures, notes, details: { ...r } };
}
