/**
 * The Fleet at scale, in workerd: 10,000 concurrently live runs held by the
 * real Fleet Durable Objects (task agents are stand-ins, see worker.ts): the
 * one that grants slots, and the CLAIM_SHARDS that hold claims.
 *
 *   fill        10,000 runs granted (1,000 tasks × 10 runs, 100 creators), 500 more queued, 10,000 claims
 *   slots       as many operations as the slot Fleet answers, CONCURRENCY callers at once: runs
 *               ending and starting (a release, an enqueue that grants) and queue-position reads
 *   claims      as many lease renewals as one claims shard answers, CONCURRENCY callers at once
 *   paced       the load 10,000 live runs put on them all (a renewal per run every 30 s, runs
 *               lasting RUN_MINUTES on average), open loop, for its latency
 *   sweep       one pass of the minute's sweeper with 10,000 live slots
 *
 * Prints one line `FLEET_BENCH {json}` that bench/fleet.ts reads.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { expect, it } from "vitest";
import { CLAIM_SHARDS, LEASE_RENEW_SECONDS, claimShardOf, claimsOf, fleetOf } from "../../src/agents/fleet.ts";
import { percentile } from "../report.ts";

const TASKS = 1000;
const RUNS_PER_TASK = 10;
const LIVE = TASKS * RUNS_PER_TASK;
const CREATORS = 100;
const QUEUED_TASKS = 50;
const CONCURRENCY = 32;
const SATURATED_MS = 15_000;
const PACED_MS = 10_000;
/** A run's average life in the modelled fleet: 10,000 live runs then end (and start) 10,000 / 600 s ≈ 17 a second. */
const RUN_MINUTES = 10;
const RENEWALS_PER_SECOND = LIVE / LEASE_RENEW_SECONDS;
const CHURN_PER_SECOND = LIVE / (RUN_MINUTES * 60);
const RENEWALS_PER_CHURN = Math.round(RENEWALS_PER_SECOND / CHURN_PER_SECOND);

type Fleet = Awaited<ReturnType<typeof fleetOf>>;
type Op = "grant" | "release" | "renew" | "position" | "claim";

const taskId = (i: number) => `task-${i}`;
const creatorOf = (i: number) => `creator-${i % CREATORS}`;
const keyOf = (i: number) => `bench:key-${i}`;
const ms = () => performance.now();

/** Latencies per operation, in ms. */
class Timings {
  readonly byOp = new Map<Op, number[]>();
  count = 0;

  async time<T>(op: Op, call: () => Promise<T>): Promise<T> {
    const t0 = ms();
    const result = await call();
    const list = this.byOp.get(op) ?? [];
    list.push(ms() - t0);
    this.byOp.set(op, list);
    this.count++;
    return result;
  }

  summary() {
    const all = [...this.byOp.values()].flat();
    const round = (n: number) => Math.round(n * 100) / 100;
    return {
      ops: this.count,
      p50Ms: round(percentile(all, 50)),
      p99Ms: round(percentile(all, 99)),
      byOp: Object.fromEntries([...this.byOp].map(([op, list]) => [op, { count: list.length, p50Ms: round(percentile(list, 50)), p99Ms: round(percentile(list, 99)) }])),
    };
  }
}

/** The runs this benchmark has enqueued and not released, to churn at random. */
class Runs {
  private readonly list: [number, number][] = [];
  private readonly next = new Map<number, number>();

  add(task: number, run: number): void {
    this.list.push([task, run]);
    this.next.set(task, Math.max(this.next.get(task) ?? 0, run + 1));
  }

  /** Takes a random one out; and the index a new run of that task gets. */
  take(): { task: number; run: number; nextRun: number } {
    const i = Math.floor(Math.random() * this.list.length);
    const [task, run] = this.list[i]!;
    this.list[i] = this.list.at(-1)!;
    this.list.pop();
    return { task, run, nextRun: this.next.get(task)! };
  }
}

