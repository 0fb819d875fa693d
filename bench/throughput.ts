/**
 * Throughput: how many events a second one task delivers to 50 WebSocket
 * viewers when its agent prints as fast as it can (the stand-in agent CLI,
 * 20,000 lines). The same stream with no viewer shows what the TaskAgent
 * stores alone, so the cost of the fan-out is visible. A third stream has
 * STALLED of its 50 viewers stop reading before the first line and read
 * again once every line is stored: the others should not notice, and the
 * stalled ones should catch up, each event once and in order.
 */
import type { LoggedEvent } from "../src/schema.ts";
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
const STALLED = 5;
/** Goals of the issue, as ratios measured in one run. */
export const FANOUT_TIME_GOAL = 3;
export const FANOUT_STORE_GOAL = 0.5;

/** The time the stand-in stamped into a `log` event's line. */
const printTime = (event: LoggedEvent | undefined) => Number(/^line \d+ (\d+(?:\.\d+)?)$/.exec(String(event?.data.text))?.[1] ?? Number.NaN);

/**
 * One task streaming LINES as fast as it can to `viewers` viewers, measured
 * from the first line printed; the first `stalled` of them stop reading
 * before it and read again once the task has ended.
 */
async function stream(api: Api, viewers: number, workerd: number | null, stalled = 0) {
  const memory = sampleMemory(workerd);
  const task = await api.create({ repo: "acme/widgets", prompt: standinAgentPrompt(`bench: throughput, ${viewers} viewers${stalled ? `, ${stalled} stalled` : ""}`, { lines: LINES, delayMs: DELAY_MS }) });
  const catalog = new EventCatalog();
  // The stalled ones take text frames: deflated, this stream (2.3 MB of text) is smaller than a viewer's backlog cap,
  // and a stall would never push them into catching up.
  const all = Array.from({ length: viewers }, (_, i) => new Viewer(task.ws, catalog, { deflate: i >= stalled }));
  await Promise.allSettled(all.map((viewer) => viewer.opened));
  const stalledList = all.slice(0, stalled);
  const list = all.slice(stalled);
  for (const viewer of stalledList) viewer.stall();
  const view = await api.pollUntilEnded(task.id, TIMEOUT_MS);
  const log = await api.settledEvents(task.id, 1);
  const lastSeq = log.at(-1)?.seq ?? 0;
  const caughtUp = await waitForSeq(list, lastSeq, 60_000);
  const rssStalled = memory.peak();
  for (const viewer of stalledList) viewer.resume();
  const stalledCaughtUp = await waitForSeq(stalledList, lastSeq, 60_000);
  const catchUpSeconds = stalledList.map((viewer) => ((viewer.arrivalOf(lastSeq) ?? Number.NaN) - viewer.resumedAt!) / 1000);
  await sleep(300);
  for (const viewer of all) viewer.close();
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
  const stalledAudit = stalled ? auditTotals(auditViewers(stalledList, catalog, log).perViewer) : null;
  const streamBytes = list[0]?.bytes ?? 0;
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
    framesPerViewer: median(list.map((viewer) => viewer.frames)),
    stateFramesPerViewer: median(list.map((viewer) => viewer.stateMessages)),
    // What a reading viewer received on the wire for the whole stream (deflated frames).
    streamKiB: Math.round(streamBytes / 1024),
    caughtUp,
    audit,
    stalled: stalled
      ? {
          viewers: stalled,
          caughtUp: stalledCaughtUp,
          audit: stalledAudit,
          catchUpSeconds: round(Math.max(...catchUpSeconds)),
          // What a stalled viewer was sent while it read nothing, against the whole stream it got in the end (as text).
          sentWhileStalledKiB: Math.round(Math.max(...stalledList.map((viewer) => viewer.bytesWhileStalled)) / 1024),
          streamKiB: Math.round(Math.max(...stalledList.map((viewer) => viewer.bytes)) / 1024),
          workerdRssPeakWhileStalledMiB: rssStalled,
        }
      : null,
    workerdRssMiB: { peak: Math.max(0, ...rss.map((s) => s.rssMiB)), after: workerd ? residentMemory(workerd)?.rssMiB : null },
  };
}

type Audit = ReturnType<typeof auditTotals>;
const isClean = (audit: Audit | null | undefined) => !!audit && audit.lost + audit.duplicated + audit.outOfOrder + audit.differing + audit.unknown === 0 && audit.viewersWithErrors === 0;

