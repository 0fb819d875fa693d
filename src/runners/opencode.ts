/**
 * OpenCode, headless: `opencode run --format json` against the Anthropic
 * Messages API, and the parser of its JSONL stream (step_start, text,
 * tool_use, step_finish, error). Recorded streams: test/fixtures/streams/opencode.
 */
import { jsonObjectOf, logLine, num, str, type AgentAdapter, type AgentEvent, type AgentTurnOptions, type StreamParser } from "./agent.ts";
import { cut, summarizeToolInput } from "./text.ts";

/** The model OpenCode runs when the task names none. */
const DEFAULT_MODEL = "claude-sonnet-4-5";

/**
 * OpenCode's configuration for one turn: the Anthropic provider at the
 * orchestrator's endpoint, no snapshots, updates or sharing, and permissions
 * that never ask (a question nobody answers ends a headless run).
 */
export function openCodeConfig(options: AgentTurnOptions): Record<string, unknown> {
  const model = `anthropic/${options.model ?? DEFAULT_MODEL}`;
  const base = options.credentials.ANTHROPIC_BASE_URL || "https://api.anthropic.com";
  return {
    model,
    small_model: model,
    autoupdate: false,
    share: "disabled",
    snapshot: false,
    provider: { anthropic: { options: { baseURL: `${base.replace(/\/+$/, "")}/v1`, apiKey: "{env:ANTHROPIC_API_KEY}" } } },
    permission: options.readOnly
      ? { edit: "deny", bash: "deny", webfetch: "deny", external_directory: "deny", question: "deny" }
      : { edit: "allow", bash: "allow", webfetch: "deny", external_directory: "deny", question: "deny" },
  };
}

/**
 * The command and environment for one turn. Configuration and data live in
 * the run's HOME; the project's own opencode.json is ignored (it could grant
 * itself permissions); the plugin install OpenCode would otherwise start in
 * the background is marked done. The prompt arrives on stdin, closed after it.
 */
export function openCodeInvocation(options: AgentTurnOptions): { command: string; env: Record<string, string> } {
  const env: Record<string, string> = {
    ...options.credentials,
    SORTIE_PROMPT: options.prompt,
    SORTIE_OPENCODE_CONFIG: JSON.stringify(openCodeConfig(options)),
    OPENCODE_DISABLE_PROJECT_CONFIG: "1",
    OPENCODE_DISABLE_MODELS_FETCH: "1",
    OPENCODE_DISABLE_AUTOUPDATE: "1",
    OPENCODE_DISABLE_DEFAULT_PLUGINS: "1",
    OPENCODE_DISABLE_LSP_DOWNLOAD: "1",
    OPENCODE_DISABLE_SHARE: "1",
    OPENCODE_DISABLE_CLAUDE_CODE: "1",
    OPENCODE_DISABLE_EXTERNAL_SKILLS: "1",
    OPENCODE_DISABLE_EMBEDDED_WEB_UI: "1",
  };
  const prepare = [
    'export XDG_CONFIG_HOME="$HOME/.config" XDG_DATA_HOME="$HOME/.local/share" XDG_CACHE_HOME="$HOME/.cache" XDG_STATE_HOME="$HOME/.local/state"',
    'mkdir -p "$XDG_CONFIG_HOME/opencode/node_modules" "$XDG_DATA_HOME" "$XDG_CACHE_HOME" "$XDG_STATE_HOME"',
    `printf '%s' '{"packages":{"":{"dependencies":{"@opencode-ai/plugin":"${openCode.install.version}"}}}}' > "$XDG_CONFIG_HOME/opencode/package-lock.json"`,
    'printf \'%s\' "$SORTIE_OPENCODE_CONFIG" > "$XDG_CONFIG_HOME/opencode/sortie.json"',
    'export OPENCODE_CONFIG="$XDG_CONFIG_HOME/opencode/sortie.json"',
  ];
  let run = "opencode run --format json --title sortie";
  if (options.resumeSessionId) {
    // The session lives in XDG_DATA_HOME: the same HOME continues it.
    run += ' --session "$SORTIE_RESUME"';
    env.SORTIE_RESUME = options.resumeSessionId;
  }
  return { command: `${prepare.join(" && ")} && printf '%s' "$SORTIE_PROMPT" | ${run}`, env };
}

