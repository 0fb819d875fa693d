/**
 * A task's slots (its runs, its judge, its publisher): the sandbox and the
 * fleet grant each holds, marked in storage while they may exist so that
 * neither outlives a restart of the agent.
 */
import { messageOf } from "../errors.ts";
import { answers } from "../sandbox/files.ts";
import type { Sandbox, SandboxPort } from "../sandbox/port.ts";
import type { EventInput, TaskState } from "../schema.ts";
import { fleetOf } from "./fleet.ts";
import { isSharedSandbox, removeWorktree } from "../sandbox/placement.ts";
import { runOfSlot, sandboxIdFor, slotKey, slotNumber, type Slot } from "./slot.ts";
import { grantKey, sandboxKey } from "./task-state.ts";

/** What the slots borrow from their task agent. */
export interface SlotContext {
  env: Cloudflare.Env;
  kv: SyncKvStorage;
  port(): SandboxPort;
  task(): TaskState;
  record(input: EventInput): void;
}

export class TaskSlots {
  /** Open sandboxes of the slots being driven, for the watchdog's probe. */
  private readonly handles = new Map<string, Sandbox>();
  /** Probes in a row each slot's sandbox failed. */
  private readonly strikes = new Map<string, number>();

  constructor(private readonly ctx: SlotContext) {}

  /** Notes that the fleet granted the slot, until `cleanUp` gives the grant back. */
  granted(slot: Slot): void {
    this.ctx.kv.put(grantKey(slot), true);
  }

  /** Whether the slot's sandbox (or its worktree in a shared one) may still exist. */
  hasSandbox(slot: Slot): boolean {
    return this.ctx.kv.get(sandboxKey(slot)) !== undefined;
  }

  /** The sandbox the slot works in: its own, or `shared` (a repository's workspace sandbox) once named. */
  private sandboxIdOf(slot: Slot): string {
    const stored = this.ctx.kv.get<string | boolean>(sandboxKey(slot));
    return typeof stored === "string" ? stored : sandboxIdFor(this.ctx.task().id, slot);
  }

  async open(slot: Slot, shared?: string): Promise<Sandbox> {
    const id = shared ?? this.sandboxIdOf(slot);
    this.ctx.kv.put(sandboxKey(slot), id);
    const sandbox = await this.ctx.port().open(id);
    this.handles.set(slotKey(slot), sandbox);
    return sandbox;
  }

  /** Destroys the slot's own sandbox; in a shared one, removes only the slot's worktree. */
  async destroy(slot: Slot, open?: Sandbox): Promise<void> {
    if (!open && !this.hasSandbox(slot)) return;
    const id = this.sandboxIdOf(slot);
    try {
      if (isSharedSandbox(id)) await removeWorktree(open ?? (await this.ctx.port().open(id)), this.ctx.task().id, slotNumber(slot));
      else if (open) await open.destroy();
      else await this.ctx.port().destroy(id);
      this.handles.delete(slotKey(slot));
      this.ctx.kv.delete(sandboxKey(slot));
      this.ctx.record({ run: runOfSlot(slot), type: isSharedSandbox(id) ? "sandbox.worktree_removed" : "sandbox.destroyed", data: { sandbox: id } });
    } catch (error) {
      this.ctx.record({ run: runOfSlot(slot), type: "sandbox.destroy_failed", data: { sandbox: id, message: messageOf(error) } });
      // A leftover worktree holds no container of its own: the slot is free, and the next run there clears the tree.
      if (isSharedSandbox(id)) {
        this.handles.delete(slotKey(slot));
        this.ctx.kv.delete(sandboxKey(slot));
      }
    }
  }

  /**
   * Destroys the slot's sandbox if one may exist (unless its workspace is
   * kept for follow-ups: an idle workspace holds no fleet slot), then gives
   * its fleet grant back.
   */
  async cleanUp(slot: Slot, options: { keepWorkspace?: boolean } = {}): Promise<void> {
    if (!options.keepWorkspace) await this.destroy(slot);
    if (!options.keepWorkspace && this.hasSandbox(slot)) return;
    if (this.ctx.kv.get(grantKey(slot))) {
      this.ctx.kv.delete(grantKey(slot));
      const fleet = await fleetOf(this.ctx.env);
      await fleet.release(this.ctx.task().id, slotNumber(slot));
    }
  }

  /** The watchdog's probe: true once the slot's sandbox has failed it twice in a row. */
  async stoppedAnswering(slot: Slot): Promise<boolean> {
    if (await this.answers(slot)) {
      this.strikes.delete(slotKey(slot));
      return false;
    }
    const strikes = (this.strikes.get(slotKey(slot)) ?? 0) + 1;
    this.strikes.set(slotKey(slot), strikes);
    this.ctx.record({ run: runOfSlot(slot), type: "run.watchdog", data: { strikes } });
    return strikes >= 2;
  }

  /** Whether the slot's open sandbox still runs a command; true when this instance holds none. */
  private async answers(slot: Slot): Promise<boolean> {
    const sandbox = this.handles.get(slotKey(slot));
    return sandbox ? answers(sandbox) : true;
  }
}
