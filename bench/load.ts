/**
 * Load: 200 task submissions from 20 concurrent clients while 50 WebSocket
 * viewers watch one task whose agent prints 20,000 lines. Every request must
 * be answered without a 5xx, every task must succeed with a gap-free log,
 * and every viewer must receive every event of the watched task exactly once,
 * in order, identical to `GET /api/tasks/:id/events`, whether it connected
 * before the stream or in the middle of it (and got the start as a replay).
 * Agents are the stand-in agent CLI (bench/standin-claude/claude).
 */
import type { LoggedEvent, TaskStatus } from "../src/schema.ts";
import { ApiError, TERMINAL, seqBreaks, sleep, standinAgentPrompt, type Api } from "./api.ts";
import { durableObjectFiles, residentMemory, sampleMemory } from "./memory.ts";
import { percentile, round, type Figure } from "./report.ts";
import type { BenchResult } from "./result.ts";
import { EventCatalog, Viewer, auditTotals, auditViewers, waitForSeq } from "./viewers.ts";

export const LOAD_SUBMISSIONS = 200;
export const LOAD_CLIENTS = 20;
export const LOAD_VIEWERS = 50;
const STREAM_LINES = 20_000;
/** Lines a second of the watched task: its stream lasts 20 s, across the submissions and the runs they start. */
const STREAM_RATE = 1000;
/** Lines each submitted task's agent prints. */
const SMALL_LINES = 5;
/** Viewer i connects i × this after the watched task is created: most join mid-stream. */
const VIEWER_STAGGER_MS = 200;
const POLL_EVERY_MS = 500;
const TIMEOUT_MS = 180_000;

/** Every HTTP answer the benchmark got, by status; 0 is a network error. */
class Tally {
  readonly byStatus = new Map<number, number>();
  readonly serverErrors: string[] = [];
  count(what: string, status: number, detail = "") {
    this.byStatus.set(status, (this.byStatus.get(status) ?? 0) + 1);
    if (status >= 500 || status === 0) this.serverErrors.push(`${what}: ${status} ${detail.slice(0, 300)}`);
  }
  /** Runs an API call, counting its answer: 200 when it resolves, the error's status (or 0) when it throws. */
  async call<T>(what: string, request: () => Promise<T>): Promise<T | null> {
    try {
      const value = await request();
      this.count(what, 200);
      return value;
    } catch (error) {
      this.count(what, error instanceof ApiError ? error.status : 0, error instanceof Error ? error.message : String(error));
      return null;
    }
  }
  get total() {
    return [...this.byStatus.values()].reduce((a, b) => a + b, 0);
  }
  get fiveHundreds() {
    return this.serverErrors.length;
  }
}

/** One client: submits its share of tasks one after another, then polls each until it ends. */
async function client(api: Api, index: number, tally: Tally, deadline: number) {
  const share = LOAD_SUBMISSIONS / LOAD_CLIENTS;
  const submitMs: number[] = [];
  const ids: string[] = [];
  for (let k = 0; k < share; k++) {
    const n = index * share + k;
    const started = performance.now();
    try {
      const response = await api.submit({ repo: n % 2 ? "acme/gadgets" : "acme/widgets", prompt: standinAgentPrompt(`bench: load task ${n}`, { lines: SMALL_LINES }) });
      submitMs.push(performance.now() - started);
      const body = await response.text();
      tally.count("POST /api/tasks", response.status, body);
      if (response.status === 202) ids.push((JSON.parse(body) as { id: string }).id);
    } catch (error) {
      tally.count("POST /api/tasks", 0, error instanceof Error ? error.message : String(error));
    }
  }
  const statuses = new Map<string, TaskStatus>();
  while (statuses.size < ids.length && Date.now() < deadline) {
    for (const id of ids.filter((id) => !statuses.has(id))) {
      const view = await tally.call("GET /api/tasks/:id", () => api.task(id));
      if (view && TERMINAL.has(view.status)) statuses.set(id, view.status);
    }
    await sleep(POLL_EVERY_MS);
  }
  return { ids, statuses, submitMs };
}

