/**
 * One Claude Code turn, headless: the command line, and the stream-json
 * parser that turns its output into Sortie's events. The runner borrows a
 * sandbox and reports through `ClaudeTurnContext`, so it never knows who listens.
 */
import { LIMITS } from "../config.ts";
import type { Sandbox, StreamOffsets } from "../sandbox/port.ts";
import { LineSplitter } from "./lines.ts";

export interface ClaudeTurnOptions {
  prompt: string;
  cwd: string;
  maxTurns: number;
  model: string | null;
  /** Continue this Claude Code session instead of starting a new one. */
  resumeSessionId?: string | null;
  /** ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL: given to this one command only. */
  credentials: Record<string, string>;
}

/** A parsed piece of the agent's stream, ready to be logged as an event. */
export interface AgentEvent {
  type: string;
  data: Record<string, unknown>;
}

export interface ClaudeFinal {
  isError: boolean;
  subtype: string;
  numTurns: number;
  costUsd: number;
  durationMs: number;
  text: string;
  sessionId: string | null;
}

export interface ClaudeTurnContext {
  onEvent(event: AgentEvent): void;
  /** Called once the process runs, so an interrupted owner can re-attach to it. */
  onProcessStarted(processId: string): void;
  /**
   * Called as whole lines are consumed, with the characters of each stream
   * taken so far; a re-attach resumes there, so a half-read line is read again whole.
   */
  onOutputConsumed(offsets: StreamOffsets): void;
  signal?: AbortSignal;
}

export interface ClaudeTurnResult {
  exitCode: number;
  final: ClaudeFinal | null;
  sessionId: string | null;
}

/**
 * The command and environment for one turn. The prompt travels in
 * SORTIE_PROMPT and reaches Claude Code on stdin through `printf '%s'`, so
 * quotes, `$(…)`, backticks, newlines and a leading dash arrive byte for byte;
 * nothing the user wrote is ever parsed by the shell.
 */
export function claudeCodeInvocation(options: ClaudeTurnOptions): { command: string; env: Record<string, string> } {
  const args = [
    "claude -p",
    "--output-format stream-json",
    "--verbose",
    // The sandbox is the permission boundary: a throwaway workspace the run owns alone.
    "--dangerously-skip-permissions",
    '--max-turns "$SORTIE_MAX_TURNS"',
  ];
  const env: Record<string, string> = {
    ...options.credentials,
    SORTIE_PROMPT: options.prompt,
    SORTIE_MAX_TURNS: String(options.maxTurns),
    // As root, Claude Code accepts unattended mode only when told it is in a sandbox.
    IS_SANDBOX: "1",
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
  };
  if (options.model) {
    args.push('--model "$SORTIE_MODEL"');
    env.SORTIE_MODEL = options.model;
  }
  if (options.resumeSessionId) {
    // --resume continues the same conversation, so a follow-up sees what the agent already did.
    args.push('--resume "$SORTIE_RESUME"');
    env.SORTIE_RESUME = options.resumeSessionId;
  }
  return { command: `printf '%s' "$SORTIE_PROMPT" | ${args.join(" ")}`, env };
}

/**
 * Starts a turn, or re-attaches to one already running (`attach`), and reads
 * its stream to the end.
 */
export async function runClaudeTurn(
  sandbox: Sandbox,
  options: ClaudeTurnOptions,
  context: ClaudeTurnContext,
  attach?: { processId: string; from: StreamOffsets },
): Promise<ClaudeTurnResult> {
  let processId = attach?.processId;
  if (!processId) {
    const { command, env } = claudeCodeInvocation(options);
    ({ processId } = await sandbox.startProcess(command, { cwd: options.cwd, env }));
    context.onProcessStarted(processId);
  }
  const stdout = new LineSplitter();
  const stderr = new LineSplitter();
  const from = attach?.from ?? { stdout: 0, stderr: 0 };
  const received = { ...from };
  let final: ClaudeFinal | null = null;
  let sessionId: string | null = null;
  let exitCode = -1;

  // Claude Code repeats a message's usage on every line of that message: count each message once.
  const counted = new Set<string>();
  const take = (line: string, stream: "stdout" | "stderr") => {
    if (!line.trim()) return;
    const events = stream === "stdout" ? parseClaudeStreamLine(line) : [{ type: "log", data: { stream, text: cut(line).text } }];
    for (const event of events) {
      if (event.type === "agent.usage") {
        const id = String(event.data.messageId);
        if (counted.has(id)) continue;
        counted.add(id);
      }
      if (event.type === "agent.init" || event.type === "agent.result") sessionId = (event.data.sessionId as string | null) ?? sessionId;
      if (event.type === "agent.result") final = event.data as unknown as ClaudeFinal;
      context.onEvent(event);
    }
  };

  for await (const output of sandbox.streamProcess(processId, { from, signal: context.signal })) {
    if (output.kind === "exit") {
      exitCode = output.exitCode;
      for (const line of stdout.flush()) take(line, "stdout");
      for (const line of stderr.flush()) take(line, "stderr");
      break;
    }
    const splitter = output.kind === "stdout" ? stdout : stderr;
    received[output.kind] += output.data.length;
    const lines = splitter.push(output.data);
    for (const line of lines) take(line, output.kind);
    if (lines.length > 0) context.onOutputConsumed({ stdout: received.stdout - stdout.pending, stderr: received.stderr - stderr.pending });
  }
  return { exitCode, final, sessionId };
}

