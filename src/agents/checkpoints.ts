/**
 * What a task keeps beside its log because it is not history: where each
 * live process's output has been read to (a re-attach after an eviction
 * resumes there), and the follow-up messages waiting for a run's turn to end,
 * whole (the log's `run.message` shows them as the task shows its prompt).
 * Everything else a job reads back is the log's fold (src/events.ts).
 */
import type { StreamOffsets } from "../sandbox/port.ts";
import type { Slot } from "./slot.ts";
import { pendingKey, progressKey, type PendingMessage, type RunProgress } from "./task-state.ts";

export class TaskCheckpoints {
  private readonly kv: SyncKvStorage;
  private readonly afterPendingEvents: (key: string, write: () => void) => void;

  /** `afterPendingEvents`: runs a write in the transaction that stores the events recorded so far. */
  constructor(kv: SyncKvStorage, afterPendingEvents: (key: string, write: () => void) => void) {
    this.kv = kv;
    this.afterPendingEvents = afterPendingEvents;
  }

  /** Where the slot's live process was read to, if it has one. */
  progress(slot: Slot): RunProgress | undefined {
    return this.kv.get<RunProgress>(progressKey(slot));
  }

  /** The slot's process started: nothing of its output read yet. */
  started(slot: Slot, processId: string): void {
    this.kv.put(progressKey(slot), { processId, offsets: { stdout: 0, stderr: 0 } } satisfies RunProgress);
  }

  /** Its output was read to `offsets`: stored with the events made from it, never before them. */
  consumed(slot: Slot, offsets: StreamOffsets): void {
    this.afterPendingEvents(progressKey(slot), () => {
      const progress = this.progress(slot);
      if (progress) this.kv.put(progressKey(slot), { ...progress, offsets });
    });
  }

  /** The slot's process is over: there is nothing to re-attach to. */
  ended(slot: Slot): void {
    this.kv.delete(progressKey(slot));
  }

  /** A message for run `index`, delivered when its turn ends (or when it is reopened). */
  queueMessage(index: number, message: PendingMessage): void {
    this.kv.put(pendingKey(index), [...(this.kv.get<PendingMessage[]>(pendingKey(index)) ?? []), message]);
  }

  /** The next message waiting for run `index`, taken off its queue; null when none waits. */
  takeMessage(index: number): PendingMessage | null {
    const [next, ...rest] = this.kv.get<PendingMessage[]>(pendingKey(index)) ?? [];
    if (!next) return null;
    if (rest.length) this.kv.put(pendingKey(index), rest);
    else this.kv.delete(pendingKey(index));
    return next;
  }
}
