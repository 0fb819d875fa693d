/**
 * WebSocket viewers for the load benchmarks: each connects to a task's `ws`
 * URL as the web viewer does, keeps the `seq` of every event it receives (and
 * when), and is later audited against `GET /api/tasks/:id/events`: every
 * event exactly once, in order, and identical to the stored log.
 */
import { inflateRawSync } from "node:zlib";
import type { LoggedEvent } from "../src/schema.ts";
import { Acknowledger } from "../src/stream-protocol.ts";
import { sleep } from "./api.ts";

/** Wall-clock milliseconds with a fraction, the clock the stand-in agent CLI stamps its lines with. */
export const preciseNow = () => performance.timeOrigin + performance.now();

/** One event of a frame: its seq, its JSON as the log serves it, and the event. */
interface FramedEvent {
  seq: number;
  text: string;
  event: LoggedEvent;
}

/**
 * The first text each seq arrived as, over all viewers, so fifty viewers
 * of 20,000 events keep one copy of the log rather than fifty; a viewer that
 * gets a different text for a seq keeps its own. Each distinct frame is
 * parsed once: viewers that are up to date all get the same frame text.
 */
export class EventCatalog {
  readonly texts = new Map<number, string>();
  private readonly frames = new Map<string, FramedEvent[]>();

  private readonly inflated = new Map<string, string>();

  /** The text of a message: a binary one is a deflated events frame (`?frames=deflate`), inflated once for all viewers. */
  textOf(data: string | ArrayBuffer): string {
    if (typeof data === "string") return data;
    const key = Buffer.from(data).toString("latin1");
    let text = this.inflated.get(key);
    if (text === undefined) {
      text = inflateRawSync(Buffer.from(data)).toString("utf8");
      this.inflated.set(key, text);
    }
    return text;
  }

  /** The events of an events frame (`{"v":1,"type":"events",…}`). */
  eventsOf(frame: string): FramedEvent[] {
    let events = this.frames.get(frame);
    if (!events) {
      events = (JSON.parse(frame) as { events: LoggedEvent[] }).events.map((event) => ({ seq: event.seq, text: JSON.stringify(event), event }));
      this.frames.set(frame, events);
    }
    return events;
  }

  /** Records `text` as seq's, or says whether it equals the text already recorded. */
  check(seq: number, text: string): boolean {
    const known = this.texts.get(seq);
    if (known === undefined) {
      this.texts.set(seq, text);
      return true;
    }
    return known === text;
  }
}

export interface ViewerOptions {
  /** Asks for deflated events frames (`?frames=deflate`), as the web viewer does; default true. */
  deflate?: boolean;
  /** Called for every event, with when it arrived (preciseNow). Parsing costs time: only when asked. */
  onEvent?: (event: LoggedEvent, receivedAt: number) => void;
}

const FRAME_PREFIX = '{"v":1,"type":"events","events":[';

/**
 * One WebSocket viewer of one task, acknowledging what it reads as the web
 * viewer does (src/stream-protocol.ts). A frame is parsed once for all
 * viewers (fifty viewers of a fast stream would otherwise spend the
 * machine's CPU on JSON.parse, and slow the server they measure).
 */
export class Viewer {
  /** Every event's seq, in the order they arrived, and when each arrived (preciseNow). */
  readonly seqs: number[] = [];
  readonly times: number[] = [];
  /** Messages that differ from the one the catalog holds for their seq (normally none). */
  readonly divergent = new Map<number, string>();
  /** `cf_agent_state` messages (the task's state after each change). */
  stateMessages = 0;
  /** Events frames received. */
  frames = 0;
  /** Bytes of every message received, and of those received while stalled. */
  bytes = 0;
  bytesWhileStalled = 0;
  /** When `resume` was called (preciseNow). */
  resumedAt: number | null = null;
  /** Other messages the agents SDK sends (identity, MCP servers). */
  otherMessages = 0;
  /** When the socket opened (preciseNow). */
  openedAt: number | null = null;
  closedEarly: string | null = null;
  error: string | null = null;
  private highest = 0;
  private readonly socket: WebSocket;
  private closing = false;
  private stalled = false;
  private readonly acks: Acknowledger;
  readonly opened: Promise<void>;

