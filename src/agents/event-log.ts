import { LIMITS } from "../config.ts";
import type { EventInput, TaskEvent } from "../schema.ts";

/**
 * A task's ordered event log, in the agent's own SQLite. `seq` starts at 1
 * and grows by one per event, so a reader that remembers the last `seq` it
 * saw can ask for exactly what it missed. Events are read in pages and never
 * held in memory as a whole.
 */
export class EventLog {
  private last: number;

  constructor(private readonly sql: SqlStorage) {
    sql.exec(`CREATE TABLE IF NOT EXISTS sortie_events (
      seq INTEGER PRIMARY KEY,
      ts INTEGER NOT NULL,
      run INTEGER,
      type TEXT NOT NULL,
      data TEXT NOT NULL
    )`);
    this.last = Number(sql.exec("SELECT COALESCE(MAX(seq), 0) AS last FROM sortie_events").one().last);
  }

  /** The newest `seq`, 0 when the log is empty. */
  get lastSeq(): number {
    return this.last;
  }

  append(input: EventInput): TaskEvent {
    const event: TaskEvent = { seq: this.last + 1, ts: Date.now(), run: input.run, type: input.type, data: input.data };
    this.sql.exec("INSERT INTO sortie_events (seq, ts, run, type, data) VALUES (?, ?, ?, ?, ?)", event.seq, event.ts, event.run, event.type, JSON.stringify(event.data));
    this.last = event.seq;
    return event;
  }

  /** Up to `limit` events with `seq` greater than `after`, oldest first. */
  page(after: number, limit: number = LIMITS.eventPage): TaskEvent[] {
    return this.sql
      .exec<{ seq: number; ts: number; run: number | null; type: string; data: string }>(
        "SELECT seq, ts, run, type, data FROM sortie_events WHERE seq > ? ORDER BY seq LIMIT ?",
        after,
        limit,
      )
      .toArray()
      .map((row) => ({ seq: row.seq, ts: row.ts, run: row.run, type: row.type, data: JSON.parse(row.data) as Record<string, unknown> }));
  }

  /** Every event after `after`, page by page, so a replay of 20,000 events never loads them at once. */
  *since(after: number): Generator<TaskEvent> {
    let cursor = after;
    for (;;) {
      const page = this.page(cursor);
      yield* page;
      if (page.length < LIMITS.eventPage) return;
      cursor = page.at(-1)!.seq;
    }
  }
}
