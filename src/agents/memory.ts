/**
 * Repository memory on a run's side: what the agent is told (the preamble),
 * the approved entries it is given in `$SORTIE_MEMORY_FILE`, and the
 * learnings it leaves in `$SORTIE_LEARNINGS_FILE`, read after its turn and
 * recorded as proposals with the run as evidence. Both files live beside the
 * checkout, never in it, so neither is part of the run's diff.
 */
import { LIMITS, type SortieConfig } from "../config.ts";
import { messageOf } from "../errors.ts";
import type { Sandbox } from "../sandbox/port.ts";
import { handOverReadOnly, makePrivateDir, readFileCapped } from "../sandbox/files.ts";
import type { EventInput, MemoryEntry, TaskState } from "../schema.ts";
import { recordLearnings, takeMemoryForRun, type Fact, type Proposals } from "../store/memory.ts";
import type { Placement } from "../sandbox/placement.ts";

/** The environment variables an agent gets: where to write what it learned, and where the approved memory is. */
export const LEARNINGS_VAR = "SORTIE_LEARNINGS_FILE";
export const MEMORY_VAR = "SORTIE_MEMORY_FILE";

/** What one run's memory step borrows from its task agent. */
export interface MemoryContext {
  db: D1Database;
  config(): SortieConfig;
  record(input: EventInput): void;
  /** The task agent's redactor: learnings leave the sandbox only through it. */
  redact(text: string): string;
}

/** The run's memory files, and what the agent's environment says about them. */
export interface RunMemory {
  env: Record<string, string>;
  preamble: string;
}

/** Where a run's memory files lie: a directory of its own beside the checkout. */
export function memoryPaths(placement: Pick<Placement, "scratchDir">): { dir: string; learnings: string; memory: string } {
  const dir = `${placement.scratchDir}/sortie-memory`;
  return { dir, learnings: `${dir}/learnings.md`, memory: `${dir}/memory.md` };
}

/**
 * The paragraph of Sortie's preamble that asks for learnings, and the
 * pointer to the approved memory when the run was given some.
 */
export function memoryPreamble(delivered: number): string {
  const ask =
    `Sortie: if you learn durable facts about this repository that would help later runs (how to build and test it, gotchas, conventions), ` +
    `you may record them in the file named by $${LEARNINGS_VAR} (outside the checkout, not part of your change): one fact per line, each line beginning with "- ", ` +
    `at most ${LIMITS.memoryLearningsPerRun} lines of at most ${LIMITS.memoryEntryChars} characters. A person reviews them before later runs see them; never record secrets or facts about this one task.`;
  if (delivered === 0) return ask;
  const pointer = `Facts earlier runs learned about this repository, approved by a person, are in the Markdown file $${MEMORY_VAR} (${delivered} ${delivered === 1 ? "entry" : "entries"}); read it first, and trust the repository itself where they disagree.`;
  return `${ask}\n${pointer}`;
}

