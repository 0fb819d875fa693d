/** Bounding and summarizing the text that goes into events, for every agent CLI. */
import { LIMITS } from "../config.ts";

/** Keeps event text bounded; says when it cut. */
export function cut(text: string): { text: string; truncated?: true } {
  if (text.length <= LIMITS.eventTextChars) return { text };
  return { text: text.slice(0, LIMITS.eventTextChars), truncated: true };
}

/** One line that says what a tool call does: the command, the file, or the pattern. */
export function summarizeToolInput(input: Record<string, unknown>): string {
  for (const key of ["command", "cmd", "file_path", "filePath", "absolute_path", "path", "pattern", "url", "query", "description", "prompt"]) {
    const value = input[key];
    if (typeof value === "string" && value) return oneLine(value);
    if (Array.isArray(value) && value.every((part) => typeof part === "string") && value.length) return oneLine(value.join(" "));
  }
  const first = Object.values(input).find((value) => typeof value === "string");
  return typeof first === "string" ? oneLine(first) : "";
}

function oneLine(text: string): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > 200 ? `${line.slice(0, 199)}…` : line;
}
