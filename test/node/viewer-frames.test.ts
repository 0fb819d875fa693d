/**
 * How the TaskAgent frames a stream for its viewers (src/agents/viewer-streams.ts),
 * on a clock of the test's own: batches stored close together go out as one
 * frame, the same frame to every viewer, and nothing a viewer does while events
 * wait for their frame gets it those events twice or apart from the others.
 */
import { inflateRawSync } from "node:zlib";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Connection } from "agents";
import { ViewerStreams } from "../../src/agents/viewer-streams.ts";
import { LIMITS } from "../../src/config.ts";
import type { TaskEvent } from "../../src/events.ts";

class Log {
  readonly events: TaskEvent[] = [];
  get storedSeq() {
    return this.events.length;
  }
  storedPage(after: number, limit: number) {
    return this.events.slice(after, after + limit);
  }
  /** Stores `count` lines of `size` characters, as the event log does: then they are published. */
  store(count: number, size = 40): TaskEvent[] {
    const batch = Array.from({ length: count }, (_, i): TaskEvent => {
      const seq = this.events.length + i + 1;
      return { seq, ts: 1_700_000_000_000 + seq, run: 0, type: "log", data: { stream: "stdout", text: `line ${seq} ${"x".repeat(size)}` } } as TaskEvent;
    });
    this.events.push(...batch);
    return batch;
  }
}

/** A viewer's socket: what it was sent, parsed. */
class Socket {
  readonly sent: { type: string; seqs?: number[]; text: string; binary?: Uint8Array }[] = [];
  state: unknown = null;
  send(message: string | Uint8Array) {
    const text = typeof message === "string" ? message : inflateRawSync(message).toString("utf8");
    const frame = JSON.parse(text) as { type: string; events?: { seq: number }[] };
    this.sent.push({ type: frame.type, seqs: frame.events?.map((event) => event.seq), text, ...(typeof message === "string" ? {} : { binary: message }) });
  }
  setState(state: unknown) {
    this.state = state;
  }
  /** Every event seq it got, in order. */
  seqs() {
    return this.sent.flatMap((frame) => frame.seqs ?? []);
  }
  eventFrames() {
    return this.sent.filter((frame) => frame.type === "events");
  }
}

function setup(viewers: number, state: string | null = null) {
  const log = new Log();
  const sockets = Array.from({ length: viewers }, () => new Socket());
  const streams = new ViewerStreams(log, () => [], () => state);
  for (const socket of sockets) streams.add(socket as unknown as Connection, 0);
  const publish = (count: number, size?: number) => streams.publish(log.store(count, size));
  return { log, sockets, streams, publish };
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(1_800_000_000_000);
});
afterEach(() => vi.useRealTimers());

