/**
 * The local sandbox host's HTTP protocol, shared by the host
 * (container/local-host.ts), which checks every request body against these
 * schemas, and its client (src/sandbox/local.ts), which is typed by them: a
 * route's request and response cannot drift apart on the two sides.
 *
 * Every route is under `/v1/sandboxes/<id>` (`POST /` is that path itself)
 * except those marked as the host's own (`/v1/…`); an error is `{error: {code, message}}` with a 4xx or 5xx.
 */
import { z } from "zod";
import type { ExecResult } from "./port.ts";

/** Host names or directories: an empty one, or one of 300 characters or more, is left out (as the host always did). */
const Names = z.array(z.string()).transform((names) => names.filter((name) => name.length > 0 && name.length < 300));
const Confinement = z.object({ uid: z.int().positive(), home: z.string().min(1), modelOnly: z.object({ origins: z.array(z.string()) }).optional() });

/** `POST /exec` and `POST /processes`: a command, its directory and variables, and how it is walled. */
export const CommandRequest = z.object({
  command: z.string().min(1),
  cwd: z.string().optional(),
  env: z.record(z.string(), z.string()).optional(),
  timeoutMs: z.number().positive().optional(),
  confine: Confinement.optional(),
  bookkeeping: z.boolean().optional(),
  /** The port the command listens on inside its walls: bridged out for `/ports/<port>/…` and screenshots. */
  serves: z.int().min(1).max(65_535).optional(),
});
export type CommandRequest = z.infer<typeof CommandRequest>;

/** The requests with a body, by route: what the host parses, and what the client sends. */
export const LOCAL_HOST_REQUESTS = {
  /** Opens (or reopens) the sandbox: hosts its commands may reach, directories they may read. */
  "POST /": z.object({ allow: Names.default([]), readable: Names.default([]) }),
  "POST /exec": CommandRequest,
  "POST /processes": CommandRequest,
  /** A publisher's push to a local (file://) remote: that directory is writable while the grant lasts. */
  "POST /writable": z.object({ dir: z.string().startsWith("/") }),
  "DELETE /writable": z.object({ dir: z.string().startsWith("/") }),
  "POST /screenshot": z.object({ port: z.int().min(1).max(65_535), path: z.string().startsWith("/").default("/") }),
  "POST /egress": z.object({ hosts: Names }),
  "POST /snapshots": z.object({ path: z.string().min(1) }),
  "POST /restore": z.object({ snapshotId: z.string().regex(/^snap-[a-z0-9-]+$/), path: z.string().min(1) }),
  "POST /caches/finish": z.object({ path: z.string().min(1), keep: z.boolean().default(false) }),
  /** The host's own (`/v1/faults`): the next `failOpens` opens fail, for fault tests. */
  "POST /v1/faults": z.object({ failOpens: z.int().min(0) }),
} as const;
export type LocalHostRequest<R extends keyof typeof LOCAL_HOST_REQUESTS> = z.input<(typeof LOCAL_HOST_REQUESTS)[R]>;
/** The body a route takes: its request schema's input, or nothing for a route without one. */
export type LocalHostBody<R> = R extends keyof typeof LOCAL_HOST_REQUESTS ? LocalHostRequest<R> : undefined;

/** What each JSON route answers. */
export interface LocalHostResponses {
  "POST /": { workdir: string; unconfined?: true };
  "DELETE /": { destroyed: string };
  /** `timedOut`: the command was killed at its `timeoutMs`. */
  "POST /exec": ExecResult & { timedOut: boolean };
  "POST /processes": { processId: string };
  "DELETE /processes/:id": { killed: true };
  "POST /writable": { writable: string[] };
  "DELETE /writable": { writable: string[] };
  "POST /egress": { allow: string[] };
  "POST /snapshots": { snapshotId: string };
  "POST /restore": { restored: string; how: string };
  "POST /caches/:key": { path: string };
  "POST /caches/finish": { saved: boolean };
  "PUT /files": { written: string };
  /** The host's own: the snapshots it found when it started, under its boot id. */
  "GET /v1/snapshots": { boot: string; snapshots: string[] };
  "DELETE /v1/snapshots/:id": { deleted: string };
  "GET /v1/sandboxes": { sandboxes: string[]; liveProcesses: number; processes: { sandbox: string; id: string; done: boolean }[] };
  "POST /v1/faults": { failOpens: number };
}

export interface LocalHostError {
  error: { code: string; message: string };
}

/**
 * A request body parsed against its route's schema: the value, or the error the host answers (400) with.
 * An empty body counts as `{}`.
 */
export function parseLocalRequest<R extends keyof typeof LOCAL_HOST_REQUESTS>(route: R, text: string): { ok: true; value: z.output<(typeof LOCAL_HOST_REQUESTS)[R]> } | { ok: false; error: LocalHostError } {
  let json: unknown;
  try {
    json = text.trim() === "" ? {} : JSON.parse(text);
  } catch {
    return { ok: false, error: { error: { code: "bad_json", message: `${route}: the body is not JSON` } } };
  }
  const parsed = LOCAL_HOST_REQUESTS[route].safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join(".") || "body"}: ${issue.message}`).join("; ");
    return { ok: false, error: { error: { code: "bad_request", message: `${route}: ${problems}` } } };
  }
  return { ok: true, value: parsed.data as z.output<(typeof LOCAL_HOST_REQUESTS)[R]> };
}
