import type { ContentfulStatusCode } from "hono/utils/http-status";

/**
 * The one error type the API turns into `{error:{code,message}}`.
 * Thrown from anywhere below the routes; `app.onError` maps it once.
 *
 * @example throw new SortieError("not_found", `no task ${id}`, 404)
 */
export class SortieError extends Error {
  readonly code: string;
  readonly status: ContentfulStatusCode;
  readonly headers: Record<string, string> | undefined;

  constructor(code: string, message: string, status: ContentfulStatusCode = 400, options?: { cause?: unknown; headers?: Record<string, string> }) {
    super(message, { cause: options?.cause });
    this.name = "SortieError";
    this.code = code;
    this.status = status;
    this.headers = options?.headers;
  }
}

/** Renders an error as the body every Sortie endpoint uses. */
export function errorBody(code: string, message: string) {
  return { error: { code, message } };
}

/** The message of anything thrown, for events and logs. */
export function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
