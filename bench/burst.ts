/**
 * Burst: 100 tasks submitted at once against a fleet capped at 10 sandboxes.
 * Every submission must be accepted, the cap must hold throughout, and every
 * task must end succeeded with an event log that runs 1..N without a gap.
 */
import { TERMINAL, hold, scriptedPrompt, seqBreaks, sleep, type Api } from "./api.ts";
import type { TaskStatus } from "../src/schema.ts";
import { round, type Figure } from "./report.ts";
import type { BenchResult } from "./result.ts";

const TASKS = 100;
export const BURST_CAP = 10;
const HOLD_MS = 1000;
const SAMPLE_EVERY_MS = 100;
const TIMEOUT_MS = 240_000;

/** Samples the live count every 100 ms until stopped: running runs via the API, and sandboxes on the host. */
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

/** Ids among `ids` that the D1 index lists as ended, read page by page. */
async function endedIds(api: Api, ids: Set<string>): Promise<Set<string>> {
  const ended = new Set<string>();
  let cursor: string | null = null;
  let seen = 0;
  do {
    const page: Awaited<ReturnType<Api["list"]>> = await api.list(`limit=100${cursor ? `&cursor=${cursor}` : ""}`);
    for (const task of page.tasks) {
      if (!ids.has(task.id)) continue;
      seen += 1;
      if (TERMINAL.has(task.status)) ended.add(task.id);
    }
    cursor = page.nextCursor;
  } while (cursor && seen < ids.size);
  return ended;
}

export async function benchBurst(api: Api): Promise<BenchResult> {
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

  let ended = new Set<string>();
  const deadline = postedAt + TIMEOUT_MS;
  while (ended.size < ids.size && Date.now() < deadline) {
    await sleep(250);
    ended = await endedIds(api, ids);
  }
  const wallMs = Date.now() - postedAt;
  await sampler.stop();

  // Every accepted task, read back from its own agent: status, and an event log without gaps.
  const checks = [];
  for (const id of ids) {
    const [task, events] = await Promise.all([api.task(id).catch(() => null), api.events(id).catch(() => null)]);
    checks.push({
      id,
      status: task?.status ?? "missing",
      breaks: events ? seqBreaks(events) : null,
      events: events?.length ?? 0,
      hasTerminalStatus: events?.some((e) => e.type === "task.status" && TERMINAL.has(e.data.status as TaskStatus)) ?? false,
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
  const peakRunning = Math.max(0, ...sampler.samples.map((s) => s.running));
  const peakSandboxes = Math.max(0, ...sampler.samples.map((s) => s.sandboxes));

  const figures: Figure[] = [
    { name: "submissions accepted (202)", value: `${accepted}/${TASKS}`, goal: `${TASKS}/${TASKS}`, met: accepted === TASKS },
    { name: "5xx or network errors", value: serverErrors, goal: "0", met: serverErrors === 0 },
    { name: "peak running runs (sampled)", value: peakRunning, goal: `≤ ${BURST_CAP}`, met: peakRunning <= BURST_CAP },
    { name: "peak live sandboxes (sampled)", value: peakSandboxes, goal: `≤ ${BURST_CAP}`, met: peakSandboxes <= BURST_CAP },
    { name: "peak overlapping runs (timestamps)", value: overlap, goal: `≤ ${BURST_CAP}`, met: overlap <= BURST_CAP },
    { name: "tasks succeeded", value: `${succeeded}/${TASKS}`, goal: `${TASKS}/${TASKS}`, met: succeeded === TASKS },
    { name: "tasks lost", value: lost, goal: "0", met: lost === 0 },
    { name: "event logs with seq gaps", value: logsWithBreaks, goal: "0", met: logsWithBreaks === 0 },
    { name: "total wall time", value: round(wallMs / 1000), unit: "s" },
  ];
  const notes = [
    `Submitting all ${TASKS} took ${round(submittedMs / 1000)} s; ${sampler.samples.length} samples of the live count (${sampler.errors.length} failed), every ${SAMPLE_EVERY_MS} ms.`,
    `Throughput: ${round(succeeded / (wallMs / 1000))} tasks/s with a ${HOLD_MS / 1000} s hold each.`,
  ];
  if (sampler.errors.length) notes.push(`First sampling error: ${sampler.errors[0]}`);
  const refused = responses.filter((r) => r.status !== 202);
  if (refused.length) notes.push(`First refusal: ${refused[0]!.status} ${refused[0]!.error?.slice(0, 300)}`);
  const unfinished = checks.filter((c) => c.status !== "succeeded");
  if (unfinished.length) notes.push(`Not succeeded: ${unfinished.slice(0, 5).map((c) => `${c.id} ${c.status}`).join(", ")}${unfinished.length > 5 ? ", …" : ""}`);
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
      peakRunning,
      peakSandboxes,
      peakOverlap: overlap,
      samples: sampler.samples.map((s) => [s.at - postedAt, s.running, s.sandboxes]),
      samplingErrors: sampler.errors.length,
      checks,
    },
  };
}
