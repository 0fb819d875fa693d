/**
 * Prints the declared event types by family, as the README lists them
 * (test/node/event-types.test.ts checks the README holds this list).
 *
 *   node scripts/event-list.ts
 */
import { EVENT_TYPES } from "../src/events.ts";

/** The README's list of event types: one line per family. */
export function eventList(): string {
  const families = new Map<string, string[]>();
  for (const type of EVENT_TYPES) {
    const family = type.split(".")[0]!;
    families.set(family, [...(families.get(family) ?? []), type]);
  }
  return [...families].map(([family, types]) => `- \`${family}\`: ${types.map((type) => `\`${type}\``).join(", ")}`).join("\n");
}

if (import.meta.main) console.log(eventList());