  constructor(url: string, catalog: EventCatalog, options: ViewerOptions = {}) {
    // As the web viewer does, it asks for its events frames deflated.
    this.socket = new WebSocket(options.deflate === false ? url : `${url}${url.includes("?") ? "&" : "?"}frames=deflate`);
    this.socket.binaryType = "arraybuffer";
    this.acks = new Acknowledger((text) => this.socket.readyState === WebSocket.OPEN && this.socket.send(text));
    this.opened = new Promise((resolve, reject) => {
      this.socket.addEventListener("open", () => {
        this.openedAt = preciseNow();
        resolve();
      });
      this.socket.addEventListener("error", () => {
        this.error ??= "the WebSocket failed";
        reject(new Error(`viewer WebSocket ${url.replace(/token=[^&]+/, "token=…")} failed`));
      });
    });
    // A failed open is reported through `error`; nobody has to await `opened`.
    this.opened.catch(() => {});
    this.socket.addEventListener("close", (event) => {
      this.acks.stop();
      if (!this.closing) this.closedEarly = `closed by the server: ${event.code} ${event.reason}`;
    });
    this.socket.addEventListener("message", (message) => {
      const at = preciseNow();
      const data = message.data as string | ArrayBuffer;
      const wire = typeof data === "string" ? data.length : data.byteLength;
      const text = catalog.textOf(data);
      this.bytes += wire;
      if (this.stalled) this.bytesWhileStalled += wire;
      if (text.startsWith(FRAME_PREFIX)) {
        this.frames++;
        for (const { seq, text: eventText, event } of catalog.eventsOf(text)) {
          this.seqs.push(seq);
          this.times.push(at);
          this.highest = Math.max(this.highest, seq);
          if (!catalog.check(seq, eventText)) this.divergent.set(seq, eventText);
          options.onEvent?.(event, at);
        }
      } else if (text.startsWith('{"type":"cf_agent_state"')) {
        this.stateMessages++;
      } else {
        this.otherMessages++;
      }
      if (!this.stalled) this.acks.read(this.highest, wire);
      else this.unread += wire;
    });
  }

  /** Bytes received while stalled, acknowledged on `resume`. */
  private unread = 0;

  /** Stops acknowledging, as a tab that stopped reading: the server may send it no more than its backlog cap. */
  stall(): void {
    this.stalled = true;
  }

  /** Reads again: acknowledges everything received, so the server sends the rest. */
  resume(): void {
    this.stalled = false;
    this.resumedAt = preciseNow();
    this.acks.read(this.highest, this.unread);
    this.unread = 0;
  }

  /** When the event `seq` first arrived, or null. */
  arrivalOf(seq: number): number | null {
    const i = this.seqs.indexOf(seq);
    return i >= 0 ? this.times[i]! : null;
  }

  /** The highest seq received so far. */
  get lastSeq(): number {
    return this.highest;
  }

  close(): void {
    this.closing = true;
    this.socket.close();
  }
}

/** Waits until every viewer has seen seq `last` (or `timeoutMs` passes); true if all did. */
export async function waitForSeq(viewers: Viewer[], last: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (viewers.some((viewer) => viewer.lastSeq < last && !viewer.error && !viewer.closedEarly)) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return viewers.every((viewer) => viewer.lastSeq >= last);
}

/** What one viewer got wrong, against the stored log. */
export interface ViewerAudit {
  received: number;
  /** Seqs of the log the viewer never got. */
  lost: number;
  /** Events the viewer got more than once. */
  duplicated: number;
  /** Places where a seq did not follow the one before by exactly one. */
  outOfOrder: number;
  /** Seqs the viewer got that the log does not have. */
  unknown: number;
  /** Events whose text differs from the log's. */
  differing: number;
  error: string | null;
}

/**
 * Audits each viewer against the stored log (`log`, seq 1..N): exactly once,
 * contiguous and in order, identical text. A viewer's text for a seq is the
 * catalog's unless it kept a divergent one.
 */
export function auditViewers(viewers: Viewer[], catalog: EventCatalog, log: LoggedEvent[]): { perViewer: ViewerAudit[]; catalogDiffers: number[] } {
  const stored = new Map(log.map((event) => [event.seq, JSON.stringify(event)]));
  // The catalog keeps each event's text as JSON.stringify of the event the frame carried.
  const asStored = (text: string) => text;
  const catalogDiffers = [...catalog.texts].filter(([seq, text]) => stored.has(seq) && stored.get(seq) !== asStored(text)).map(([seq]) => seq);
  const differs = new Set(catalogDiffers);
  const perViewer = viewers.map((viewer) => {
    const seen = new Set<number>();
    let duplicated = 0;
    let outOfOrder = 0;
    let unknown = 0;
    let differing = 0;
    viewer.seqs.forEach((seq, i) => {
      if (seen.has(seq)) duplicated++;
      seen.add(seq);
      if (seq !== (i === 0 ? 1 : viewer.seqs[i - 1]! + 1)) outOfOrder++;
      const own = viewer.divergent.get(seq);
      if (!stored.has(seq)) unknown++;
      else if (own !== undefined ? asStored(own) !== stored.get(seq) : differs.has(seq)) differing++;
    });
    const lost = log.filter((event) => !seen.has(event.seq)).length;
    return { received: viewer.seqs.length, lost, duplicated, outOfOrder, unknown, differing, error: viewer.error ?? viewer.closedEarly };
  });
  return { perViewer, catalogDiffers };
}

/** Sums the per-viewer audits. */
export function auditTotals(audits: ViewerAudit[]) {
  const sum = (key: "lost" | "duplicated" | "outOfOrder" | "unknown" | "differing") => audits.reduce((total, audit) => total + audit[key], 0);
  return {
    viewers: audits.length,
    received: audits.reduce((total, audit) => total + audit.received, 0),
    lost: sum("lost"),
    duplicated: sum("duplicated"),
    outOfOrder: sum("outOfOrder"),
    unknown: sum("unknown"),
    differing: sum("differing"),
    viewersWithErrors: audits.filter((audit) => audit.error).length,
    perfect: audits.filter((audit) => !audit.error && audit.lost + audit.duplicated + audit.outOfOrder + audit.unknown + audit.differing === 0).length,
  };
}