/** A learning as Sortie keeps it: one line, trimmed, and its normalised form for deduplication. */
export function factOf(text: string): Fact {
  const clean = text.replace(/\s+/g, " ").trim();
  const norm = clean
    .toLowerCase()
    .replace(/[`"'*_]/g, "")
    .replace(/[.;,:!\s]+$/, "")
    .replace(/\s+/g, " ")
    .trim();
  return { text: clean, norm };
}

/** What a learnings file holds: the facts Sortie takes, and how many lines it ignored and why. */
export interface ParsedLearnings {
  facts: Fact[];
  /** Lines beyond the first LIMITS.memoryLearningsPerRun facts. */
  beyondLimit: number;
  /** Lines longer than LIMITS.memoryEntryChars. */
  tooLong: number;
}

/** Reads `- ` lines; other lines are prose around them and ignored, repeats within the file count once. */
export function parseLearnings(text: string): ParsedLearnings {
  const out: ParsedLearnings = { facts: [], beyondLimit: 0, tooLong: 0 };
  const norms = new Set<string>();
  for (const line of text.split("\n")) {
    const match = /^\s*- (.*)$/.exec(line);
    if (!match) continue;
    const fact = factOf(match[1]!);
    if (!fact.norm || norms.has(fact.norm)) continue;
    if (fact.text.length > LIMITS.memoryEntryChars) {
      out.tooLong++;
      continue;
    }
    if (out.facts.length >= LIMITS.memoryLearningsPerRun) {
      out.beyondLimit++;
      continue;
    }
    norms.add(fact.norm);
    out.facts.push(fact);
  }
  return out;
}

/** The approved entries as the Markdown file the agent reads. */
export function memoryMarkdown(repo: string, entries: Pick<MemoryEntry, "id" | "text">[]): string {
  return [
    `# What earlier runs learned about ${repo}`,
    "",
    "Each entry was proposed by an agent's run or written by a person, and approved by a person. The live repository wins where they disagree.",
    "",
    ...entries.map((entry) => `- ${entry.text}`),
    "",
  ].join("\n");
}

/**
 * Prepares a run's memory before its first turn: the directory the agent
 * may write its learnings in (its user's), and the approved entries of the
 * task's repository in `$SORTIE_MEMORY_FILE`. Records which entries the run
 * was given; returns the environment and preamble for the agent.
 */
export async function deliverMemory(ctx: MemoryContext, run: number, repo: string, sandbox: Sandbox, placement: Placement): Promise<{ memory: RunMemory; delivered: string[] }> {
  const paths = memoryPaths(placement);
  // The run's user writes its learnings there; root reads them back after the run.
  await makePrivateDir(sandbox, paths.dir, placement.confine);
  const config = ctx.config();
  const entries = await takeMemoryForRun(ctx.db, memoryRepoKey(repo), { ttlMs: config.memoryTtlDays * 86_400_000, limit: LIMITS.memoryDelivered });
  const env: Record<string, string> = { [LEARNINGS_VAR]: paths.learnings };
  if (entries.length > 0) {
    await sandbox.writeFile(paths.memory, memoryMarkdown(repo, entries));
    // Root wrote it; the run's user reads it.
    await handOverReadOnly(sandbox, paths.memory, placement.confine);
    env[MEMORY_VAR] = paths.memory;
    ctx.record({ run, type: "memory.delivered", data: { entries: entries.map((entry) => ({ id: entry.id, text: entry.text })) } });
  }
  return { memory: { env, preamble: memoryPreamble(entries.length) }, delivered: entries.map((entry) => entry.id) };
}

/** The environment of a later turn of the same run (a follow-up, a re-attach): the same files, nothing delivered again. */
export function memoryOfEarlierTurn(placement: Placement, delivered: number): RunMemory {
  const paths = memoryPaths(placement);
  return { env: { [LEARNINGS_VAR]: paths.learnings, ...(delivered > 0 ? { [MEMORY_VAR]: paths.memory } : {}) }, preamble: memoryPreamble(delivered) };
}

/**
 * Reads what the agent left in `$SORTIE_LEARNINGS_FILE`, as the agent's own
 * user where it has one (so a link to a file it may not read yields
 * nothing), and only when it is a plain file. Empty when there is none.
 */
export async function readLearnings(sandbox: Sandbox, placement: Placement): Promise<string> {
  return (await readFileCapped(sandbox, memoryPaths(placement).learnings, LIMITS.memoryLearningsFileBytes, { reader: placement.confine, plainOnly: true })) ?? "";
}

/**
 * Turns what a run learned into proposals of its repository: redacted, cut
 * to the limits (what is ignored is said in an event), normalised and
 * deduplicated, with the run as evidence. Never throws: memory is not worth
 * failing a run over, so a failure is an event.
 */
export async function proposeLearnings(
  ctx: MemoryContext,
  input: { repo: string; task: string; run: number; succeeded: boolean; text: string },
): Promise<Proposals | null> {
  if (!input.text.trim()) return null;
  try {
    const parsed = parseLearnings(ctx.redact(input.text));
    if (parsed.beyondLimit || parsed.tooLong) {
      ctx.record({ run: input.run, type: "memory.ignored", data: { beyondLimit: parsed.beyondLimit, tooLong: parsed.tooLong, limit: LIMITS.memoryLearningsPerRun, maxChars: LIMITS.memoryEntryChars } });
    }
    if (parsed.facts.length === 0) return null;
    const proposals = await recordLearnings(ctx.db, {
      repo: memoryRepoKey(input.repo),
      task: input.task,
      run: input.run,
      succeeded: input.succeeded,
      facts: parsed.facts,
      autoApproveSeen: ctx.config().memoryAutoApproveSeen,
    });
    const brief = (entry: MemoryEntry) => ({ id: entry.id, text: entry.text, status: entry.status, seen: entry.seen });
    ctx.record({
      run: input.run,
      type: "memory.proposed",
      data: { proposed: proposals.proposed.map(brief), seen: proposals.seen.map(brief), autoApproved: proposals.autoApproved.map((entry) => entry.id) },
    });
    return proposals;
  } catch (error) {
    ctx.record({ run: input.run, type: "memory.error", data: { message: messageOf(error) } });
    return null;
  }
}

/** Memory is kept per repository whatever the case it was named in (GitHub's names are case-insensitive). */
export function memoryRepoKey(repo: string): string {
  return repo.toLowerCase();
}
