/** Exponential backoff with full jitter: attempt 0 waits up to `base`, then 2×, 4×… */
export function backoffMs(attempt: number, baseMs: number, random = Math.random): number {
  const ceiling = baseMs * 2 ** attempt;
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
