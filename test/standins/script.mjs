// What the scripted model stand-ins (anthropic.mjs, openai.mjs, gemini.mjs) read from a
// prompt: a line `#!standin [steps…]` plays one step per model turn; a judging turn
// (Sortie's reviewer) plays its `#!standin-judge` line, or picks the first candidate;
// without a script, "add a NAME.ext" writes that file (for demos) with the CLI's own
// write step, and anything else gets a short text answer.

/** @typedef {{ text?: string, tool?: string, input?: Record<string, unknown>, delayMs?: number, status?: number, failTimes?: number, reasoning?: string }} Step */

export const SCRIPT_MARK = "#!standin ";
export const JUDGE_SCRIPT_MARK = "#!standin-judge ";
export const JUDGE_MARKER = "[sortie judge]";
export const REVIEW_SCRIPT_MARK = "#!standin-review ";
export const REVIEW_MARKER = "[sortie review]";

/**
 * The steps `prompt` scripts. `write(file, content)` is the CLI's step that
 * creates a file, for the unscripted demo; `shell(command)` its step that runs
 * a command (a reviewer writes its verdict with it). A reviewing turn plays
 * round N's steps of the task's `#!standin-review [[round 1 steps], [round 2 steps]…]`
 * line, or approves.
 * @param {string} prompt
 * @param {(file: string, content: string) => Step} write
 * @param {(command: string) => Step} [shell]
 * @returns {Step[]}
 */
export function scriptOf(prompt, write, shell = (command) => ({ tool: "Bash", input: { command } })) {
  if (prompt.includes(REVIEW_MARKER)) {
    const round = Number(/review round (\d+)/.exec(prompt)?.[1] ?? 1);
    const scripted = prompt.split("\n").find((l) => l.startsWith(REVIEW_SCRIPT_MARK));
    const rounds = scripted ? JSON.parse(scripted.slice(REVIEW_SCRIPT_MARK.length)) : [];
    const steps = rounds[round - 1];
    if (Array.isArray(steps)) return steps;
    return [{ text: "Reviewing.", ...shell(`printf '%s' '{"verdict":"approve","findings":[]}' > "$SORTIE_REVIEW_FILE"`) }, { text: "Approved." }];
  }
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
