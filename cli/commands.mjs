/**
 * What each `sortie` command does, given its parsed arguments and a client.
 * Each returns the process exit code; refusals and mistakes are thrown as `CliError`.
 */
import { once } from "node:events";
import { CliError, usageError } from "./errors.mjs";
import { followTask } from "./follow.mjs";
import { eventRenderer } from "./events.mjs";
import { cut, palette, statusColor, TERMINAL, wantsColor } from "./style.mjs";
import { statusText, summaryLine, taskDetails, taskSucceeded, taskTable } from "./views.mjs";

export { approve, plan, plans } from "./plans.mjs";

const stdout = process.stdout;
const c = palette(wantsColor(stdout));
const width = () => stdout.columns || 120;

/** Writes to stdout, waiting when the pipe is full, so a large diff or log streams in constant memory. */
async function write(chunk) {
  if (!stdout.write(chunk)) await once(stdout, "drain");
}
const printJson = (value) => write(`${JSON.stringify(value, null, 2)}\n`);

/** @typedef {{ values: Record<string, any>, positionals: string[], client: import("./client.mjs").Client }} Invocation */

/** @param {Invocation} inv */
export async function run({ values, positionals: [repo, prompt], client }) {
  const body = { repo, prompt: prompt === "-" ? await readStdin() : prompt };
  if (values.runs !== undefined) body.runs = integer(values.runs, "-n", 1);
  if (values.model !== undefined) body.model = values.model;
  const agents = values.agent ?? [];
  if (agents.length === 1) body.agent = agents[0];
  if (agents.length > 1) {
    // One agent per run: as many runs as agents, unless -n asks for more (the rest use the first).
    body.runs = Math.max(body.runs ?? 1, agents.length);
    body.agent = agents[0];
    body.variants = agents.map((agent) => ({ agent }));
  }
  if (values.isolation !== undefined) body.isolation = values.isolation;
  if (values.setup !== undefined) body.setup = values.setup;
  if (values.egress?.length) body.egress = values.egress;
  if (values.branch !== undefined) body.branch = values.branch;
  if (values.timeout !== undefined) body.timeoutMinutes = minutes(values.timeout);
  if (values.judge) body.judge = true;
  if (values.review !== undefined) body.review = values.review === "" ? {} : { rounds: integer(values.review, "--review", 1) };
  if (values.port !== undefined && values.preview === undefined) throw usageError("--port goes with --preview");
  if (values.preview !== undefined) {
    body.preview = { command: values.preview };
    if (values.port !== undefined) body.preview.port = integer(values.port, "--port", 1);
  }
  if (values.pr) body.output = "pr";
  let task;
  try {
    task = await client.createTask(body);
  } catch (error) {
    // The create schema refuses unknown fields, so a server without pull requests names `output` in a 400.
    if (values.pr && error instanceof CliError && error.status === 400 && /output/.test(error.message)) {
      throw new CliError("pull requests are not available on this server yet", { cause: error });
    }
    throw error;
  }
  if (!values.follow) {
    if (values.json) await printJson(task);
    else await write(`${c.bold(task.id)}  ${statusColor(c, task.status)(task.status)}\n${task.url}\n${c.dim(`follow it: sortie logs -f ${task.id}`)}\n`);
    return 0;
  }
  if (!values.json) await write(`${c.bold(task.id)}  ${c.dim(task.url)}\n`);
  const ended = await watch(client, task, { json: values.json, quiet: values.json });
  if (values.json) await printJson(ended);
  return taskSucceeded(ended) ? 0 : 1;
}

/** @param {Invocation} inv */
export async function ls({ values, client }) {
  const query = { status: values.status, repo: values.repo, cursor: values.cursor, limit: values.limit === undefined ? undefined : integer(values.limit, "--limit", 1) };
  const page = await client.listTasks(query);
  if (values.json) {
    await printJson(page);
    return 0;
  }
  if (page.tasks.length === 0) await write(c.dim("no tasks\n"));
  else await write(`${taskTable(page.tasks, c, width())}\n`);
  if (page.nextCursor) await write(c.dim(`more: sortie ls --cursor ${page.nextCursor}${values.limit ? ` --limit ${values.limit}` : ""}\n`));
  return 0;
}

