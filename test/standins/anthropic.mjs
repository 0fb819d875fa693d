// A scripted stand-in for the Anthropic Messages API, spoken over loopback.
//
// Claude Code is pointed at it through ANTHROPIC_BASE_URL and runs for real:
// the stand-in only decides what "the model" says. What it says is read from
// the task's prompt, so a test controls the agent through the same door a
// user does:
//
//   #!standin [{"tool":"Write","input":{"file_path":"notes.md","content":"hi\n"}},
//              {"tool":"Bash","input":{"command":"sleep 5"}}, {"text":"All done."}]
//
// One step is played per model turn. A relative `file_path` is made absolute
// against the working directory Claude Code reports in its system prompt.
// Without a script, "add a NAME.ext" writes that file (for demos); anything
// else gets a short text answer.
import http from "node:http";
import { readJson, sendJson as sendJsonWith, listenOnLoopback } from "./http.mjs";
import { scriptOf } from "./script.mjs";

/**
 * Starts the stand-in. `failures` makes the next N message calls answer with
 * the given HTTP status (for example 529 overloaded) before recovering.
 * @param {{ port?: number, host?: string, failures?: { status: number, count: number } }} [options]
 */
export async function startAnthropicStandin(options = {}) {
  const requests = [];
  let failuresLeft = options.failures?.count ?? 0;
  const server = http.createServer(async (req, res) => {
    if (req.method === "HEAD" || (req.method === "GET" && req.url === "/")) {
      res.writeHead(200).end();
      return;
    }
    const body = await readJson(req);
    if (req.url?.startsWith("/v1/messages/count_tokens")) {
      sendJson(res, 200, { input_tokens: 42 });
      return;
    }
    if (!req.url?.startsWith("/v1/messages") || req.method !== "POST" || !body) {
      sendJson(res, 404, { type: "error", error: { type: "not_found_error", message: `no route ${req.method} ${req.url}` } });
      return;
    }
    requests.push(body);
    if (failuresLeft > 0) {
      failuresLeft -= 1;
      const status = options.failures?.status ?? 529;
      sendJson(res, status, { type: "error", error: { type: status === 529 ? "overloaded_error" : "api_error", message: "stand-in failure" } });
      return;
    }
    const reply = decideReply(body);
    if (reply.delayMs) await new Promise((resolve) => setTimeout(resolve, reply.delayMs));
    if (reply.status) {
      sendJson(res, reply.status, { type: "error", error: { type: reply.status === 529 ? "overloaded_error" : "api_error", message: "scripted failure" } });
      return;
    }
    if (body.stream) streamMessage(res, body.model, reply.blocks, reply.stopReason);
    else sendJson(res, 200, messageObject(body.model, reply.blocks, reply.stopReason));
  });
  const listening = await listenOnLoopback(server, options);
  return {
    url: listening.url,
    port: listening.port,
    /** Every /v1/messages body received, in order. */
    requests,
    /** The first user prompt of each agent conversation the stand-in has seen. */
    prompts: () => requests.filter(isAgentTurn).filter((r) => !r.messages.some((m) => m.role === "assistant")).map(userPromptOf),
    failNext(status, count) {
      options.failures = { status, count };
      failuresLeft = count;
    },
    close: listening.close,
  };
}

/** An agent's turn offers its tools: Claude Code's `Write`/`Bash`, OpenCode's lowercase `write`/`bash` (only `read` when it may not edit). */
function isAgentTurn(body) {
  return Array.isArray(body.tools) && body.tools.some((t) => /^(write|bash|read)$/i.test(t?.name ?? ""));
}

/** The text the user typed: the last text block of the first user message that is not a system reminder. */
export function userPromptOf(body) {
  const first = body.messages?.[0];
  if (!first) return "";
  if (typeof first.content === "string") return first.content;
  const texts = first.content.filter((b) => b.type === "text").map((b) => b.text).filter((t) => !t.startsWith("<system-reminder>"));
  return texts.at(-1) ?? "";
}

/** How many times each scripted failure has been served, by prompt and turn. */
const failuresSeen = new Map();