export async function benchLoad(api: Api, server: { workerd: number | null; persistTo: string }): Promise<BenchResult> {
  const tally = new Tally();
  const rssBefore = server.workerd ? residentMemory(server.workerd) : null;
  const memory = sampleMemory(server.workerd);
  const t0 = Date.now();
  const deadline = t0 + TIMEOUT_MS;

  // The watched task first, so it takes a fleet slot before the 200 queue behind it.
  const watched = await api.create({ repo: "acme/widgets", prompt: standinAgentPrompt("bench: load, watched by 50", { lines: STREAM_LINES, rate: STREAM_RATE }) });
  tally.count("POST /api/tasks", 202);
  const catalog = new EventCatalog();
  const viewers: Viewer[] = [];
  const connecting = (async () => {
    for (let i = 0; i < LOAD_VIEWERS; i++) {
      viewers.push(new Viewer(watched.ws, catalog));
      await sleep(VIEWER_STAGGER_MS);
    }
  })();
  const clients = await Promise.all(Array.from({ length: LOAD_CLIENTS }, (_, i) => client(api, i, tally, deadline)));
  const submittedIn = Math.max(...clients.map((c) => c.submitMs.reduce((a, b) => a + b, 0)));
  const tasksDoneMs = Date.now() - t0;
  await connecting;

  // The watched task: ended and settled, and every viewer caught up with its log.
  let watchedError: string | null = null;
  const watchedView = await api.pollUntilEnded(watched.id, Math.max(1000, deadline - Date.now())).catch((error: unknown) => {
    watchedError = error instanceof Error ? error.message : String(error);
    return null;
  });
  const log = (await tally.call("GET /api/tasks/:id/events", () => api.settledEvents(watched.id, 1))) ?? [];
  const lastSeq = log.at(-1)?.seq ?? 0;
  const caughtUp = await waitForSeq(viewers, lastSeq, 30_000);
  await sleep(500);
  for (const viewer of viewers) viewer.close();
  const wallMs = Date.now() - t0;
  const audits = auditViewers(viewers, catalog, log);
  const audit = auditTotals(audits.perViewer);
  const firstLine = log.find((event) => event.type === "log");
  const lastLine = log.findLast((event) => event.type === "log");
  // How far storing fell behind the agent: the last line's print time against the moment it was stored.
  const printedAt = (event: LoggedEvent | undefined) => Number(/^line \d+ (\d+(?:\.\d+)?)$/.exec(String(event?.data.text))?.[1] ?? Number.NaN);
  const storeLagMs = lastLine ? lastLine.ts - printedAt(lastLine) : Number.NaN;
  const storedPerSecond = firstLine && lastLine ? Math.round(STREAM_LINES / ((lastLine.ts - printedAt(firstLine)) / 1000)) : 0;
  const joinedMidStream = viewers.filter((viewer) => firstLine && viewer.openedAt !== null && viewer.openedAt > firstLine.ts).length;

  // Every submitted task, read back: its status and a gap-free log.
  const ids = clients.flatMap((c) => c.ids);
  const checks = [];
  for (const id of ids) {
    const [view, events] = await Promise.all([tally.call("GET /api/tasks/:id", () => api.task(id)), tally.call("GET /api/tasks/:id/events", () => api.events(id))]);
    checks.push({ id, status: view?.status ?? "missing", breaks: events ? seqBreaks(events) : null, error: view?.error ?? null });
  }
  const rss = await memory.stop();
  await sleep(3000);
  const rssSettled = server.workerd ? residentMemory(server.workerd) : null;
  const files = durableObjectFiles(server.persistTo, "TaskAgent");
  const logBytes = log.reduce((sum, event) => sum + JSON.stringify(event).length + 1, 0);

  const accepted = ids.length;
  const succeeded = checks.filter((c) => c.status === "succeeded").length;
  const gaps = checks.filter((c) => c.breaks !== 0).length + (seqBreaks(log) ? 1 : 0);
  const clean = audit.lost + audit.duplicated + audit.outOfOrder + audit.unknown + audit.differing === 0 && audit.viewersWithErrors === 0 && caughtUp;
  const submitMs = clients.flatMap((c) => c.submitMs);
  const peak = Math.max(0, ...rss.map((s) => s.rssMiB));
  const mib = (bytes: number) => round(bytes / 2 ** 20, 1);

  const figures: Figure[] = [
    { name: "submissions accepted (202)", value: `${accepted}/${LOAD_SUBMISSIONS}`, goal: `${LOAD_SUBMISSIONS}/${LOAD_SUBMISSIONS}`, met: accepted === LOAD_SUBMISSIONS },
    { name: `5xx or network errors (of ${tally.total} requests)`, value: tally.fiveHundreds, goal: "0", met: tally.fiveHundreds === 0 },
    { name: "submitted tasks succeeded", value: `${succeeded}/${LOAD_SUBMISSIONS}`, goal: `${LOAD_SUBMISSIONS}/${LOAD_SUBMISSIONS}`, met: succeeded === LOAD_SUBMISSIONS },
    { name: "event logs with seq gaps", value: gaps, goal: "0", met: gaps === 0 },
    { name: `viewers with all ${lastSeq} events once, in order, = GET /events`, value: `${audit.perfect}/${LOAD_VIEWERS}`, goal: `${LOAD_VIEWERS}/${LOAD_VIEWERS}`, met: audit.perfect === LOAD_VIEWERS && clean },
    { name: "events lost (all viewers)", value: audit.lost, goal: "0", met: audit.lost === 0 },
    { name: "events duplicated (all viewers)", value: audit.duplicated, goal: "0", met: audit.duplicated === 0 },
    { name: `watched task: lines stored/s (printed at ${STREAM_RATE}/s)`, value: storedPerSecond, unit: "lines/s" },
    { name: "watched task: last line stored after it was printed", value: round(storeLagMs / 1000, 1), unit: "s" },
    { name: "submission latency p50 / p99", value: `${Math.round(percentile(submitMs, 50))} / ${Math.round(percentile(submitMs, 99))} ms` },
    { name: "wall time (all 201 tasks ended, viewers caught up)", value: round(wallMs / 1000, 1), unit: "s" },
    { name: "workerd RSS before / peak / after", value: rssBefore && rssSettled ? `${rssBefore.rssMiB} / ${peak} / ${rssSettled.rssMiB} MiB` : "not observable" },
  ];
  const notes = [
    `The 20 clients submitted in ${round(submittedIn / 1000, 1)} s and saw every task end after ${round(tasksDoneMs / 1000, 1)} s; the watched task printed its ${STREAM_LINES} lines at ${STREAM_RATE}/s${firstLine && lastLine ? ` and stored them in ${round((lastLine.ts - firstLine.ts) / 1000, 1)} s` : ""}. ${joinedMidStream} of ${LOAD_VIEWERS} viewers connected after its first line was stored, so they got the start as a replay and the rest live.`,
    `Requests by status: ${[...tally.byStatus].sort((a, b) => a[0] - b[0]).map(([status, n]) => `${status || "network error"} × ${n}`).join(", ")}.`,
    `Memory: workerd (every Durable Object of wrangler dev, 201 TaskAgents here) went from ${rssBefore?.rssMiB ?? "?"} MiB to a peak of ${peak} MiB and sat at ${rssSettled?.rssMiB ?? "?"} MiB 3 s after the last viewer left. The watched log is ${mib(logBytes)} MiB as NDJSON (× ${LOAD_VIEWERS} viewers = ${mib(logBytes * LOAD_VIEWERS)} MiB sent); its TaskAgent's SQLite file is ${files[0] ? `${mib(files[0].bytes)} MiB` : "not found"}.`,
  ];
  if (!caughtUp) notes.push(`WARNING: not every viewer reached seq ${lastSeq} within 30 s of the watched task settling: ${viewers.map((v) => v.lastSeq).join(",")}`);
  if (watchedView?.status !== "succeeded") notes.push(`WARNING: the watched task ${watchedView ? `ended ${watchedView.status}` : `did not end: ${watchedError}`}`);
  if (tally.serverErrors.length) notes.push(`First 5xx or network errors: ${tally.serverErrors.slice(0, 3).join(" | ")}`);
  const failed = checks.filter((c) => c.status !== "succeeded");
  if (failed.length) notes.push(`Not succeeded: ${failed.slice(0, 5).map((c) => `${c.id} ${c.status} ${JSON.stringify(c.error)}`).join("; ")}`);
  const bad = audits.perViewer.map((a, i) => ({ i, ...a })).filter((a) => a.error || a.lost + a.duplicated + a.outOfOrder + a.unknown + a.differing > 0);
  if (bad.length) notes.push(`Viewers that differ from the log: ${JSON.stringify(bad.slice(0, 5))}`);
  return {
    figures,
    notes,
    details: {
      submissions: LOAD_SUBMISSIONS,
      clients: LOAD_CLIENTS,
      viewers: LOAD_VIEWERS,
      streamLines: STREAM_LINES,
      streamRate: STREAM_RATE,
      viewerStaggerMs: VIEWER_STAGGER_MS,
      watchedTask: watched.id,
      watchedEvents: lastSeq,
      accepted,
      requests: Object.fromEntries(tally.byStatus),
      serverErrors: tally.serverErrors,
      succeeded,
      gaps,
      audit,
      catalogDiffers: audits.catalogDiffers.length,
      joinedMidStream,
      storedPerSecond,
      storeLagMs: Math.round(storeLagMs),
      submitMs: { p50: round(percentile(submitMs, 50)), p99: round(percentile(submitMs, 99)), max: round(Math.max(...submitMs)) },
      submittedInMs: Math.round(submittedIn),
      tasksDoneMs,
      wallMs,
      memory: {
        workerdRssBeforeMiB: rssBefore?.rssMiB ?? null,
        workerdRssPeakMiB: peak,
        workerdRssAfterMiB: rssSettled?.rssMiB ?? null,
        workerdHighWaterMiB: rssSettled?.peakMiB ?? null,
        samples: rss.map((s) => [s.at, s.rssMiB]),
        watchedLogBytes: logBytes,
        largestTaskAgentSqliteBytes: files[0]?.bytes ?? null,
      },
      checks: checks.filter((c) => c.status !== "succeeded" || c.breaks !== 0),
    },
  };
}
