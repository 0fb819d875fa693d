-- The index of plans, for listing and for telling a plan id from a stranger's
-- guess. Each PlanAgent owns its row and keeps it current; the plan itself,
-- its event log and its integrated diff live in the agent's own storage.
CREATE TABLE plans (
  id TEXT PRIMARY KEY,
  repo TEXT NOT NULL,
  spec TEXT NOT NULL,
  status TEXT NOT NULL,
  subtasks INTEGER NOT NULL DEFAULT 0,
  created_by TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  ended_at INTEGER,
  cost_usd REAL NOT NULL DEFAULT 0,
  key TEXT,
  error_code TEXT,
  error_message TEXT
);
CREATE INDEX plans_by_created ON plans (created_at DESC, id DESC);
CREATE INDEX plans_by_status ON plans (status, created_at DESC, id DESC);
CREATE INDEX plans_by_key ON plans (key, status);
