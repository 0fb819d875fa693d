import { LIMITS } from "../config.ts";
import { parseEvent, type TaskEvent } from "../events.ts";
import type { EventInput } from "../schema.ts";

/** What the log borrows from its agent: one transaction for each batch, and who hears of a stored batch. */
export interface EventLogHooks {
  transaction(write: () => void): void;
  /** The events of one batch, once stored, oldest first. */
  stored(events: TaskEvent[]): void;
}

/**
 * A task's ordered event log, in the agent's own SQLite. `seq` starts at 1
 * and grows by one per event, so a reader that remembers the last `seq` it
 * saw can ask for exactly what it missed. Events are read in pages and never
 * held in memory as a whole.
 *
 * Appends are batched: an event gets its `seq` and `ts` at once, and the
 * events appended within LIMITS.eventBatchMs (or LIMITS.eventBatchMax of
 * them) are written in one transaction and handed on together. Every read
 * stores what is pending first, so a reader never misses an appended event.
 */
export class EventLog {
  private last: number;
  private pending: TaskEvent[] = [];
  /** Writes that must commit with the pending events, never before them (latest per key). */
  private readonly checkpoints = new Map<string, () => void>();
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly sql: SqlStorage,
    private readonly hooks: EventLogHooks,
  ) {
    this.last = Number(sql.exec("SELECT COALESCE(MAX(seq), 0) AS last FROM sortie_events").one().last);
  }

  /** The newest `seq` appended, 0 when the log is empty. */
  get lastSeq(): number {
    return this.last;
  }

  /** The newest `seq` stored (appended events wait for the batch). */
  get storedSeq(): number {
    return this.last - this.pending.length;
  }

  /** Gives the event its `seq` and `ts`; an event the union does not declare (src/events.ts) is refused, and nothing is appended. */
  append(input: EventInput): TaskEvent {
    const event = parseEvent({ seq: this.last + 1, ts: Date.now(), run: input.run, type: input.type, data: input.data });
    this.last = event.seq;
    this.pending.push(event);
    if (this.pending.length >= LIMITS.eventBatchMax) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), LIMITS.eventBatchMs);
    return event;
  }

  /**
   * Runs `write` in the transaction that stores the pending events, or now
   * when nothing is pending: a record of how far the agent's output was read
   * never gets ahead of the events made from it.
   */
  afterPending(key: string, write: () => void): void {
    if (this.pending.length === 0) write();
    else this.checkpoints.set(key, write);
  }

  /** Stores the pending events in one transaction and hands them on. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.length === 0) return;
    const batch = this.pending;
    const writes = [...this.checkpoints.values()];
    this.pending = [];
    this.checkpoints.clear();
    this.hooks.transaction(() => {
      for (const event of batch) {
        this.sql.exec("INSERT INTO sortie_events (seq, ts, run, type, data) VALUES (?, ?, ?, ?, ?)", event.seq, event.ts, event.run, event.type, JSON.stringify(event.data));
      }
      for (const write of writes) write();
    });
    this.hooks.stored(batch);
  }

  /** Up to `limit` events with `seq` greater than `after`, oldest first. */
  page(after: number, limit: number = LIMITS.eventPage): TaskEvent[] {
    this.flush();
    return this.storedPage(after, limit);
  }

  /** Like `page`, of what is stored already: for a reader that has just flushed. */
  storedPage(after: number, limit: number = LIMITS.eventPage): TaskEvent[] {
    return this.sql
      .exec<{ seq: number; ts: number; run: number | null; type: string; data: string }>(
        "SELECT seq, ts, run, type, data FROM sortie_events WHERE seq > ? ORDER BY seq LIMIT ?",
        after,
        limit,
      )
      .toArray()
      // Stored only after parseEvent accepted it.
      .map((row) => ({ seq: row.seq, ts: row.ts, run: row.run, type: row.type, data: JSON.parse(row.data) }) as TaskEvent);
  }
}

/** The log's table (in the schema of each agent that keeps one: src/store/agent-schemas.ts). */
export const EVENTS_TABLE = `CREATE TABLE IF NOT EXISTS sortie_events (
  seq INTEGER PRIMARY KEY,
  ts INTEGER NOT NULL,
  run INTEGER,
  type TEXT NOT NULL,
  data TEXT NOT NULL
)`;
