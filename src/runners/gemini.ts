/**
 * Google's Gemini CLI, headless: `gemini --output-format stream-json`, and
 * the parser of its JSONL stream (init, message deltas, tool_use,
 * tool_result, error, result). Recorded streams: test/fixtures/streams/gemini.
 */
import { jsonObjectOf, logLine, num, str, type AgentAdapter, type AgentEvent, type AgentTurnOptions, type StreamParser } from "./agent.ts";
import { cut, summarizeToolInput } from "./text.ts";

/**
 * Tools an analysis run's Gemini CLI does not get. Its approval modes alone do
 * not hold headless (plan mode's exit is auto-approved), and this list merges
 * with, rather than yields to, a repository's own .gemini/settings.json.
 */
const READ_ONLY_EXCLUDED = ["run_shell_command", "write_file", "replace", "enter_plan_mode", "exit_plan_mode", "invoke_agent", "web_fetch", "google_web_search", "activate_skill", "save_memory"];

/** The user settings for one turn: API-key auth (so the base URL is honoured), nothing sent home. */
export function geminiSettings(options: AgentTurnOptions): Record<string, unknown> {
  return {
    security: { auth: { selectedType: "gemini-api-key" } },
    privacy: { usageStatisticsEnabled: false },
    telemetry: { enabled: false },
    general: { enableAutoUpdate: false, enableAutoUpdateNotification: false, maxAttempts: 5 },
    ...(options.readOnly ? { tools: { exclude: READ_ONLY_EXCLUDED } } : {}),
  };
}

/**
 * The command and environment for one turn. The prompt arrives on stdin,
 * closed after it; settings go to the run's HOME; the CLI runs in one process
 * (no relaunch), so stopping it stops it.
 */
export function geminiInvocation(options: AgentTurnOptions): { command: string; env: Record<string, string> } {
  const env: Record<string, string> = {
    ...options.credentials,
    SORTIE_PROMPT: options.prompt,
    SORTIE_GEMINI_SETTINGS: JSON.stringify(geminiSettings(options)),
    // The checkout is the run's own: trusting it is what lets the CLI run headless at all.
    GEMINI_CLI_TRUST_WORKSPACE: "true",
    GEMINI_CLI_NO_RELAUNCH: "true",
  };
  const args = ["gemini --output-format stream-json", options.readOnly ? "--approval-mode default" : "--yolo"];
  if (options.model) {
    args.push('-m "$SORTIE_MODEL"');
    env.SORTIE_MODEL = options.model;
  }
  if (options.resumeSessionId) {
    // Sessions live under $HOME/.gemini: the same HOME and checkout continue one.
    args.push('--resume "$SORTIE_RESUME"');
    env.SORTIE_RESUME = options.resumeSessionId;
  }
  const prepare = 'mkdir -p "$HOME/.gemini" && printf \'%s\' "$SORTIE_GEMINI_SETTINGS" > "$HOME/.gemini/settings.json"';
  return { command: `${prepare} && printf '%s' "$SORTIE_PROMPT" | ${args.join(" ")}`, env };
}

export const gemini: AgentAdapter = {
  name: "gemini",
  install: { package: "@google/gemini-cli", version: "0.61.0" },
  provider: "gemini",
  invocation: geminiInvocation,
  parser: () => new GeminiStreamParser(),
};

/** Reads `--output-format stream-json`: assistant text comes in deltas, gathered into one text event per message. */
export class GeminiStreamParser implements StreamParser {
  private sessionId: string | null = null;
  private text = "";
  private lastText = "";

  line(line: string): AgentEvent[] {
    const message = jsonObjectOf(line);
    if (!message) return [logLine(line)];
    if (message.type === "message" && message.role === "assistant") {
      this.text += str(message.content) ?? "";
      return [];
    }
    const events = this.flushText();
    switch (message.type) {
      case "init":
        this.sessionId = str(message.session_id);
        events.push({ type: "agent.init", data: { agent: "gemini", sessionId: this.sessionId, model: str(message.model), cwd: null, tools: 0 } });
        break;
      case "message":
        // The CLI echoes the user's prompt: Sortie logged it already.
        break;
      case "tool_use": {
        const input = (message.parameters ?? {}) as Record<string, unknown>;
        const json = cut(JSON.stringify(input));
        events.push({ type: "agent.tool_call", data: { id: str(message.tool_id), name: str(message.tool_name) ?? "tool", summary: summarizeToolInput(input), input: json.text, ...(json.truncated ? { truncated: true } : {}) } });
        break;
      }
      case "tool_result": {
        const error = (message.error ?? {}) as Record<string, unknown>;
        const failed = message.status === "error";
        events.push({ type: "agent.tool_result", data: { toolUseId: str(message.tool_id), isError: failed, ...cut(str(message.output) ?? str(error.message) ?? "") } });
        break;
      }
      case "error":
        events.push({ type: "agent.system", data: { agent: "gemini", subtype: str(message.severity) ?? "error", ...cut(str(message.message) ?? "") } });
        break;
      case "result":
        events.push(...this.result(message));
        break;
      default:
        events.push({ type: "agent.other", data: { kind: str(message.type) ?? "unknown" } });
    }
    return events;
  }

  finish(): AgentEvent[] {
    return this.flushText();
  }

  private flushText(): AgentEvent[] {
    if (!this.text) return [];
    const text = this.text;
    this.text = "";
    this.lastText = text;
    return text.trim() ? [{ type: "agent.text", data: cut(text) }] : [];
  }

  private result(message: Record<string, unknown>): AgentEvent[] {
    const stats = (message.stats ?? {}) as Record<string, unknown>;
    const error = (message.error ?? {}) as Record<string, unknown>;
    const models = Object.keys((stats.models ?? {}) as Record<string, unknown>);
    const ok = message.status === "success";
    return [
      {
        type: "agent.usage",
        data: { messageId: `${this.sessionId}#${str(message.timestamp) ?? ""}`, model: models.at(-1) ?? null, inputTokens: num(stats.input_tokens), outputTokens: num(stats.output_tokens), cacheReadTokens: num(stats.cached), cacheWriteTokens: 0 },
      },
      {
        type: "agent.result",
        data: {
          isError: !ok,
          subtype: ok ? "success" : (str(error.type) ?? "error"),
          numTurns: num(stats.tool_calls) + 1,
          // The CLI prices nothing: the run's estimate from the usage stands.
          costUsd: null,
          durationMs: num(stats.duration_ms),
          ...cut(ok ? this.lastText : (str(error.message) ?? "the Gemini CLI failed")),
          sessionId: this.sessionId,
        },
      },
    ];
  }
}