/** Maps one stdout line of `--output-format stream-json` to events; a non-JSON line is a plain log event. */
export function parseClaudeStreamLine(line: string): AgentEvent[] {
  let message: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(line);
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("not an object");
    message = parsed as Record<string, unknown>;
  } catch {
    return [{ type: "log", data: { stream: "stdout", ...cut(line) } }];
  }
  switch (message.type) {
    case "system":
      if (message.subtype === "init") {
        return [{
          type: "agent.init",
          data: { sessionId: str(message.session_id), model: str(message.model), cwd: str(message.cwd), tools: Array.isArray(message.tools) ? message.tools.length : 0 },
        }];
      }
      if (message.subtype === "api_retry") {
        return [{
          type: "agent.retry",
          data: { attempt: num(message.attempt), maxRetries: num(message.max_retries), delayMs: num(message.retry_delay_ms), error: str(message.error) ?? str(message.error_status) },
        }];
      }
      return [{ type: "agent.system", data: { subtype: str(message.subtype) } }];
    case "assistant":
      return [...contentOf(message).flatMap(assistantBlock), ...usageOf(message)];
    case "user":
      return contentOf(message).flatMap(toolResultBlock);
    case "result":
      return [{
        type: "agent.result",
        data: {
          isError: message.is_error === true,
          subtype: str(message.subtype) ?? "unknown",
          numTurns: num(message.num_turns),
          costUsd: num(message.total_cost_usd),
          durationMs: num(message.duration_ms),
          text: cut(str(message.result) ?? "").text,
          sessionId: str(message.session_id),
        },
      }];
    default:
      return [{ type: "agent.other", data: { kind: str(message.type) ?? "unknown" } }];
  }
}

/** The token counts one model message reports, so spending can be watched while the turn runs. */
function usageOf(message: Record<string, unknown>): AgentEvent[] {
  const inner = message.message as { id?: unknown; model?: unknown; usage?: Record<string, unknown> } | undefined;
  const usage = inner?.usage;
  if (!usage || typeof inner?.id !== "string") return [];
  return [{
    type: "agent.usage",
    data: {
      messageId: inner.id,
      model: str(inner.model),
      inputTokens: num(usage.input_tokens),
      outputTokens: num(usage.output_tokens),
      cacheReadTokens: num(usage.cache_read_input_tokens),
      cacheWriteTokens: num(usage.cache_creation_input_tokens),
    },
  }];
}

function contentOf(message: Record<string, unknown>): Record<string, unknown>[] {
  const inner = message.message as { content?: unknown } | undefined;
  const content = inner?.content;
  if (typeof content === "string") return [{ type: "text", text: content }];
  return Array.isArray(content) ? (content.filter((b) => b && typeof b === "object") as Record<string, unknown>[]) : [];
}

function assistantBlock(block: Record<string, unknown>): AgentEvent[] {
  if (block.type === "text" && typeof block.text === "string" && block.text.trim()) {
    return [{ type: "agent.text", data: cut(block.text) }];
  }
  if (block.type === "tool_use") {
    const input = (block.input ?? {}) as Record<string, unknown>;
    const json = cut(JSON.stringify(input));
    return [{
      type: "agent.tool_call",
      data: { id: str(block.id), name: str(block.name) ?? "tool", summary: summarizeToolInput(input), input: json.text, ...(json.truncated ? { truncated: true } : {}) },
    }];
  }
  return [];
}

function toolResultBlock(block: Record<string, unknown>): AgentEvent[] {
  if (block.type !== "tool_result") return [];
  const content = block.content;
  const text =
    typeof content === "string"
      ? content
      : Array.isArray(content)
        ? content.map((part) => (part && typeof part === "object" && "text" in part ? String(part.text) : "")).join("\n")
        : "";
  return [{ type: "agent.tool_result", data: { toolUseId: str(block.tool_use_id), isError: block.is_error === true, ...cut(text) } }];
}

/** One line that says what a tool call does: the command, the file, or the pattern. */
export function summarizeToolInput(input: Record<string, unknown>): string {
  for (const key of ["command", "file_path", "path", "pattern", "url", "query", "description", "prompt"]) {
    const value = input[key];
    if (typeof value === "string" && value) return oneLine(value);
  }
  const first = Object.values(input).find((value) => typeof value === "string");
  return typeof first === "string" ? oneLine(first) : "";
}

function oneLine(text: string): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > 200 ? `${line.slice(0, 199)}…` : line;
}

/** Keeps event text bounded; says when it cut. */
export function cut(text: string): { text: string; truncated?: true } {
  if (text.length <= LIMITS.eventTextChars) return { text };
  return { text: text.slice(0, LIMITS.eventTextChars), truncated: true };
}

const str = (value: unknown): string | null => (typeof value === "string" ? value : null);
const num = (value: unknown): number => (typeof value === "number" && Number.isFinite(value) ? value : 0);