/** One churn: a run ends (its slot goes to the oldest fair queued run) and a new run of the task queues. */
async function churn(fleet: Fleet, runs: Runs, timings: Timings): Promise<void> {
  const { task, run, nextRun } = runs.take();
  await timings.time("release", () => fleet.release(taskId(task), run));
  await timings.time("grant", () => fleet.enqueue(taskId(task), [nextRun], creatorOf(task)));
  runs.add(task, nextRun);
}

/** A task agent renewing its claim, in the shard that holds it. */
async function renew(i: number, timings: Timings): Promise<void> {
  const claims = await claimsOf(env, keyOf(i));
  const renewed = await timings.time("renew", () => claims.renewClaim(keyOf(i), taskId(i % TASKS)));
  if (!renewed) throw new Error(`the claim ${keyOf(i)} was lost`);
}

/** What the slot Fleet is asked: a run ending and one starting, or a queue position. */
async function slotWork(fleet: Fleet, runs: Runs, timings: Timings): Promise<void> {
  if (Math.random() < 0.5) await churn(fleet, runs, timings);
  else await timings.time("position", () => fleet.positions(taskId(TASKS + Math.floor(Math.random() * QUEUED_TASKS))));
}

/** One operation of the live fleet's mix, drawn at random. */
async function mixed(fleet: Fleet, runs: Runs, timings: Timings): Promise<void> {
  const draw = Math.random() * (RENEWALS_PER_CHURN + 2);
  if (draw < RENEWALS_PER_CHURN) await renew(Math.floor(Math.random() * LIVE), timings);
  else if (draw < RENEWALS_PER_CHURN + 1) await churn(fleet, runs, timings);
  else await timings.time("position", () => fleet.positions(taskId(TASKS + Math.floor(Math.random() * QUEUED_TASKS))));
}

/** CONCURRENCY callers doing `work` as fast as it is answered for `durationMs`; operations a second. */
async function saturate(durationMs: number, timings: Timings, work: () => Promise<void>): Promise<{ seconds: number; opsPerSecond: number }> {
  const t0 = ms();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (ms() - t0 < durationMs) await work();
    }),
  );
  const seconds = (ms() - t0) / 1000;
  return { seconds: Math.round(seconds * 100) / 100, opsPerSecond: Math.round(timings.count / seconds) };
}

