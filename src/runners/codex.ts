/**
 * OpenAI's Codex CLI, headless: `codex exec --json`, and the parser of its
 * JSONL stream (thread.started, item.started / item.completed, turn.completed,
 * turn.failed). Recorded streams: test/fixtures/streams/codex.
 */
import { jsonObjectOf, logLine, num, str, type AgentAdapter, type AgentEvent, type AgentTurnOptions, type StreamParser } from "./agent.ts";
import { cut, summarizeToolInput } from "./text.ts";

/**
 * The command and environment for one turn. Codex ignores OPENAI_BASE_URL,
 * so the endpoint is a provider of Sortie's own (`-c model_providers.sortie…`),
 * its URL in a variable like the prompt; stdin carries the prompt and is
 * then closed, which Codex waits for. Analytics and plugins are off, so it
 * talks to the model API and nothing else.
 */
export function codexInvocation(options: AgentTurnOptions): { command: string; env: Record<string, string> } {
  const args = [
    "codex exec --json --skip-git-repo-check",
    "-c model_provider=sortie",
    "-c model_providers.sortie.name=sortie",
    '-c "model_providers.sortie.base_url=$SORTIE_OPENAI_BASE_URL"',
    "-c model_providers.sortie.env_key=OPENAI_API_KEY",
    "-c model_providers.sortie.wire_api=responses",
    "-c model_providers.sortie.supports_websockets=false",
    "-c analytics.enabled=false",
    "--disable plugins",
    // Codex's own sandbox (bubblewrap) inside Sortie's: read-only for an analysis run; otherwise the sandbox is the boundary.
    options.readOnly ? "-s read-only" : "-s danger-full-access",
  ];
  const env: Record<string, string> = {
    ...options.credentials,
    SORTIE_PROMPT: options.prompt,
    SORTIE_OPENAI_BASE_URL: options.credentials.OPENAI_BASE_URL || "https://api.openai.com/v1",
  };
  if (options.model) {
    args.push('-m "$SORTIE_MODEL"');
    env.SORTIE_MODEL = options.model;
  }
  if (options.resumeSessionId) {
    // `resume` takes the thread id; the sandbox flag stays before it, or the turn runs read-only.
    args.push('resume "$SORTIE_RESUME"');
    env.SORTIE_RESUME = options.resumeSessionId;
  }
  args.push("-");
  // Codex keeps its sessions (for resume) in CODEX_HOME, which must exist.
  return { command: `mkdir -p "$HOME/.codex" && printf '%s' "$SORTIE_PROMPT" | CODEX_HOME="$HOME/.codex" ${args.join(" ")}`, env };
}

export const codex: AgentAdapter = {
  name: "codex",
  install: { package: "@openai/codex", version: "0.171.0" },
  provider: "openai",
  invocation: codexInvocation,
  parser: () => new CodexStreamParser(),
};

/** Reads `codex exec --json`: its final answer is the last agent message of the turn. */
export class CodexStreamParser implements StreamParser {
  private threadId: string | null = null;
  private lastMessage = "";
  private turns = 0;
  private readonly startedAt = Date.now();

