/**
 * The managed section of a repository's `AGENTS.md` that carries its
 * approved memory: between two markers, replaced whole on every publication
 * and left alone everywhere else, so publishing the same entries twice
 * changes nothing.
 */

export const MEMORY_SECTION_START = "<!-- sortie:memory:start -->";
export const MEMORY_SECTION_END = "<!-- sortie:memory:end -->";

/**
 * `current` (the file's text, or null when there is none) with the managed
 * section holding `entries`: replaced where the markers are, appended
 * otherwise.
 *
 * @example withMemorySection("# Agents\n", ["Run npm test before pushing."])
 */
export function withMemorySection(current: string | null, entries: string[]): string {
  const section = [
    MEMORY_SECTION_START,
    "## Repository memory",
    "",
    "Facts Sortie's agents learned about this repository, approved by a person. This section is written by Sortie; edit the entries in Sortie, not here.",
    "",
    ...entries.map((text) => `- ${text.replace(/\s+/g, " ").trim()}`),
    MEMORY_SECTION_END,
  ].join("\n");
  const text = current ?? "";
  const start = text.indexOf(MEMORY_SECTION_START);
  const end = start === -1 ? -1 : text.indexOf(MEMORY_SECTION_END, start);
  if (start !== -1 && end !== -1) return `${text.slice(0, start)}${section}${text.slice(end + MEMORY_SECTION_END.length)}`;
  if (!text.trim()) return `# AGENTS.md\n\n${section}\n`;
  return `${text.replace(/\s*$/, "")}\n\n${section}\n`;
}
