/**
 * Repository memory in D1: the entries of each repository (one per
 * normalised fact), the runs that proposed them, and their review. Every
 * query names the repository, so one repository's entries never answer for
 * another's.
 */
import { SortieError } from "../errors.ts";
import type { MemoryEntry, MemoryEvidence, MemoryStatus } from "../schema.ts";

/** A fact as Sortie stores it: the text shown and its normalised form, the key that deduplicates. */
export interface Fact {
  text: string;
  norm: string;
}

/** Who wrote an entry: a person (approved at once) or the agents of runs (proposed). */
export const PERSON = "person";
export const AGENT = "agent";

/** What recording one run's learnings did: entries it proposed first, and entries it was one more witness of. */
export interface Proposals {
  proposed: MemoryEntry[];
  seen: MemoryEntry[];
  /** Entries approved because enough successful runs proposed them (`MEMORY_AUTO_APPROVE_SEEN`). */
  autoApproved: MemoryEntry[];
}

const ID = /^m[a-z0-9]{15}$/;

/** Entries of `repo`, oldest first, optionally of one status. */
export async function listMemory(db: D1Database, repo: string, status?: MemoryStatus): Promise<MemoryEntry[]> {
  const { results } = await db
    .prepare(`SELECT * FROM memory_entries WHERE repo = ?1 ${status ? "AND status = ?2" : ""} ORDER BY created_at, rowid`)
    .bind(...(status ? [repo, status] : [repo]))
    .all<EntryRow>();
  return withEvidence(db, results);
}

/** One entry of `repo`; 404 for an id that is not one of its entries. */
export async function getMemoryEntry(db: D1Database, repo: string, id: string): Promise<MemoryEntry> {
  const row = ID.test(id) ? await db.prepare("SELECT * FROM memory_entries WHERE repo = ? AND id = ?").bind(repo, id).first<EntryRow>() : null;
  if (!row) throw new SortieError("not_found", `${repo} has no memory entry ${id}`, 404);
  const [entry] = await withEvidence(db, [row]);
  return entry!;
}

/**
 * A person's entry, approved at once. The same fact already known (proposed,
 * rejected or expired) is approved instead of written twice; a fact that was
 * superseded cannot come back this way.
 */
export async function addPersonEntry(db: D1Database, repo: string, fact: Fact, by: string, now = Date.now()): Promise<MemoryEntry> {
  const existing = await db.prepare("SELECT * FROM memory_entries WHERE repo = ? AND norm = ?").bind(repo, fact.norm).first<EntryRow>();
  if (existing) {
    if (existing.status === "superseded") throw new SortieError("memory_superseded", `entry ${existing.id} says the same and was superseded by ${existing.superseded_by}`, 409);
    if (existing.status !== "approved") await decide(db, existing.id, "approved", by, now);
    return getMemoryEntry(db, repo, existing.id);
  }
  const id = newEntryId();
  await db
    .prepare("INSERT INTO memory_entries (id, repo, text, norm, status, created_by, created_at, decided_by, decided_at) VALUES (?, ?, ?, ?, 'approved', ?, ?, ?, ?)")
    .bind(id, repo, fact.text, fact.norm, PERSON, now, by, now)
    .run();
  return getMemoryEntry(db, repo, id);
}

/** Approves or rejects an entry. A superseded entry stays superseded (409). */
export async function decideMemoryEntry(db: D1Database, repo: string, id: string, status: "approved" | "rejected", by: string, now = Date.now()): Promise<MemoryEntry> {
  const entry = await getMemoryEntry(db, repo, id);
  if (entry.status === "superseded") throw new SortieError("memory_superseded", `entry ${id} was superseded by ${entry.supersededBy}; decide on that one`, 409);
  await decide(db, id, status, by, now);
  return getMemoryEntry(db, repo, id);
}

/**
 * Replaces an entry's text: a new approved entry carrying the old one's
 * evidence, and the old one `superseded` (kept, so the same fact proposed
 * again is recognised). 409 when the new text is another entry's fact.
 */
