/**
 * Throughput: how many events a second one task delivers to 50 WebSocket
 * viewers when its agent prints as fast as it can (the stand-in agent CLI,
 * 20,000 lines). The same stream with no viewer shows what the TaskAgent
 * stores alone, so the cost of the fan-out is visible.
 */
import type { TaskEvent } from "../src/schema.ts";
import { sleep, standinAgentPrompt, type Api } from "./api.ts";
import { residentMemory, sampleMemory } from "./memory.ts";
import { median, round, type Figure } from "./report.ts";
import type { BenchResult } from "./result.ts";
import { EventCatalog, Viewer, auditTotals, auditViewers, waitForSeq } from "./viewers.ts";

export const THROUGHPUT_VIEWERS = 50;
const LINES = 20_000;
/** The stand-in waits this long after its init line, so every viewer is connected before the first line. */
const DELAY_MS = 2000;
const TIMEOUT_MS = 120_000;

/** The time the stand-in stamped into a `log` event's line. */
const printTime = (event: TaskEvent | undefined) => Number(/^line \d+ (\d+(?:\.\d+)?)$/.exec(String(event?.data.text))?.[1] ?? Number.NaN);

/** One task streaming LINES as fast as it can to `viewers` viewers, measured from the first line printed. */
async function stream(api: Api, viewers: number, workerd: number | null) {
  const memory = sampleMemory(workerd);
  const task = await api.create({ repo: "acme/widgets", prompt: standinAgentPrompt(`bench: throughput, ${viewers} viewers`, { lines: LINES, delayMs: DELAY_MS }) });
  const catalog = new EventCatalog();
  const list = Array.from({ length: viewers }, () => new Viewer(task.ws, catalog));
  await Promise.allSettled(list.map((viewer) => viewer.opened));
  const view = await api.pollUntilEnded(task.id, TIMEOUT_MS);
  const log = await api.settledEvents(task.id, 1);
  const lastSeq = log.at(-1)?.seq ?? 0;
  const caughtUp = await waitForSeq(list, lastSeq, 60_000);
  await sleep(300);
  for (const viewer of list) viewer.close();
  const rss = await memory.stop();

  const lines = log.filter((event) => event.type === "log");
  const first = lines[0];
  const last = lines.at(-1);
  const firstPrint = printTime(first);
  const lastPrint = printTime(last);
  // Per viewer: the lines it got, and when the last line reached it.
  const perViewer = list.map((viewer) => {
    const got = first && last ? viewer.seqs.filter((seq) => seq >= first.seq && seq <= last.seq).length : 0;
    const lastArrival = last ? viewer.arrivalOf(last.seq) : null;
    const seconds = lastArrival !== null ? (lastArrival - firstPrint) / 1000 : Number.NaN;
    return { got, seconds, perSecond: got / seconds, openedBeforeFirstLine: viewer.openedAt !== null && viewer.openedAt < firstPrint };
  });
  const delivered = perViewer.reduce((sum, v) => sum + v.got, 0);
  const wallSeconds = viewers ? Math.max(...perViewer.map((v) => v.seconds)) : Number.NaN;
  const storedSeconds = last ? (last.ts - firstPrint) / 1000 : Number.NaN;
  const audit = auditTotals(auditViewers(list, catalog, log).perViewer);
  return {
    id: task.id,
    status: view.status,
    viewers,
    lines: lines.length,
    events: log.length,
    printedPerSecond: Math.round((lines.length - 1) / ((lastPrint - firstPrint) / 1000)),
    storedPerSecond: Math.round(lines.length / storedSeconds),
    storedSeconds: round(storedSeconds),
    delivered,
    wallSeconds: round(wallSeconds),
    deliveredPerSecond: viewers ? Math.round(delivered / wallSeconds) : 0,
    perViewerPerSecond: viewers ? { median: Math.round(median(perViewer.map((v) => v.perSecond))), slowest: Math.round(Math.min(...perViewer.map((v) => v.perSecond))) } : null,
    openedBeforeFirstLine: perViewer.filter((v) => v.openedBeforeFirstLine).length,
    caughtUp,
    audit,
    workerdRssMiB: { peak: Math.max(0, ...rss.map((s) => s.rssMiB)), after: workerd ? residentMemory(workerd)?.rssMiB : null },
  };
}

export async function benchThroughput(api: Api, workerd: number | null): Promise<BenchResult> {
  const alone = await stream(api, 0, workerd);
  const fanned = await stream(api, THROUGHPUT_VIEWERS, workerd);
  const clean = fanned.audit.lost + fanned.audit.duplicated + fanned.audit.outOfOrder + fanned.audit.differing + fanned.audit.unknown === 0 && fanned.audit.viewersWithErrors === 0;
  const figures: Figure[] = [
    { name: `events/s delivered to ${THROUGHPUT_VIEWERS} viewers (all viewers)`, value: fanned.deliveredPerSecond, unit: "events/s" },
    { name: "events/s per viewer (median)", value: fanned.perViewerPerSecond?.median ?? 0, unit: "events/s" },
    { name: "events/s per viewer (slowest)", value: fanned.perViewerPerSecond?.slowest ?? 0, unit: "events/s" },
    { name: `wall time, first line printed → last line at every viewer`, value: fanned.wallSeconds, unit: "s" },
    { name: `events/s stored with ${THROUGHPUT_VIEWERS} viewers`, value: fanned.storedPerSecond, unit: "events/s" },
    { name: "events/s stored with no viewer", value: alone.storedPerSecond, unit: "events/s" },
    { name: "viewers with every event once, in order", value: `${fanned.audit.perfect}/${THROUGHPUT_VIEWERS}`, goal: `${THROUGHPUT_VIEWERS}/${THROUGHPUT_VIEWERS}`, met: clean },
  ];
  const notes = [
    `${fanned.lines} log lines (${fanned.events} events in all) to ${THROUGHPUT_VIEWERS} viewers: ${fanned.delivered} line events delivered in ${fanned.wallSeconds} s. The stand-in printed ${fanned.printedPerSecond} lines/s; the TaskAgent stored them in ${fanned.storedSeconds} s (${fanned.storedPerSecond}/s, from the first print to the last event's ts) and in ${alone.storedSeconds} s with no viewer (${alone.storedPerSecond}/s).`,
    `${fanned.openedBeforeFirstLine} of ${THROUGHPUT_VIEWERS} viewers were connected before the first line was printed. workerd RSS peaked at ${fanned.workerdRssMiB.peak} MiB (no viewer: ${alone.workerdRssMiB.peak} MiB).`,
    `Audit against GET /events: ${JSON.stringify(fanned.audit)}`,
  ];
  for (const run of [alone, fanned]) {
    if (run.status !== "succeeded") notes.push(`WARNING: task ${run.id} (${run.viewers} viewers) ended ${run.status}`);
    if (!run.caughtUp) notes.push(`WARNING: not every viewer reached the last seq within 60 s of the task settling (${run.viewers} viewers)`);
  }
  return { figures, notes, details: { lines: LINES, delayMs: DELAY_MS, alone, fanned } };
}
