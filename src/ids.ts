/**
 * A new task id: 8 base-36 characters of time then 10 of randomness, so ids
 * sort roughly by creation and are safe in URLs, DNS labels and sandbox ids.
 */
export function newTaskId(now = Date.now()): string {
  const time = now.toString(36).padStart(9, "0").slice(-9);
  const bytes = crypto.getRandomValues(new Uint8Array(10));
  const random = Array.from(bytes, (b) => (b % 36).toString(36)).join("");
  return `${time}${random}`;
}

/** Whether `id` has the shape `newTaskId` makes; anything else is a 404 without a lookup. */
export function isTaskId(id: string): boolean {
  return /^[a-z0-9]{19}$/.test(id);
}