export async function supersedeMemoryEntry(db: D1Database, repo: string, id: string, fact: Fact, by: string, now = Date.now()): Promise<MemoryEntry> {
  const old = await getMemoryEntry(db, repo, id);
  if (old.status === "superseded") throw new SortieError("memory_superseded", `entry ${id} was already superseded by ${old.supersededBy}`, 409);
  const clash = await db.prepare("SELECT id FROM memory_entries WHERE repo = ? AND norm = ?").bind(repo, fact.norm).first<{ id: string }>();
  if (clash) throw new SortieError("memory_exists", `entry ${clash.id} already says that; approve or edit it instead`, 409);
  const next = newEntryId();
  await db.batch([
    db
      .prepare("INSERT INTO memory_entries (id, repo, text, norm, status, created_by, created_at, decided_by, decided_at) VALUES (?, ?, ?, ?, 'approved', ?, ?, ?, ?)")
      .bind(next, repo, fact.text, fact.norm, PERSON, now, by, now),
    db.prepare("INSERT INTO memory_evidence (entry_id, task_id, run, succeeded, winner, at) SELECT ?, task_id, run, succeeded, winner, at FROM memory_evidence WHERE entry_id = ?").bind(next, id),
    db.prepare("UPDATE memory_entries SET status = 'superseded', superseded_by = ?, decided_by = ?, decided_at = ? WHERE id = ?").bind(next, by, now, id),
  ]);
  return getMemoryEntry(db, repo, next);
}

/** Deletes an entry and its evidence; a run proposing the fact again starts a new proposal. */
export async function deleteMemoryEntry(db: D1Database, repo: string, id: string): Promise<MemoryEntry> {
  const entry = await getMemoryEntry(db, repo, id);
  await db.batch([
    db.prepare("DELETE FROM memory_evidence WHERE entry_id = ?").bind(id),
    db.prepare("UPDATE memory_entries SET superseded_by = NULL WHERE superseded_by = ?").bind(id),
    db.prepare("DELETE FROM memory_entries WHERE id = ?").bind(id),
  ]);
  return entry;
}

/**
 * Records what one run learned: each fact new to the repository becomes a
 * `proposed` entry, each known one gets this run as more evidence. With
 * `autoApproveSeen`, a proposal that that many successful runs made is approved.
 */
export async function recordLearnings(
  db: D1Database,
  input: { repo: string; task: string; run: number; succeeded: boolean; facts: Fact[]; autoApproveSeen: number | null },
  now = Date.now(),
): Promise<Proposals> {
  const out: Proposals = { proposed: [], seen: [], autoApproved: [] };
  for (const fact of input.facts) {
    const id = newEntryId();
    // One statement decides between a new entry and a known one, so two runs ending together cannot write the fact twice.
    await db
      .prepare("INSERT INTO memory_entries (id, repo, text, norm, status, created_by, created_at) VALUES (?, ?, ?, ?, 'proposed', ?, ?) ON CONFLICT (repo, norm) DO NOTHING")
      .bind(id, input.repo, fact.text, fact.norm, AGENT, now)
      .run();
    const row = await db.prepare("SELECT * FROM memory_entries WHERE repo = ? AND norm = ?").bind(input.repo, fact.norm).first<EntryRow>();
    if (!row) throw new Error(`memory entry for ${input.repo} vanished while it was recorded`);
    const witnessed = await db
      .prepare("INSERT INTO memory_evidence (entry_id, task_id, run, succeeded, winner, at) VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT (entry_id, task_id, run) DO NOTHING")
      .bind(row.id, input.task, input.run, input.succeeded ? 1 : 0, now)
      .run();
    if (!witnessed.meta.changes) {
      // The same run said it before (a follow-up turn reads the file again): it stays one witness, with its latest outcome.
      await db.prepare("UPDATE memory_evidence SET succeeded = ? WHERE entry_id = ? AND task_id = ? AND run = ?").bind(input.succeeded ? 1 : 0, row.id, input.task, input.run).run();
      continue;
    }
    // A fact that went stale and is learned again is worth a fresh look.
    if (row.status === "expired") await db.prepare("UPDATE memory_entries SET status = 'proposed', decided_by = NULL, decided_at = NULL WHERE id = ?").bind(row.id).run();
    if (input.autoApproveSeen && (row.status === "proposed" || row.status === "expired")) {
      const successes = await db.prepare("SELECT COUNT(*) AS n FROM memory_evidence WHERE entry_id = ? AND succeeded = 1").bind(row.id).first<{ n: number }>();
      if ((successes?.n ?? 0) >= input.autoApproveSeen) {
        await decide(db, row.id, "approved", "auto", now);
        out.autoApproved.push(await getMemoryEntry(db, input.repo, row.id));
      }
    }
    const entry = await getMemoryEntry(db, input.repo, row.id);
    (row.id === id ? out.proposed : out.seen).push(entry);
  }
  return out;
}