/** @param {Invocation} inv */
export async function show({ values, positionals: [id], client }) {
  const task = await client.getTask(id);
  await (values.json ? printJson(task) : write(`${taskDetails(task, c)}\n`));
  return 0;
}

/** @param {Invocation} inv */
export async function logs({ values, positionals: [id], client }) {
  const after = values.after === undefined ? 0 : integer(values.after, "--after", 0);
  if (values.follow) {
    const task = await client.getTask(id);
    const ended = await watch(client, task, { after, json: values.json, quiet: false });
    return taskSucceeded(ended) ? 0 : 1;
  }
  if (values.json) {
    // The log as the server sends it: NDJSON, one event per line.
    for await (const chunk of (await client.eventLog(id, after)).body) await write(chunk);
    return 0;
  }
  const task = await client.getTask(id);
  const render = eventRenderer({ c, multiRun: task.runs.length > 1, width: width() });
  for await (const event of client.events(id, after)) {
    const lines = render(event);
    if (lines.length) await write(`${lines.join("\n")}\n`);
  }
  if (!TERMINAL.has(task.status)) await write(c.dim(`the task is still ${task.status}: sortie logs -f ${id}\n`));
  return 0;
}

/** @param {Invocation} inv */
export async function diff({ values, positionals: [id], client }) {
  // Without --run, the diff that matters: the winner's when one was picked.
  const runIndex = values.run !== undefined ? integer(values.run, "--run", 0) : ((await client.getTask(id)).winner?.run ?? 0);
  let bytes = 0;
  for await (const chunk of await client.diff(id, runIndex)) {
    bytes += chunk.byteLength;
    await write(chunk);
  }
  if (bytes === 0) process.stderr.write(`sortie: run ${runIndex} of ${id} changed nothing\n`);
  return 0;
}

/** @param {Invocation} inv */
export async function cancel({ values, positionals: [id], client }) {
  const task = await client.cancel(id);
  await (values.json ? printJson(task) : write(`${task.id}  ${statusColor(c, task.status)(task.status)}\n`));
  return 0;
}

/** @param {Invocation} inv */
export async function say({ values, positionals: [id, text], client }) {
  const body = { text: text === "-" ? await readStdin() : text };
  if (values.run !== undefined) body.run = integer(values.run, "--run", 0);
  let task;
  try {
    task = await client.say(id, body);
  } catch (error) {
    if (error instanceof CliError && error.status === 404 && /^no route/.test(error.message)) {
      throw new CliError("follow-up messages are not available on this server yet", { cause: error });
    }
    throw error;
  }
  if (values.json) await printJson(task);
  else await write(`sent to ${body.run !== undefined ? `run ${body.run} of ` : ""}${task.id}  ${statusColor(c, task.status)(task.status)}\n${c.dim(`follow it: sortie logs -f ${task.id}`)}\n`);
  return 0;
}

/** @param {Invocation} inv */
export async function winner({ values, positionals: [id, runText], client }) {
  const task = await client.pickWinner(id, integer(runText, "<run>", 0));
  await (values.json ? printJson(task) : write(`run ${task.winner?.run} is the winner of ${task.id}\n${c.dim(`its diff: sortie diff ${task.id}`)}\n`));
  return 0;
}

/**
 * Streams a task until it ends. Rendered: events as they come, a live
 * status line on a terminal, and a summary at the end. `json`: events as
 * NDJSON. `quiet`: nothing at all (the caller prints the ended task).
 */