export async function benchThroughput(api: Api, workerd: number | null): Promise<BenchResult> {
  const alone = await stream(api, 0, workerd);
  const fanned = await stream(api, THROUGHPUT_VIEWERS, workerd);
  const stalling = await stream(api, THROUGHPUT_VIEWERS, workerd, STALLED);
  const clean = isClean(fanned.audit);
  const timeRatio = round(fanned.wallSeconds / alone.storedSeconds);
  const storeRatio = round(fanned.storedPerSecond / alone.storedPerSecond);
  const stall = stalling.stalled!;
  const readers = THROUGHPUT_VIEWERS - STALLED;
  const figures: Figure[] = [
    { name: `20,000 lines to each of ${THROUGHPUT_VIEWERS} viewers / stored with no viewer (time)`, value: `${fanned.wallSeconds} s / ${alone.storedSeconds} s = ${timeRatio}×`, goal: `≤ ${FANOUT_TIME_GOAL}×`, met: clean && timeRatio <= FANOUT_TIME_GOAL },
    { name: `events/s stored with ${THROUGHPUT_VIEWERS} viewers / with none`, value: `${fanned.storedPerSecond} / ${alone.storedPerSecond} = ${Math.round(storeRatio * 100)}%`, goal: `≥ ${FANOUT_STORE_GOAL * 100}%`, met: storeRatio >= FANOUT_STORE_GOAL },
    { name: `events/s delivered to ${THROUGHPUT_VIEWERS} viewers (all viewers)`, value: fanned.deliveredPerSecond, unit: "events/s" },
    { name: "events/s per viewer (median)", value: fanned.perViewerPerSecond?.median ?? 0, unit: "events/s" },
    { name: "events/s per viewer (slowest)", value: fanned.perViewerPerSecond?.slowest ?? 0, unit: "events/s" },
    { name: `wall time, first line printed → last line at every viewer`, value: fanned.wallSeconds, unit: "s" },
    { name: `events/s stored with ${THROUGHPUT_VIEWERS} viewers`, value: fanned.storedPerSecond, unit: "events/s" },
    { name: "events/s stored with no viewer", value: alone.storedPerSecond, unit: "events/s" },
    { name: "viewers with every event once, in order", value: `${fanned.audit.perfect}/${THROUGHPUT_VIEWERS}`, goal: `${THROUGHPUT_VIEWERS}/${THROUGHPUT_VIEWERS}`, met: clean },
    { name: `${STALLED} of ${THROUGHPUT_VIEWERS} stalled: last line at the other ${readers} / at all ${THROUGHPUT_VIEWERS} reading`, value: `${stalling.wallSeconds} s / ${fanned.wallSeconds} s`, goal: "not slower", met: isClean(stalling.audit) && stalling.wallSeconds <= fanned.wallSeconds * 1.25 },
    { name: "stalled: events/s stored", value: stalling.storedPerSecond, unit: "events/s" },
    { name: "stalled: sent to a stalled (text) viewer while it read nothing / the whole stream", value: `${stall.sentWhileStalledKiB} / ${stall.streamKiB} KiB` },
    { name: "stalled: caught up after reading again, each event once, in order", value: `${stall.audit?.perfect ?? 0}/${STALLED} in ${stall.catchUpSeconds} s`, goal: `${STALLED}/${STALLED}`, met: stall.caughtUp && isClean(stall.audit) },
    { name: "stalled: workerd RSS peak (all reading: peak)", value: `${stall.workerdRssPeakWhileStalledMiB} MiB (${fanned.workerdRssMiB.peak} MiB)` },
  ];
  const notes = [
    `${fanned.lines} log lines (${fanned.events} events in all) to ${THROUGHPUT_VIEWERS} viewers: ${fanned.delivered} line events delivered in ${fanned.wallSeconds} s. The stand-in printed ${fanned.printedPerSecond} lines/s; the TaskAgent stored them in ${fanned.storedSeconds} s (${fanned.storedPerSecond}/s, from the first print to the last event's ts) and in ${alone.storedSeconds} s with no viewer (${alone.storedPerSecond}/s).`,
    `Each viewer got ${fanned.framesPerViewer} events frames and ${fanned.stateFramesPerViewer} state frames, ${fanned.streamKiB} KiB on the wire (deflated, \`?frames=deflate\`).`,
    `${fanned.openedBeforeFirstLine} of ${THROUGHPUT_VIEWERS} viewers were connected before the first line was printed. workerd RSS peaked at ${fanned.workerdRssMiB.peak} MiB (no viewer: ${alone.workerdRssMiB.peak} MiB).`,
    `Audit against GET /events: ${JSON.stringify(fanned.audit)}`,
  ];
  notes.push(`Stalled: ${STALLED} viewers stopped acknowledging before the first line and read again once the task had ended; the other ${readers} got the last line ${stalling.wallSeconds} s after the first was printed. Audit of the readers: ${JSON.stringify(stalling.audit)}; of the stalled: ${JSON.stringify(stall.audit)}.`);
  for (const run of [alone, fanned, stalling]) {
    if (run.status !== "succeeded") notes.push(`WARNING: task ${run.id} (${run.viewers} viewers) ended ${run.status}`);
    if (!run.caughtUp) notes.push(`WARNING: not every viewer reached the last seq within 60 s of the task settling (${run.viewers} viewers)`);
  }
  return { figures, notes, details: { lines: LINES, delayMs: DELAY_MS, alone, fanned, stalling, timeRatio, storeRatio } };
}
