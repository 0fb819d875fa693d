/**
 * The viewers of one task: which events each has been sent, and how much of
 * that it has not acknowledged yet (src/stream-protocol.ts). The batches the
 * log stores within LIMITS.viewerFrameMs of the last frame become one frame,
 * built once and sent to every viewer that is up to date (a send costs each
 * socket about as much as 30 KB of frame, so a fast stream goes out in a few
 * large frames and a slow one at once); a viewer with more than
 * LIMITS.viewerBacklogBytes unacknowledged is skipped, costs nothing more than
 * two numbers, and catches up from the stored log, page by page, as its
 * acknowledgements come in, up to the events waiting for their frame. So a stalled
 * viewer slows neither the agent nor the other viewers.
 *
 * The registry lives in memory, so a broadcast reads no socket attachment;
 * after hibernation it is rebuilt once from the sockets, each carrying how
 * far it was sent when it fell behind (`resumeAfter`, null when up to date).
 */
import { deflateRawSync } from "node:zlib";
import type { Connection } from "agents";
import { LIMITS } from "../config.ts";
import type { TaskEvent } from "../events.ts";
import { EventLog } from "../store/event-log.ts";
import { AckFrame } from "../stream-frames.ts";
import { eventsFrameOfTexts, eventsFrameText } from "../stream-protocol.ts";

/**
 * What the viewers read from the task's event log: only what is stored.
 * Events still waiting for their batch reach the viewers when it is stored
 * (publish), so reading never cuts a batch short.
 */
export interface StoredEvents {
  readonly storedSeq: number;
  storedPage(after: number, limit: number): TaskEvent[];
}

/** What a viewer's socket keeps across hibernation. */
interface ViewerAttachment {
  resumeAfter: number | null;
  /** It asked for its events frames deflated (`?frames=deflate`). */
  deflate?: boolean;
}

interface Viewer {
  connection: Connection<ViewerAttachment>;
  /** The highest seq sent to it. */
  sent: number;
  /** Frames not acknowledged yet: the last seq each carried and its size. */
  unacked: { seq: number; bytes: number }[];
  unackedBytes: number;
  /** A state change it was not sent while behind; it gets the newest state once caught up. */
  missedState: boolean;
  /** Whether its attachment says it is up to date. */
  savedLive: boolean;
  /** Its events frames go as binary messages, each the raw DEFLATE of the text frame. */
  deflate: boolean;
}

/**
 * A durable agent's event log and the viewers of it, wired together: what the
 * log stores goes to the viewers, which read what they missed from it.
 */
export class ViewedLog {
  readonly events: EventLog;
  readonly viewers: ViewerStreams;

  constructor(storage: DurableObjectStorage, sockets: () => Iterable<Connection>, stateFrame: (events: EventLog) => string | null) {
    this.events = new EventLog(storage.sql, { transaction: (write) => storage.transactionSync(write), stored: (batch) => this.viewers.publish(batch) });
    this.viewers = new ViewerStreams(this.events, sockets, () => stateFrame(this.events));
  }
}

