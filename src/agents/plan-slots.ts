/**
 * A plan's own sandboxes (its integrator's, its publisher's) under the
 * fleet's caps: each waits in the fleet's queue like a task's run, as holder
 * `plan:<id>`, and gives its slot back once its sandbox is gone. The fleet
 * grants to the plan agent (`grantRun`) and its sweeper asks it whether a
 * slot is still held (`holdsSlot`), as it asks a task agent.
 */
import { messageOf } from "../errors.ts";
import { fleetOf } from "./fleet.ts";
import { planHolder } from "./slot.ts";

/** A plan's slots, by what holds them. */
export const PLAN_SLOT = { integrator: 0, publisher: 1 } as const;
export type PlanSlotName = keyof typeof PLAN_SLOT;

const grantKey = (slot: number) => `sortie:plan-grant:${slot}`;

export interface PlanSlotContext {
  env: Cloudflare.Env;
  kv: SyncKvStorage;
  planId(): string;
  creator(): string;
  record(type: string, data: Record<string, unknown>): void;
}

export class PlanSlots {
  /** Slots this instance waits for, and what to wake when the fleet grants one. */
  private readonly waiting = new Map<number, () => void>();
  /** Slots this instance holds now: a grant kept in storage from before a restart is not one of them. */
  private readonly working = new Set<number>();

  constructor(private readonly ctx: PlanSlotContext) {}

  /** The fleet's grant of `slot`: taken if this instance waits for it, refused otherwise (the fleet then gives it to the next). */
  granted(slot: number): boolean {
    const wake = this.waiting.get(slot);
    if (!wake) return false;
    this.ctx.kv.put(grantKey(slot), true);
    this.working.add(slot);
    this.waiting.delete(slot);
    wake();
    return true;
  }

  /**
   * Whether `slot`'s grant is still held: only while this instance works under it. After a restart the fleet's
   * sweeper hears false and gives the slot to the next in the queue.
   */
  holds(slot: number): boolean {
    return this.working.has(slot);
  }

  /** Waits for the fleet to grant `name`'s slot, does `work`, and gives the slot back, whatever happened. */
  async hold<T>(name: PlanSlotName, signal: AbortSignal, work: () => Promise<T>): Promise<T> {
    const slot = PLAN_SLOT[name];
    const holder = planHolder(this.ctx.planId());
    const fleet = await fleetOf(this.ctx.env);
    // A grant kept from before this instance restarted belongs to work that is lost: it goes back first.
    if (this.ctx.kv.get(grantKey(slot)) === true) {
      this.ctx.kv.delete(grantKey(slot));
      await fleet.release(holder, slot);
    }
    let cancelled: (reason: Error) => void = () => {};
    const granted = new Promise<void>((resolve, reject) => {
      this.waiting.set(slot, resolve);
      cancelled = reject;
    });
    // Awaited below, or not at all if the enqueue fails first: a rejection is never left unhandled.
    granted.catch(() => {});
    const onAbort = () => cancelled(new Error(`the plan stopped while its ${name} waited for a sandbox`));
    signal.addEventListener("abort", onAbort, { once: true });
    // Stopped before the listener was there (while the fleet was looked up): it would never fire.
    if (signal.aborted) onAbort();
    try {
      const position = (await fleet.enqueue(holder, [slot], this.ctx.creator()))[slot];
      if (position !== undefined) this.ctx.record("plan.queued", { slot: name, position });
      await granted;
      return await work();
    } finally {
      signal.removeEventListener("abort", onAbort);
      this.waiting.delete(slot);
      this.working.delete(slot);
      this.ctx.kv.delete(grantKey(slot));
      await fleet.release(holder, slot).catch((error: unknown) => this.ctx.record("plan.error", { message: `could not give the ${name}'s fleet slot back: ${messageOf(error)}` }));
    }
  }
}
