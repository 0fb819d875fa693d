/**
 * Redaction, in one place: what Sortie scrubs from everything that leaves it
 * (events, task and run views, D1, Slack, pull requests, notifications, logs).
 * Two sources: the secret values this deployment holds, read from its
 * configuration, and the shapes of credentials whoever minted them.
 */
import { PLAIN_VARS } from "./config.ts";

export const REDACTED = "[REDACTED]";

/**
 * What credentials look like: Anthropic, OpenAI, Google, GitHub (every prefix,
 * fine-grained, old installation tokens), Slack (tokens and webhook URLs), AWS
 * access keys, PEM private keys, JWTs, bearer and basic headers, and passwords
 * in URLs. One alternation, so a text is scanned once.
 */
const TOKEN_SHAPES: readonly RegExp[] = [
  /\bsk-ant-[A-Za-z0-9_-]{8,}/,
  /\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}/,
  /\bAIza[0-9A-Za-z_-]{30,}/,
  /\bgh[pousr]_[A-Za-z0-9_]{16,}/,
  /\bgithub_pat_[A-Za-z0-9_]{16,}/,
  /\bv1\.[0-9a-f]{40}\b/,
  /\bxox[abposre]-[A-Za-z0-9-]{10,}/,
  /\bxapp-[A-Za-z0-9-]{10,}/,
  /(?<=hooks\.slack\.com\/services\/)[A-Za-z0-9/_-]{20,}/,
  /\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b/,
  /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)/,
  // A JWT: header and claims both start as base64url JSON ("{" → "eyJ").
  /\beyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/,
  /(?<=\b[Bb]earer\s+)[A-Za-z0-9._~+/-]{16,}=*/,
  /(?<=\b(?:[Pp]roxy-)?[Aa]uthorization:\s*[Bb]asic\s+)[A-Za-z0-9+/]{16,}=*/,
  /(?<=[a-z][a-z0-9+.-]*:\/\/[^/\s:@]+:)[^/\s@]{6,}(?=@)/,
];

const SHAPES = new RegExp(TOKEN_SHAPES.map((shape) => shape.source).join("|"), "g");

/** Values shorter than this are not scrubbed as known secrets: they would match ordinary text. */
const MIN_SECRET_CHARS = 8;

/**
 * The secret values a deployment holds: every string binding that is not a
 * plain var of wrangler.jsonc (so every secret, required or optional, and any
 * key a user adds), with a PEM key also in its unescaped form and line by line.
 *
 * @example secretValues(env) // ["test-admin-token", "sk-ant-…", …]
 */
export function secretValues(env: object): string[] {
  const values = new Set<string>();
  for (const [key, value] of Object.entries(env)) {
    if (typeof value !== "string" || PLAIN_VARS.has(key)) continue;
    values.add(value);
    if (!value.includes("PRIVATE KEY")) continue;
    const unescaped = value.replace(/\\n/g, "\n");
    values.add(unescaped);
    for (const line of unescaped.split("\n")) if (!line.startsWith("-----")) values.add(line.trim());
  }
  return [...values].filter((value) => value.length >= MIN_SECRET_CHARS);
}

/**
 * Replaces every occurrence of the given secret values, and anything shaped
 * like a credential, with `[REDACTED]`.
 *
 * @example scrubText("key sk-proj-abc…", []) // "key [REDACTED]"
 */
export function scrubText(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const secret of secrets) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  return out.replace(SHAPES, REDACTED);
}

/**
 * A function that scrubs every string deep inside a value (an event's data, a
 * task view, a Slack message) of the given secrets and of token shapes.
 *
 * @example const redact = redactor(secretValues(env)); redact({ text: "…" })
 */
export function redactor(secrets: readonly (string | undefined)[]): <T>(value: T) => T {
  // Longest first, so a secret that contains another is removed whole.
  const known = [...new Set(secrets.filter((s): s is string => typeof s === "string" && s.length >= MIN_SECRET_CHARS))].sort((a, b) => b.length - a.length);
  const walk = (value: unknown): unknown => {
    if (typeof value === "string") return scrubText(value, known);
    if (Array.isArray(value)) return value.map(walk);
    if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v)]));
    return value;
  };
  return <T>(value: T) => walk(value) as T;
}

/** The redactor for everything a deployment sends out: its configured secrets plus any minted ones. */
export function deploymentRedactor(env: object, minted: Iterable<string> = []): <T>(value: T) => T {
  return redactor([...secretValues(env), ...minted]);
}
