/**
 * Orchestrator overhead: one task end to end through the API, against the
 * same three steps run by a plain shell script on this machine (clone, the
 * same Claude Code run against a stand-in model, the staged diff). Both sides
 * alternate, nine times each, and the medians are compared.
 */
import { startAnthropicStandin } from "../test/standins/anthropic.mjs";
import { PHASE_NAMES, hold, phasesOf, scriptedPrompt, type Api } from "./api.ts";
import { runDirect, type DirectRun } from "./direct.ts";
import { median, round, table, type Figure } from "./report.ts";
import type { BenchResult } from "./result.ts";

/** Rounds of each side: the ratio sits near its goal, and five rounds moved it by ±0.03 from run to run here. */
const REPEATS = 9;
const TIMEOUT_MS = 60_000;
export const OVERHEAD_GOAL = 1.1;

/** About two seconds of real work: a file written, then a Bash step that waits. */
const PROMPT = scriptedPrompt("bench: overhead", [
  { tool: "Write", input: { file_path: "BENCH.md", content: "# Bench\n\nWritten by the overhead benchmark.\n" } },
  hold(2000),
  { text: "Wrote BENCH.md." },
]);

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
    const direct = () => runDirect({ repoUrl, modelUrl: model.url, prompt: PROMPT, expectDiff: true, timeoutMs: TIMEOUT_MS });
    await direct();
    const apiRuns: Awaited<ReturnType<typeof viaApi>>[] = [];
    const directRuns: DirectRun[] = [];
    for (let i = 0; i < REPEATS; i++) {
      apiRuns.push(await viaApi(api));
      directRuns.push(await direct());
    }
    const apiMs = median(apiRuns.map((r) => r.ms));
    const directMs = median(directRuns.map((r) => r.ms));
    const ratio = round(apiMs / directMs);
    const failures = [...apiRuns.filter((r) => !r.ok).map((r) => `API task ${r.id} ended ${r.status}`), ...directRuns.filter((r) => !r.ok).map((r) => `direct run: ${r.detail}`)];
    const figures: Figure[] = [
      { name: `through the API (median of ${REPEATS})`, value: round(apiMs / 1000), unit: "s" },
      { name: `direct shell script (median of ${REPEATS})`, value: round(directMs / 1000), unit: "s" },
      { name: "API / direct", value: ratio, goal: `≤ ${OVERHEAD_GOAL}`, met: apiMs / directMs <= OVERHEAD_GOAL && failures.length === 0 },
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
