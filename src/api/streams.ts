/** Response bodies read from a Durable Object page by page: an event log as NDJSON, a stored diff chunk by chunk. */
import { SortieError } from "../errors.ts";
import { allows, bearerOf, callerOf, verifySessionToken, verifyViewerToken } from "./auth.ts";

/** One page of an agent's event log, as its `readEvents` returns it. */
type EventPage = { ndjson: string; count: number; lastSeq: number };

/** The `after` of an events query: a non-negative integer seq (400 otherwise). */
export function afterSeq(value: string | undefined): number {
  const after = Number(value ?? 0);
  if (!Number.isInteger(after) || after < 0) throw new SortieError("invalid_query", "after must be a non-negative integer seq");
  return after;
}

/** Every event after `after`, read in pages, as `application/x-ndjson`. */
export function eventsResponse(readEvents: (after: number, limit: number) => Promise<EventPage>, after: number): Response {
  const encoder = new TextEncoder();
  let cursor = after;
  let done = false;
  const pageSize = 500;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (done) return controller.close();
      const page = await readEvents(cursor, pageSize);
      if (page.count < pageSize) done = true;
      if (page.count === 0) return controller.close();
      cursor = page.lastSeq;
      controller.enqueue(encoder.encode(page.ndjson));
    },
  });
  return new Response(body, { headers: { "content-type": "application/x-ndjson; charset=utf-8" } });
}

/** A stored diff of `chunks` chunks, for `git apply`. */
export function diffResponse(chunks: number, chunk: (index: number) => Promise<Uint8Array | null>, files: number): Response {
  let next = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (next >= chunks) return controller.close();
      const part = await chunk(next++);
      if (part) controller.enqueue(part);
    },
  });
  return new Response(body, { headers: { "content-type": "text/x-diff; charset=utf-8", "x-sortie-diff-files": String(files) } });
}

/**
 * A viewer's WebSocket to an agent (a task's or a plan's): the upgrade
 * authenticates itself with a bearer token or a viewer token for `id`, then
 * `open` (which 404s for an unknown id) gives the agent to hand it to.
 */
export async function viewerSocket(env: Cloudflare.Env, request: Request, id: string, what: string, open: () => Promise<{ fetch(request: Request): Promise<Response> }>): Promise<Response> {
  if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") throw new SortieError("upgrade_required", "this endpoint speaks WebSocket only", 426);
  const admin = env.SORTIE_ADMIN_TOKEN;
  const caller = await callerOf(env, bearerOf(request.headers.get("authorization") ?? undefined));
  const token = new URL(request.url).searchParams.get("token");
  const allowed =
    (caller !== null && allows(caller, "tasks:read")) ||
    (!!admin && token !== null && ((await verifyViewerToken(admin, token, id)) || (await verifySessionToken(admin, token))));
  if (!allowed) throw new SortieError("unauthorized", `a bearer token or a valid viewer token for this ${what} is required`, 401);
  const agent = await open();
  // Without the offer of permessage-deflate: a frame is built once for every viewer, and compressing it again per socket would cost the agent CPU for each of them.
  const headers = new Headers(request.headers);
  headers.delete("sec-websocket-extensions");
  const upgraded = await agent.fetch(new Request(request, { headers }));
  // The agent's 101 has immutable headers; a copy lets the app's middleware add its own.
  return new Response(null, { status: upgraded.status, headers: new Headers(upgraded.headers), webSocket: upgraded.webSocket });
}
