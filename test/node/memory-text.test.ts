/** What Sortie reads from a learnings file, tells the agent, and writes into AGENTS.md. */
import { describe, expect, it } from "vitest";
import { factOf, memoryMarkdown, memoryPreamble, parseLearnings } from "../../src/agents/memory.ts";
import { MEMORY_SECTION_END, MEMORY_SECTION_START, withMemorySection } from "../../src/publish/agents-md.ts";

describe("parseLearnings", () => {
  it("takes `- ` lines only, once each however they are spelled, and counts what it drops", () => {
    const parsed = parseLearnings(["Some prose.", "- Run `npm test`.", "-   run npm test", "* a star is not a dash", `- ${"y".repeat(501)}`, "", "  - Indented lines count."].join("\n"));
    expect(parsed.facts.map((f) => f.text)).toEqual(["Run `npm test`.", "Indented lines count."]);
    expect(parsed.tooLong).toBe(1);
    expect(parsed.beyondLimit).toBe(0);
  });

  it("normalises case, quoting and trailing punctuation into one key", () => {
    expect(factOf("Tests run with `npm test`.").norm).toBe(factOf("tests  run with npm test").norm);
    expect(factOf("Build with make").norm).not.toBe(factOf("Build with cmake").norm);
  });
});

describe("the preamble", () => {
  it("names the learnings variable always and the memory file only when the run was given entries", () => {
    expect(memoryPreamble(0)).toContain("$SORTIE_LEARNINGS_FILE");
    expect(memoryPreamble(0)).not.toContain("$SORTIE_MEMORY_FILE");
    const given = memoryPreamble(3);
    expect(given.split("\n")).toHaveLength(2);
    expect(given.split("\n")[1]).toContain("$SORTIE_MEMORY_FILE (3 entries)");
    expect(memoryMarkdown("acme/widgets", [{ id: "m1", text: "Use pnpm." }])).toContain("\n- Use pnpm.\n");
  });
});

describe("the managed section of AGENTS.md", () => {
  it("is appended to a file without one, and replaced in place, leaving the rest, so publishing twice changes nothing", () => {
    const original = "# Agents\n\nHand-written advice.\n";
    const once = withMemorySection(original, ["Use pnpm."]);
    expect(once.startsWith(original.trimEnd())).toBe(true);
    expect(once).toContain(`${MEMORY_SECTION_START}\n## Repository memory`);
    expect(withMemorySection(once, ["Use pnpm."])).toBe(once);
    const edited = `${once}\nMore advice after the section.\n`;
    const again = withMemorySection(edited, ["Use pnpm.", "Tests need Docker."]);
    expect(again).toContain("- Tests need Docker.\n" + MEMORY_SECTION_END);
    expect(again).toContain("Hand-written advice.");
    expect(again).toContain("More advice after the section.");
    expect(again.split(MEMORY_SECTION_START)).toHaveLength(2);
    expect(withMemorySection(null, ["Use pnpm."])).toMatch(/^# AGENTS\.md\n\n<!-- sortie:memory:start -->/);
  });
});
