-- The index of tasks and runs across the fleet, for listing and filtering.
-- Each TaskAgent owns its task's rows and keeps them current; the full event
-- log and diffs live in the agent's own storage.
CREATE TABLE tasks (
  id TEXT PRIMARY KEY,
  repo TEXT NOT NULL,
  branch TEXT,
  prompt TEXT NOT NULL,
  model TEXT,
  status TEXT NOT NULL,
  source TEXT NOT NULL,
  created_by TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  started_at INTEGER,
  ended_at INTEGER,
  runs INTEGER NOT NULL DEFAULT 1,
  cost_usd REAL NOT NULL DEFAULT 0,
  files INTEGER,
  additions INTEGER,
  deletions INTEGER,
  error_code TEXT,
  error_message TEXT
);
CREATE INDEX tasks_by_created ON tasks (created_at DESC, id DESC);
CREATE INDEX tasks_by_status ON tasks (status, created_at DESC, id DESC);
CREATE INDEX tasks_by_repo ON tasks (repo, created_at DESC, id DESC);

CREATE TABLE runs (
  task_id TEXT NOT NULL REFERENCES tasks (id),
  idx INTEGER NOT NULL,
  status TEXT NOT NULL,
  phase TEXT,
  started_at INTEGER,
  ended_at INTEGER,
  duration_ms INTEGER,
  cost_usd REAL NOT NULL DEFAULT 0,
  num_turns INTEGER,
  files INTEGER,
  additions INTEGER,
  deletions INTEGER,
  session_id TEXT,
  error_code TEXT,
  error_message TEXT,
  PRIMARY KEY (task_id, idx)
);
