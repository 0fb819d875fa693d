/** The agent CLIs Sortie can run, by name, and the model credentials each one reads. */
import type { AgentName } from "../schema.ts";
import type { AgentCredentials } from "../sandbox/port.ts";
import type { AgentAdapter, ModelProvider } from "./agent.ts";
import { claudeCode } from "./claude-code.ts";
import { codex } from "./codex.ts";
import { gemini } from "./gemini.ts";
import { openCode } from "./opencode.ts";

const ADAPTERS: Record<AgentName, AgentAdapter> = {
  "claude-code": claudeCode,
  codex,
  opencode: openCode,
  gemini,
};

export function adapterFor(name: AgentName): AgentAdapter {
  return ADAPTERS[name];
}

/** Every adapter, for the image's install list and the docs. */
export function allAdapters(): AgentAdapter[] {
  return Object.values(ADAPTERS);
}

const DEFAULT_ORIGINS: Record<ModelProvider, string> = {
  anthropic: "https://api.anthropic.com",
  openai: "https://api.openai.com",
  gemini: "https://generativelanguage.googleapis.com",
};

/**
 * The provider's key and base URL from the Worker's environment, named as the
 * provider's CLIs read them, and the origin the model API is reached at (the
 * only network an analysis run keeps).
 */
export function modelCredentials(env: Cloudflare.Env, provider: ModelProvider): { credentials: AgentCredentials; origin: string } {
  switch (provider) {
    case "anthropic":
      return { credentials: { ANTHROPIC_API_KEY: env.ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL: env.ANTHROPIC_BASE_URL }, origin: originOf(env.ANTHROPIC_BASE_URL, provider) };
    case "openai":
      return { credentials: { OPENAI_API_KEY: env.OPENAI_API_KEY, OPENAI_BASE_URL: env.OPENAI_BASE_URL }, origin: originOf(env.OPENAI_BASE_URL, provider) };
    case "gemini":
      return { credentials: { GEMINI_API_KEY: env.GEMINI_API_KEY, GOOGLE_GEMINI_BASE_URL: env.GEMINI_BASE_URL }, origin: originOf(env.GEMINI_BASE_URL, provider) };
  }
}

function originOf(url: string | undefined, provider: ModelProvider): string {
  return url && URL.canParse(url) ? new URL(url).origin : DEFAULT_ORIGINS[provider];
}
