/**
 * Returns a function that replaces every occurrence of the given secret
 * values (and anything shaped like an Anthropic key) with `[REDACTED]`,
 * deep inside an event's data.
 */
export function redactor(secrets: (string | undefined)[]): <T>(value: T) => T {
  const known = secrets.filter((s): s is string => typeof s === "string" && s.length >= 8);
  const scrub = (text: string) => {
    let out = text;
    for (const secret of known) out = out.split(secret).join("[REDACTED]");
    return out.replace(/sk-ant-[A-Za-z0-9_-]{8,}/g, "[REDACTED]");
  };
  const walk = (value: unknown): unknown => {
    if (typeof value === "string") return scrub(value);
    if (Array.isArray(value)) return value.map(walk);
    if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v)]));
    return value;
  };
  return <T>(value: T) => walk(value) as T;
}
