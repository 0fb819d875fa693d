// A scripted stand-in for the Gemini API (generativelanguage v1beta), spoken over loopback.
//
// Gemini CLI is pointed at it through GOOGLE_GEMINI_BASE_URL (with
// security.auth.selectedType "gemini-api-key" in its settings and any
// GEMINI_API_KEY) and runs for real: the stand-in only decides what "the
// model" says. What it says is read from the task's prompt, so a test controls
// the agent through the same door a user does:
//
//   #!standin [{"tool":"run_shell_command","input":{"command":"ls"}},
//              {"tool":"write_file","input":{"file_path":"notes.md","content":"hi\n"}}, {"text":"All done."}]
//
// One step is played per model turn (a turn is one streamGenerateContent call
// of the agent loop; the turn number is the count of "model" entries in the
// history it sends). A relative `file_path` is made absolute against the
// workspace directory Gemini CLI reports in its session context. Without a
// script, "add a NAME.ext" writes that file (for demos); anything else gets a
// short text answer. A later user message carrying its own script (the
// follow-up of a `--resume`d session) plays that script from its first step.
//
// Side calls are answered too: non-streaming generateContent calls that ask
// for JSON (the model router's classifier, loop detection, next-speaker
// check, edit correction) get an object filled from the request's schema;
// other generateContent calls (summaries, compression) get short text;
// countTokens gets a fixed count.
import http from "node:http";
import { readJson, sendJson, listenOnLoopback } from "./http.mjs";
import { SCRIPT_MARK, JUDGE_SCRIPT_MARK, scriptOf } from "./script.mjs";

/** @typedef {import("./script.mjs").Step} Step */

/** Tools whose presence marks a request as a turn of the coding agent rather than a side call. */
const AGENT_TOOLS = new Set(["run_shell_command", "write_file", "replace", "read_file"]);

/** Values the CLI's side calls expect for well-known schema fields (anything else is filled generically). */
const KNOWN_FIELDS = {
  complexity_score: 20, // numerical router: below the threshold picks the flash model
  complexity_reasoning: "The stand-in rates every task as simple.",
  model_choice: "flash",
  next_speaker: "user",
  unproductive_state_confidence: 0,
  unproductive_state_analysis: "The stand-in sees no loop.",
};

/**
 * Starts the stand-in. `failures` makes the next N model calls (streaming or
 * not) answer with the given HTTP status (for example 429 or 503) before recovering.
 * @param {{ port?: number, host?: string, failures?: { status: number, count: number } }} [options]
 */
export async function startGeminiStandin(options = {}) {
  /** @type {{ method: string, path: string, model: string, kind: string, body: any, at: number }[]} */
  const requests = [];
  let failuresLeft = options.failures?.count ?? 0;
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://standin");
    if (req.method === "HEAD" || (req.method === "GET" && url.pathname === "/")) {
      res.writeHead(200).end();
      return;
    }
    const body = await readJson(req);
    // /v1beta/models/<model>:<method>  (also accepts /v1/ and a "publishers/google/" prefix)
    const route = /\/models\/([^/:]+):(\w+)$/.exec(url.pathname);
    if (req.method !== "POST" || !route) {
      sendError(res, 404, `no route ${req.method} ${url.pathname}`);
      return;
    }
    const [, model, method] = route;
    const kind = method === "countTokens" ? "countTokens" : isAgentTurn(method, body) ? "agent" : "side";
    requests.push({ method, path: url.pathname, model, kind, body, at: Date.now() });
    if (method === "countTokens") {
      sendJson(res, 200, { totalTokens: 42 });
      return;
    }
    if (method !== "streamGenerateContent" && method !== "generateContent") {
      sendError(res, 404, `unsupported method ${method}`);
      return;
    }
    if (!body || !Array.isArray(body.contents)) {
      sendError(res, 400, "request has no contents");
      return;
    }
    if (failuresLeft > 0) {
      failuresLeft -= 1;
      sendError(res, options.failures?.status ?? 503, "stand-in failure");
      return;
    }
    const reply = kind === "agent" ? decideReply(body) : sideReply(body);
    if (reply.delayMs) await new Promise((resolve) => setTimeout(resolve, reply.delayMs));
    if (reply.status) {
      sendError(res, reply.status, "scripted failure");
      return;
    }
    if (method === "streamGenerateContent") streamResponse(res, model, reply.parts);
    else sendJson(res, 200, responseObject(model, reply.parts, "STOP"));
  });
  const listening = await listenOnLoopback(server, options);
  return {
    url: listening.url,
    port: listening.port,
    /** Every model call received (agent turns, side calls, countTokens), in order. */
    requests,
    /** The first user prompt of each agent conversation the stand-in has seen. */
    prompts: () => requests.filter((r) => r.kind === "agent" && !r.body.contents.some((c) => c.role === "model")).map((r) => userPromptOf(r.body)),
    failNext(status, count) {
      options.failures = { status, count };
      failuresLeft = count;
    },
    close: listening.close,
  };
}

/** The agent loop streams and offers tools; side calls are one-shot generateContent calls, usually asking for JSON. */
function isAgentTurn(method, body) {
  if (Array.isArray(body?.tools) && body.tools.some((t) => (t?.functionDeclarations ?? []).some((f) => AGENT_TOOLS.has(f?.name)))) return true;
  const config = body?.generationConfig ?? {};
  return method === "streamGenerateContent" && !config.responseJsonSchema && !config.responseSchema;
}

/** Text parts of the user's opening message(s), without the CLI's <session_context> and other tagged preambles. */
function openingTexts(body) {
  const texts = [];
  for (const content of body.contents ?? []) {
    if (content.role === "model") break;
    for (const part of content.parts ?? []) if (typeof part.text === "string") texts.push(part.text);
  }
  return texts;
}