export const openCode: AgentAdapter = {
  name: "opencode",
  install: { package: "opencode-ai", version: "1.18.33" },
  provider: "anthropic",
  invocation: openCodeInvocation,
  parser: () => new OpenCodeStreamParser(),
};

/**
 * Reads `opencode run --format json`. No line marks the end of a run: the
 * result is made at exit, from the last step (reason `stop`), the texts and
 * any error line.
 */
export class OpenCodeStreamParser implements StreamParser {
  private sessionId: string | null = null;
  private lastText = "";
  private steps = 0;
  private costUsd = 0;
  private stopped = false;
  private error: string | null = null;
  private readonly startedAt = Date.now();

  line(line: string): AgentEvent[] {
    const message = jsonObjectOf(line);
    if (!message) return [logLine(line)];
    const events: AgentEvent[] = [];
    const session = str(message.sessionID);
    if (session && !this.sessionId) {
      this.sessionId = session;
      events.push({ type: "agent.init", data: { agent: "opencode", sessionId: session, model: null, cwd: null, tools: 0 } });
    }
    const part = (message.part ?? {}) as Record<string, unknown>;
    switch (message.type) {
      case "step_start":
        break;
      case "text": {
        const text = str(part.text) ?? "";
        this.lastText = text;
        if (text.trim()) events.push({ type: "agent.text", data: cut(text) });
        break;
      }
      case "reasoning":
        if (str(part.text)?.trim()) events.push({ type: "agent.reasoning", data: cut(str(part.text)!) });
        break;
      case "tool_use": {
        // Call and result arrive together, once the tool has finished.
        const state = (part.state ?? {}) as Record<string, unknown>;
        const input = (state.input ?? {}) as Record<string, unknown>;
        const id = str(part.callID);
        const json = cut(JSON.stringify(input));
        events.push({ type: "agent.tool_call", data: { id, name: str(part.tool) ?? "tool", summary: summarizeToolInput(input), input: json.text, ...(json.truncated ? { truncated: true } : {}) } });
        // OpenCode answers a call of a tool it does not offer (a denied one) through its `invalid` tool.
        const failed = state.status === "error" || part.tool === "invalid";
        events.push({ type: "agent.tool_result", data: { toolUseId: id, isError: failed, ...cut(str(state.error) ?? str(state.output) ?? "") } });
        break;
      }
      case "step_finish": {
        this.steps += 1;
        this.costUsd += num(part.cost);
        if (part.reason === "stop") this.stopped = true;
        const tokens = (part.tokens ?? {}) as Record<string, unknown>;
        const cache = (tokens.cache ?? {}) as Record<string, unknown>;
        events.push({
          type: "agent.usage",
          data: { messageId: str(part.messageID) ?? str(part.id) ?? `step-${this.steps}`, model: null, inputTokens: num(tokens.input), outputTokens: num(tokens.output), cacheReadTokens: num(cache.read), cacheWriteTokens: num(cache.write) },
        });
        break;
      }
      case "error": {
        const error = (message.error ?? {}) as Record<string, unknown>;
        const data = (error.data ?? {}) as Record<string, unknown>;
        this.error = `${str(error.name) ?? "Error"}: ${str(data.message) ?? "unknown"}${typeof data.statusCode === "number" ? ` (HTTP ${data.statusCode})` : ""}`;
        events.push({ type: "agent.system", data: { agent: "opencode", subtype: "error", ...cut(this.error) } });
        break;
      }
      default:
        events.push({ type: "agent.other", data: { kind: str(message.type) ?? "unknown" } });
    }
    return events;
  }

  finish(exitCode: number): AgentEvent[] {
    const isError = exitCode !== 0 || this.error !== null || !this.stopped;
    const text = this.error ?? (this.stopped ? this.lastText : this.lastText || "OpenCode stopped before its last step (a refused permission?)");
    return [{
      type: "agent.result",
      data: { isError, subtype: isError ? "error" : "success", numTurns: this.steps, costUsd: this.costUsd, durationMs: Date.now() - this.startedAt, ...cut(text), sessionId: this.sessionId },
    }];
  }
}
