/**
 * Follows a task live until it ends: over the task's WebSocket when this
 * Node has one, by polling the event log when it does not (Node 20).
 * Every event is delivered once and in order: each (re)connection asks for
 * the events after the last `seq` seen, duplicates are dropped by `seq`, and
 * a jump in `seq` is filled from the HTTP event log before going on.
 *
 * The socket speaks version 1 of the stream protocol (src/stream-protocol.ts):
 * `{"v":1,"type":"events","events":[…]}` and `{"type":"cf_agent_state"}` frames
 * in, `{"type":"ack","seq":N}` out, so the server keeps sending. It asks for
 * its events frames deflated (`?frames=deflate`: binary messages, each the raw
 * DEFLATE of the text frame), a small fraction of the bytes of a fast stream.
 *
 * Following from the log's start, the task it reports is its own fold of the
 * events (`applyEvent` of src/events.ts, what the TaskAgent serves); the
 * server's state is used only before the first event, or when an event is of a
 * type this CLI does not know (a newer server): then the fold is given up.
 */
import { inflateRawSync } from "node:zlib";
import { applyEvent, emptyFold, parseEvent } from "../src/events.ts";
import { CliError } from "./errors.mjs";
import { TERMINAL } from "./style.mjs";

/** How long the socket must stay quiet after the task ended before we stop listening (late events such as `sandbox.destroyed`). */
const SETTLE_MS = 500;
/** The longest we linger after the end, however chatty the socket. */
const SETTLE_MAX_MS = 3000;
/** Without news from the server for this long, following gives up. */
const GIVE_UP_MS = 60_000;
const POLL_MS = 1000;
/** Sockets that close before saying anything, in a row, before we fall back to polling. */
const MAX_SOCKET_FAILURES = 5;
/** When to acknowledge what was read: after this many bytes, or this long after the first unacknowledged frame (as src/stream-protocol.ts). */
const ACK_EVERY_BYTES = 256 * 1024;
const ACK_WITHIN_MS = 1000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * @typedef {{ seq: number, ts: number, run: number | null, type: string, data: Record<string, any> }} TaskEvent
 * @param {import("./client.mjs").Client} client
 * @param {{ id: string, status: string, ws?: string }} task the task as the API returned it
 * @param {{ after?: number, onEvent: (event: TaskEvent) => void, onState: (task: any) => void, onNotice?: (text: string) => void }} hooks
 * @returns {Promise<any>} the task once it has ended
 */
export async function followTask(client, task, hooks) {
  let lastSeq = hooks.after ?? 0;
  let publishSkipped = false;
  /** The CLI's own fold of the log, while it has every event from the first. */
  let fold = lastSeq === 0 ? emptyFold() : null;
  const folded = () => fold?.task ?? null;
  const over = (state) => isOver(state, publishSkipped);
  const deliver = (event) => {
    if (event.seq <= lastSeq) return;
    lastSeq = event.seq;
    if (event.type === "publish.skipped") publishSkipped = true;
    if (fold) {
      try {
        fold = applyEvent(fold, parseEvent(event));
      } catch {
        fold = null;
      }
    }
    hooks.onEvent(event);
  };
  /** What the task is: the fold when there is one, else what the server said (null: nothing said, only the fold). */
  const stateOf = (served = null) => folded() ?? served;
  const catchUp = async () => {
    for await (const event of client.events(task.id, lastSeq)) deliver(event);
  };
  const onSocketEvent = async (event) => {
    if (event.seq > lastSeq + 1) await catchUp();
    deliver(event);
  };

  let current = task;
  hooks.onState(current);
  let lastContact = Date.now();
  let socketFailures = 0;
  let troubles = 0;
  for (;;) {
    try {
      if (!over(current)) {
        const useSocket = typeof WebSocket === "function" && current.ws && socketFailures < MAX_SOCKET_FAILURES;
        if (useSocket) {
          const { ended, received } = await watchSocket(current.ws, lastSeq, { onEvent: onSocketEvent, onState: hooks.onState, over, stateOf });
          if (received) lastContact = Date.now();
          socketFailures = received ? 0 : socketFailures + 1;
          if (socketFailures === MAX_SOCKET_FAILURES) hooks.onNotice?.("the WebSocket does not connect; polling the event log instead");
          else if (!ended) hooks.onNotice?.(`connection lost after event ${lastSeq}; reconnecting`);
          if (!ended) await sleep(Math.min(5000, 250 * 2 ** socketFailures));
        } else {
          await catchUp();
          await sleep(POLL_MS);
        }
      }
      // A fresh read: whether the task ended, and a new viewer token for the next socket.
      const served = await client.getTask(task.id);
      current = withServed(folded(), served);
      // A fold that disagrees with a server saying the task is over (another version's fold) does not hold following up.
      if (over(served) && !over(current)) current = served;
      lastContact = Date.now();
      troubles = 0;
    } catch (error) {
      // Only an unreachable server is waited out (a restart, a blip); a refusal from the API ends following.
      if (!(error instanceof CliError && error.unreachable) || Date.now() - lastContact > GIVE_UP_MS) throw error;
      troubles++;
      hooks.onNotice?.(`${error.message}; retrying`);
      await sleep(Math.min(5000, 250 * 2 ** troubles));
      continue;
    }
    hooks.onState(current);
    if (over(current)) {
      await catchUp();
      return withServed(folded(), current);
    }
  }
}

