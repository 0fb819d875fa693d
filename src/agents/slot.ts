/**
 * A slot is one piece of a task's work that holds a sandbox and a fleet
 * grant: a run, the judge, the publisher, or a run's reviewer. It is a tagged
 * union, so every branch on its kind is checked by the compiler; a number
 * exists only on the wire to the fleet and in storage keys (`slotNumber`).
 *
 * @example sandboxIdFor("t1", judgeSlot) // "t1-judge"
 */
export type Slot = { kind: "run"; index: number } | { kind: "judge" } | { kind: "publish" } | { kind: "review"; run: number };

export const runSlot = (index: number): Slot => ({ kind: "run", index });
export const judgeSlot: Slot = { kind: "judge" };
export const publishSlot: Slot = { kind: "publish" };
/** Run `run`'s reviewer. */
export const reviewSlot = (run: number): Slot => ({ kind: "review", run });

// The fleet's rows and the agent's storage keys name a slot by number: runs are 0–99, then these.
const JUDGE = 1000;
const PUBLISH = 2000;
const REVIEW_BASE = 3000;
const MAX_RUNS = 100;

/** The slot's number in the fleet's queue and in storage keys (stable: tasks stored earlier use the same). */
export function slotNumber(slot: Slot): number {
  switch (slot.kind) {
    case "run":
      return slot.index;
    case "judge":
      return JUDGE;
    case "publish":
      return PUBLISH;
    case "review":
      return REVIEW_BASE + slot.run;
  }
}

/** The slot a fleet grant names; null for a number no slot has. */
export function slotFromNumber(n: number): Slot | null {
  if (!Number.isInteger(n) || n < 0) return null;
  if (n < MAX_RUNS) return runSlot(n);
  if (n === JUDGE) return judgeSlot;
  if (n === PUBLISH) return publishSlot;
  if (n >= REVIEW_BASE && n < REVIEW_BASE + MAX_RUNS) return reviewSlot(n - REVIEW_BASE);
  return null;
}

/** A key for maps of slots. */
export const slotKey = (slot: Slot): string => String(slotNumber(slot));

/** The run a slot's events belong to: a run's own and its reviewer's are the run's; the judge's and publisher's the task's. */
export function runOfSlot(slot: Slot): number | null {
  return slot.kind === "run" ? slot.index : slot.kind === "review" ? slot.run : null;
}

/** Sandbox ids are lowercase DNS-safe labels: the task id and the run index, `judge`, `publish` or `review-<run>`. */
export function sandboxIdFor(taskId: string, slot: Slot): string {
  switch (slot.kind) {
    case "run":
      return `${taskId}-${slot.index}`;
    case "judge":
      return `${taskId}-judge`;
    case "publish":
      return `${taskId}-publish`;
    case "review":
      return `${taskId}-${REVIEW_BASE + slot.run}`;
  }
}

/**
 * The fleet's holder of a slot is a task id, or `plan:<id>` for a plan's own sandboxes (its integrator's and its
 * publisher's, src/agents/plan-slots.ts): the fleet grants to, and asks, that plan's agent.
 */
const PLAN_HOLDER = "plan:";
export const planHolder = (planId: string) => `${PLAN_HOLDER}${planId}`;

/** The plan whose own sandboxes `holder` names, or null for a task's. */
export function planOfHolder(holder: string): string | null {
  return holder.startsWith(PLAN_HOLDER) ? holder.slice(PLAN_HOLDER.length) : null;
}
