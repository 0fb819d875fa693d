import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { readConfig } from "../config.ts";
import type { z } from "zod";
import { SortieError } from "../errors.ts";

/**
 * Reads the request body as JSON (whatever its content type: `curl -d` sends
 * form encoding by default) and validates it. Malformed JSON and schema
 * violations are 400s that say what is wrong.
 */
export async function jsonBody<T extends z.ZodType>(c: Context, schema: T): Promise<z.infer<T>> {
  const text = await c.req.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new SortieError("invalid_json", text.trim() ? "the request body is not valid JSON" : "the request body is empty; send a JSON object");
  }
  return validate(schema, parsed, "body");
}

/** Validates `value` against `schema`, turning zod's issues into one readable 400. */
export function validate<T extends z.ZodType>(schema: T, value: unknown, where: string): z.infer<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const detail = result.error.issues
    .slice(0, 5)
    .map((issue) => {
      const at = issue.path.length ? issue.path.join(".") : where;
      return `${at}: ${issue.message}`;
    })
    .join("; ");
  throw new SortieError(`invalid_${where}`, detail);
}

/** Refuses a body over MAX_BODY_BYTES with a 413 in Sortie's error shape. */
export function limitBody(): MiddlewareHandler<{ Bindings: Cloudflare.Env }> {
  return async (c, next) => {
    const maxSize = readConfig(c.env).maxBodyBytes;
    return bodyLimit({
      maxSize,
      onError: () => {
        throw new SortieError("body_too_large", `the request body is larger than ${maxSize} bytes`, 413);
      },
    })(c, next);
  };
}
