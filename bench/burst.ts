/**
 * Burst: 100 tasks submitted at once against a fleet capped at 10 sandboxes.
 * Every submission must be accepted, the cap must hold throughout, and every
 * task must end succeeded with an event log that runs 1..N without a gap.
 */
import { PHASE_NAMES, TERMINAL, hold, phasesOf, scriptedPrompt, seqBreaks, sleep, type Api, type RunPhases } from "./api.ts";
import type { TaskStatus } from "../src/schema.ts";
import { median, round, table, type Figure } from "./report.ts";
import type { BenchResult } from "./result.ts";

const TASKS = 100;
export const BURST_CAP = 10;
const HOLD_MS = 1000;
const SAMPLE_EVERY_MS = 100;
const TIMEOUT_MS = 180_000;

/**
 * Samples every 100 ms until stopped: runs in `running` through the API (the
 * figure the cap must bound), and sandboxes on the local host (which also
 * counts idle workspaces kept for follow-ups).
 */
function startSampler(api: Api) {
  const samples: { at: number; running: number; sandboxes: number }[] = [];
  const errors: string[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const started = Date.now();
      try {
        const [running, sandboxes] = await Promise.all([api.runningRuns(), api.liveSandboxes()]);
        samples.push({ at: started, running, sandboxes });
      } catch (error) {
        errors.push(error instanceof Error ? error.message : String(error));
      }
      await sleep(Math.max(0, SAMPLE_EVERY_MS - (Date.now() - started)));
    }
  })();
  return {
    samples,
    errors,
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}

