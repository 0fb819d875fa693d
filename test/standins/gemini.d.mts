/** Types for the scripted Gemini API stand-in (gemini.mjs), so TypeScript tests can start it. */

import type { ModelStandin, ModelStandinOptions } from "./http.d.mts";

/** One scripted model turn: text, a tool call (native Gemini CLI tool name and args), a delay, or an HTTP failure. */
export interface StandinStep {
  text?: string;
  /** e.g. "run_shell_command" ({ command, description? }), "write_file" ({ file_path, content }), "replace", "read_file". */
  tool?: string;
  input?: Record<string, unknown>;
  delayMs?: number;
  status?: number;
  /** With `status`: fail only the first N requests of this turn, then play the step. */
  failTimes?: number;
}

/** A generateContent / streamGenerateContent / countTokens body as the stand-in received it. */
export interface GeminiRequestBody {
  contents: { role?: string; parts?: Record<string, unknown>[] }[];
  systemInstruction?: unknown;
  tools?: { functionDeclarations?: { name?: string }[] }[];
  generationConfig?: Record<string, unknown>;
}

/** One model call the stand-in served. */
export interface GeminiStandinRequest {
  /** "streamGenerateContent", "generateContent" or "countTokens". */
  method: string;
  path: string;
  /** The model named in the path, e.g. "gemini-2.5-flash". */
  model: string;
  /** "agent" for a turn of the coding agent (it offers the file/shell tools), "side" for router/summary/JSON side calls. */
  kind: "agent" | "side" | "countTokens";
  body: GeminiRequestBody;
  at: number;
}

export type GeminiStandin = ModelStandin<GeminiStandinRequest>;

export function startGeminiStandin(options?: ModelStandinOptions): Promise<GeminiStandin>;

/** The text the user typed: the last untagged text part before the model's first answer. */
export function userPromptOf(body: GeminiRequestBody): string;
