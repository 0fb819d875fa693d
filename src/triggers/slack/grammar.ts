/**
 * The language of the `/sortie` slash command, parsed from the text Slack
 * sends after the command name. Pure: no environment, no I/O, so every case
 * is a unit test.
 *
 * @example parseSlackCommand("acme/widgets@main x3 --draft add a NOTES.md")
 * // { ok: true, command: { kind: "run", repo: "acme/widgets", branch: "main", runs: 3, output: "draft-pr", prompt: "add a NOTES.md" } }
 */
import { LIMITS } from "../../config.ts";
import { AGENT_NAMES, ISOLATION_LEVELS, PREVIEW, REVIEW_ROUNDS, type AgentName } from "../../schema.ts";

/** What a finished task should become beyond its diff. */
export type SlackOutput = "pr" | "draft-pr";

export type SlackIsolation = (typeof ISOLATION_LEVELS)[number] | "auto";

export type SlackCommand =
  | { kind: "run"; repo: string; branch: string | null; runs: number; output: SlackOutput | null; agent?: AgentName; isolation?: SlackIsolation; review?: number; preview?: { command: string; port?: number }; prompt: string }
  | { kind: "plan"; repo: string; branch: string | null; spec: string }
  | { kind: "status"; id: string }
  | { kind: "cancel"; id: string }
  | { kind: "help" };

export type ParsedSlackCommand = { ok: true; command: SlackCommand } | { ok: false; error: string };

export const SLACK_USAGE = [
  "*Usage*",
  "`/sortie owner/repo[@branch] [xN] [--pr|--draft] [--agent=NAME] [--isolation=LEVEL] [--review[=ROUNDS]] [--preview=\"CMD\" [--port=N]] <prompt>`: start a task (N parallel runs, 1 to 8; `--review`: a reviewer checks each run's change, 1 to 5 rounds; `--preview`: each run's app served by CMD with PORT set, on port N, 8080 by default)",
  `Agents: ${AGENT_NAMES.join(", ")}. Isolation: ${[...ISOLATION_LEVELS, "auto"].join(", ")}.`,
  "`/sortie plan owner/repo[@branch] <spec>`: split the spec into a plan of subtasks; the plan's message gets an Approve button",
  "`/sortie status <task id>`: where a task stands",
  "`/sortie cancel <task id>`: stop a task",
  "`/sortie help`: this message",
  "Options come before the prompt; put `--` before a prompt that starts with `x3` or `--`.",
].join("\n");

/** `owner/name`, then optionally `@branch`; the owner and name hold no `@` or `/`, the branch may hold both. */
const REPO_TOKEN = /^([^\s/@]+\/[^\s/@]+)(?:@(\S*))?$/;
const RUNS_TOKEN = /^[xX](\d+)$/;

