/**
 * Choosing a task's isolation level. A task may declare one; with `auto`
 * Sortie reads the prompt: a read-only question (review, explain, audit…)
 * runs as `analysis`, a change that installs packages or reaches the network
 * gets a dedicated `sandbox`, and any other code change a `workspace`.
 * Without a word from the task the level is `sandbox`, the strictest that
 * still lets the agent change the repository.
 */
import type { Isolation, IsolationLevel } from "../schema.ts";

/** Words that ask for an answer rather than a change. */
const READ_ONLY = /^\s*(?:please\s+)?(?:review|explain|describe|summari[sz]e|audit|analy[sz]e|assess|investigate|find out|tell me|what|why|how|where|which|who|is|are|does|do|can|list|count|compare)\b/i;
/** Words that ask for a change. */
const CHANGE = /\b(?:fix|add|implement|change|update|refactor|rename|remove|delete|write|create|replace|bump|upgrade|migrate|edit|modify|make|convert|port|patch|apply)\b/i;
/** A change that installs packages or reaches the network: it gets a sandbox of its own. */
const INSTALLS = /\b(?:install|packages?|librar(?:y|ies)|npm\s+(?:i|add|install)|pnpm\s+add|yarn\s+add|pip\s+install|cargo\s+add|go\s+get|bump|upgrade|dependenc(?:y|ies)|download|fetch|curl|wget|api\s+call|network|internet|http)\b/i;

/** The level a task runs at: what it declared, or what its prompt suggests under `auto`. */
export function chooseIsolation(declared: IsolationLevel | "auto" | undefined, prompt: string): Isolation {
  if (declared && declared !== "auto") return { level: declared, inferred: false, reason: "declared by the task" };
  if (!declared) return { level: "sandbox", inferred: false, reason: "the default" };
  if (INSTALLS.test(prompt)) return { level: "sandbox", inferred: true, reason: "the task installs packages or reaches the network" };
  if (READ_ONLY.test(prompt) && !CHANGE.test(prompt.replace(READ_ONLY, ""))) {
    return { level: "analysis", inferred: true, reason: "the task asks a read-only question" };
  }
  if (CHANGE.test(prompt)) return { level: "workspace", inferred: true, reason: "the task changes code without installing anything" };
  return { level: "sandbox", inferred: true, reason: "the task's intent is unclear, so it gets the strictest level that can change code" };
}
