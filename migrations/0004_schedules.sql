-- Cron schedules: each creates a task at every tick, unless its previous task is still running.
CREATE TABLE schedules (
  id TEXT PRIMARY KEY,
  cron TEXT NOT NULL,
  task TEXT NOT NULL,
  created_by TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  deleted_at INTEGER,
  last_task_id TEXT,
  last_tick_at INTEGER,
  ticks INTEGER NOT NULL DEFAULT 0,
  skipped INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX schedules_live ON schedules (deleted_at, created_at DESC);
