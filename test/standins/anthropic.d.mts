/** Types for the scripted Messages API stand-in (anthropic.mjs), so TypeScript tests can start it. */

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

export interface AnthropicStandin {
  url: string;
  port: number;
  /** Every /v1/messages body received, in order. */
  requests: StandinRequest[];
  /** The first user prompt of each agent conversation the stand-in has seen. */
  prompts(): string[];
  /** Makes the next `count` message calls answer with `status`. */
  failNext(status: number, count: number): void;
  close(): Promise<void>;
}

export function startAnthropicStandin(options?: {
  port?: number;
  host?: string;
  failures?: { status: number; count: number };
}): Promise<AnthropicStandin>;

/** The text the user typed in a request's first message. */
export function userPromptOf(body: StandinRequest): string;
