-- Idempotency-Key on POST /api/tasks: the same key from the same creator within
-- 24 hours returns the task it first created.
CREATE TABLE idempotency_keys (
  creator TEXT NOT NULL,
  key TEXT NOT NULL,
  task_id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (creator, key)
);
