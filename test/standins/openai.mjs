// A scripted stand-in for the OpenAI Responses API, spoken over loopback.
//
// The Codex CLI (`codex exec --json`) is pointed at it through a custom model
// provider and runs for real: the stand-in only decides what "the model" says.
//
//   codex exec --json -m gpt-5.5 \
//     -c model_provider=standin -c model_providers.standin.name=standin \
//     -c model_providers.standin.base_url=<baseUrl> \
//     -c model_providers.standin.env_key=OPENAI_API_KEY \
//     -c model_providers.standin.wire_api=responses \
//     -c model_providers.standin.supports_websockets=false -
//
// What it says is read from the turn's prompt, so a test controls the agent
// through the same door a user does:
//
//   #!standin [{"tool":"exec_command","input":{"cmd":"ls"}},
//              {"tool":"apply_patch","input":{"patch":"*** Begin Patch\n*** Add File: notes.md\n+hi\n*** End Patch\n"}},
//              {"text":"All done."}]
//
// One step is played per model request of the turn (a step may also carry a
// `reasoning` summary). Tool names are Codex's native ones, as it lists them in
// the request: function tools (exec_command, write_stdin, ...) are called with
// `input` as JSON arguments; freeform tools (apply_patch) with the string in
// `input.patch` (or `input.input`). Models run in "code mode" (the catalogue
// default, e.g. gpt-6.2-sol) only expose one freeform `exec` tool taking
// JavaScript; a step naming a nested tool is then wrapped in an `exec` call
// that invokes `tools.<name>(...)` and prints its result. Without a script,
// "add a NAME.ext" writes that file with apply_patch (for demos); anything
// else gets a short text answer. A `#!standin-judge ` line is played instead
// when the prompt carries Sortie's judge marker, as in anthropic.mjs.
//
// The wire protocol is what Codex 0.171 speaks with `wire_api = "responses"`:
// POST /v1/responses with `stream: true` and `store: false` (the whole history
// is resent on every request), answered with server-sent events. Tool results
// come back as `function_call_output` / `custom_tool_call_output` input items.
import http from "node:http";
import { readJson, sendJson, listenOnLoopback } from "./http.mjs";
import { scriptOf } from "./script.mjs";

/** @typedef {import("./script.mjs").Step} Step */

const STANDIN_MODELS = ["gpt-5.5", "gpt-6.2-sol", "standin-model"];

/** Codex wraps context (cwd, AGENTS.md, skills, ...) into user messages too; these are not what the user typed. */
const CONTEXT_PREFIXES = [
  "<environment_context>",
  "<user_instructions>",
  "# AGENTS.md instructions",
  "<skills_instructions>",
  "<permissions instructions>",
  "<collaboration_mode>",
  "<turn_aborted>",
  "<user_shell_command>",
  "<apps_instructions>",
  "<plugins_instructions>",
  "<subagent_notification>",
];
const MODEL_OUTPUT_TYPES = new Set(["function_call", "custom_tool_call", "local_shell_call", "tool_search_call", "web_search_call"]);

/**
 * Starts the stand-in. `failures` makes the next N response calls answer with
 * the given HTTP status (for example 500 or 429) before recovering.
 * @param {{ port?: number, host?: string, failures?: { status: number, count: number } }} [options]
 */
export async function startOpenAIStandin(options = {}) {
  const requests = [];
  let failuresLeft = options.failures?.count ?? 0;
  let sequence = 0;
  const server = http.createServer(async (req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "HEAD" || (req.method === "GET" && path === "/")) {
      res.writeHead(200).end();
      return;
    }
    if (req.method === "GET" && /^(\/v1)?\/models\/?$/.test(path)) {
      sendJson(res, 200, { object: "list", data: STANDIN_MODELS.map((id) => ({ id, object: "model", created: 0, owned_by: "sortie-standin" })) });
      return;
    }
    const body = await readJson(req);
    if (!/^(\/v1)?\/responses\/?$/.test(path) || req.method !== "POST" || !body) {
      sendJson(res, 404, apiError(`no route ${req.method} ${req.url}`, "invalid_request_error", "not_found"));
      return;
    }
    requests.push(body);
    if (failuresLeft > 0) {
      failuresLeft -= 1;
      sendFailure(res, options.failures?.status ?? 500, "stand-in failure");
      return;
    }
    const reply = decideReply(body);
    if (reply.delayMs) await new Promise((resolve) => setTimeout(resolve, reply.delayMs));
    if (reply.status) {
      sendFailure(res, reply.status, "scripted failure");
      return;
    }
    sequence += 1;
    const response = responseObject(`resp_standin_${sequence}_${randomId()}`, body.model, reply.items);
    if (body.stream === false) sendJson(res, 200, { ...response, status: "completed" });
    else streamResponse(res, response);
  });
  const listening = await listenOnLoopback(server, options);
  return {
    url: listening.url,
    /** What to give Codex as `model_providers.<id>.base_url`. */
    baseUrl: `${listening.url}/v1`,
    port: listening.port,
    /** Every /v1/responses body received, in order. */
    requests,
    /** The prompt of each agent turn the stand-in has seen (a resumed session's new prompt counts as a turn). */
    prompts: () => requests.filter(isAgentTurn).filter((r) => turnIndexOf(r) === 0 && !hasRetried(requests, r)).map(userPromptOf),
    failNext(status, count) {
      options.failures = { status, count };
      failuresLeft = count;
    },
    close: listening.close,
  };
}

