/**
 * Parallel runs: the wall time of a task with one run against the same task
 * with eight runs, each agent holding for 10 s. With enough sandboxes the
 * eight run side by side, so the ratio should stay near 1. The same 1 and 8
 * runs started directly (no Sortie) show what this machine allows at best.
 */
import { startAnthropicStandin } from "../test/standins/anthropic.mjs";
import { PHASE_NAMES, hold, phasesOf, scriptedPrompt, type Api, type RunPhases } from "./api.ts";
import { runDirect } from "./direct.ts";
import { median, round, seconds, table, type Figure } from "./report.ts";
import type { BenchResult } from "./result.ts";

const HOLD_MS = 10_000;
const TIMEOUT_MS = 120_000;
export const PARALLEL_GOAL = 1.3;

const promptFor = (runs: number) => scriptedPrompt(`bench: parallel, ${runs} run(s)`, [hold(HOLD_MS), { text: "Held." }]);

async function timeTask(api: Api, runs: number) {
  const prompt = promptFor(runs);
  const postedAt = Date.now();
  const created = await api.create({ repo: "acme/widgets", prompt, runs });
  const end = await api.waitForEnd(created, TIMEOUT_MS);
  const task = await api.task(created.id);
  const events = await api.settledEvents(created.id, runs);
  const phases = task.runs.map((run) => phasesOf(events, run.index, task.createdAt));
  // The most runs in `running` at once, from their start and end timestamps.
  const edges = task.runs.flatMap((run) => (run.startedAt && run.endedAt ? [[run.startedAt, 1], [run.endedAt, -1]] : [])).sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
  let live = 0;
  let overlap = 0;
  for (const [, delta] of edges) overlap = Math.max(overlap, (live += delta!));
  return {
    id: created.id,
    runs,
    status: end.status,
    runStatuses: task.runs.map((run) => run.status),
    wallMs: end.endedAt - postedAt,
    serverMs: (task.endedAt ?? 0) - task.createdAt,
    maxOverlap: overlap,
    phases,
  };
}

/** Median of each phase over a task's runs, and the slowest run's. */
function phaseRows(label: string, phases: RunPhases[]): (string | number)[][] {
  const column = (name: keyof RunPhases) => phases.map((p) => p[name]).filter((v): v is number => v !== null);
  return [
    [`${label}, median run`, ...PHASE_NAMES.map((name) => (column(name).length ? Math.round(median(column(name))) : "-"))],
    [`${label}, slowest run`, ...PHASE_NAMES.map((name) => (column(name).length ? Math.max(...column(name)) : "-"))],
  ];
}

/** `runs` direct runs started together; the wall time until the last one ends. */
async function timeDirect(repoUrl: string, modelUrl: string, runs: number) {
  const started = performance.now();
  const done = await Promise.all(Array.from({ length: runs }, () => runDirect({ repoUrl, modelUrl, prompt: promptFor(runs), expectDiff: false, timeoutMs: TIMEOUT_MS })));
  return { runs, wallMs: performance.now() - started, runMs: done.map((r) => Math.round(r.ms)), failures: done.filter((r) => !r.ok).map((r) => r.detail) };
}

export async function benchParallel(api: Api, gitBaseUrl: string): Promise<BenchResult> {
  const one = await timeTask(api, 1);
  const eight = await timeTask(api, 8);
  const ratio = round(eight.wallMs / one.wallMs);
  const model = await startAnthropicStandin();
  const repoUrl = `${gitBaseUrl}/acme/widgets.git`;
  let direct;
  try {
    direct = { one: await timeDirect(repoUrl, model.url, 1), eight: await timeDirect(repoUrl, model.url, 8) };
  } finally {
    await model.close();
  }
  const directRatio = round(direct.eight.wallMs / direct.one.wallMs);
  const figures: Figure[] = [
    { name: "runs:1 wall time", value: round(one.wallMs / 1000), unit: "s" },
    { name: "runs:8 wall time", value: round(eight.wallMs / 1000), unit: "s" },
    { name: "runs:8 / runs:1", value: ratio, goal: `≤ ${PARALLEL_GOAL}`, met: ratio <= PARALLEL_GOAL },
    { name: "runs:8 most runs at once", value: eight.maxOverlap, goal: "8", met: eight.maxOverlap === 8 },
    { name: "without Sortie: 8 at once / 1", value: directRatio },
    // What is left of the ratio once the machine's own cost of 8 agents at once is taken out.
    { name: "Sortie's share: (runs:8 / runs:1) / (without Sortie)", value: round(ratio / directRatio) },
  ];
  const notes = [
    `Without Sortie, the same Claude Code run started directly took ${seconds(direct.one.wallMs)} alone and ${seconds(direct.eight.wallMs)} for 8 at once: this machine's own cost of running 8 agents side by side.`,
    `Where the time went (ms, from event timestamps; agent holds ${seconds(HOLD_MS)}):`,
    table(["", ...PHASE_NAMES], [...phaseRows("runs:1", one.phases), ...phaseRows("runs:8", eight.phases)]),
  ];
  for (const task of [one, eight]) {
    if (task.status !== "succeeded" || task.runStatuses.some((s) => s !== "succeeded")) {
      notes.push(`WARNING: task ${task.id} (runs:${task.runs}) ended ${task.status}, runs ${task.runStatuses.join(", ")}`);
    }
  }
  for (const failure of [...direct.one.failures, ...direct.eight.failures]) notes.push(`WARNING: a direct run failed: ${failure}`);
  return { figures, notes, details: { holdMs: HOLD_MS, one, eight, ratio, goal: PARALLEL_GOAL, direct, directRatio } };
}
