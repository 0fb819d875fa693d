/** Types for the scripted Messages API stand-in (anthropic.mjs), so TypeScript tests can start it. */

import type { ModelStandin, ModelStandinOptions } from "./http.d.mts";

/** One scripted model turn: text, a tool call, a delay, or an HTTP failure. */
export interface StandinStep {
  text?: string;
  tool?: string;
  input?: Record<string, unknown>;
  delayMs?: number;
  status?: number;
}

/** A /v1/messages request body as the stand-in received it. */
export interface StandinRequest {
  model?: string;
  stream?: boolean;
  system?: unknown;
  tools?: { name?: string }[];
  messages: { role: string; content: unknown }[];
}

export type AnthropicStandin = ModelStandin<StandinRequest>;

export function startAnthropicStandin(options?: ModelStandinOptions): Promise<AnthropicStandin>;

/** The text the user typed in a request's first message. */
export function userPromptOf(body: StandinRequest): string;
