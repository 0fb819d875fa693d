/**
 * Rough list prices, USD per million tokens, by model family: enough to see a
 * run heading past its budget while it runs. The CLI's own `total_cost_usd`
 * at the end of a turn replaces the estimate.
 */
const PRICES: { family: RegExp; input: number; output: number }[] = [
  { family: /opus/i, input: 5, output: 25 },
  { family: /haiku/i, input: 1, output: 5 },
  { family: /gpt-5[.\d]*-?mini|flash/i, input: 0.3, output: 2.5 },
  { family: /gpt|codex|o\d|gemini/i, input: 1.25, output: 10 },
  { family: /sonnet|.*/i, input: 3, output: 15 },
];

export interface Usage {
  model: string | null;
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
}

/** Estimated cost of one model message. Cache reads cost a tenth of input, cache writes a quarter more. */
export function estimateCostUsd(usage: Usage): number {
  const price = PRICES.find((p) => p.family.test(usage.model ?? ""))!;
  const input = usage.inputTokens + usage.cacheReadTokens * 0.1 + usage.cacheWriteTokens * 1.25;
  return (input * price.input + Math.max(usage.outputTokens, 1) * price.output) / 1_000_000;
}
