#!/usr/bin/env node
/**
 * `sortie`: the command line of a Sortie server. Starts tasks, lists and
 * shows them, streams their events live, and hands back diffs for `git apply`.
 *
 * Plain ESM with no dependencies, so it runs from a checkout without a build
 * (Node 22; Node 20 too, following tasks by polling instead of WebSocket).
 *
 * @example SORTIE_TOKEN=... sortie run acme/widgets "add a NOTES.md" --follow
 */
import { parseArgs } from "node:util";
import * as commands from "./commands.mjs";
import { createClient } from "./client.mjs";
import { configPath, DEFAULT_URL, resolveConfig } from "./config.mjs";
import { CliError, usageError } from "./errors.mjs";
import { palette, wantsColor } from "./style.mjs";

const GLOBAL_OPTIONS = {
  url: { type: "string" },
  token: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
};

/** Each command: its arguments, its own options, one line for the overview, and the details for `sortie <command> --help`. */
const COMMANDS = {
  run: {
    args: ["repo", "prompt"],
    usage: 'run <repo> "<prompt>" [-n N] [--agent A] [--isolation L] [--model M] [--branch B] [--setup CMD] [--egress HOST]… [--timeout MIN] [--judge] [--review[=ROUNDS]] [--preview "CMD" [--port N]] [--pr] [--follow]',
    summary: "start a task: one or more agents at work on <repo>",
    options: { runs: { type: "string", short: "n" }, agent: { type: "string", multiple: true }, isolation: { type: "string" }, model: { type: "string" }, branch: { type: "string" }, setup: { type: "string" }, egress: { type: "string", multiple: true }, timeout: { type: "string" }, judge: { type: "boolean" }, review: { type: "string" }, preview: { type: "string" }, port: { type: "string" }, pr: { type: "boolean" }, follow: { type: "boolean", short: "f" } },
    details: `<repo> is owner/name or https://github.com/owner/name; a <prompt> of - is read from stdin.
  -n, --runs N      N parallel attempts, each in its own sandbox
  --agent A         the agent CLI: claude-code (default), codex, opencode or gemini;
                    given more than once, run i uses the i-th (race them: --agent claude-code --agent codex)
  --isolation L     sandbox (default), workspace (a worktree in a warm shared sandbox: fastest start),
                    analysis (read-only, model API only, answers instead of a diff), or auto (inferred from the prompt)
  --model M         the model for the agents
  --setup CMD       run CMD after the clone, before the agent (default: the repo's .sortie/setup.sh)
  --egress HOST     let the task's sandboxes reach HOST too (api.example.com, *.example.com); repeatable
  --branch B        the branch to start from (default: the repo's default branch)
  --timeout MIN     the task's wall-clock limit in minutes
  --judge           when every run has ended, a reviewer ranks their diffs and picks a winner
  --review[=ROUNDS] a read-only reviewer checks each run's change; its findings go back to the coder
                    for up to ROUNDS rounds (1 to 5, default 2)
  --preview "CMD"   serve each succeeded run's app: CMD runs in its kept workspace with PORT set,
                    and \`sortie show\` gives each run's preview URL
  --port N          the port CMD listens on (1024 to 65535, default 8080)
  --pr              open a pull request with the result
  -f, --follow      stream the task until it ends; exit 0 only if it succeeded
  --json            the created task (with --follow: the ended task) as JSON`,
  },
  ls: {
    args: [],
    usage: "ls [--status S] [--repo R] [--limit N] [--cursor C]",
    summary: "list tasks, newest first",
    options: { status: { type: "string" }, repo: { type: "string" }, limit: { type: "string" }, cursor: { type: "string" } },
    details: `  --status S        queued, running, succeeded, failed, cancelled or timed_out
  --repo R          only tasks on owner/name
  --limit N         at most N tasks (default 20, at most 100)
  --cursor C        the next page, as printed under a full page
  --json            the API's answer: {"tasks": [...], "nextCursor": ...}`,
  },
  show: {
    args: ["id"],
    usage: "show <id>",
    summary: "a task: each run's status, phase, cost, duration, diff and error; the judge and the winner",
    options: {},
    details: "  --json            the task as JSON",
  },
  logs: {
    args: ["id"],
    usage: "logs <id> [-f] [--after SEQ]",
    summary: "a task's events; -f follows them live until the task ends",
    options: { follow: { type: "boolean", short: "f" }, after: { type: "string" } },
    details: `  -f, --follow      stream live (reconnecting without gaps or repeats) until the task ends;
                    exit 0 only if it succeeded
  --after SEQ       only events after sequence number SEQ
  --json            events as NDJSON, one per line`,
  },
  diff: {
    args: ["id"],
    usage: "diff <id> [--run N]",
    summary: "a run's diff on stdout, for git apply",
    options: { run: { type: "string" } },
    details: `  --run N           the run (default: the winner if one was picked, else run 0)
Example: sortie diff <id> | git apply --index`,
  },
  cancel: {
    args: ["id"],
    usage: "cancel <id>",
    summary: "stop a task and destroy its sandboxes",
    options: {},
    details: "  --json            the cancelled task as JSON",
  },
  say: {
    args: ["id", "message"],
    usage: 'say <id> "<message>" [--run N]',
    summary: "send a run's agent a follow-up message",
    options: { run: { type: "string" } },
    details: `A <message> of - is read from stdin.
  --run N           the run to talk to (default: the server's choice)
  --json            the task as JSON`,
  },
  winner: {
    args: ["id", "run"],
    usage: "winner <id> <run>",
    summary: "pick the run whose diff wins",
    options: {},
    details: "  --json            the task as JSON",
  },
  plan: {
    args: ["repo", "spec"],
    usage: 'plan <repo> "<spec>" [--approve] [--branch B] [--pr] [--follow]',
    summary: "split a spec into a plan of subtasks, run them under ownership rules, integrate them into one change",
    options: { approve: { type: "boolean" }, branch: { type: "string" }, pr: { type: "boolean" }, follow: { type: "boolean", short: "f" } },
    details: `A <spec> of - is read from stdin. The plan waits for approval (sortie approve <plan>) unless --approve.
  --approve         run the plan as soon as the planner has written it
  --branch B        the branch to start from (default: the repo's default branch)
  --pr              open a pull request with the integrated change
  -f, --follow      print the plan's and its subtasks' status changes until it ends; exit 0 only if it succeeded
  --json            the created plan (with --follow: the ended plan) as JSON`,
  },
  plans: {
    args: [],
    usage: "plans [--status S] [--repo R]",
    summary: "list plans, newest first",
    options: { status: { type: "string" }, repo: { type: "string" } },
    details: `  --status S        planning, awaiting_approval, running, integrating, succeeded, failed or cancelled
  --repo R          only plans on owner/name
  --json            the API's answer: {"plans": [...]}`,
  },
  approve: {
    args: ["plan"],
    usage: "approve <plan>",
    summary: "approve a plan that waits for approval, as the planner wrote it",
    options: {},
    details: "  --json            the approved plan as JSON",
  },
  memory: {
    args: ["repo"],
    optional: ["action", "entry"],
    usage: "memory <repo> [approve|reject ID] [--status S]",
    summary: "a repository's memory: what runs proposed and people approved; approve or reject an entry",
    options: { status: { type: "string" } },
    details: `Without an action, lists the entries with their status, how many runs proposed them, and their id.
  approve ID        approve a proposed entry: later runs of <repo> are given it
  reject ID         reject it: it is never given, and proposing it again changes nothing
  --status S        only proposed, approved, rejected, expired or superseded entries
  --json            the API's answer: {"entries": [...]}, or the decided entry`,
  },
};

