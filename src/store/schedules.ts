/** D1 queries of the schedules table: what `GET /api/schedules` lists and each ScheduleAgent's record of its ticks. */

export interface ScheduleRow {
  id: string;
  cron: string;
  task: string;
  created_by: string;
  created_at: number;
  last_task_id: string | null;
  last_tick_at: number | null;
  ticks: number;
  skipped: number;
  deleted_at: number | null;
}

export async function insertSchedule(db: D1Database, schedule: { id: string; cron: string; task: unknown; createdBy: string }): Promise<void> {
  await db
    .prepare("INSERT INTO schedules (id, cron, task, created_by, created_at) VALUES (?, ?, ?, ?, ?)")
    .bind(schedule.id, schedule.cron, JSON.stringify(schedule.task), schedule.createdBy, Date.now())
    .run();
}

export async function deleteSchedule(db: D1Database, id: string): Promise<void> {
  await db.prepare("UPDATE schedules SET deleted_at = ? WHERE id = ?").bind(Date.now(), id).run();
}

/** The schedule, deleted or not; null if none has this id. */
export async function scheduleById(db: D1Database, id: string): Promise<ScheduleRow | null> {
  return db.prepare("SELECT * FROM schedules WHERE id = ?").bind(id).first<ScheduleRow>();
}

/** The schedules not deleted, newest first. */
export async function listSchedules(db: D1Database, limit = 200): Promise<ScheduleRow[]> {
  const { results } = await db.prepare("SELECT * FROM schedules WHERE deleted_at IS NULL ORDER BY created_at DESC LIMIT ?").bind(limit).all<ScheduleRow>();
  return results;
}

/** Counts a tick: the task it created, or (with `task` null) a skip. */
export async function recordTick(db: D1Database, id: string, at: number, task: string | null): Promise<void> {
  if (task) await db.prepare("UPDATE schedules SET last_task_id = ?, last_tick_at = ?, ticks = ticks + 1 WHERE id = ?").bind(task, at, id).run();
  else await db.prepare("UPDATE schedules SET last_tick_at = ?, ticks = ticks + 1, skipped = skipped + 1 WHERE id = ?").bind(at, id).run();
}
