-- Pull requests Sortie opened and tends: fixes on the same branch for red checks, review
-- comments and merge conflicts, within one attempt budget per pull request.
CREATE TABLE tended_pulls (
  repo TEXT NOT NULL,
  number INTEGER NOT NULL,
  url TEXT NOT NULL,
  branch TEXT NOT NULL,
  base TEXT NOT NULL,
  -- The task whose publication opened the pull request, its prompt (as shown) and creator.
  task_id TEXT NOT NULL,
  prompt TEXT NOT NULL,
  created_by TEXT NOT NULL,
  -- The Worker's public origin, for links to fix runs in the viewer.
  origin TEXT NOT NULL DEFAULT '',
  -- The commit Sortie last pushed to the branch: a head other than this one means a person took over.
  head_sha TEXT NOT NULL,
  -- tending | stopped (stop_reason: closed, merged, human_push, stop_command, budget)
  state TEXT NOT NULL DEFAULT 'tending',
  stop_reason TEXT,
  -- Fix runs started, and extra ones granted by `/sortie retry`.
  attempts INTEGER NOT NULL DEFAULT 0,
  granted INTEGER NOT NULL DEFAULT 0,
  -- The fix task running now, and the triggers waiting behind it (JSON array).
  fix_task_id TEXT,
  queued TEXT NOT NULL DEFAULT '[]',
  -- The merge-conflict poll's backoff.
  poll_delay_seconds INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (repo, number)
);
CREATE INDEX tended_pulls_by_branch ON tended_pulls (repo, branch);

-- What has already been acted on for a tended pull request: (head SHA, check name), a review, a comment.
CREATE TABLE tended_pull_keys (
  repo TEXT NOT NULL,
  number INTEGER NOT NULL,
  key TEXT NOT NULL,
  task_id TEXT,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (repo, number, key)
);
