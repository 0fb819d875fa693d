/**
 * A stand-in for the parts of Slack that Sortie calls: the Web API's
 * `chat.postMessage` and `chat.update` (under `/api`, bot token checked) and
 * `response_url` posts (under `/respond/<anything>`). It records every call;
 * `GET /_calls` hands them to the tests in workerd. Anything else, or a wrong
 * token, fails closed: an error answer, and an entry in `unexpected`.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface SlackCall {
  /** `chat.postMessage`, `chat.update`, or `response_url`. */
  method: string;
  path: string;
  body: Record<string, unknown>;
  /** The message's ts: assigned by `chat.postMessage`, named by `chat.update`. */
  ts?: string;
  at: number;
}

export async function startSlackStandin(options: { botToken: string }) {
  const calls: SlackCall[] = [];
  const unexpected: { method: string; path: string; reason: string }[] = [];
  const messages = new Map<string, Record<string, unknown>>();
  let counter = 0;

  const server = http.createServer(async (req, res) => {
    const path = req.url ?? "/";
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    };
    const refuse = (status: number, reason: string) => {
      unexpected.push({ method: req.method ?? "?", path, reason });
      send(status, { ok: false, error: reason });
    };
    if (req.method === "GET" && path === "/_calls") return send(200, { calls, unexpected });
    if (req.method !== "POST") return refuse(405, "method_not_allowed");

    let body: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(await readBody(req));
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return refuse(400, "invalid_json");
      body = parsed as Record<string, unknown>;
    } catch {
      return refuse(400, "invalid_json");
    }

    if (path.startsWith("/respond/")) {
      calls.push({ method: "response_url", path, body, at: Date.now() });
      return send(200, { ok: true });
    }
    if (path !== "/api/chat.postMessage" && path !== "/api/chat.update") return refuse(404, "unknown_method");
    if (req.headers.authorization !== `Bearer ${options.botToken}`) return refuse(200, "invalid_auth");
    const method = path.slice("/api/".length);
    const channel = String(body.channel ?? "");
    if (!channel) return refuse(200, "channel_not_found");
    if (method === "chat.postMessage") {
      counter += 1;
      const ts = `${Math.floor(Date.now() / 1000)}.${String(counter).padStart(6, "0")}`;
      calls.push({ method, path, body, ts, at: Date.now() });
      messages.set(`${channel}/${ts}`, body);
      return send(200, { ok: true, channel, ts, message: body });
    }
    const key = `${channel}/${String(body.ts)}`;
    if (!messages.has(key)) return refuse(200, "message_not_found");
    calls.push({ method, path, body, ts: String(body.ts), at: Date.now() });
    messages.set(key, body);
    return send(200, { ok: true, channel, ts: body.ts });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}
