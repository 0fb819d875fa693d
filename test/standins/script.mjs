// What the scripted model stand-ins (anthropic.mjs, openai.mjs, gemini.mjs) read from a
// prompt: a line `#!standin [steps…]` plays one step per model turn; a judging turn
// (Sortie's reviewer) plays its `#!standin-judge` line, or picks the first candidate;
// without a script, "add a NAME.ext" writes that file (for demos) with the CLI's own
// write step, and anything else gets a short text answer.

/** @typedef {{ text?: string, tool?: string, input?: Record<string, unknown>, delayMs?: number, status?: number, failTimes?: number, reasoning?: string }} Step */

export const SCRIPT_MARK = "#!standin ";
export const JUDGE_SCRIPT_MARK = "#!standin-judge ";
export const JUDGE_MARKER = "[sortie judge]";

/**
 * The steps `prompt` scripts. `write(file, content)` is the CLI's step that
 * creates a file, for the unscripted demo.
 * @param {string} prompt
 * @param {(file: string, content: string) => Step} write
 * @returns {Step[]}
 */
export function scriptOf(prompt, write) {
  if (prompt.includes(JUDGE_MARKER)) {
    const judged = prompt.split("\n").find((l) => l.startsWith(JUDGE_SCRIPT_MARK));
    if (judged) return JSON.parse(judged.slice(JUDGE_SCRIPT_MARK.length));
    const first = /- run (\d+):/.exec(prompt)?.[1] ?? "0";
    return [{ text: JSON.stringify({ winner: Number(first), ranking: [Number(first)], reasons: "The stand-in picks the first candidate." }) }];
  }
  const line = prompt.split("\n").find((l) => l.startsWith(SCRIPT_MARK));
  if (line) return JSON.parse(line.slice(SCRIPT_MARK.length));
  const wanted = /\b(?:add|create|write)\s+(?:a\s+|an\s+)?([\w./-]+\.[A-Za-z0-9]+)/i.exec(prompt)?.[1];
  if (!wanted) return [{ text: `I read: ${prompt.trim().slice(0, 200)}` }];
  const content = `# ${wanted}\n\nWritten by Sortie's stand-in model for the prompt:\n\n> ${prompt.split("\n")[0]}\n`;
  return [{ text: `Creating ${wanted}.`, ...write(wanted, content) }, { text: `Added ${wanted}.` }];
}