export class ViewerStreams {
  /** Keyed by the socket itself: a connection is its WebSocket, so no lookup reads its attachment. */
  private readonly viewers = new Map<object, Viewer>();
  private rebuilt = false;
  /** Stored events not framed yet (each event's JSON), the seq of the first, and when the last frame went. */
  private outgoing: string[] = [];
  private outgoingBytes = 0;
  private outgoingFirst = 0;
  private lastFrameAt = -Infinity;
  private frameTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly log: StoredEvents,
    /** Every open socket of the task, read once after a wake. */
    private readonly sockets: () => Iterable<Connection>,
    /** The current state frame's text, or null before the task exists. */
    private readonly stateFrame: () => string | null,
  ) {}

  /** A socket that connected to `url`: `?after=SEQ` is what it has, `?frames=deflate` how it wants its events frames. */
  connect(connection: Connection, url: string): void {
    const params = new URL(url).searchParams;
    const after = Number(params.get("after") ?? 0);
    this.add(connection, Number.isFinite(after) && after > 0 ? Math.floor(after) : 0, { deflate: params.get("frames") === "deflate" });
  }

  /** Whether a viewer's message is an acknowledgement: the one message viewers send many of, read before any SDK dispatch. */
  static isAck(message: string | ArrayBuffer): message is string {
    return typeof message === "string" && message.startsWith('{"type":"ack"');
  }

  /** A new viewer that has every event up to `after`: it gets the state, then what it missed. */
  add(connection: Connection, after: number, options: { deflate?: boolean } = {}): void {
    this.rebuild();
    // A viewer that read past the framed edge (from GET …/events) must not be sent those events again.
    if (after > this.framedSeq()) this.sendFrame();
    const viewer = this.track(connection, Math.min(Math.max(0, after), this.log.storedSeq), options.deflate === true);
    const state = this.stateFrame();
    if (state) this.send(viewer, state, viewer.sent);
    this.catchUp(viewer);
  }

  remove(connection: Connection): void {
    this.viewers.delete(connection);
  }

  /** A message a viewer sent: an acknowledgement frame counts, anything else means nothing. */
  acknowledgeText(socket: object, message: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(message);
    } catch {
      return;
    }
    const ack = AckFrame.safeParse(parsed);
    if (ack.success) this.acknowledge(socket, ack.data.seq);
  }

  /** A viewer has read every event up to `seq`. */
  acknowledge(socket: object, seq: number): void {
    this.rebuild();
    const viewer = this.viewers.get(socket);
    if (!viewer) return;
    let dropped = 0;
    while (viewer.unacked.length > 0 && viewer.unacked[0]!.seq <= seq) dropped += viewer.unacked.shift()!.bytes;
    viewer.unackedBytes -= dropped;
    this.catchUp(viewer);
  }

  /**
   * A batch the log just stored. Batches stored within LIMITS.viewerFrameMs of
   * the last frame wait to go out together (up to LIMITS.viewerFrameBytes): a
   * frame costs each socket a send, so a fast stream goes out in few large
   * frames while a slow one still leaves at once.
   */
  publish(events: TaskEvent[]): void {
    if (events.length === 0) return;
    // The log counts these as stored already: a socket that outlived the last instance has everything before them.
    this.rebuild(events[0]!.seq - 1);
    if (this.outgoing.length === 0) this.outgoingFirst = events[0]!.seq;
    for (const event of events) {
      const text = JSON.stringify(event);
      this.outgoing.push(text);
      this.outgoingBytes += text.length;
    }
    const wait = this.lastFrameAt + LIMITS.viewerFrameMs - Date.now();
    if (wait <= 0 || this.outgoingBytes >= LIMITS.viewerFrameBytes) this.sendFrame();
    else this.frameTimer ??= setTimeout(() => this.sendFrame(), wait);
  }

  /** The events waiting for their frame, as one frame to each viewer that has everything before them and room. */
  private sendFrame(): void {
    clearTimeout(this.frameTimer);
    this.frameTimer = undefined;
    if (this.outgoing.length === 0) return;
    this.lastFrameAt = Date.now();
    const frame = eventsFrameOfTexts(this.outgoing);
    // Deflated once for every viewer that asked, as the text is built once for the others.
    let deflated: Uint8Array | undefined;
    const [first, last] = [this.outgoingFirst, this.outgoingFirst + this.outgoing.length - 1];
    this.outgoing = [];
    this.outgoingBytes = 0;
    for (const viewer of this.viewers.values()) {
      if (viewer.sent !== first - 1) continue;
      if (viewer.unackedBytes >= LIMITS.viewerBacklogBytes) {
        this.fellBehind(viewer);
        continue;
      }
      this.send(viewer, viewer.deflate ? (deflated ??= deflate(frame)) : frame, last);
    }
  }

  /** The task's state changed: up-to-date viewers get it now, the others once they catch up. */
  publishState(): void {
    this.rebuild();
    // The state is the fold up to the newest stored event: the events before it go first.
    this.sendFrame();
    let frame: string | null | undefined;
    for (const viewer of this.viewers.values()) {
      if (viewer.sent !== this.log.storedSeq || viewer.unackedBytes >= LIMITS.viewerBacklogBytes) {
        viewer.missedState = true;
        continue;
      }
      frame ??= this.stateFrame();
      if (frame) this.send(viewer, frame, viewer.sent);
    }
  }

  /** How many viewers are connected, and how many are behind (for tests and benchmarks). */
  counts(): { viewers: number; behind: number } {
    this.rebuild();
    let behind = 0;
    for (const viewer of this.viewers.values()) if (viewer.sent < this.log.storedSeq) behind++;
    return { viewers: this.viewers.size, behind };
  }

  /** Sends stored events the viewer has not had, while it has room; then, caught up, the newest state if it missed one. */
  private catchUp(viewer: Viewer): void {
    // Up to the events waiting for their frame: those reach it in that frame, with every other viewer's.
    const edge = this.framedSeq();
    while (viewer.sent < edge && viewer.unackedBytes < LIMITS.viewerBacklogBytes) {
      const page = this.log.storedPage(viewer.sent, Math.min(LIMITS.viewerCatchUpPage, edge - viewer.sent));
      if (page.length === 0) break;
      const text = eventsFrameText(page);
      if (!this.send(viewer, viewer.deflate ? deflate(text) : text, page.at(-1)!.seq)) return;
    }
    if (viewer.sent < edge) {
      this.save(viewer, { resumeAfter: viewer.sent });
      return;
    }
    if (viewer.missedState) {
      viewer.missedState = false;
      const state = this.stateFrame();
      if (state) this.send(viewer, state, viewer.sent);
    }
    if (!viewer.savedLive) this.save(viewer, { resumeAfter: null });
  }

  /** The newest event framed: what is stored, but for the events waiting for their frame. */
  private framedSeq(): number {
    return this.outgoing.length > 0 ? this.outgoingFirst - 1 : this.log.storedSeq;
  }

  private fellBehind(viewer: Viewer): void {
    if (viewer.savedLive) this.save(viewer, { resumeAfter: viewer.sent });
  }

  /** Sends one frame; false (and the viewer forgotten) if its socket is gone. */
  private send(viewer: Viewer, message: string | Uint8Array, seq: number): boolean {
    try {
      viewer.connection.send(message);
    } catch {
      // A socket closing under us: its close event follows; until then it gets nothing.
      this.viewers.delete(viewer.connection);
      return false;
    }
    viewer.sent = seq;
    // What is in flight is counted as it goes on the wire, as the viewer counts what it reads.
    const bytes = typeof message === "string" ? message.length : message.byteLength;
    viewer.unacked.push({ seq, bytes });
    viewer.unackedBytes += bytes;
    return true;
  }

  private save(viewer: Viewer, attachment: ViewerAttachment): void {
    viewer.connection.setState(viewer.deflate ? { ...attachment, deflate: true } : attachment);
    viewer.savedLive = attachment.resumeAfter === null;
  }

  private track(connection: Connection, sent: number, deflate: boolean): Viewer {
    const viewer: Viewer = { connection: connection as Connection<ViewerAttachment>, sent, unacked: [], unackedBytes: 0, missedState: false, savedLive: false, deflate };
    this.viewers.set(connection, viewer);
    return viewer;
  }

  /** After a wake, the sockets that outlived the last instance join the registry, once; those up to date have everything up to `live`. */
  private rebuild(live = this.log.storedSeq): void {
    if (this.rebuilt) return;
    this.rebuilt = true;
    for (const connection of this.sockets()) {
      if (this.viewers.has(connection)) continue;
      const attachment = (connection as Connection<ViewerAttachment>).state;
      const saved = attachment?.resumeAfter;
      const viewer = this.track(connection, typeof saved === "number" ? saved : live, attachment?.deflate === true);
      viewer.savedLive = typeof saved !== "number";
    }
  }
}

/** An events frame as a viewer that asked for `?frames=deflate` gets it: the raw DEFLATE (RFC 1951) of its text, fast level. */
function deflate(text: string): Uint8Array {
  return deflateRawSync(text, { level: 1 });
}
