/**
 * Reaching a port a walled command listens on. Every walled command has a
 * network namespace of its own, so two sandboxes may both listen on 8080 and
 * neither is reachable from the host's loopback. The bridge is a `socat`
 * that the host starts in the command's network namespace (`nsenter --net`)
 * but not in its walls: it listens on a Unix socket in a directory only root
 * reads, and connects each client to 127.0.0.1:<port> inside the namespace.
 * The walled command itself never gets a socket it could use to reach out.
 *
 *   const bridge = new PortBridge(child.pid, 8080, "/tmp/…-output/preview-1.sock");
 *   proxyRequest(req, res, await bridge.target(), "/index.html?x=1");
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readlinkSync } from "node:fs";
import fs from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import type { Duplex } from "node:stream";
import { descendantsOf } from "./processes.ts";

/** Where a client connects to reach the port: the bridge's socket, or the host's loopback when commands run without walls. */
export type PortTarget = { socketPath: string } | { host: string; port: number };

/** Headers the host never passes to a preview: its own credential, and hop-by-hop ones node sets again. */
const DROPPED = new Set(["authorization", "proxy-authorization", "connection", "keep-alive", "transfer-encoding"]);

export class PortBridge {
  private socat: ChildProcess | null = null;
  private starting: Promise<PortTarget> | null = null;
  private readonly pid: number | null;
  readonly port: number;
  private readonly socketPath: string;

  /** `pid`: the walled command's process (null without walls, when the port is the host's own). */
  constructor(pid: number | null, port: number, socketPath: string) {
    this.pid = pid;
    this.port = port;
    this.socketPath = socketPath;
  }

  /** Starts the bridge on first use (the namespace exists once the walls are up), and again if it died. */
  target(): Promise<PortTarget> {
    if (this.pid === null) return Promise.resolve({ host: "127.0.0.1", port: this.port });
    if (this.socat && this.socat.exitCode === null && existsSync(this.socketPath)) return Promise.resolve({ socketPath: this.socketPath });
    this.starting ??= this.start().finally(() => (this.starting = null));
    return this.starting;
  }

  private async start(): Promise<PortTarget> {
    const inside = await namespacedProcess(this.pid!);
    if (inside === null) throw new BridgeError("the command has no network namespace of its own (it ended, or its walls are not up yet)");
    await fs.rm(this.socketPath, { force: true });
    const socat = spawn("nsenter", [`--target=${inside}`, "--net", "--", "socat", `UNIX-LISTEN:${this.socketPath},fork,mode=600`, `TCP:127.0.0.1:${this.port},nodelay`], { stdio: "ignore" });
    this.socat = socat;
    socat.on("error", () => undefined);
    for (let waited = 0; !existsSync(this.socketPath); waited += 20) {
      if (socat.exitCode !== null || waited > 3000) throw new BridgeError(`the bridge to port ${this.port} did not start (exit ${socat.exitCode})`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return { socketPath: this.socketPath };
  }

  close(): void {
    this.socat?.kill("SIGKILL");
    this.socat = null;
    void fs.rm(this.socketPath, { force: true });
  }
}

export class BridgeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BridgeError";
  }
}

/** Forwards an HTTP request to the port, `pathAndQuery` as the app sees it; a port that does not answer is a 502 marked as the bridge's. */
export function proxyRequest(req: http.IncomingMessage, res: http.ServerResponse, target: PortTarget, pathAndQuery: string): void {
  const upstream = http.request({ ...target, method: req.method, path: pathAndQuery, headers: forwarded(req.headers) }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    answer.pipe(res);
  });
  upstream.on("error", (error) => {
    if (res.headersSent) return void res.destroy();
    res.writeHead(502, { "content-type": "application/json", "x-sortie-preview": "unreachable" });
    res.end(JSON.stringify({ error: { code: "preview_unreachable", message: `nothing answers on the port: ${error.message}` } }));
  });
  req.pipe(upstream);
}

/** Forwards a WebSocket (or any) upgrade to the port: the request head is written again, then bytes flow both ways. */
export function proxyUpgrade(req: http.IncomingMessage, client: Duplex, head: Buffer, target: PortTarget, pathAndQuery: string): void {
  const upstream = "socketPath" in target ? net.connect(target.socketPath) : net.connect(target.port, target.host);
  upstream.on("connect", () => {
    const lines = [`${req.method} ${pathAndQuery} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const name = req.rawHeaders[i]!;
      if (name.toLowerCase() === "authorization") continue;
      lines.push(`${name}: ${req.rawHeaders[i + 1]}`);
    }
    upstream.write(`${lines.join("\r\n")}\r\n\r\n`);
    if (head.length) upstream.write(head);
    upstream.pipe(client);
    client.pipe(upstream);
  });
  upstream.on("error", () => client.end("HTTP/1.1 502 Bad Gateway\r\nx-sortie-preview: unreachable\r\ncontent-length: 0\r\n\r\n"));
  client.on("error", () => upstream.destroy());
  client.on("close", () => upstream.destroy());
  upstream.on("close", () => client.destroy());
}

function forwarded(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !DROPPED.has(name)));
}

/** A process at or below `pid` whose network namespace is not the host's: the walled command's. */
async function namespacedProcess(pid: number): Promise<number | null> {
  const own = netOf("self");
  for (let waited = 0; waited <= 3000; waited += 50) {
    for (const candidate of [pid, ...descendantsOf(pid)]) {
      const ns = netOf(String(candidate));
      if (ns && ns !== own) return candidate;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return null;
}

function netOf(pid: string): string | null {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return null; // ended meanwhile
  }
}