function overview() {
  const rows = Object.entries(COMMANDS).map(([name, command]) => `  ${name.padEnd(8)}${command.summary}`);
  return `sortie: dispatch coding agents to a Sortie server

usage: sortie <command> [options]

${rows.join("\n")}

options of every command:
  --url URL         the server (default: SORTIE_URL, else the config file, else ${DEFAULT_URL})
  --token TOKEN     the API token (default: SORTIE_TOKEN, else the config file)
  --json            machine-readable output
  -h, --help        help; sortie <command> --help for a command's options

config file: ${configPath()}
  {"url": "https://sortie.example.com", "token": "..."}
exit status: 0 done; 1 the API refused, the server was unreachable, or a followed task did not succeed; 2 a usage or config mistake
`;
}

const commandHelp = (name) => `usage: sortie ${COMMANDS[name].usage} [--json]\n\n${COMMANDS[name].summary}.\n${COMMANDS[name].details}\n`;

/** Parses `argv`, runs the command, and returns the exit code. */
async function main(argv) {
  const [name, ...rest] = argv;
  if (name === undefined) {
    process.stderr.write(overview());
    return 2;
  }
  if (name === "-h" || name === "--help" || name === "help") {
    process.stdout.write(overview());
    return 0;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) {
    process.stderr.write(`sortie: unknown command "${name}"\n\n${overview()}`);
    return 2;
  }
  let parsed;
  try {
    // `--review` alone means the default rounds: parseArgs wants a value for a string option.
    const args = command.options.review ? rest.map((arg) => (arg === "--review" ? "--review=" : arg)) : rest;
    parsed = parseArgs({ args, options: { ...GLOBAL_OPTIONS, ...command.options }, allowPositionals: true, strict: true });
  } catch (error) {
    throw usageError(`${error.message.replace(/\. To specify a positional argument.*$/s, "")}\nusage: sortie ${command.usage}`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(commandHelp(name));
    return 0;
  }
  const most = command.args.length + (command.optional?.length ?? 0);
  if (positionals.length < command.args.length || positionals.length > most) {
    const missing = command.args.slice(positionals.length).map((arg) => `<${arg}>`);
    const problem = missing.length ? `missing ${missing.join(" ")}` : `too many arguments (${positionals.length} for ${most}; quote a prompt or message that has spaces)`;
    throw usageError(`${name}: ${problem}\nusage: sortie ${command.usage}`);
  }
  const client = createClient(resolveConfig(values));
  return commands[name]({ values, positionals, client });
}

process.stdout.on("error", (error) => {
  // A reader that went away (`sortie logs x | head`) is not an error of ours.
  if (error.code === "EPIPE") process.exit(process.exitCode ?? 0);
  throw error;
});

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (error) {
  const red = palette(wantsColor(process.stderr)).red;
  if (error instanceof CliError) {
    process.stderr.write(`${red("sortie:")} ${error.message}${error.code ? ` (${error.code})` : ""}\n`);
    process.exitCode = error.exitCode;
  } else {
    process.stderr.write(`${red("sortie:")} ${error?.stack ?? error}\n`);
    process.exitCode = 1;
  }
}
