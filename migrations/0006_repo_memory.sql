-- Repository memory: durable facts about a repository that agents propose
-- (with the runs that proposed them as evidence), people review, and later
-- runs of the same repository are given. `norm` is the text normalised for
-- deduplication: one entry per fact and repository.
CREATE TABLE memory_entries (
  id TEXT PRIMARY KEY,
  repo TEXT NOT NULL,
  text TEXT NOT NULL,
  norm TEXT NOT NULL,
  status TEXT NOT NULL,
  created_by TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  decided_by TEXT,
  decided_at INTEGER,
  last_used_at INTEGER,
  superseded_by TEXT
);
CREATE UNIQUE INDEX memory_by_fact ON memory_entries (repo, norm);
CREATE INDEX memory_by_status ON memory_entries (repo, status, created_at);

-- Each run that proposed an entry: whether it succeeded, and whether it became its task's winner.
CREATE TABLE memory_evidence (
  entry_id TEXT NOT NULL REFERENCES memory_entries (id) ON DELETE CASCADE,
  task_id TEXT NOT NULL,
  run INTEGER NOT NULL,
  succeeded INTEGER NOT NULL,
  winner INTEGER NOT NULL DEFAULT 0,
  at INTEGER NOT NULL,
  PRIMARY KEY (entry_id, task_id, run)
);
CREATE INDEX memory_evidence_by_task ON memory_evidence (task_id, run);