function decideReply(body) {
  if (!isAgentTurn(body)) return { blocks: [{ type: "text", text: "Sortie task" }], stopReason: "end_turn" };
  const prompt = userPromptOf(body);
  const cwd = workingDirectoryOf(body);
  const steps = scriptOf(prompt, (file, content) => ({ tool: "Write", input: { file_path: file, content } }));
  const turn = body.messages.filter((m) => m.role === "assistant").length;
  const step = steps[turn];
  if (!step) return { blocks: [{ type: "text", text: "Done." }], stopReason: "end_turn" };
  if (step.status) {
    // `failTimes: N` fails this turn's first N requests only (an outage that passes); without it, every time.
    const key = `${prompt}#${turn}`;
    const failed = failuresSeen.get(key) ?? 0;
    if (step.failTimes === undefined || failed < step.failTimes) {
      failuresSeen.set(key, failed + 1);
      return { status: step.status, delayMs: step.delayMs };
    }
  }
  if (!step.tool) return { blocks: [{ type: "text", text: step.text ?? "" }], stopReason: "end_turn", delayMs: step.delayMs };
  const input = { ...step.input };
  if (typeof input.file_path === "string" && !input.file_path.startsWith("/")) input.file_path = `${cwd}/${input.file_path}`;
  // A script written for Claude Code plays under another CLI: its spelling of the tool, its name for the path.
  const offered = body.tools.find((t) => t?.name === step.tool) ?? body.tools.find((t) => t?.name?.toLowerCase() === step.tool.toLowerCase());
  const properties = offered?.input_schema?.properties ?? {};
  if ("file_path" in input && properties.filePath && !properties.file_path) {
    input.filePath = input.file_path;
    delete input.file_path;
  }
  const blocks = [];
  if (step.text) blocks.push({ type: "text", text: step.text });
  blocks.push({ type: "tool_use", id: `toolu_standin_${turn}_${Math.random().toString(36).slice(2, 10)}`, name: offered?.name ?? step.tool, input });
  return { blocks, stopReason: "tool_use", delayMs: step.delayMs };
}


/** Claude Code states its working directory in the system prompt or in a system message. */
function workingDirectoryOf(body) {
  const texts = [body.system, ...(body.messages ?? []).filter((m) => m.role === "system").map((m) => m.content)];
  const flat = JSON.stringify(texts);
  const found = /working directory: ([^\s"\\]+)/i.exec(flat)?.[1];
  if (!found) throw new Error("stand-in: the request names no working directory");
  return found;
}

function usage() {
  return { input_tokens: 120, output_tokens: 40, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };
}

function messageObject(model, blocks, stopReason) {
  return { id: `msg_standin_${Date.now()}`, type: "message", role: "assistant", model, content: blocks, stop_reason: stopReason, stop_sequence: null, usage: usage() };
}

function streamMessage(res, model, blocks, stopReason) {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  const send = (event, data) => res.write(`event: ${event}\ndata: ${JSON.stringify({ type: event, ...data })}\n\n`);
  send("message_start", { message: { ...messageObject(model, [], null), usage: { ...usage(), output_tokens: 1 } } });
  blocks.forEach((block, index) => {
    if (block.type === "text") {
      send("content_block_start", { index, content_block: { type: "text", text: "" } });
      send("content_block_delta", { index, delta: { type: "text_delta", text: block.text } });
    } else {
      send("content_block_start", { index, content_block: { type: "tool_use", id: block.id, name: block.name, input: {} } });
      send("content_block_delta", { index, delta: { type: "input_json_delta", partial_json: JSON.stringify(block.input) } });
    }
    send("content_block_stop", { index });
  });
  send("message_delta", { delta: { stop_reason: stopReason, stop_sequence: null }, usage: { output_tokens: 40 } });
  send("message_stop", {});
  res.end();
}

function sendJson(res, status, value) {
  // Clients that honour retry-after-ms (OpenCode) retry a scripted failure at once instead of backing off for a minute.
  sendJsonWith(res, status, value, status >= 500 || status === 429 ? { "retry-after-ms": "50" } : {});
}

