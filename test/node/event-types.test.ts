/**
 * Every event the code can record is declared in src/events.ts: the source
 * is read for the event types it names, and each must be in the union (the
 * event log refuses an undeclared one at run time too).
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { eventList } from "../../scripts/event-list.ts";
import { AGENT_KINDS, EVENT_TYPES, TENDING_DECISIONS, isEventType } from "../../src/events.ts";

const SRC = join(import.meta.dirname, "../../src");
const sources = (readdirSync(SRC, { recursive: true }) as string[]).filter((file) => file.endsWith(".ts")).map((file) => ({ file, text: readFileSync(join(SRC, file), "utf8") }));

/** The event types a source file records: `type: "…"` (either arm of a conditional), `record("…"`, a review lane's `set(…, "…"`, and a publisher's steps. */
function recordedTypes(text: string): string[] {
  const found: string[] = [];
  for (const match of text.matchAll(/\btype:\s*(?:[\w.]+\s*\?\s*)?"([a-z_]+(?:\.[a-z_]+)?)"(?:\s*:\s*"([a-z_]+(?:\.[a-z_]+)?)")?/g)) found.push(match[1]!, ...(match[2] ? [match[2]] : []));
  for (const match of text.matchAll(/\b(?:record|note)\(\s*"([a-z_]+(?:\.[a-z_]+)?)"/g)) found.push(match[1]!);
  for (const match of text.matchAll(/\bset\([^;]*?,\s*"(review\.[a-z_]+)"/g)) found.push(match[1]!);
  for (const match of text.matchAll(/\bonStep\(\s*"([a-z_]+)"/g)) found.push(`publish.${match[1]}`);
  return found;
}

describe("the event union", () => {
  it("declares every event type the code records", () => {
    const undeclared: string[] = [];
    let seen = 0;
    for (const { file, text } of sources) {
      if (file === "events.ts" || file.startsWith("api/") || file === "schema.ts") continue;
      for (const type of recordedTypes(text)) {
        // Frame and message types of the stream protocol and Slack are not events.
        if (!type.includes(".") && type !== "log") continue;
        seen++;
        if (!isEventType(type)) undeclared.push(`${file}: ${type}`);
      }
    }
    expect(seen).toBeGreaterThan(60);
    expect(undeclared).toEqual([]);
  });

  it("declares each agent output kind for a run, the judge and a reviewer, and each tending decision", () => {
    for (const kind of AGENT_KINDS) for (const lane of ["agent", "judge", "review"]) expect(EVENT_TYPES).toContain(`${lane}.${kind}`);
    const tending = readFileSync(join(SRC, "agents/tending.ts"), "utf8");
    for (const match of tending.matchAll(/decision:\s*"([a-z_]+)"/g)) expect(TENDING_DECISIONS).toContain(match[1]);
  });

  it("the README lists every declared event type, by family", () => {
    expect(readFileSync(join(SRC, "../README.md"), "utf8")).toContain(eventList());
  });

  it("the scanner finds an undeclared type", () => {
    expect(recordedTypes(`ctx.record({ run, type: "run.invented", data: {} })`).filter((type) => !isEventType(type))).toEqual(["run.invented"]);
  });
});