/** The text the user typed: the last untagged text part before the model's first answer. */
export function userPromptOf(body) {
  const texts = openingTexts(body).filter((t) => !/^\s*<[a-z_]+>/.test(t));
  return texts.at(-1) ?? "";
}

/** How many times each scripted failure has been served, by prompt and turn. */
const failuresSeen = new Map();

function decideReply(body) {
  const { prompt, turn } = scriptPosition(body);
  const cwd = workingDirectoryOf(body);
  const steps = scriptOf(prompt, (file, content) => ({ tool: "write_file", input: { file_path: file, content } }), (command) => ({ tool: "run_shell_command", input: { command } }));
  const step = steps[turn];
  if (!step) return { parts: [{ text: "Done." }] };
  if (step.status) {
    // `failTimes: N` fails this turn's first N requests only (an outage that passes); without it, every time.
    const key = `${prompt}#${turn}`;
    const failed = failuresSeen.get(key) ?? 0;
    if (step.failTimes === undefined || failed < step.failTimes) {
      failuresSeen.set(key, failed + 1);
      return { status: step.status, delayMs: step.delayMs };
    }
  }
  if (!step.tool) return { parts: [{ text: step.text ?? "" }], delayMs: step.delayMs };
  const args = { ...step.input };
  if (cwd && typeof args.file_path === "string" && !args.file_path.startsWith("/")) args.file_path = `${cwd}/${args.file_path}`;
  const parts = [];
  if (step.text) parts.push({ text: step.text });
  parts.push({ functionCall: { name: step.tool, args } });
  return { parts, delayMs: step.delayMs };
}

/**
 * Which prompt's script plays, and which of its steps. A later user message
 * that carries its own script (a follow-up in a resumed session) wins, and its
 * turns are counted from there; otherwise the opening prompt's script plays
 * with one step per model entry in the history.
 */
function scriptPosition(body) {
  const contents = body.contents;
  for (let i = contents.length - 1; i > 0; i -= 1) {
    if (contents[i].role !== "user") continue;
    const text = (contents[i].parts ?? []).map((p) => p.text).filter((t) => typeof t === "string" && !/^\s*<[a-z_]+>/.test(t)).at(-1);
    if (text && text.split("\n").some((l) => l.startsWith(SCRIPT_MARK) || l.startsWith(JUDGE_SCRIPT_MARK)) && contents.slice(0, i).some((c) => c.role === "model")) {
      return { prompt: text, turn: contents.slice(i).filter((c) => c.role === "model").length };
    }
  }
  return { prompt: userPromptOf(body), turn: contents.filter((c) => c.role === "model").length };
}


/** Gemini CLI lists its workspace directories in the <session_context> it sends first. */
function workingDirectoryOf(body) {
  for (const text of openingTexts(body)) {
    const found = /Workspace Directories:\*\*\s*\n\s*-\s*(\S+)/.exec(text)?.[1] ?? /working directory[^:]*:\s*(\/\S+)/i.exec(text)?.[1];
    if (found) return found;
  }
  return undefined;
}

/** A side call: JSON filled from the requested schema, or a short text. */
function sideReply(body) {
  const config = body.generationConfig ?? {};
  const schema = config.responseJsonSchema ?? config.responseSchema;
  if (schema) return { parts: [{ text: JSON.stringify(fillSchema(schema)) }] };
  if (config.responseMimeType === "application/json") return { parts: [{ text: "{}" }] };
  return { parts: [{ text: "Stand-in summary." }] };
}

function fillSchema(schema, name) {
  if (name && name in KNOWN_FIELDS) return KNOWN_FIELDS[name];
  const type = String(schema?.type ?? "object").toLowerCase();
  if (Array.isArray(schema?.enum) && schema.enum.length) return schema.enum[0];
  if (type === "object") {
    const out = {};
    const props = schema?.properties ?? {};
    for (const key of schema?.required ?? Object.keys(props)) out[key] = fillSchema(props[key] ?? {}, key);
    return out;
  }
  if (type === "array") return [];
  if (type === "integer" || type === "number") return typeof schema.minimum === "number" ? schema.minimum : 0;
  if (type === "boolean") return false;
  return "stand-in";
}

function usage() {
  return { promptTokenCount: 120, candidatesTokenCount: 40, totalTokenCount: 160 };
}

function responseObject(model, parts, finishReason) {
  return {
    candidates: [{ content: { role: "model", parts }, finishReason, index: 0 }],
    usageMetadata: usage(),
    modelVersion: model,
    responseId: `standin_${Date.now().toString(36)}`,
  };
}

/** Server-sent events as `?alt=sse` returns them: text is streamed in two chunks, a function call whole, usage on the last chunk. */
function streamResponse(res, model, parts) {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  const send = (chunk) => res.write(`data: ${JSON.stringify(chunk)}\r\n\r\n`);
  const chunks = [];
  for (const part of parts) {
    if (typeof part.text === "string" && part.text.length > 1) {
      const half = Math.ceil(part.text.length / 2);
      chunks.push([{ text: part.text.slice(0, half) }], [{ text: part.text.slice(half) }]);
    } else chunks.push([part]);
  }
  chunks.forEach((chunkParts, i) => {
    const last = i === chunks.length - 1;
    const candidate = { content: { role: "model", parts: chunkParts }, index: 0 };
    if (last) candidate.finishReason = "STOP";
    send({ candidates: [candidate], ...(last ? { usageMetadata: usage() } : {}), modelVersion: model });
  });
  res.end();
}

/** Google API error body, as the SDK parses it. */
function sendError(res, status, message) {
  const names = { 400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE" };
  sendJson(res, status, { error: { code: status, message, status: names[status] ?? "UNKNOWN" } });
}