export function parseSlackCommand(text: string): ParsedSlackCommand {
  const input = decodeSlackEscapes(text).trim();
  const words = new Words(input);
  const first = words.next();
  if (first === null) return { ok: true, command: { kind: "help" } };

  const keyword = first.toLowerCase();
  if (keyword === "help") {
    return words.rest() === "" ? { ok: true, command: { kind: "help" } } : fail("`help` takes nothing after it");
  }
  if (keyword === "status" || keyword === "cancel") {
    const id = words.next();
    if (id === null) return fail(`\`${keyword}\` needs a task id: \`/sortie ${keyword} <task id>\``);
    if (words.rest() !== "") return fail(`\`${keyword}\` takes one task id and nothing else`);
    return { ok: true, command: { kind: keyword, id } };
  }

  if (keyword === "plan") {
    const target = words.next();
    const named = target === null ? null : REPO_TOKEN.exec(target);
    if (!named) return fail("`plan` needs a repository and a spec: `/sortie plan owner/repo[@branch] <spec>`");
    if (named[2] === "") return fail(`\`${target}\` names no branch after \`@\``);
    const spec = words.rest();
    if (spec === "") return fail(`what should the plan do in \`${named[1]}\`? Put the spec after the repository`);
    return { ok: true, command: { kind: "plan", repo: named[1]!, branch: named[2] ?? null, spec } };
  }

  const repo = REPO_TOKEN.exec(first);
  if (!repo) return fail(`\`${first}\` is not a command or a repository; expected \`owner/repo\` or \`owner/repo@branch\``);
  const branch = repo[2];
  if (branch === "") return fail(`\`${first}\` names no branch after \`@\``);

  let runs: number | null = null;
  let output: SlackOutput | null = null;
  let agent: AgentName | undefined;
  let isolation: SlackIsolation | undefined;
  let review: number | undefined;
  let preview: { command: string; port?: number } | undefined;
  let port: number | undefined;
  for (;;) {
    const word = words.peek();
    if (word === null) break;
    if (word === "--") {
      words.next();
      break;
    }
    const count = RUNS_TOKEN.exec(word);
    if (count) {
      if (runs !== null) return fail("give the number of runs once");
      runs = Number(count[1]);
      if (!Number.isInteger(runs) || runs < 1 || runs > LIMITS.maxRuns) return fail(`\`${word}\`: runs must be 1 to ${LIMITS.maxRuns}`);
      words.next();
      continue;
    }
    if (word.startsWith("--")) {
      const flag = word.toLowerCase();
      const reviewed = /^--review(?:=(.*))?$/.exec(flag);
      if (reviewed) {
        if (review !== undefined) return fail("give `--review` once");
        review = reviewed[1] === undefined ? REVIEW_ROUNDS.default : Number(reviewed[1]);
        if (!Number.isInteger(review) || review < REVIEW_ROUNDS.min || review > REVIEW_ROUNDS.max) return fail(`\`${word}\`: review rounds must be ${REVIEW_ROUNDS.min} to ${REVIEW_ROUNDS.max}`);
        words.next();
        continue;
      }
      if (flag.startsWith("--preview=")) {
        if (preview !== undefined) return fail("give `--preview` once");
        const command = words.nextValue("--preview=".length);
        if (command === null || command.trim() === "") return fail('`--preview` needs a command: `--preview="npm run dev"`');
        preview = { command };
        continue;
      }
      const ported = /^--port=(\d{1,5})$/.exec(flag);
      if (ported) {
        if (port !== undefined) return fail("give `--port` once");
        port = Number(ported[1]);
        if (port < PREVIEW.minPort || port > PREVIEW.maxPort) return fail(`\`${word}\`: the port must be ${PREVIEW.minPort} to ${PREVIEW.maxPort}`);
        words.next();
        continue;
      }
      const valued = /^--(agent|isolation)=(.*)$/.exec(flag);
      if (valued) {
        const [, name, value] = valued;
        if (name === "agent") {
          if (agent !== undefined) return fail("give `--agent` once");
          if (!(AGENT_NAMES as readonly string[]).includes(value!)) return fail(`\`${word}\`: the agents are ${AGENT_NAMES.map((a) => `\`${a}\``).join(", ")}`);
          agent = value as AgentName;
        } else {
          if (isolation !== undefined) return fail("give `--isolation` once");
          const levels: readonly string[] = [...ISOLATION_LEVELS, "auto"];
          if (!levels.includes(value!)) return fail(`\`${word}\`: the levels are ${levels.map((l) => `\`${l}\``).join(", ")}`);
          isolation = value as SlackIsolation;
        }
        words.next();
        continue;
      }
      if (flag !== "--pr" && flag !== "--draft") return fail(`unknown option \`${word}\`; the options are \`xN\`, \`--pr\`, \`--draft\`, \`--agent=NAME\`, \`--isolation=LEVEL\`, \`--review[=ROUNDS]\`, \`--preview="CMD"\` and \`--port=N\``);
      if (output !== null) return fail("choose one of `--pr` and `--draft`");
      output = flag === "--pr" ? "pr" : "draft-pr";
      words.next();
      continue;
    }
    break;
  }

  if (port !== undefined && !preview) return fail("`--port` goes with `--preview`");
  if (preview && port !== undefined) preview.port = port;
  const prompt = words.rest();
  if (prompt === "") return fail(`what should the agent do in \`${repo[1]}\`? Put the prompt after the repository`);
  return { ok: true, command: { kind: "run", repo: repo[1]!, branch: branch ?? null, runs: runs ?? 1, output, ...(agent ? { agent } : {}), ...(isolation ? { isolation } : {}), ...(review ? { review } : {}), ...(preview ? { preview } : {}), prompt } };
}

/**
 * Slack sends `&`, `<` and `>` in command text as HTML entities; the prompt
 * reaches the agent as the user typed it. `&amp;` is decoded last, so a typed
 * `&lt;` survives as itself.
 */
export function decodeSlackEscapes(text: string): string {
  return text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

function fail(error: string): ParsedSlackCommand {
  return { ok: false, error };
}

/** Reads whitespace-separated words off the front, leaving the rest of the text (newlines and all) intact. */
class Words {
  private at = 0;
  constructor(private readonly text: string) {}

  peek(): string | null {
    const match = /\S+/y;
    match.lastIndex = this.skipSpace();
    return match.exec(this.text)?.[0] ?? null;
  }

  next(): string | null {
    const word = this.peek();
    if (word !== null) this.at = this.skipSpace() + word.length;
    return word;
  }

  /**
   * The value of the option word ahead, after its first `skip` characters:
   * up to the closing quote when it opens one (`"` or Slack's curly quotes,
   * spaces and all), else the rest of the word. Null for an unclosed quote.
   */
  nextValue(skip: number): string | null {
    const start = this.skipSpace() + skip;
    const open = this.text[start];
    const close = open === '"' ? '"' : open === "\u201c" ? "\u201d" : null;
    if (close === null) {
      const word = this.next();
      return word === null ? null : word.slice(skip);
    }
    const end = this.text.indexOf(close, start + 1);
    if (end < 0) return null;
    this.at = end + 1;
    return this.text.slice(start + 1, end);
  }

  rest(): string {
    return this.text.slice(this.at).trim();
  }

  private skipSpace(): number {
    const space = /\s*/y;
    space.lastIndex = this.at;
    space.exec(this.text);
    return space.lastIndex;
  }
}