/** The status the D1 index lists for each of `ids`, read page by page, newest first. */
async function indexedStatuses(api: Api, ids: Set<string>): Promise<Map<string, TaskStatus>> {
  const statuses = new Map<string, TaskStatus>();
  let cursor: string | null = null;
  do {
    const page: Awaited<ReturnType<Api["list"]>> = await api.list(`limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    for (const task of page.tasks) if (ids.has(task.id)) statuses.set(task.id, task.status);
    cursor = page.nextCursor;
  } while (cursor && statuses.size < ids.size);
  return statuses;
}

export async function benchBurst(api: Api): Promise<BenchResult> {
  const sandboxesBefore = await api.liveSandboxes();
  const sampler = startSampler(api);
  const postedAt = Date.now();
  const responses = await Promise.all(
    Array.from({ length: TASKS }, (_, i) =>
      api.submit({ repo: "acme/widgets", prompt: scriptedPrompt(`bench: burst task ${i}`, [hold(HOLD_MS), { text: "Held." }]) }).then(
        async (response) => ({ status: response.status, id: response.status === 202 ? ((await response.json()) as { id: string }).id : null, error: response.status === 202 ? null : await response.text() }),
        (error: unknown) => ({ status: 0, id: null, error: error instanceof Error ? error.message : String(error) }),
      ),
    ),
  );
  const submittedMs = Date.now() - postedAt;
  const ids = new Set(responses.flatMap((r) => (r.id ? [r.id] : [])));

  let indexed = new Map<string, TaskStatus>();
  const ended = () => [...indexed.values()].filter((status) => TERMINAL.has(status)).length;
  const deadline = postedAt + TIMEOUT_MS;
  while (ended() < ids.size && Date.now() < deadline) {
    await sleep(250);
    indexed = await indexedStatuses(api, ids);
  }
  const wallMs = Date.now() - postedAt;
  await sampler.stop();
  const keptSandboxes = (await api.liveSandboxes()) - sandboxesBefore;

  // Every accepted task, read back from its own agent: status, and an event log without gaps.
  const checks = [];
  const phases: RunPhases[] = [];
  for (const id of ids) {
    const [task, events] = await Promise.all([api.task(id).catch(() => null), api.events(id).catch(() => null)]);
    if (task && events && task.status === "succeeded") phases.push(phasesOf(events, 0, task.createdAt));
    checks.push({
      id,
      status: task?.status ?? "missing",
      indexStatus: indexed.get(id) ?? "missing",
      breaks: events ? seqBreaks(events) : null,
      events: events?.length ?? 0,
      hasTerminalStatus: events?.some((e) => e.type === "task.status" && TERMINAL.has(e.data.status as TaskStatus)) ?? false,
      error: task?.error ?? task?.runs[0]?.error ?? null,
      lastEvents: task?.status === "succeeded" ? undefined : events?.slice(-6).map((e) => `${e.type} ${JSON.stringify(e.data).slice(0, 300)}`),
      startedAt: task?.runs[0]?.startedAt ?? null,
      endedAt: task?.runs[0]?.endedAt ?? null,
    });
  }
  const runEdges = checks.flatMap((c) => (c.startedAt && c.endedAt ? [[c.startedAt, 1], [c.endedAt, -1]] : [])).sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
  let live = 0;
  let overlap = 0;
  for (const [, delta] of runEdges) overlap = Math.max(overlap, (live += delta!));

  const accepted = responses.filter((r) => r.status === 202).length;
  const serverErrors = responses.filter((r) => r.status >= 500 || r.status === 0).length;
  const succeeded = checks.filter((c) => c.status === "succeeded").length;
  const lost = checks.filter((c) => c.status === "missing").length + (accepted - ids.size);
  const logsWithBreaks = checks.filter((c) => c.breaks !== 0).length;
  const staleIndex = checks.filter((c) => c.indexStatus !== c.status).length;
  const peakRunning = Math.max(0, ...sampler.samples.map((s) => s.running));
  const peakSandboxes = Math.max(0, ...sampler.samples.map((s) => s.sandboxes)) - sandboxesBefore;
  const sampleGapMs = sampler.samples.length > 1 ? (sampler.samples.at(-1)!.at - sampler.samples[0]!.at) / (sampler.samples.length - 1) : 0;

  const figures: Figure[] = [
    { name: "submissions accepted (202)", value: `${accepted}/${TASKS}`, goal: `${TASKS}/${TASKS}`, met: accepted === TASKS },
    { name: "5xx or network errors", value: serverErrors, goal: "0", met: serverErrors === 0 },
    { name: "peak running runs (sampled)", value: peakRunning, goal: `≤ ${BURST_CAP}`, met: peakRunning <= BURST_CAP },
    { name: "peak overlapping runs (timestamps)", value: overlap, goal: `≤ ${BURST_CAP}`, met: overlap <= BURST_CAP },
    { name: "tasks succeeded", value: `${succeeded}/${TASKS}`, goal: `${TASKS}/${TASKS}`, met: succeeded === TASKS },
    { name: "tasks lost", value: lost, goal: "0", met: lost === 0 },
    { name: "event logs with seq gaps", value: logsWithBreaks, goal: "0", met: logsWithBreaks === 0 },
    { name: "D1 index rows disagreeing with their task", value: staleIndex, goal: "0", met: staleIndex === 0 },
    { name: "total wall time", value: round(wallMs / 1000), unit: "s" },
    { name: "peak sandboxes on the host (sampled)", value: peakSandboxes },
    { name: "sandboxes kept after the burst", value: keptSandboxes },
  ];
  const notes = [
    `Submitting all ${TASKS} took ${round(submittedMs / 1000)} s. ${sampler.samples.length} samples of the live count (${sampler.errors.length} failed), one every ${Math.round(sampleGapMs)} ms on average (asked: ${SAMPLE_EVERY_MS} ms; a sample is 1 + one read per running task, slower while the machine is saturated); the timestamp figure is exact.`,
    `Throughput: ${round(succeeded / (wallMs / 1000))} tasks/s with a ${HOLD_MS / 1000} s hold each.`,
  ];
  const phaseColumn = (name: keyof RunPhases) => phases.map((p) => p[name]).filter((v): v is number => v !== null);
  const phaseCell = (name: keyof RunPhases, pick: (values: number[]) => number) => (phaseColumn(name).length ? Math.round(pick(phaseColumn(name))) : "-");
  notes.push(
    "Where a succeeded run's time went (ms, from event timestamps; queued counts from the task's creation):",
    table(["", ...PHASE_NAMES], [["median", ...PHASE_NAMES.map((n) => phaseCell(n, median))], ["slowest", ...PHASE_NAMES.map((n) => phaseCell(n, (v) => Math.max(...v)))]]),
  );
  if (keptSandboxes > 0) {
    notes.push(`${keptSandboxes} sandboxes outlive the burst: a finished run keeps its workspace for follow-ups (FOLLOWUP_WINDOW_MINUTES, 15 by default) without holding a fleet slot, so MAX_SANDBOXES bounds active runs, not sandboxes.`);
  }
  if (sampler.errors.length) notes.push(`First sampling error: ${sampler.errors[0]}`);
  const refused = responses.filter((r) => r.status !== 202);
  if (refused.length) notes.push(`First refusal: ${refused[0]!.status} ${refused[0]!.error?.slice(0, 300)}`);
  const unfinished = checks.filter((c) => c.status !== "succeeded");
  if (unfinished.length) {
    const first = unfinished[0]!;
    notes.push(`Not succeeded: ${unfinished.slice(0, 5).map((c) => `${c.id} ${c.status}`).join(", ")}${unfinished.length > 5 ? ", …" : ""}; the first ended with ${JSON.stringify(first.error)}`);
  }
  const stale = checks.filter((c) => c.indexStatus !== c.status);
  if (stale.length) notes.push(`D1 index disagrees: ${stale.slice(0, 5).map((c) => `${c.id} is ${c.status}, indexed ${c.indexStatus}`).join("; ")}`);
  return {
    figures,
    notes,
    details: {
      tasks: TASKS,
      cap: BURST_CAP,
      holdMs: HOLD_MS,
      accepted,
      serverErrors,
      responseStatuses: responses.map((r) => r.status),
      submittedMs,
      wallMs,
      succeeded,
      lost,
      logsWithBreaks,
      staleIndex,
      peakRunning,
      peakSandboxes,
      sandboxesBefore,
      keptSandboxes,
      sampleGapMs,
      peakOverlap: overlap,
      samples: sampler.samples.map((s) => [s.at - postedAt, s.running, s.sandboxes]),
      samplingErrors: sampler.errors.length,
      phases,
      checks,
    },
  };
}