/** A retried request (after a failure) repeats the same prompt at the same turn; count each turn once. */
function hasRetried(all, request) {
  const index = all.indexOf(request);
  const prompt = userPromptOf(request);
  const history = (request.input ?? []).length;
  return all.slice(0, index).some((r) => isAgentTurn(r) && turnIndexOf(r) === 0 && userPromptOf(r) === prompt && (r.input ?? []).length === history);
}

/** Every tool Codex offered, top level or inside `additional_tools` input items, flattened out of namespaces. */
export function toolsOf(body) {
  const found = [];
  const walk = (tools, namespace) => {
    for (const tool of tools ?? []) {
      if (tool?.type === "namespace") walk(tool.tools, tool.name);
      else if (tool?.name) found.push({ name: tool.name, type: tool.type, namespace });
    }
  };
  walk(body.tools);
  for (const item of body.input ?? []) if (item?.type === "additional_tools") walk(item.tools);
  return found;
}

function isAgentTurn(body) {
  return toolsOf(body).some((t) => ["exec_command", "shell", "apply_patch", "exec"].includes(t.name));
}

function textOf(item) {
  if (typeof item.content === "string") return item.content;
  return (item.content ?? []).filter((c) => c?.type === "input_text" || c?.type === "output_text").map((c) => c.text).join("");
}

/** Index, in `input`, of the message the user typed last (the one that started the current turn). */
function lastPromptIndex(body) {
  const input = body.input ?? [];
  for (let i = input.length - 1; i >= 0; i -= 1) {
    const item = input[i];
    if (item?.type !== "message" && item?.role === undefined) continue;
    if (item.role !== "user") continue;
    const text = textOf(item);
    if (CONTEXT_PREFIXES.some((p) => text.startsWith(p))) continue;
    return i;
  }
  return -1;
}

/** The text the user typed for the current turn (Codex appends a newline to a prompt read from stdin). */
export function userPromptOf(body) {
  if (typeof body.input === "string") return body.input;
  const index = lastPromptIndex(body);
  return index < 0 ? "" : textOf(body.input[index]);
}

/** How many tool calls the model already made since the current prompt: the step to play next. */
function turnIndexOf(body) {
  const input = body.input ?? [];
  return input.slice(lastPromptIndex(body) + 1).filter((item) => MODEL_OUTPUT_TYPES.has(item?.type)).length;
}

/** How many times each scripted failure has been served, by prompt and turn. */
const failuresSeen = new Map();

function decideReply(body) {
  if (isCompaction(body)) return { items: [messageItem("Summary: the stand-in conversation so far (compacted).")] };
  if (!isAgentTurn(body)) return { items: [messageItem("Sortie task")] };
  const prompt = userPromptOf(body);
  const steps = scriptOf(prompt, (file, content) => ({ tool: "apply_patch", input: { patch: addFilePatch(file, content) } }), (cmd) => ({ tool: "exec_command", input: { cmd } }));
  const turn = turnIndexOf(body);
  const step = steps[turn];
  if (!step) return { items: [messageItem("Done.")] };
  if (step.status) {
    // `failTimes: N` fails this turn's first N requests only (an outage that passes); without it, every time.
    const key = `${prompt}#${turn}#${(body.input ?? []).length}`;
    const failed = failuresSeen.get(key) ?? 0;
    if (step.failTimes === undefined || failed < step.failTimes) {
      failuresSeen.set(key, failed + 1);
      return { status: step.status, delayMs: step.delayMs };
    }
  }
  const items = [];
  if (step.reasoning) items.push(reasoningItem(step.reasoning));
  if (!step.tool) return { items: [...items, messageItem(step.text ?? "")], delayMs: step.delayMs };
  if (step.text) items.push(messageItem(step.text, "commentary"));
  items.push(toolCallItem(toolsOf(body), step.tool, step.input ?? {}, turn));
  return { items, delayMs: step.delayMs };
}


/** An apply_patch envelope that creates `path` (relative to Codex's working directory) with `content`. */
export function addFilePatch(path, content) {
  const lines = content.endsWith("\n") ? content.slice(0, -1).split("\n") : content.split("\n");
  return `*** Begin Patch\n*** Add File: ${path}\n${lines.map((l) => `+${l}`).join("\n")}\n*** End Patch\n`;
}

/** Codex compacts history (e.g. when a session resumes on another model) with a tool-less request ending in this prompt. */
function isCompaction(body) {
  const last = (body.input ?? []).at(-1);
  return last?.role === "user" && textOf(last).includes("CONTEXT CHECKPOINT COMPACTION");
}

function reasoningItem(text) {
  return { type: "reasoning", id: `rs_standin_${randomId()}`, summary: [{ type: "summary_text", text }], content: null, encrypted_content: null };
}

