/**
 * The one place failures are classified: an error thrown by a sandbox
 * backend, a clone or a setup becomes Sortie's own code (what the run shows)
 * and whether it is the infrastructure's, worth another try. Decided from
 * the errors' types and the reasons their producers typed into them (the
 * SDK's error codes, the clone script's exit statuses), never from a tool's
 * words.
 */
import { messageOf } from "../errors.ts";
import { SetupError } from "../runners/setup.ts";
import { CloneError } from "../sandbox/checkout.ts";
import { SandboxUnavailableError } from "../sandbox/port.ts";
import type { ErrorInfo } from "../schema.ts";

export interface Failure extends ErrorInfo {
  /** The infrastructure failed, not the work: a sandbox that went away, a clone cut by the network. */
  retryable: boolean;
}

/** Sortie's code for an error, and whether trying again could help. */
export function classifyFailure(error: unknown): Failure {
  if (error instanceof CloneError) return { code: "clone_failed", message: error.message, retryable: error.reason === "network" };
  if (error instanceof SetupError) return { code: "setup_failed", message: error.message, retryable: false };
  if (error instanceof SandboxUnavailableError) return { code: "sandbox_unavailable", message: error.message, retryable: true };
  return { code: "internal", message: messageOf(error), retryable: false };
}

/** What a run or the judge shows for an error: its code and message. */
export function classify(error: unknown): ErrorInfo {
  const { code, message } = classifyFailure(error);
  return { code, message };
}

/** Whether a failure is the infrastructure's (worth retrying) rather than the work's. */
export function isRetryable(error: unknown): boolean {
  return classifyFailure(error).retryable;
}
