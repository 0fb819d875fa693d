/** What credentials look like, whoever minted them: Anthropic, GitHub, Slack, and bearer headers. */
const TOKEN_SHAPES = [
  /sk-ant-[A-Za-z0-9_-]{8,}/g,
  /\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}\b/g,
  /\bgithub_pat_[A-Za-z0-9_]{20,}\b/g,
  /\bxox[abposr]-[A-Za-z0-9-]{10,}\b/g,
  /\bxapp-[A-Za-z0-9-]{10,}\b/g,
  /(?<=\b[Bb]earer\s+)[A-Za-z0-9._~+/-]{16,}=*/g,
  /(?<=Authorization:\s*Basic\s+)[A-Za-z0-9+/]{16,}=*/gi,
];

/**
 * Returns a function that replaces every occurrence of the given secret
 * values (and anything shaped like a known kind of token) with `[REDACTED]`,
 * deep inside an event's data.
 */
export function redactor(secrets: (string | undefined)[]): <T>(value: T) => T {
  const known = secrets.filter((s): s is string => typeof s === "string" && s.length >= 8);
  const scrub = (text: string) => {
    let out = text;
    for (const secret of known) out = out.split(secret).join("[REDACTED]");
    return TOKEN_SHAPES.reduce((text, shape) => text.replace(shape, "[REDACTED]"), out);
  };
  const walk = (value: unknown): unknown => {
    if (typeof value === "string") return scrub(value);
    if (Array.isArray(value)) return value.map(walk);
    if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v)]));
    return value;
  };
  return <T>(value: T) => walk(value) as T;
}