describe("framing a stream for its viewers", () => {
  it("sends a batch at once when no frame went out lately, and batches stored soon after together, the same frame to every viewer", () => {
    const { sockets, publish } = setup(3);
    publish(10);
    for (const socket of sockets) expect(socket.eventFrames().map((frame) => frame.seqs)).toEqual([range(1, 10)]);
    publish(5);
    publish(5);
    vi.advanceTimersByTime(LIMITS.viewerFrameMs - 1);
    for (const socket of sockets) expect(socket.eventFrames()).toHaveLength(1);
    vi.advanceTimersByTime(1);
    for (const socket of sockets) {
      expect(socket.eventFrames().map((frame) => frame.seqs)).toEqual([range(1, 10), range(11, 20)]);
      expect(socket.eventFrames()[1]!.text).toBe(sockets[0]!.eventFrames()[1]!.text);
    }
    // A quiet stream again: the next batch leaves at once.
    vi.advanceTimersByTime(LIMITS.viewerFrameMs);
    publish(1);
    for (const socket of sockets) expect(socket.seqs()).toEqual(range(1, 21));
  });

  it("sends waiting batches as soon as they make LIMITS.viewerFrameBytes, without waiting for the window", () => {
    const { sockets, publish } = setup(2);
    publish(1);
    const perEvent = 200;
    const count = Math.ceil(LIMITS.viewerFrameBytes / perEvent);
    publish(count, perEvent);
    for (const socket of sockets) expect(socket.seqs()).toEqual(range(1, count + 1));
  });

  it("an acknowledgement while events wait for their frame gets the viewer nothing of its own: it gets them in the shared frame", () => {
    const { sockets, streams, publish } = setup(2);
    const [acking, other] = sockets as [Socket, Socket];
    publish(10);
    publish(10);
    streams.acknowledge(acking, 10);
    expect(acking.seqs()).toEqual(range(1, 10));
    vi.advanceTimersByTime(LIMITS.viewerFrameMs);
    expect(acking.seqs()).toEqual(range(1, 20));
    expect(acking.eventFrames().map((frame) => frame.text)).toEqual(other.eventFrames().map((frame) => frame.text));
  });

  it("a state change sends the waiting events first, so the state frame follows every event it is the fold of", () => {
    let state: string | null = null;
    const log = new Log();
    const socket = new Socket();
    const streams = new ViewerStreams(log, () => [], () => state);
    streams.add(socket as unknown as Connection, 0);
    streams.publish(log.store(3));
    streams.publish(log.store(3));
    state = JSON.stringify({ type: "cf_agent_state", seq: 6, state: {} });
    streams.publishState();
    expect(socket.sent.map((frame) => frame.type)).toEqual(["events", "events", "cf_agent_state"]);
    expect(socket.seqs()).toEqual(range(1, 6));
  });

  it("a viewer joining while events wait gets every event once: up to the wait from the log, the rest in the frame", () => {
    const { log, sockets, streams, publish } = setup(1);
    publish(10);
    publish(10);
    const late = new Socket();
    streams.add(late as unknown as Connection, 0);
    vi.advanceTimersByTime(LIMITS.viewerFrameMs);
    expect(late.seqs()).toEqual(range(1, 20));
    expect(sockets[0]!.seqs()).toEqual(range(1, 20));
    // One that read past the wait (GET …/events) is not sent those events again.
    publish(10);
    const reader = new Socket();
    streams.add(reader as unknown as Connection, log.storedSeq);
    publish(1);
    vi.advanceTimersByTime(LIMITS.viewerFrameMs);
    expect(reader.seqs()).toEqual([31]);
    expect(late.seqs()).toEqual(range(1, 31));
  });

  it("a viewer that asked for deflated frames gets each as the raw DEFLATE of the text frame, deflated once for all such viewers, catching up too", () => {
    const log = new Log();
    const streams = new ViewerStreams(log, () => [], () => JSON.stringify({ type: "cf_agent_state", seq: log.storedSeq, state: {} }));
    const [text, first, second] = [new Socket(), new Socket(), new Socket()];
    streams.add(text as unknown as Connection, 0);
    streams.add(first as unknown as Connection, 0, { deflate: true });
    streams.add(second as unknown as Connection, 0, { deflate: true });
    streams.publish(log.store(50));
    const [plain, deflated, again] = [text, first, second].map((socket) => socket.eventFrames()[0]!);
    expect(plain!.binary).toBeUndefined();
    expect(deflated!.text).toBe(plain!.text);
    expect(again!.binary).toBe(deflated!.binary);
    // State frames stay text; the socket's attachment keeps the choice for after hibernation.
    expect(first.sent[0]!.type).toBe("cf_agent_state");
    expect(first.sent[0]!.binary).toBeUndefined();
    expect(first.state).toMatchObject({ deflate: true });
    // A late one catches up from the log in deflated pages.
    const late = new Socket();
    streams.add(late as unknown as Connection, 0, { deflate: true });
    expect(late.seqs()).toEqual(range(1, 50));
    expect(late.eventFrames().every((frame) => frame.binary)).toBe(true);
  });

  it("after a wake, the first batch stored reaches the sockets that were up to date, and not those that were behind", () => {
    const log = new Log();
    log.store(5);
    const live = new Socket();
    const behind = new Socket();
    behind.state = { resumeAfter: 3 };
    // A new instance: its registry is rebuilt from the sockets that outlived the last one.
    const streams = new ViewerStreams(log, () => [live, behind] as unknown as Connection[], () => null);
    streams.publish(log.store(2));
    expect(live.seqs()).toEqual([6, 7]);
    expect(behind.seqs()).toEqual([]);
    streams.acknowledge(behind, 3);
    expect(behind.seqs()).toEqual([4, 5, 6, 7]);
  });
});
