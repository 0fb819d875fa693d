/**
 * ScheduleAgent: one Durable Object per cron schedule. At each tick (an
 * agents SDK cron schedule, run by the Durable Object's alarm) it creates a
 * task, unless the task of its previous tick is still open: then the tick is
 * skipped and recorded, so a slow task never piles up behind itself.
 */
import { Agent, getAgentByName } from "agents";
import { messageOf } from "../errors.ts";
import { writeLog } from "../log.ts";
import { isTerminal, type CreateTaskBody } from "../schema.ts";
import { deleteSchedule, insertSchedule, recordTick, scheduleById } from "../store/schedules.ts";
import { planTask, startTasks } from "./launch.ts";

export interface ScheduleSpec {
  id: string;
  cron: string;
  task: CreateTaskBody;
  createdBy: string;
}

const SPEC_KEY = "sortie:schedule";

export class ScheduleAgent extends Agent<Cloudflare.Env> {
  static override options = { sendIdentityOnConnect: false };

  /** Stores the schedule and arms its cron. Calling it again changes nothing. */
  async start(spec: ScheduleSpec): Promise<void> {
    if (this.ctx.storage.kv.get(SPEC_KEY)) return;
    await insertSchedule(this.env.DB, spec);
    this.ctx.storage.kv.put(SPEC_KEY, spec);
    await this.schedule(spec.cron, "tick");
  }

  /** Stops the schedule; tasks it already created go on. */
  async stop(): Promise<void> {
    for (const schedule of await this.listSchedules()) await this.cancelSchedule(schedule.id);
    const spec = this.ctx.storage.kv.get<ScheduleSpec>(SPEC_KEY);
    if (spec) await deleteSchedule(this.env.DB, spec.id);
  }

  /** Cron callback: create this tick's task, or skip because the last one is still open. */
  async tick(): Promise<{ created: string } | { skipped: string }> {
    const spec = this.ctx.storage.kv.get<ScheduleSpec>(SPEC_KEY);
    if (!spec) return { skipped: "no schedule" };
    const row = await scheduleById(this.env.DB, spec.id);
    if (!row || row.deleted_at) return { skipped: "deleted" };
    const now = Date.now();
    if (row.last_task_id) {
      const last = await (await getAgentByName(this.env.TaskAgent, row.last_task_id)).view();
      if (last && !isTerminal(last.status)) return this.skip(spec.id, now, `task ${last.id} from the previous tick is still ${last.status}`);
    }
    try {
      const createdBy = `schedule:${spec.id}`;
      const started = await startTasks(this.env, { specs: [planTask(this.env, { body: spec.task, source: "schedule", createdBy })], starter: { name: createdBy } });
      if (!("tasks" in started)) throw new Error("a tick has no idempotency key to replay");
      const task = started.tasks[0]!;
      await recordTick(this.env.DB, spec.id, now, task.id);
      return { created: task.id };
    } catch (error) {
      return this.skip(spec.id, now, `the task could not be created: ${messageOf(error)}`);
    }
  }

  private async skip(id: string, now: number, reason: string): Promise<{ skipped: string }> {
    await recordTick(this.env.DB, id, now, null);
    writeLog("log", { event: "schedule.tick_skipped", schedule: id, reason });
    return { skipped: reason };
  }
}