function messageItem(text, phase = "final_answer") {
  return { type: "message", id: `msg_standin_${randomId()}`, role: "assistant", status: "completed", phase, content: [{ type: "output_text", text, annotations: [] }] };
}

function freeformInputOf(input) {
  if (typeof input === "string") return input;
  for (const key of ["patch", "input", "code"]) if (typeof input[key] === "string") return input[key];
  return JSON.stringify(input);
}

/** A call to `name` as Codex offered it: function (JSON arguments), custom (freeform string), or nested in code mode's `exec`. */
function toolCallItem(tools, name, input, turn) {
  const callId = `call_standin_${turn}_${randomId()}`;
  const id = `fc_standin_${randomId()}`;
  const direct = tools.find((t) => t.name === name);
  const codeMode = tools.find((t) => t.name === "exec" && t.type === "custom");
  if (!direct && codeMode && name !== "exec") {
    const argument = name === "apply_patch" ? freeformInputOf(input) : input;
    const code = `const result = await tools.${name}(${JSON.stringify(argument)});\ntext(typeof result === "string" ? result : JSON.stringify(result));\n`;
    return { type: "custom_tool_call", id, status: "completed", call_id: callId, name: "exec", ...(codeMode.namespace ? { namespace: codeMode.namespace } : {}), input: code };
  }
  if (direct?.type === "custom") {
    return { type: "custom_tool_call", id, status: "completed", call_id: callId, name, ...(direct.namespace && direct.namespace !== "functions" ? { namespace: direct.namespace } : {}), input: freeformInputOf(input) };
  }
  return { type: "function_call", id, status: "completed", call_id: callId, name, ...(direct?.namespace && direct.namespace !== "functions" ? { namespace: direct.namespace } : {}), arguments: JSON.stringify(input) };
}

function usage() {
  return { input_tokens: 120, input_tokens_details: { cached_tokens: 0 }, output_tokens: 40, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 160 };
}

function responseObject(id, model, output) {
  return { id, object: "response", created_at: Math.floor(Date.now() / 1000), status: "in_progress", model: model ?? "gpt-5.5", output, usage: usage() };
}

function streamResponse(res, response) {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  let sequenceNumber = 0;
  const send = (type, data) => {
    res.write(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: sequenceNumber, ...data })}\n\n`);
    sequenceNumber += 1;
  };
  send("response.created", { response: { ...response, output: [], usage: null } });
  send("response.in_progress", { response: { ...response, output: [], usage: null } });
  response.output.forEach((item, outputIndex) => {
    if (item.type === "message") {
      send("response.output_item.added", { output_index: outputIndex, item: { ...item, status: "in_progress", content: [] } });
      item.content.forEach((part, contentIndex) => {
        const at = { item_id: item.id, output_index: outputIndex, content_index: contentIndex };
        send("response.content_part.added", { ...at, part: { ...part, text: "" } });
        send("response.output_text.delta", { ...at, delta: part.text });
        send("response.output_text.done", { ...at, text: part.text });
        send("response.content_part.done", { ...at, part });
      });
    } else if (item.type === "reasoning") {
      send("response.output_item.added", { output_index: outputIndex, item: { ...item, summary: [] } });
      item.summary.forEach((part, summaryIndex) => {
        const at = { item_id: item.id, output_index: outputIndex, summary_index: summaryIndex };
        send("response.reasoning_summary_part.added", { ...at, part: { ...part, text: "" } });
        send("response.reasoning_summary_text.delta", { ...at, delta: part.text });
        send("response.reasoning_summary_text.done", { ...at, text: part.text });
        send("response.reasoning_summary_part.done", { ...at, part });
      });
    } else if (item.type === "function_call") {
      send("response.output_item.added", { output_index: outputIndex, item: { ...item, status: "in_progress", arguments: "" } });
      send("response.function_call_arguments.delta", { item_id: item.id, output_index: outputIndex, delta: item.arguments });
      send("response.function_call_arguments.done", { item_id: item.id, output_index: outputIndex, arguments: item.arguments });
    } else if (item.type === "custom_tool_call") {
      send("response.output_item.added", { output_index: outputIndex, item: { ...item, status: "in_progress", input: "" } });
      send("response.custom_tool_call_input.delta", { item_id: item.id, output_index: outputIndex, delta: item.input });
      send("response.custom_tool_call_input.done", { item_id: item.id, output_index: outputIndex, input: item.input });
    }
    send("response.output_item.done", { output_index: outputIndex, item });
  });
  send("response.completed", { response: { ...response, status: "completed" } });
  res.end();
}

function apiError(message, type, code) {
  return { error: { message, type, param: null, code } };
}

function sendFailure(res, status, message) {
  const type = status === 401 ? "invalid_request_error" : status === 429 ? "rate_limit_error" : "server_error";
  const code = status === 401 ? "invalid_api_key" : status === 429 ? "rate_limit_exceeded" : "server_error";
  sendJson(res, status, apiError(`${message} (HTTP ${status})`, type, code));
}


function randomId() {
  return Math.random().toString(36).slice(2, 10);
}

