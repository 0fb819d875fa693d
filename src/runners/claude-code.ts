/**
 * Claude Code, headless: the command line of one turn and the stream-json
 * parser that turns its output into Sortie's events.
 */
import { jsonObjectOf, logLine, num, str, type AgentAdapter, type AgentEvent, type AgentTurnOptions, type StreamParser } from "./agent.ts";
import { cut, summarizeToolInput } from "./text.ts";

export { summarizeToolInput };

/**
 * The command and environment for one turn. The prompt travels in
 * SORTIE_PROMPT and reaches Claude Code on stdin through `printf '%s'`, so
 * quotes, `$(…)`, backticks, newlines and a leading dash arrive byte for byte;
 * nothing the user wrote is ever parsed by the shell.
 */
export function claudeCodeInvocation(options: AgentTurnOptions): { command: string; env: Record<string, string> } {
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
  if (options.readOnly) {
    // An analysis run answers; the checkout is read-only for it anyway, so a refused edit is the CLI's first line of defence, not the last.
    args.push('--disallowedTools "Edit,Write,MultiEdit,NotebookEdit"');
  }
  if (options.preamble) {
    // A system prompt of Sortie's own, so the user's prompt reaches the model as they wrote it.
    args.push('--append-system-prompt "$SORTIE_PREAMBLE"');
    env.SORTIE_PREAMBLE = options.preamble;
  }
  if (options.resumeSessionId) {
    // --resume continues the same conversation, so a follow-up sees what the agent already did.
    args.push('--resume "$SORTIE_RESUME"');
    env.SORTIE_RESUME = options.resumeSessionId;
  }
  return { command: `printf '%s' "$SORTIE_PROMPT" | ${args.join(" ")}`, env };
}

/** Claude Code behind the adapter interface: the default agent. */
export const claudeCode: AgentAdapter = {
  name: "claude-code",
  install: { package: "@anthropic-ai/claude-code", version: "2.1.330" },
  provider: "anthropic",
  invocation: claudeCodeInvocation,
  takesPreamble: true,
  parser: (): StreamParser => ({ line: parseClaudeStreamLine }),
};

/** Maps one stdout line of `--output-format stream-json` to events; a non-JSON line is a plain log event. */
export function parseClaudeStreamLine(line: string): AgentEvent[] {
  const message = jsonObjectOf(line);
  if (!message) return [logLine(line)];
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