/** The task's winner is known: its evidence says which run won. */
export async function markMemoryWinner(db: D1Database, task: string, run: number): Promise<void> {
  await db.prepare("UPDATE memory_evidence SET winner = (run = ?) WHERE task_id = ?").bind(run, task).run();
}

/** Approved entries unused for `ttlMs` become `expired`; returns how many did. */
export async function expireMemory(db: D1Database, repo: string, ttlMs: number, now = Date.now()): Promise<number> {
  const result = await db
    .prepare("UPDATE memory_entries SET status = 'expired' WHERE repo = ? AND status = 'approved' AND MAX(COALESCE(last_used_at, 0), COALESCE(decided_at, 0), created_at) < ?")
    .bind(repo, now - ttlMs)
    .run();
  return result.meta.changes ?? 0;
}

/**
 * The approved entries a run of `repo` is given (at most `limit`, the most
 * recently used first), after expiring the stale ones; each one's
 * `lastUsedAt` becomes `now`.
 */
export async function takeMemoryForRun(db: D1Database, repo: string, options: { ttlMs: number; limit: number }, now = Date.now()): Promise<MemoryEntry[]> {
  await expireMemory(db, repo, options.ttlMs, now);
  const { results } = await db
    .prepare("SELECT * FROM memory_entries WHERE repo = ? AND status = 'approved' ORDER BY MAX(COALESCE(last_used_at, 0), COALESCE(decided_at, 0), created_at) DESC, id LIMIT ?")
    .bind(repo, options.limit)
    .all<EntryRow>();
  if (results.length === 0) return [];
  await db.batch(results.map((row) => db.prepare("UPDATE memory_entries SET last_used_at = ? WHERE id = ?").bind(now, row.id)));
  const entries = await withEvidence(db, results.map((row) => ({ ...row, last_used_at: now })));
  return entries.sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id));
}

async function decide(db: D1Database, id: string, status: "approved" | "rejected", by: string, now: number): Promise<void> {
  // Expiry counts from the later of the last delivery and the decision, so a re-approved entry starts fresh.
  await db.prepare("UPDATE memory_entries SET status = ?, decided_by = ?, decided_at = ? WHERE id = ?").bind(status, by, now, id).run();
}

interface EntryRow {
  id: string;
  repo: string;
  text: string;
  norm: string;
  status: MemoryStatus;
  created_by: string;
  created_at: number;
  decided_by: string | null;
  decided_at: number | null;
  last_used_at: number | null;
  superseded_by: string | null;
}

interface EvidenceRow {
  entry_id: string;
  task_id: string;
  run: number;
  succeeded: number;
  winner: number;
}

async function withEvidence(db: D1Database, rows: EntryRow[]): Promise<MemoryEntry[]> {
  if (rows.length === 0) return [];
  const evidence = new Map<string, MemoryEvidence[]>();
  // Chunks keep each query under D1's bound-parameter limit.
  for (let i = 0; i < rows.length; i += 50) {
    const ids = rows.slice(i, i + 50).map((row) => row.id);
    const { results } = await db
      .prepare(`SELECT * FROM memory_evidence WHERE entry_id IN (${ids.map(() => "?").join(",")}) ORDER BY at, task_id, run`)
      .bind(...ids)
      .all<EvidenceRow>();
    for (const row of results) {
      const list = evidence.get(row.entry_id) ?? [];
      list.push({ task: row.task_id, run: row.run, succeeded: row.succeeded === 1, winner: row.winner === 1 });
      evidence.set(row.entry_id, list);
    }
  }
  return rows.map((row) => {
    const list = evidence.get(row.id) ?? [];
    return {
      id: row.id,
      text: row.text,
      status: row.status,
      evidence: list,
      seen: list.length,
      createdAt: row.created_at,
      createdBy: row.created_by,
      ...(row.decided_by ? { decidedBy: row.decided_by } : {}),
      ...(row.decided_at !== null ? { decidedAt: row.decided_at } : {}),
      ...(row.last_used_at !== null ? { lastUsedAt: row.last_used_at } : {}),
      ...(row.superseded_by ? { supersededBy: row.superseded_by } : {}),
    };
  });
}

function newEntryId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(15));
  return `m${Array.from(bytes, (b) => (b % 36).toString(36)).join("")}`;
}
