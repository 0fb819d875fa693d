/**
 * Telling people about a task: the Slack message that follows it while it
 * runs, and the webhook and Slack channel told how it ended.
 */
import { messageOf } from "../errors.ts";
import { deploymentRedactor } from "../redact.ts";
import { postOrUpdate, taskLinks, type SlackTarget } from "../publish/slack.ts";
import type { EventInput, TaskSpec, TaskState } from "../schema.ts";

/** The Slack message that follows this task, and the public origin for its links. */
const SLACK_KEY = "sortie:slack";
type Following = { target: SlackTarget; origin: string };

/** Events that change what the task's Slack message shows. */
export const SLACK_WORTHY = new Set(["task.status", "run.status", "judge.status", "task.winner", "publish.status"]);

/** What notifying borrows from its task agent. */
export interface NotifyContext {
  env: Cloudflare.Env;
  kv: SyncKvStorage;
  task(): TaskState;
  spec(): TaskSpec;
  record(input: EventInput): void;
  /** Appends to the event log without broadcasting it or updating Slack: for Slack's own failures. */
  log(input: EventInput): void;
}

export class TaskNotifier {
  private updates: Promise<void> = Promise.resolve();

  constructor(private readonly ctx: NotifyContext) {}

  /** Hands the task a Slack message to keep current. */
  follow(target: SlackTarget, origin: string): void {
    this.ctx.kv.put(SLACK_KEY, { target, origin });
  }

  /** The public origin for the task's links: the Slack message's, else the one the task was created at. */
  origin(): string {
    return this.ctx.kv.get<Following>(SLACK_KEY)?.origin ?? this.ctx.spec().origin ?? "";
  }

  /** Brings the task's Slack message up to date, one update at a time. */
  update(): void {
    const following = this.ctx.kv.get<Following>(SLACK_KEY);
    if (!following) return;
    this.updates = this.updates.then(async () => {
      const current = this.ctx.kv.get<Following>(SLACK_KEY)!;
      try {
        const target = await postOrUpdate(this.ctx.env, current.target, this.ctx.task(), taskLinks(current.origin, this.ctx.task().id, this.ctx.task().repo));
        this.ctx.kv.put(SLACK_KEY, { ...current, target });
      } catch (error) {
        this.ctx.log({ run: null, type: "slack.error", data: { message: messageOf(error) } });
      }
    });
  }

  /** Tells the task's webhook and Slack channel how it ended. */
  async notify(): Promise<void> {
    const spec = this.ctx.spec();
    const task = this.ctx.task();
    if (spec.notify?.slackChannel) {
      try {
        await postOrUpdate(this.ctx.env, { channel: spec.notify.slackChannel }, task, taskLinks(this.origin(), task.id, task.repo));
        this.ctx.record({ run: null, type: "notify.sent", data: { slackChannel: spec.notify.slackChannel } });
      } catch (error) {
        this.ctx.record({ run: null, type: "notify.failed", data: { slackChannel: spec.notify.slackChannel, message: messageOf(error) } });
      }
    }
    if (!spec.notify?.webhook) return;
    const body = {
      id: task.id, repo: task.repo, status: task.status, error: task.error, costUsd: task.costUsd, winner: task.winner,
      runs: task.runs.map((r) => ({ index: r.index, status: r.status, diff: r.diff, error: r.error })),
    };
    try {
      const response = await fetch(spec.notify.webhook, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(deploymentRedactor(this.ctx.env)(body)), signal: AbortSignal.timeout(10_000) });
      this.ctx.record({ run: null, type: response.ok ? "notify.sent" : "notify.failed", data: { status: response.status } });
    } catch (error) {
      this.ctx.record({ run: null, type: "notify.failed", data: { message: messageOf(error) } });
    }
  }
}