  line(line: string): AgentEvent[] {
    const message = jsonObjectOf(line);
    if (!message) return [logLine(line)];
    switch (message.type) {
      case "thread.started":
        this.threadId = str(message.thread_id);
        return [{ type: "agent.init", data: { agent: "codex", sessionId: this.threadId, model: null, cwd: null, tools: 0 } }];
      case "turn.started":
        return [];
      case "item.started":
      case "item.completed":
        return this.item(message.type, (message.item ?? {}) as Record<string, unknown>);
      case "error": {
        // "Reconnecting... 2/5 (…)" is Codex retrying the model API; anything else is its warning.
        const text = str(message.message) ?? "";
        const retry = /^Reconnecting\.\.\. (\d+)\/(\d+)(?: \((.*)\))?/.exec(text);
        if (retry) return [{ type: "agent.retry", data: { attempt: Number(retry[1]), maxRetries: Number(retry[2]), delayMs: 0, error: retry[3] ?? text } }];
        return [{ type: "agent.system", data: { agent: "codex", subtype: "error", ...cut(text) } }];
      }
      case "turn.completed": {
        this.turns += 1;
        const usage = (message.usage ?? {}) as Record<string, unknown>;
        return [
          {
            type: "agent.usage",
            // Codex reports the thread's running total: the run turns it into this turn's share.
            data: { messageId: `${this.threadId}#${this.turns}`, model: null, cumulative: true, inputTokens: num(usage.input_tokens), outputTokens: num(usage.output_tokens), cacheReadTokens: num(usage.cached_input_tokens), cacheWriteTokens: num(usage.cache_write_input_tokens) },
          },
          this.result(false, "success", this.lastMessage),
        ];
      }
      case "turn.failed": {
        const error = (message.error ?? {}) as Record<string, unknown>;
        return [this.result(true, "error", str(error.message) ?? "the turn failed")];
      }
      default:
        return [{ type: "agent.other", data: { kind: str(message.type) ?? "unknown" } }];
    }
  }

  private item(phase: "item.started" | "item.completed", item: Record<string, unknown>): AgentEvent[] {
    const id = str(item.id);
    switch (item.type) {
      case "agent_message": {
        const text = str(item.text) ?? "";
        this.lastMessage = text;
        return text.trim() ? [{ type: "agent.text", data: cut(text) }] : [];
      }
      case "reasoning":
        return phase === "item.completed" && str(item.text)?.trim() ? [{ type: "agent.reasoning", data: cut(str(item.text)!) }] : [];
      case "command_execution": {
        const command = unwrapShell(str(item.command) ?? "");
        if (phase === "item.started") return [toolCall(id, "shell", { command })];
        const failed = item.status === "failed" || (typeof item.exit_code === "number" && item.exit_code !== 0);
        return [{ type: "agent.tool_result", data: { toolUseId: id, isError: failed, ...cut(str(item.aggregated_output) ?? "") } }];
      }
      case "file_change": {
        const changes = Array.isArray(item.changes) ? (item.changes as Record<string, unknown>[]) : [];
        const paths = changes.map((change) => `${str(change.kind) ?? "change"} ${str(change.path) ?? "?"}`);
        if (phase === "item.started") return [toolCall(id, "apply_patch", { path: paths.join(", ") })];
        return [{ type: "agent.tool_result", data: { toolUseId: id, isError: item.status === "failed", text: paths.join("\n") } }];
      }
      case "error":
        return [{ type: "agent.system", data: { agent: "codex", subtype: "warning", ...cut(str(item.message) ?? "") } }];
      default: {
        // MCP calls, web searches, plans: shown as a tool call and its end.
        const kind = str(item.type) ?? "item";
        if (phase === "item.started") return [toolCall(id, kind, item)];
        return [{ type: "agent.tool_result", data: { toolUseId: id, isError: item.status === "failed", text: "" } }];
      }
    }
  }

  private result(isError: boolean, subtype: string, text: string): AgentEvent {
    return {
      type: "agent.result",
      // Codex prices nothing itself: a null cost keeps the run's estimate from the usage.
      data: { isError, subtype, numTurns: this.turns, costUsd: null, durationMs: Date.now() - this.startedAt, ...cut(text), sessionId: this.threadId },
    };
  }
}

function toolCall(id: string | null, name: string, input: Record<string, unknown>): AgentEvent {
  const json = cut(JSON.stringify(input));
  return { type: "agent.tool_call", data: { id, name, summary: summarizeToolInput(input), input: json.text, ...(json.truncated ? { truncated: true } : {}) } };
}

/** `/bin/bash -lc 'ls -a'` → `ls -a`: the command the model asked for. */
function unwrapShell(command: string): string {
  const wrapped = /^\/bin\/(?:ba)?sh -lc '([\s\S]*)'$/.exec(command);
  return wrapped ? wrapped[1]!.replace(/'\\''/g, "'") : command;
}
