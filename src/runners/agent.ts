/**
 * One headless agent turn, whatever the CLI: an `AgentAdapter` says how to
 * invoke its CLI and how to read its stream; `runAgentTurn` starts the
 * process (or re-attaches to it), feeds each whole output line to the
 * adapter's parser and reports through `AgentTurnContext`, so neither the
 * adapter nor the runner knows who listens.
 */
import type { AgentName } from "../schema.ts";
import type { Confinement, Sandbox, StreamOffsets } from "../sandbox/port.ts";
import { LineSplitter } from "./lines.ts";
import { cut } from "./text.ts";

/** A parsed piece of the agent's stream, ready to be logged as an event. */
export interface AgentEvent {
  type: string;
  data: Record<string, unknown>;
}

/** How a turn ended, in the same words for every CLI (the `agent.result` event's data). */
export interface AgentFinal {
  isError: boolean;
  /** `success`, `error_max_turns`, or the CLI's own word for a failure. */
  subtype: string;
  numTurns: number;
  /** What the CLI says the turn cost; null when it prices nothing (Sortie's estimate stands). */
  costUsd: number | null;
  durationMs: number;
  text: string;
  sessionId: string | null;
}

export interface AgentTurnOptions {
  prompt: string;
  cwd: string;
  maxTurns: number;
  model: string | null;
  /** Continue this session of the same CLI instead of starting a new one. */
  resumeSessionId?: string | null;
  /** The model API's key and base URL, as this CLI's environment variables: given to this one command only. */
  credentials: Record<string, string>;
  /** An `analysis` run: the CLI is told to read and answer, never to edit or run commands that could. */
  readOnly?: boolean;
  /** What Sortie tells the agent besides the task (repository memory): a system prompt where the CLI takes one, else after the prompt. */
  preamble?: string;
}

/** Reads one turn's stdout, line by line; `finish` is called once the process has exited. */
export interface StreamParser {
  line(text: string): AgentEvent[];
  finish?(exitCode: number): AgentEvent[];
}

/**
 * One agent CLI. `invocation` never splices user data into the command: the
 * prompt, model and session travel in environment variables.
 */
export interface AgentAdapter {
  readonly name: AgentName;
  /** The npm package the sandbox image installs, at this pinned version (container/Dockerfile). */
  readonly install: { package: string; version: string };
  /** Which of the orchestrator's model credentials this CLI reads (see credentialsFor). */
  readonly provider: ModelProvider;
  invocation(options: AgentTurnOptions): { command: string; env: Record<string, string> };
  /** The CLI takes `preamble` as a system prompt of its own on every turn; otherwise it goes after the first turn's prompt. */
  readonly takesPreamble?: boolean;
  /** A fresh parser for one turn: parsers may keep state between lines (open tool calls, usage). */
  parser(): StreamParser;
}

export type ModelProvider = "anthropic" | "openai" | "gemini";

export interface AgentTurnContext {
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

export interface AgentTurnResult {
  exitCode: number;
  final: AgentFinal | null;
  sessionId: string | null;
}

/**
 * Starts a turn, or re-attaches to one already running (`attach`), and reads
 * its stream to the end. `confine` runs the CLI as an unprivileged user and,
 * where asked, with the model API as its only network.
 */
export async function runAgentTurn(
  sandbox: Sandbox,
  adapter: AgentAdapter,
  options: AgentTurnOptions,
  context: AgentTurnContext,
  attach?: { processId: string; from: StreamOffsets },
  confine?: Confinement,
): Promise<AgentTurnResult> {
  let processId = attach?.processId;
  if (!processId) {
    const { command, env } = adapter.invocation(withPreamble(adapter, options));
    ({ processId } = await sandbox.startProcess(command, { cwd: options.cwd, env, ...(confine ? { confine } : {}) }));
    context.onProcessStarted(processId);
  }
  const parser = adapter.parser();
  const stdout = new LineSplitter();
  const stderr = new LineSplitter();
  const from = attach?.from ?? { stdout: 0, stderr: 0 };
  const received = { ...from };
  let final: AgentFinal | null = null;
  let sessionId: string | null = null;
  let exitCode = -1;

  // Some CLIs repeat a message's usage on every line of that message: count each message once.
  const counted = new Set<string>();
  const emit = (events: AgentEvent[]) => {
    for (const event of events) {
      if (event.type === "agent.usage" && typeof event.data.messageId === "string") {
        if (counted.has(event.data.messageId)) continue;
        counted.add(event.data.messageId);
      }
      if (event.type === "agent.init" || event.type === "agent.result") sessionId = (event.data.sessionId as string | null) ?? sessionId;
      if (event.type === "agent.result") final = event.data as unknown as AgentFinal;
      context.onEvent(event);
    }
  };
  const take = (line: string, stream: "stdout" | "stderr") => {
    if (!line.trim()) return;
    emit(stream === "stdout" ? parser.line(line) : [{ type: "log", data: { stream, ...cut(line) } }]);
  };

  for await (const output of sandbox.streamProcess(processId, { from, signal: context.signal })) {
    if (output.kind === "exit") {
      exitCode = output.exitCode;
      for (const line of stdout.flush()) take(line, "stdout");
      for (const line of stderr.flush()) take(line, "stderr");
      if (parser.finish) emit(parser.finish(exitCode));
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

/** A CLI without a system prompt of its own reads the preamble after the task, once: a resumed session already has it. */
function withPreamble(adapter: AgentAdapter, options: AgentTurnOptions): AgentTurnOptions {
  if (!options.preamble || adapter.takesPreamble) return options;
  const { preamble, ...rest } = options;
  return options.resumeSessionId ? rest : { ...rest, prompt: `${options.prompt}\n\n---\n${preamble}` };
}

/**
 * Parses a line that should be one JSON object; anything else (a warning the
 * CLI printed, a stray array) comes back null and is logged as text.
 */
export function jsonObjectOf(line: string): Record<string, unknown> | null {
  if (!line.trimStart().startsWith("{")) return null;
  try {
    const parsed: unknown = JSON.parse(line);
    return parsed && typeof parsed === "object" && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** A stdout line that is not the CLI's JSON: kept as a log event. */
export function logLine(line: string): AgentEvent {
  return { type: "log", data: { stream: "stdout", ...cut(line) } };
}

export const str = (value: unknown): string | null => (typeof value === "string" ? value : null);
export const num = (value: unknown): number => (typeof value === "number" && Number.isFinite(value) ? value : 0);
