/**
 * Latency: how late a line the agent prints reaches a viewer. The stand-in
 * agent CLI prints 10,000 lines at 2,000 a second, each stamped with the time
 * it was written; each of 50 WebSocket viewers notes when each arrives. In between is
 * the whole path: the sandbox host's pipe and output stream, the adapter, the
 * stream parser, the event log in the TaskAgent's SQLite, the broadcast.
 */
import { sleep, standinAgentPrompt, type Api } from "./api.ts";
import { residentMemory, sampleMemory } from "./memory.ts";
import { percentile, round, table, type Figure } from "./report.ts";
import type { BenchResult } from "./result.ts";
import { EventCatalog, Viewer, auditTotals, auditViewers, waitForSeq } from "./viewers.ts";

const LINES = 10_000;
const RATE = 2000;
/** The stand-in waits this long after its init line, so all 50 viewers are connected before the first line. */
const DELAY_MS = 4000;
const TIMEOUT_MS = 60_000;
export const LATENCY_GOAL_P99_MS = 250;
export const LATENCY_VIEWERS = 50;

/** The largest of many values (a spread of 500,000 arguments overflows the stack). */
const largest = (values: number[]) => values.reduce((a, b) => Math.max(a, b), Number.NEGATIVE_INFINITY);

const LINE = /^line (\d+) (\d+(?:\.\d+)?)$/;

