/**
 * PullRequestAgent: one Durable Object per tended pull request, named
 * `owner/name#N`, that polls its `mergeable_state`, because GitHub sends no
 * event when a pull request becomes conflicted. Its own alarm (an agents SDK
 * schedule) backs off from five minutes to an hour while nothing changes and
 * stops for good when tending stops; `dirty` asks for a fix run that merges
 * the base branch in and resolves the conflicts. A Durable Object of its own
 * rather than the ScheduleAgent: that one is a cron that creates tasks, this
 * is one pull request's backoff, and each tended pull request's poll lives
 * and ends with it.
 */
import { Agent } from "agents";
import { LIMITS } from "../config.ts";
import { messageOf } from "../errors.ts";
import { writeLog } from "../log.ts";
import { claimTendingKey, findTendedPull, setPollDelay } from "../store/pull-requests.ts";
import { onClaimed, recordDecision, requestFix, stillOurs, type TendingOutcome } from "./tending.ts";

const TARGET_KEY = "sortie:pull";

export class PullRequestAgent extends Agent<Cloudflare.Env> {
  static override options = { sendIdentityOnConnect: false };

  /** Starts polling `repo#number` (again, after tending resumed); while a poll is scheduled it changes nothing. */
  async watch(repo: string, number: number): Promise<void> {
    this.ctx.storage.kv.put(TARGET_KEY, { repo, number });
    if (!(await this.polling())) await this.schedule(LIMITS.pullPollFirstSeconds, "poll");
  }

  /** Stops polling (tending has stopped). */
  async unwatch(): Promise<void> {
    for (const schedule of await this.listSchedules()) await this.cancelSchedule(schedule.id);
  }

  /** Whether a poll is scheduled. */
  async polling(): Promise<boolean> {
    return (await this.listSchedules()).some((schedule) => schedule.callback === "poll");
  }

  /**
   * Schedule callback: reads the pull request once. Tending stopped, closed,
   * merged or taken over: no more polls. `dirty`: a fix run (once per head).
   * Otherwise the next poll, later than this one.
   */
  async poll(): Promise<TendingOutcome | { decision: "polled"; mergeableState: string }> {
    const target = this.ctx.storage.kv.get<{ repo: string; number: number }>(TARGET_KEY);
    const pull = target ? await findTendedPull(this.env.DB, target.repo, target.number) : null;
    if (!target || !pull || pull.state !== "tending") {
      await this.unwatch();
      return { decision: "stopped", reason: "tending has stopped" };
    }
    await this.unwatch();
    let mergeableState = "unknown";
    try {
      const ours = await stillOurs(this.env, pull);
      if ("outcome" in ours) return ours.outcome;
      mergeableState = ours.now.mergeableState;
      // While a fix runs the head is about to move: the poll after it judges the new head.
      if (mergeableState === "dirty" && !pull.fixTaskId) {
        const key = `conflict:${pull.headSha}`;
        if (await claimTendingKey(this.env.DB, pull.repo, pull.number, key)) {
          const outcome = await onClaimed(this.env, pull, [key], () => requestFix(this.env, pull, { kind: "conflict", by: "sortie", base: ours.now.baseRef }, "sortie"));
          await this.scheduleNext(pull.repo, pull.number, 0);
          return outcome;
        }
        await recordDecision(this.env, pull, "sortie", "deduplicated", { trigger: "conflict", head: pull.headSha });
      }
    } catch (error) {
      // GitHub or D1 failed this time: the next poll (later, by the backoff) asks again.
      writeLog("error", { event: "tending.poll_failed", repo: pull.repo, number: pull.number, message: messageOf(error) }, this.env);
    }
    await this.scheduleNext(pull.repo, pull.number, pull.pollDelaySeconds);
    return { decision: "polled", mergeableState };
  }

  /** The next poll: twice the last delay, from five minutes up to an hour. */
  private async scheduleNext(repo: string, number: number, lastDelay: number): Promise<void> {
    const delay = Math.min(Math.max(lastDelay * 2, LIMITS.pullPollFirstSeconds), LIMITS.pullPollMaxSeconds);
    await setPollDelay(this.env.DB, repo, number, delay);
    await this.schedule(delay, "poll");
  }
}