it("holds 10,000 live runs", async () => {
  const fleet = await fleetOf(env);
  const runs = new Runs();
  const stub = env.Fleet.get(env.Fleet.idFromName("fleet"));
  const sql = <T extends Record<string, SqlStorageValue>>(query: string) => runInDurableObject(stub, (_instance, state) => state.storage.sql.exec<T>(query).toArray());

  // Fill: every task's runs, CONCURRENCY tasks at a time, then the queued ones.
  const fill = new Timings();
  const t0 = ms();
  for (let next = 0; next < TASKS + QUEUED_TASKS; ) {
    const batch = Array.from({ length: Math.min(CONCURRENCY, TASKS + QUEUED_TASKS - next) }, (_, k) => next + k);
    next += batch.length;
    await Promise.all(
      batch.map(async (task) => {
        const indices = Array.from({ length: RUNS_PER_TASK }, (_, run) => run);
        await fill.time("grant", () => fleet.enqueue(taskId(task), indices, creatorOf(task)));
        for (const run of indices) runs.add(task, run);
      }),
    );
  }
  const fillSeconds = (ms() - t0) / 1000;
  const claims = new Timings();
  for (let i = 0; i < LIVE; i += CONCURRENCY) {
    await Promise.all(
      Array.from({ length: Math.min(CONCURRENCY, LIVE - i) }, async (_, k) => {
        const shard = await claimsOf(env, keyOf(i + k));
        await claims.time("claim", async () => (await shard.claim(keyOf(i + k), taskId((i + k) % TASKS), false)).granted);
      }),
    );
  }
  const filled = await fleet.stats();
  expect(filled.live).toBe(LIVE);
  expect(filled.queued).toBe(QUEUED_TASKS * RUNS_PER_TASK);

  // Capacity of the slot Fleet, then of one claims shard (the keys claims-0 holds), each as fast as it answers.
  const slots = new Timings();
  const slotRun = await saturate(SATURATED_MS, slots, () => slotWork(fleet, runs, slots));
  const shardKeys = Array.from({ length: LIVE }, (_, i) => i).filter((i) => claimShardOf(keyOf(i)) === "claims-0");
  const claimsTimings = new Timings();
  const claimRun = await saturate(SATURATED_MS, claimsTimings, () => renew(shardKeys[Math.floor(Math.random() * shardKeys.length)]!, claimsTimings));
  const slotDemand = CHURN_PER_SECOND * 3;
  const shardDemand = RENEWALS_PER_SECOND / CLAIM_SHARDS;

  // Paced: the load of 10,000 live runs, started on schedule whatever the answers' pace (open loop).
  const paced = new Timings();
  const demand = RENEWALS_PER_SECOND + slotDemand;
  const t2 = ms();
  const inFlight = new Set<Promise<void>>();
  let started = 0;
  while (ms() - t2 < PACED_MS) {
    const due = Math.floor(((ms() - t2) / 1000) * (RENEWALS_PER_SECOND + CHURN_PER_SECOND * 2));
    for (; started < due; started++) {
      const call = mixed(fleet, runs, paced).finally(() => inFlight.delete(call));
      inFlight.add(call);
    }
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  await Promise.all(inFlight);
  const pacedSeconds = (ms() - t2) / 1000;

  // The sweeper over 10,000 slots granted more than a minute ago (the threshold it checks).
  await sql("UPDATE fleet_slots SET granted_at = granted_at - 120000 WHERE state = 'live'");
  const t3 = ms();
  await fleet.sweep();
  const sweepSeconds = (ms() - t3) / 1000;

  // Caps held throughout: the global one and each creator's.
  const after = await fleet.stats();
  const [busiest] = await sql<{ creator: string; n: number }>("SELECT creator, COUNT(*) AS n FROM fleet_slots WHERE state = 'live' GROUP BY creator ORDER BY n DESC LIMIT 1");
  expect(after.live).toBe(LIVE);
  expect(busiest!.n).toBeLessThanOrEqual(after.perCreatorCap);

  const result = {
    live: LIVE,
    queued: after.queued,
    creators: CREATORS,
    cap: after.cap,
    perCreatorCap: after.perCreatorCap,
    busiestCreatorLive: busiest!.n,
    fill: { runs: (TASKS + QUEUED_TASKS) * RUNS_PER_TASK, seconds: Math.round(fillSeconds * 100) / 100, ...fill.summary(), claims: claims.summary() },
    slots: { concurrency: CONCURRENCY, ...slotRun, ...slots.summary(), demandOpsPerSecond: Math.round(slotDemand), demandShare: Math.round((slotDemand / slotRun.opsPerSecond) * 100) / 100 },
    claimShard: { concurrency: CONCURRENCY, shards: CLAIM_SHARDS, keys: shardKeys.length, ...claimRun, ...claimsTimings.summary(), demandOpsPerSecond: Math.round(shardDemand), demandShare: Math.round((shardDemand / claimRun.opsPerSecond) * 100) / 100 },
    demand: { opsPerSecond: Math.round(demand), renewalsPerSecond: Math.round(RENEWALS_PER_SECOND), churnPerSecond: Math.round(CHURN_PER_SECOND * 10) / 10, runMinutes: RUN_MINUTES },
    paced: { seconds: Math.round(pacedSeconds * 100) / 100, opsPerSecond: Math.round(paced.count / pacedSeconds), ...paced.summary() },
    sweep: { seconds: Math.round(sweepSeconds * 100) / 100 },
    demandShareOfCapacity: Math.round(Math.max(slotDemand / slotRun.opsPerSecond, shardDemand / claimRun.opsPerSecond) * 100) / 100,
  };
  console.log(`FLEET_BENCH ${JSON.stringify(result)}`);
});
