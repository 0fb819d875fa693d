/**
 * A task's live stream: the WebSocket `/api/tasks/<id>/ws?token=&after=<seq>`
 * (frames in src/stream-protocol.ts). The server sends the state, replays
 * every event after `after`, then live events and state changes; the viewer
 * acknowledges what it has read, so the server sends more. On a drop it
 * reconnects with the last seq it handed on, and drops any event at or below
 * it, so a viewer sees each event exactly once.
 *
 * The state the page draws is the viewer's own fold of those events
 * (`applyEvent` of src/events.ts, the fold the TaskAgent serves), once it has
 * caught up with the newest state frame (the fold of every event up to the
 * frame's `seq`): while a replay is under way the page keeps the server's
 * state, never going back through the task's history. A frame the viewer
 * cannot read, or a gap in `seq`, ends its fold: then it draws the server's
 * state frames, as before.
 */
import { z } from "zod";
import { applyEvent, emptyFold, type TaskEvent, type TaskFold } from "../../src/events.ts";
import type { TaskState } from "../../src/schema.ts";
import { EventsFrame, StateFrame } from "../../src/stream-frames.ts";
import { Acknowledger } from "../../src/stream-protocol.ts";
import { Unauthorized, sessionToken } from "./session.ts";

const ServerMessage = z.union([
  EventsFrame,
  StateFrame,
  // Frames of a later version, or of another kind: the viewer has no use for them.
  z.object({ type: z.string() }),
]);

export interface StreamHandlers {
  onEvent: (event: TaskEvent) => void;
  onState: (state: TaskState) => void;
  onConnection: (status: "live" | "reconnecting") => void;
  /** Before each reconnect: a chance to refresh what a dropped socket may have missed, and to find the session refused. */
  beforeReconnect: () => Promise<void>;
}

const RETRY_MS = [500, 1000, 2000, 5000, 10_000];

export function followTask(taskId: string, signal: AbortSignal, handlers: StreamHandlers): { lastSeq: () => number } {
  let lastSeq = 0;
  /** The viewer's fold of every event up to `lastSeq`; null once it missed one. */
  let fold: TaskFold | null = emptyFold();
  /** The `seq` the newest state frame drawn stands for: the fold is drawn once it is that far. */
  let drawnSeq = 0;
  let failures = 0;
  let socket: WebSocket | null = null;

  const connect = () => {
    const token = sessionToken();
    if (signal.aborted || !token) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    // Events frames come deflated where the browser can inflate them (src/stream-protocol.ts): a fast stream of log lines is a small fraction of the bytes.
    const opened = new WebSocket(`${scheme}//${location.host}/api/tasks/${encodeURIComponent(taskId)}/ws?token=${encodeURIComponent(token)}&after=${lastSeq}${CAN_INFLATE ? "&frames=deflate" : ""}`);
    opened.binaryType = "arraybuffer";
    socket = opened;
    // Inflating is asynchronous: messages are handled one after another, in the order they came.
    let handled: Promise<void> = Promise.resolve();
    const acks = new Acknowledger((text) => opened.readyState === WebSocket.OPEN && opened.send(text));
    socket.addEventListener("open", () => {
      failures = 0;
      handlers.onConnection("live");
    });
    socket.addEventListener("message", (message) => {
      const data = message.data as string | ArrayBuffer;
      const text = typeof data === "string" ? Promise.resolve(data) : inflate(data);
      handled = handled.then(async () => {
        let read: string;
        try {
          read = await text;
        } catch (error) {
          // Its events would be missing: this socket is given up, and the next one resumes after the last event read.
          console.warn("sortie: a deflated stream message the viewer could not inflate", error);
          if (opened === socket) opened.close(4000, "could not inflate a frame");
          return;
        }
        if (opened !== socket) return;
        try {
          handle(read, typeof data === "string" ? data.length : data.byteLength);
        } catch (error) {
          // One message the page could not draw must not stop every later one.
          console.warn("sortie: drawing a stream message failed", error);
        }
      });
    });
    const handle = (text: string, wireBytes: number) => {
      const parsed = ServerMessage.safeParse(parseJson(text));
      if (!parsed.success) {
        console.warn("sortie: a stream message the viewer does not understand", text);
        return;
      }
      const data = parsed.data;
      if ("events" in data) {
        let changed = false;
        for (const event of data.events) {
          if (event.seq <= lastSeq) continue;
          // A gap (events the viewer never got): its fold no longer tells the task's story.
          if (fold && event.seq !== lastSeq + 1) fold = null;
          lastSeq = event.seq;
          if (fold) fold = applyEvent(fold, event);
          changed = true;
          handlers.onEvent(event);
        }
        if (changed && fold?.task && lastSeq >= drawnSeq) handlers.onState(fold.task);
      } else if ("state" in data) {
        // Drawn unless the fold is at least as far; a server that sends no `seq` has its frames drawn always.
        if (!fold?.task || data.seq === undefined || data.seq > lastSeq) {
          drawnSeq = Math.max(drawnSeq, data.seq ?? 0);
          handlers.onState(data.state);
        }
      } else if (data.type === "events") {
        // An events frame the viewer cannot read (an event type newer than it): the fold is over.
        console.warn("sortie: an events frame the viewer does not understand", text);
        fold = null;
      }
      acks.read(lastSeq, wireBytes);
    };
    socket.addEventListener("close", () => {
      acks.stop();
      socket = null;
      if (signal.aborted) return;
      handlers.onConnection("reconnecting");
      const delay = RETRY_MS[Math.min(failures++, RETRY_MS.length - 1)]!;
      setTimeout(async () => {
        if (signal.aborted) return;
        try {
          await handlers.beforeReconnect();
        } catch (error) {
          // A refused session has already brought back the sign-in form, which aborts `signal`; anything else is retried.
          if (!(error instanceof Unauthorized)) console.warn("sortie: refreshing the task before reconnecting failed", error);
        }
        connect();
      }, delay);
    });
  };

  signal.addEventListener("abort", () => socket?.close(1000, "viewer left"));
  connect();
  return { lastSeq: () => lastSeq };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** Whether this browser inflates raw DEFLATE (Chrome 103, Firefox 113, Safari 16.4 and later); without it, frames come as text. */
const CAN_INFLATE = (() => {
  try {
    new DecompressionStream("deflate-raw");
    return true;
  } catch {
    return false;
  }
})();

/** The text of a deflated events frame: raw DEFLATE (RFC 1951), as `?frames=deflate` sends it. */
async function inflate(data: ArrayBuffer): Promise<string> {
  const stream = new Blob([data]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
  return new Response(stream).text();
}
