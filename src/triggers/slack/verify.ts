/**
 * Slack's request signature (v0): HMAC-SHA256 of `v0:<timestamp>:<raw body>`
 * with the app's signing secret, sent as `X-Slack-Signature: v0=<hex>`.
 * Checked on the raw bytes before anything reads the body, in constant time,
 * and only within five minutes of the request's timestamp (either way), so a
 * captured request cannot be replayed later.
 */

/** How far a request's timestamp may be from now. */
export const SLACK_TOLERANCE_SECONDS = 5 * 60;

export type SlackVerdict = { ok: true } | { ok: false; reason: "missing_headers" | "stale_timestamp" | "bad_signature" };

const encoder = new TextEncoder();

/** The `X-Slack-Signature` value for `body` sent at `timestamp` (seconds, as the header carries it). */
export async function slackSignature(secret: string, timestamp: string, body: string): Promise<string> {
  const key = await hmacKey(secret, "sign");
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode(`v0:${timestamp}:${body}`)));
  return `v0=${Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/**
 * Whether `body` carries a valid signature from the holder of `secret`.
 * `now` is in milliseconds.
 *
 * @example await verifySlackRequest(env.SLACK_SIGNING_SECRET, request.headers, await request.text())
 */
export async function verifySlackRequest(secret: string, headers: Headers, body: string, now = Date.now()): Promise<SlackVerdict> {
  const timestamp = headers.get("x-slack-request-timestamp");
  const signature = headers.get("x-slack-signature");
  if (!timestamp || !signature) return { ok: false, reason: "missing_headers" };
  if (!/^\d{1,12}$/.test(timestamp) || Math.abs(now / 1000 - Number(timestamp)) > SLACK_TOLERANCE_SECONDS) {
    return { ok: false, reason: "stale_timestamp" };
  }
  const given = /^v0=([0-9a-f]{64})$/i.exec(signature)?.[1];
  if (!given) return { ok: false, reason: "bad_signature" };
  // crypto.subtle.verify compares the MACs in constant time.
  const key = await hmacKey(secret, "verify");
  const valid = await crypto.subtle.verify("HMAC", key, hexBytes(given), encoder.encode(`v0:${timestamp}:${body}`));
  return valid ? { ok: true } : { ok: false, reason: "bad_signature" };
}

function hmacKey(secret: string, usage: "sign" | "verify"): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [usage]);
}

function hexBytes(hex: string): Uint8Array {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return bytes;
}