export async function benchLatency(api: Api, workerd: number | null): Promise<BenchResult> {
  const rssBefore = workerd ? residentMemory(workerd) : null;
  const memory = sampleMemory(workerd);
  const task = await api.create({ repo: "acme/widgets", prompt: standinAgentPrompt("bench: latency", { lines: LINES, rate: RATE, delayMs: DELAY_MS }) });
  // Indexed by line number: when it was printed (stand-in's clock), stored (the event's ts, workerd's clock), and received by each viewer (here).
  const printed = new Float64Array(LINES + 1).fill(Number.NaN);
  const stored = new Float64Array(LINES + 1).fill(Number.NaN);
  const receivedBy = Array.from({ length: LATENCY_VIEWERS }, () => new Float64Array(LINES + 1).fill(Number.NaN));
  let repeats = 0;
  const catalog = new EventCatalog();
  const viewers = receivedBy.map(
    (received) =>
      new Viewer(task.ws, catalog, {
        onEvent: (event, at) => {
          const match = event.type === "log" ? LINE.exec(String(event.data.text)) : null;
          if (!match) return;
          const line = Number(match[1]);
          if (!Number.isNaN(received[line]!)) {
            repeats++;
            return;
          }
          printed[line] = Number(match[2]);
          stored[line] = event.ts;
          received[line] = at;
        },
      }),
  );
  const end = await api.pollUntilEnded(task.id, TIMEOUT_MS);
  const log = await api.settledEvents(task.id, 1);
  const lastSeq = log.at(-1)?.seq ?? 0;
  const caughtUp = await waitForSeq(viewers, lastSeq, 10_000);
  // A moment more, so a late duplicate would be seen too.
  await sleep(300);
  for (const viewer of viewers) viewer.close();
  const rss = await memory.stop();
  const rssAfter = workerd ? residentMemory(workerd) : null;
  const audit = auditTotals(auditViewers(viewers, catalog, log).perViewer);

  // Lines any viewer got (printed and stored are known for them), and every (viewer, line) arrival.
  const got: number[] = [];
  for (let line = 1; line <= LINES; line++) if (!Number.isNaN(stored[line]!)) got.push(line);
  const total: number[] = [];
  const toViewer: number[] = [];
  let lost = 0;
  for (const received of receivedBy) {
    for (let line = 1; line <= LINES; line++) {
      if (Number.isNaN(received[line]!)) {
        lost++;
        continue;
      }
      total.push(received[line]! - printed[line]!);
      toViewer.push(received[line]! - stored[line]!);
    }
  }
  const toStore = got.map((line) => stored[line]! - printed[line]!);
  const p50 = round(percentile(total, 50), 1);
  const p99 = round(percentile(total, 99), 1);
  const max = round(largest(total), 1);
  const firstPrint = printed[got[0] ?? 1]!;
  const lastPrint = printed[got.at(-1) ?? 1]!;
  const printRate = got.length > 1 ? Math.round(((got.length - 1) / (lastPrint - firstPrint)) * 1000) : 0;

  // Latency second by second of the stream: does it stay flat or build up a backlog?
  const bySecond = new Map<number, number[]>();
  for (const received of receivedBy) {
    for (const line of got) {
      if (Number.isNaN(received[line]!)) continue;
      const second = Math.floor((printed[line]! - firstPrint) / 1000);
      const values = bySecond.get(second) ?? [];
      values.push(received[line]! - printed[line]!);
      bySecond.set(second, values);
    }
  }
  const timeline = [...bySecond].map(([second, values]) => [`${second}–${second + 1} s`, values.length, round(percentile(values, 50), 1), round(percentile(values, 99), 1), round(largest(values), 1)]);

  const figures: Figure[] = [
    { name: "latency p50", value: p50, unit: "ms" },
    { name: "latency p99", value: p99, unit: "ms", goal: `< ${LATENCY_GOAL_P99_MS} ms`, met: p99 < LATENCY_GOAL_P99_MS },
    { name: "latency max", value: max, unit: "ms" },
    { name: `lines lost (of ${LINES} × ${LATENCY_VIEWERS} viewers)`, value: lost, goal: "0", met: lost === 0 },
    { name: "lines received twice", value: repeats, goal: "0", met: repeats === 0 },
    { name: "stand-in's print rate", value: printRate, unit: "lines/s" },
  ];
  const notes = [
    `Latency = arrival at a viewer − the time the stand-in stamped into the line, both this machine's wall clock, over every line at each of ${LATENCY_VIEWERS} viewers; ${got.length} of ${LINES} lines at ${RATE}/s asked (${printRate}/s printed). ${viewers.filter((v) => v.openedAt !== null && v.openedAt < firstPrint).length} of ${LATENCY_VIEWERS} viewers opened before the first line was printed, so every line travelled live.`,
    `Split at the event's ts (when the TaskAgent appended it; workerd's clock only moves on I/O, so ts is the start of the I/O turn that stored it): print → stored p50 ${round(percentile(toStore, 50), 1)} ms, p99 ${round(percentile(toStore, 99), 1)} ms; stored → viewer p50 ${round(percentile(toViewer, 50), 1)} ms, p99 ${round(percentile(toViewer, 99), 1)} ms.`,
    `workerd RSS: ${rssBefore?.rssMiB ?? "?"} MiB before, ${Math.max(0, ...rss.map((s) => s.rssMiB))} MiB at most, ${rssAfter?.rssMiB ?? "?"} MiB after.`,
    "Latency by second of the stream (ms):",
    table(["printed", "lines", "p50", "p99", "max"], timeline),
  ];
  if (end.status !== "succeeded") notes.push(`WARNING: the task ended ${end.status}`);
  if (!caughtUp) notes.push(`WARNING: not every viewer had reached seq ${lastSeq} 10 s after the task settled`);
  if (audit.lost + audit.duplicated + audit.outOfOrder + audit.differing + audit.unknown > 0 || audit.viewersWithErrors) {
    notes.push(`WARNING: the viewers' streams differ from the stored log: ${JSON.stringify(audit)}`);
  }
  return {
    figures,
    notes,
    details: {
      taskId: task.id,
      status: end.status,
      lines: LINES,
      rate: RATE,
      viewers: LATENCY_VIEWERS,
      viewersOpenedFirst: viewers.filter((v) => v.openedAt !== null && v.openedAt < firstPrint).length,
      printRate,
      received: got.length,
      lost,
      repeats,
      latencyMs: { p50, p90: round(percentile(total, 90), 1), p99, max, mean: round(total.reduce((a, b) => a + b, 0) / Math.max(1, total.length), 1) },
      printToStoredMs: { p50: round(percentile(toStore, 50), 1), p99: round(percentile(toStore, 99), 1), max: round(largest(toStore), 1) },
      storedToViewerMs: { p50: round(percentile(toViewer, 50), 1), p99: round(percentile(toViewer, 99), 1), max: round(largest(toViewer), 1) },
      bySecond: timeline,
      workerdRssMiB: { before: rssBefore?.rssMiB ?? null, peak: Math.max(0, ...rss.map((s) => s.rssMiB)), after: rssAfter?.rssMiB ?? null },
      audit,
    },
  };
}
