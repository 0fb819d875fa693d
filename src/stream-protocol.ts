/**
 * The task WebSocket's wire format, version 1, shared by the TaskAgent, the
 * web viewer, the benchmarks and the tests (the CLI, plain JavaScript, keeps
 * its own copy in cli/follow.mjs).
 *
 * Server → viewer:
 *   `{"v":1,"type":"events","events":[…]}`  events, oldest first (one frame may hold
 *                                          several stored batches); each exactly as
 *                                          `GET …/events` serves it
 *   `{"type":"cf_agent_state","seq":N,"state":…}`
 *                                          the task's state after a change: the
 *                                          fold of every event up to `seq`
 * Viewer → server:
 *   `{"type":"ack","seq":N}`                 every event up to N has been read
 *
 * A viewer that connects with `?frames=deflate` gets every events frame as a
 * binary message instead: the raw DEFLATE (RFC 1951, no zlib or gzip header)
 * of the same text. The frame is deflated once for all such viewers, so fifty
 * viewers cost the server one compression, not fifty (which is why the Worker
 * refuses WebSocket `permessage-deflate`: that compresses per socket). State
 * frames stay text.
 *
 * A viewer acknowledges what it has read, counted as it came on the wire
 * (the characters of a text frame, the bytes of a binary one): after
 * ACK_EVERY_BYTES, or ACK_WITHIN_MS after the first unacknowledged frame. The server keeps at
 * most a capped number of unacknowledged bytes in flight per viewer; a viewer
 * past the cap gets nothing more until it acknowledges, and then catches up
 * from the stored log by `seq`. The frames' zod schemas are in
 * src/stream-frames.ts.
 */
// Type imports only: the benchmarks load this file in plain Node, which strips types but runs no TypeScript-only syntax.
import type { TaskEvent } from "./events.ts";

export const STREAM_VERSION = 1;

/** A viewer acknowledges once it has read this many bytes since its last acknowledgement… */
export const ACK_EVERY_BYTES = 256 * 1024;
/** …or this long after the first frame it has not acknowledged yet. */
export const ACK_WITHIN_MS = 1000;

/** The text of one events frame: the events' own JSON, as the log stores them, joined. */
export function eventsFrameText(events: readonly TaskEvent[]): string {
  return eventsFrameOfTexts(events.map((event) => JSON.stringify(event)));
}

/** The same, of events already serialized. */
export function eventsFrameOfTexts(texts: readonly string[]): string {
  return `{"v":${STREAM_VERSION},"type":"events","events":[${texts.join(",")}]}`;
}

/**
 * A viewer's side of the acknowledgements: call `read` after handling each
 * frame with the highest `seq` handled so far; it sends `{"type":"ack"}` on
 * the protocol's schedule. `stop` when the socket closes.
 */
export class Acknowledger {
  private unacked = 0;
  private seq = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;

  private readonly send: (text: string) => void;

  constructor(send: (text: string) => void) {
    this.send = send;
  }

  read(seq: number, bytes: number): void {
    this.seq = Math.max(this.seq, seq);
    this.unacked += bytes;
    if (this.unacked >= ACK_EVERY_BYTES) this.ack();
    else this.timer ??= setTimeout(() => this.ack(), ACK_WITHIN_MS);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private ack(): void {
    this.stop();
    this.unacked = 0;
    // Sent even when `seq` has not moved: a state frame counts against the viewer's backlog too.
    this.send(JSON.stringify({ type: "ack", seq: this.seq }));
  }
}
