/**
 * The CLI's following (cli/follow.mjs) reports the task as its own fold of
 * the stream's events: a recorded log (test/fixtures/task-logs/judge.json)
 * sent over a WebSocket with no state frame at all, while the API still
 * answers with the task as it was when following began.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { deflateRawSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
// @ts-expect-error: the CLI is plain JavaScript, without declarations.
import { followTask } from "../../cli/follow.mjs";
import { foldTask, parseEvent } from "../../src/events.ts";

type LoggedEvent = Parameters<typeof parseEvent>[0] & { seq: number };
const fixture = JSON.parse(readFileSync(join(import.meta.dirname, "../fixtures/task-logs/judge.json"), "utf8")) as { events: LoggedEvent[]; served: Record<string, unknown> };

let server: http.Server | undefined;
afterEach(() => {
  server?.closeAllConnections();
  server?.close();
});

/** One unmasked frame, as a server sends it (RFC 6455): text, or binary (opcode 2). */
function wsFrame(payload: Buffer, opcode: 1 | 2 = 1): Buffer {
  const first = 0x80 | opcode;
  const header = payload.length < 126 ? Buffer.from([first, payload.length]) : payload.length < 65_536 ? Buffer.from([first, 126, payload.length >> 8, payload.length & 0xff]) : Buffer.concat([Buffer.from([first, 127, 0, 0, 0, 0]), Buffer.from([(payload.length >>> 24) & 0xff, (payload.length >>> 16) & 0xff, (payload.length >>> 8) & 0xff, payload.length & 0xff])]);
  return Buffer.concat([header, payload]);
}

/**
 * A WebSocket stream (node:http's upgrade, framed by hand) that sends the log after `after` in two events frames
 * and never a state frame, then only takes what the client sends (its acknowledgements). To a client that asks for
 * `?frames=deflate` the second frame goes deflated, as the TaskAgent sends it.
 */
async function streamOfLog(): Promise<{ url: string; asked: number[]; deflated: boolean[] }> {
  const asked: number[] = [];
  const deflated: boolean[] = [];
  server = http.createServer();
  server.on("upgrade", (request, socket) => {
    const params = new URL(request.url ?? "/", "http://x").searchParams;
    const after = Number(params.get("after") ?? 0);
    const deflate = params.get("frames") === "deflate";
    asked.push(after);
    deflated.push(deflate);
    const accept = createHash("sha1").update(`${request.headers["sec-websocket-key"]}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    socket.on("data", () => {});
    const events = fixture.events.filter((event) => event.seq > after);
    const half = Math.ceil(events.length / 2);
    for (const [i, part] of [events.slice(0, half), events.slice(half)].entries()) {
      if (part.length === 0) continue;
      const text = JSON.stringify({ v: 1, type: "events", events: part });
      socket.write(deflate && i === 1 ? wsFrame(deflateRawSync(text), 2) : wsFrame(Buffer.from(text)));
    }
  });
  await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
  return { url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/ws`, asked, deflated };
}

describe("sortie's following", () => {
  it("ends when its fold of the events says the task ended, though no state frame came and the API still says running", async () => {
    const { url, asked, deflated } = await streamOfLog();
    const stale = { ...fixture.served, status: "running", endedAt: null, ws: url };
    const client = {
      getTask: async () => stale,
      events: async function* () {},
    };
    const seen: number[] = [];
    const states: string[] = [];
    const ended = await followTask(client, stale, { onEvent: (event: { seq: number }) => seen.push(event.seq), onState: (state: { status: string }) => states.push(state.status) });
    expect(ended.status).toBe("succeeded");
    expect(seen).toEqual(fixture.events.map((event) => event.seq));
    // What it reports is the fold of the log, with the API's own fields (where to watch) beside it.
    const folded = foldTask(fixture.events.map((event) => parseEvent(event)));
    expect({ ...ended, ws: undefined }).toEqual({ ...stale, ...folded, ws: undefined });
    expect(states.at(-1)).toBe("succeeded");
    expect(asked[0]).toBe(0);
    // It asked for deflated frames, and read the deflated one as it read the text one.
    expect(deflated[0]).toBe(true);
  }, 30_000);
});
