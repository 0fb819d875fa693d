import { CloneError } from "../sandbox/checkout.ts";
import { SandboxUnavailableError } from "../sandbox/port.ts";

/** Git's words for a clone that failed on the way, not because the repo or branch is wrong. */
const NETWORK_FAILURE = /could not resolve host|connection (refused|reset|timed out)|operation timed out|timed out after|unable to access|early eof|rpc failed|the remote end hung up|http[^\n]*\b50[234]\b|temporary failure/i;

/**
 * Whether a failure is the infrastructure's (worth retrying) rather than the
 * work's: a sandbox that did not start, a clone cut off by the network.
 */
export function isRetryable(error: unknown): boolean {
  if (error instanceof SandboxUnavailableError) return true;
  return error instanceof CloneError && NETWORK_FAILURE.test(error.message);
}

/** Exponential backoff with full jitter: attempt 0 waits up to `base`, then 2×, 4×… */
export function backoffMs(attempt: number, baseMs: number, random = Math.random): number {
  const ceiling = baseMs * 2 ** attempt;
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
