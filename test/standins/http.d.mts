/** Types for what the model stand-ins share (http.mjs), so TypeScript tests can start them. */

/** A scripted model API on loopback, recording every request of type `Request`. */
export interface ModelStandin<Request> {
  url: string;
  port: number;
  /** Every model call received, in order. */
  requests: Request[];
  /** The first user prompt of each agent conversation the stand-in has seen. */
  prompts(): string[];
  /** Makes the next `count` model calls answer with `status`. */
  failNext(status: number, count: number): void;
  close(): Promise<void>;
}

/** How a model stand-in is started: where it listens, and failures to begin with. */
export interface ModelStandinOptions {
  port?: number;
  host?: string;
  failures?: { status: number; count: number };
}

export function readJson(req: import("node:http").IncomingMessage): Promise<unknown>;
export function sendJson(res: import("node:http").ServerResponse, status: number, value: unknown, headers?: Record<string, string>): void;
export function listenOnLoopback(server: import("node:http").Server, options?: { port?: number; host?: string }): Promise<{ url: string; port: number; close(): Promise<void> }>;