async function watch(client, task, { after = 0, json, quiet }) {
  const render = eventRenderer({ c, multiRun: task.runs.length > 1, width: width() });
  const live = statusLine(!json && !quiet && Boolean(stdout.isTTY));
  let current = task;
  const stop = () => {
    live.stop();
    process.exit(130);
  };
  process.once("SIGINT", stop);
  try {
    const ended = await followTask(client, task, {
      after,
      onEvent: (event) => {
        if (quiet) return;
        if (json) return live.print(JSON.stringify(event));
        const lines = render(event);
        if (lines.length) live.print(lines.join("\n"));
      },
      onState: (state) => {
        current = state;
        live.show(statusText(current));
      },
      onNotice: (text) => {
        if (!json && !quiet) live.print(c.yellow(`sortie: ${text}`));
        else process.stderr.write(`sortie: ${text}\n`);
      },
    });
    live.stop();
    if (!json && !quiet) await write(`${summaryLine(ended, c)}\n`);
    return ended;
  } finally {
    live.stop();
    process.off("SIGINT", stop);
  }

  /** A status line kept under the output on a terminal: status, phases, elapsed time; redrawn as time passes. */
  function statusLine(enabled) {
    const frames = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏";
    let text = "";
    let frame = 0;
    let shown = false;
    const clear = () => {
      if (shown) stdout.write("\r\x1b[2K");
      shown = false;
    };
    const draw = () => {
      if (!enabled || !text) return;
      stdout.write(c.dim(cut(`${frames[frame % frames.length]} ${text}`, width() - 1)));
      shown = true;
    };
    const timer = enabled ? setInterval(() => {
      frame++;
      text = statusText(current);
      clear();
      draw();
    }, 250) : null;
    return {
      print(line) {
        clear();
        stdout.write(`${line}\n`);
        draw();
      },
      show(next) {
        text = next;
        clear();
        draw();
      },
      stop() {
        if (timer) clearInterval(timer);
        clear();
        enabled = false;
      },
    };
  }
}

function integer(text, flag, min) {
  const n = Number(text);
  if (!/^\d+$/.test(String(text).trim()) || !Number.isSafeInteger(n) || n < min) throw usageError(`${flag} must be a whole number ≥ ${min}, got "${text}"`);
  return n;
}

function minutes(text) {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw usageError(`--timeout must be a number of minutes, got "${text}"`);
  return n;
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString("utf8");
  if (!text.trim()) throw usageError("the text on stdin is empty");
  return text;
}


/** @param {Invocation} inv */
export async function memory({ values, positionals: [repo, action, id], client }) {
  if (action !== undefined) {
    if (action !== "approve" && action !== "reject") throw usageError(`memory: the action is approve or reject, not "${action}"\nusage: sortie memory <repo> [approve|reject ID]`);
    if (id === undefined) throw usageError(`memory: ${action} needs the entry's ID\nusage: sortie memory <repo> ${action} ID`);
    const entry = await client.decideMemory(repo, id, action);
    if (values.json) await printJson(entry);
    else await write(`${c.bold(entry.id)}  ${memoryStatus(entry.status)}  ${entry.text}\n`);
    return 0;
  }
  const page = await client.listMemory(repo, values.status);
  if (values.json) {
    await printJson(page);
    return 0;
  }
  if (page.entries.length === 0) {
    await write(c.dim(`no memory entries for ${repo}${values.status ? ` (${values.status})` : ""}\n`));
    return 0;
  }
  for (const entry of page.entries) {
    const wins = entry.evidence.filter((e) => e.winner).length;
    const seen = entry.createdBy === "person" && entry.seen === 0 ? "by a person" : `seen ${entry.seen}×${wins ? `, ${wins} winning` : ""}`;
    await write(`${c.bold(entry.id)}  ${memoryStatus(entry.status)}  ${c.dim(seen.padEnd(16))}  ${cut(entry.text, Math.max(40, width() - 50))}\n`);
  }
  const waiting = page.entries.filter((entry) => entry.status === "proposed").length;
  if (waiting > 0) await write(c.dim(`${waiting} proposed: sortie memory ${repo} approve|reject ID\n`));
  return 0;
}

function memoryStatus(status) {
  const paint = status === "approved" ? c.green : status === "proposed" ? c.yellow : c.dim;
  return paint(status.padEnd(10));
}
