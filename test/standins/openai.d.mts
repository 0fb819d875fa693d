/** Types for the scripted Responses API stand-in (openai.mjs), so TypeScript tests can start it and point Codex at it. */

import type { ModelStandin, ModelStandinOptions } from "./http.d.mts";

/** One scripted model turn: text, a tool call (optionally with text and a reasoning summary), a delay, or an HTTP failure. */
export interface OpenAIStandinStep {
  text?: string;
  /** A reasoning summary emitted before the step's text or call (Codex shows it as a `reasoning` item). */
  reasoning?: string;
  /** A tool Codex offered: `exec_command`, `write_stdin`, `apply_patch`, ... */
  tool?: string;
  /** JSON arguments of a function tool; for a freeform tool (apply_patch) the string in `patch` (or `input`). */
  input?: Record<string, unknown>;
  delayMs?: number;
  status?: number;
  /** With `status`, fail only the first N requests of this turn; without it, every one. */
  failTimes?: number;
}

/** One Responses API input item (a message, a tool call Codex echoes back, or a tool output). */
export interface OpenAIInputItem {
  type?: string;
  role?: string;
  content?: unknown;
  name?: string;
  call_id?: string;
  arguments?: string;
  input?: string;
  output?: unknown;
  tools?: unknown[];
  [key: string]: unknown;
}

/** A POST /v1/responses body as the stand-in received it. */
export interface OpenAIStandinRequest {
  model?: string;
  stream?: boolean;
  store?: boolean;
  instructions?: string;
  tools?: { type?: string; name?: string; tools?: unknown[] }[];
  input: OpenAIInputItem[];
  client_metadata?: Record<string, string>;
  [key: string]: unknown;
}

export interface OpenAIStandin extends ModelStandin<OpenAIStandinRequest> {
  /** `${url}/v1`: what Codex takes as `model_providers.<id>.base_url`. */
  baseUrl: string;
}

export function startOpenAIStandin(options?: ModelStandinOptions): Promise<OpenAIStandin>;

/** The text the user typed for a request's current turn (Codex adds a trailing newline to a prompt read from stdin). */
export function userPromptOf(body: OpenAIStandinRequest): string;

/** Every tool Codex offered in a request, flattened out of namespaces and `additional_tools` items. */
export function toolsOf(body: OpenAIStandinRequest): { name: string; type?: string; namespace?: string }[];

/** An apply_patch envelope that creates `path` (relative to Codex's working directory) with `content`. */
export function addFilePatch(path: string, content: string): string;