/**
 * The task as the fold tells it, with what the server adds beside the history: where to watch it, each run's
 * place in the queue and its preview's absolute URL. Without a fold, the server's answer.
 */
function withServed(fold, served) {
  if (!fold) return served;
  const runs = fold.runs.map((run, i) => {
    const servedRun = served.runs?.[i];
    return {
      ...run,
      ...(servedRun?.queuePosition !== undefined ? { queuePosition: servedRun.queuePosition } : {}),
      ...(run.preview && servedRun?.preview?.url ? { preview: { ...run.preview, url: servedRun.preview.url } } : {}),
    };
  });
  return { ...served, ...fold, runs };
}

/**
 * Whether there is nothing more to wait for: the task ended and, when it
 * asked for a branch or pull request, that publication ended or was skipped.
 */
export function isOver(task, publishSkipped = false) {
  if (!TERMINAL.has(task.status)) return false;
  if (task.status !== "succeeded" || !task.output || task.output === "diff") return true;
  return publishSkipped || (task.publication != null && TERMINAL.has(task.publication.status));
}

/**
 * One WebSocket connection, from `after` on. Resolves when the task is
 * `over` (and the socket has settled) or when the connection drops.
 * @returns {Promise<{ ended: boolean, received: boolean }>}
 */
function watchSocket(wsUrl, after, { onEvent, onState, over, stateOf }) {
  return new Promise((resolve, reject) => {
    const url = new URL(wsUrl);
    url.searchParams.set("after", String(after));
    url.searchParams.set("frames", "deflate");
    const socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    let received = false;
    let latest = null;
    let endedAt = 0;
    let settle;
    let settled = false;
    // Frames are handled one after another: filling a gap is asynchronous and must not reorder events.
    let queue = Promise.resolve();
    let unacked = 0;
    let highest = after;
    let ackTimer;
    const ack = () => {
      clearTimeout(ackTimer);
      ackTimer = undefined;
      unacked = 0;
      if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "ack", seq: highest }));
    };
    const read = (seq, bytes) => {
      highest = Math.max(highest, seq);
      unacked += bytes;
      if (unacked >= ACK_EVERY_BYTES) ack();
      else ackTimer ??= setTimeout(ack, ACK_WITHIN_MS);
    };
    const finish = (outcome, error) => {
      if (settled) return;
      settled = true;
      clearTimeout(settle);
      clearTimeout(ackTimer);
      if (socket.readyState === WebSocket.CONNECTING || socket.readyState === WebSocket.OPEN) socket.close(1000, "done");
      if (error) reject(error);
      else resolve(outcome);
    };
    socket.addEventListener("message", (message) => {
      received = true;
      queue = queue
        .then(async () => {
          if (settled) return;
          const wireBytes = typeof message.data === "string" ? message.data.length : message.data.byteLength;
          let frame;
          let text = "";
          try {
            text = typeof message.data === "string" ? message.data : inflateRawSync(Buffer.from(message.data)).toString("utf8");
            frame = JSON.parse(text);
          } catch (error) {
            throw new CliError(`the server sent a WebSocket frame that is not JSON${typeof message.data === "string" ? "" : " once inflated"}: ${text.slice(0, 100)}`, { cause: error });
          }
          if (frame.type === "events" && frame.v === 1 && Array.isArray(frame.events)) {
            for (const event of frame.events) {
              await onEvent(event);
              highest = Math.max(highest, event.seq);
            }
            const mine = stateOf();
            if (mine) {
              latest = mine;
              onState(latest);
            }
          } else if (frame.type === "cf_agent_state" && frame.state) {
            latest = stateOf(frame.state);
            onState(latest);
            // The server says it is over where the fold does not (another version's fold): following ends all the same.
            if (!endedAt && over(frame.state) && !over(latest)) endedAt = Date.now();
          }
          read(highest, wireBytes);
          // Checked after every frame: a `publish.skipped` event can end following without a state change.
          if (latest && !endedAt && over(latest)) endedAt = Date.now();
          if (endedAt) {
            clearTimeout(settle);
            const wait = Math.max(0, Math.min(SETTLE_MS, endedAt + SETTLE_MAX_MS - Date.now()));
            settle = setTimeout(() => finish({ ended: true, received }), wait);
          }
        })
        .catch((error) => finish(null, error));
    });
    // An error event is always followed by a close event, which decides.
    socket.addEventListener("error", () => {});
    socket.addEventListener("close", () => {
      queue.then(() => finish({ ended: endedAt > 0, received }));
    });
  });
}
