/** Structured log lines, one JSON object each, scrubbed like everything else that leaves Sortie. */
import { deploymentRedactor, redactor } from "./redact.ts";

type Level = "log" | "warn" | "error";

/**
 * Writes `record` as one JSON log line. With the deployment's `env`, its
 * secret values are removed as well as anything shaped like a credential.
 *
 * @example writeLog("warn", { event: "github.signature_invalid", reason }, c.env)
 */
export function writeLog(level: Level, record: { event: string } & Record<string, unknown>, env?: object): void {
  const redact = env ? deploymentRedactor(env) : redactor([]);
  console[level](JSON.stringify(redact(record)));
}
