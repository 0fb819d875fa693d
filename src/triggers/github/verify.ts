/**
 * GitHub's webhook signature: `X-Hub-Signature-256: sha256=<hex>`, the
 * HMAC-SHA256 of the raw body with the webhook's secret. Checked on the raw
 * body before anything parses it, by @octokit/webhooks-methods (a
 * constant-time compare).
 */
import { verify } from "@octokit/webhooks-methods";

export type GitHubVerdict = { ok: true } | { ok: false; reason: "missing_signature" | "bad_signature" };

const SIGNATURE = /^sha256=[0-9a-f]{64}$/i;

/**
 * Whether `body` was signed by the holder of `secret`.
 *
 * @example await verifyGitHubSignature(env.GITHUB_WEBHOOK_SECRET, await request.text(), request.headers.get("x-hub-signature-256"))
 */
export async function verifyGitHubSignature(secret: string, body: string, signature: string | null | undefined): Promise<GitHubVerdict> {
  if (!signature) return { ok: false, reason: "missing_signature" };
  // The library expects the well-formed header (its browser build throws on one without hex pairs), and an empty body is never signed.
  if (!SIGNATURE.test(signature) || body.length === 0) return { ok: false, reason: "bad_signature" };
  return (await verify(secret, body, signature.toLowerCase())) ? { ok: true } : { ok: false, reason: "bad_signature" };
}
