/**
 * What `/sortie` does with a verified, allowed command: start a task, show
 * one, or cancel one. Each answer is the immediate reply Slack shows; slow
 * work (creating the task, stopping its runs) goes to `defer` and reports
 * back through the command's `response_url` or the task's message.
 */
import { getAgentByName } from "agents";
import { admitTasks, planTask, type Admission } from "../../agents/launch.ts";
import { SortieError, messageOf } from "../../errors.ts";
import { isTaskId } from "../../ids.ts";
import { escapeMrkdwn, postOrUpdate, respondToSlack, taskBlocks, taskLinks, taskText, type SlackBlock, type SlackTarget } from "../../publish/slack.ts";
import { forgetIdempotencyKey, reserveIdempotencyKey } from "../../store/idempotency.ts";
import { taskExists } from "../../store/tasks.ts";
import { preparePlan, startPlan, type PreparedPlan } from "../../agents/plan-start.ts";
import { CreatePlanBody } from "../../plan-schema.ts";
import { CreateTaskBody, type TaskSpec, type TaskState } from "../../schema.ts";
import { SLACK_USAGE, parseSlackCommand, type SlackCommand } from "./grammar.ts";
import { slackActor, type SlashCommand } from "./payloads.ts";

/** The body of an immediate answer to a slash command. */
export interface SlackReply {
  response_type: "ephemeral" | "in_channel";
  text: string;
  blocks?: SlackBlock[];
}

export interface CommandContext {
  /** The Worker's public origin, for links to the viewer. */
  origin: string;
  /** Runs `work` after the reply has gone out (`waitUntil`). */
  defer: (name: string, work: () => Promise<void>) => void;
}

/** The creator under which slash command deliveries are remembered, so a retried delivery never starts a second task. */
const DELIVERY_CREATOR = "slack";

export async function answerCommand(env: Cloudflare.Env, payload: SlashCommand, context: CommandContext): Promise<SlackReply> {
  const parsed = parseSlackCommand(payload.text);
  if (!parsed.ok) return ephemeral(`:warning: ${escapeMrkdwn(parsed.error)}\n\n${SLACK_USAGE}`);
  const command = parsed.command;
  switch (command.kind) {
    case "help":
      return ephemeral(SLACK_USAGE);
    case "status":
      return showStatus(env, command.id, context);
    case "cancel":
      return cancelTask(env, command.id, payload, context);
    case "run":
      return startTask(env, command, payload, context);
    case "plan":
      return startPlanFromSlack(env, command, payload, context);
  }
}

async function startPlanFromSlack(env: Cloudflare.Env, command: Extract<SlackCommand, { kind: "plan" }>, payload: SlashCommand, context: CommandContext): Promise<SlackReply> {
  const body = CreatePlanBody.safeParse({ repo: command.repo, spec: command.spec, ...(command.branch ? { branch: command.branch } : {}) });
  if (!body.success) return ephemeral(`:warning: ${escapeMrkdwn(body.error.issues.map((issue) => issue.message).join("; "))}`);
  let prepared: PreparedPlan;
  try {
    prepared = preparePlan(env, body.data, slackActor(payload.team_id, payload.user_id), context.origin);
  } catch (error) {
    if (error instanceof SortieError) return ephemeral(`:warning: ${escapeMrkdwn(error.message)}`);
    throw error;
  }
  const id = prepared.plan.id;
  const deliveryKey = `command:${payload.team_id}:${payload.trigger_id}`;
  const earlier = await reserveIdempotencyKey(env.DB, DELIVERY_CREATOR, deliveryKey, id);
  if (earlier) return ephemeral(`This command already started \`${earlier}\`.`);
  const target: SlackTarget = { channel: payload.channel_id, responseUrl: payload.response_url };
  context.defer("slack.plan", async () => {
    try {
      await startPlan(env, prepared);
    } catch (error) {
      await forgetIdempotencyKey(env.DB, DELIVERY_CREATOR, deliveryKey, id);
      await respondToSlack(env, payload.response_url, { response_type: "ephemeral", text: `:x: Plan \`${id}\` could not start: ${escapeMrkdwn(messageOf(error))}` });
      throw error;
    }
    // From here the plan agent keeps its message current; it gets an Approve button when the plan is written.
    await (await getAgentByName(env.PlanAgent, id)).followInSlack(target, context.origin);
  });
  const text = `:memo: Planning \`${id}\` on \`${escapeMrkdwn(prepared.plan.repo)}\`. The plan will be posted here with an Approve button.`;
  return env.SLACK_BOT_TOKEN ? ephemeral(text) : { response_type: "in_channel", text };
}

async function startTask(env: Cloudflare.Env, command: Extract<SlackCommand, { kind: "run" }>, payload: SlashCommand, context: CommandContext): Promise<SlackReply> {
  const body = CreateTaskBody.safeParse({
    repo: command.repo,
    prompt: command.prompt,
    ...(command.branch ? { branch: command.branch } : {}),
    ...(command.runs > 1 ? { runs: command.runs } : {}),
    ...(command.output ? { output: command.output } : {}),
    ...(command.agent ? { agent: command.agent } : {}),
    ...(command.isolation ? { isolation: command.isolation } : {}),
    ...(command.review ? { review: { rounds: command.review } } : {}),
    ...(command.preview ? { preview: command.preview } : {}),
  });
  if (!body.success) return ephemeral(`:warning: ${escapeMrkdwn(body.error.issues.map((issue) => issue.message).join("; "))}`);
  let spec: TaskSpec;
  try {
    spec = planTask(env, { body: body.data, source: "slack", createdBy: slackActor(payload.team_id, payload.user_id), origin: context.origin });
  } catch (error) {
    if (error instanceof SortieError) return ephemeral(`:warning: ${escapeMrkdwn(error.message)}`);
    throw error;
  }

  // Slack sends a retried delivery with the same trigger_id: the first one to reserve it starts the task.
  const deliveryKey = `command:${payload.team_id}:${payload.trigger_id}`;
  let admitted: Admission;
  try {
    admitted = await admitTasks(env, { specs: [spec], starter: { name: spec.createdBy }, idempotency: { owner: DELIVERY_CREATOR, key: deliveryKey } });
  } catch (error) {
    // Over the person's rate limit: said to them, like any refusal.
    if (error instanceof SortieError) return ephemeral(`:warning: ${escapeMrkdwn(error.message)}`);
    throw error;
  }
  if ("replayed" in admitted) return ephemeral(`This command already started task \`${admitted.replayed}\`.`);

  const target: SlackTarget = { channel: payload.channel_id, responseUrl: payload.response_url };
  context.defer("slack.launch", async () => {
    let task: TaskState;
    try {
      [task] = (await admitted.launch()) as [TaskState];
    } catch (error) {
      await respondToSlack(env, payload.response_url, { response_type: "ephemeral", text: `:x: Task \`${spec.id}\` could not start: ${escapeMrkdwn(messageOf(error))}` });
      throw error;
    }
    const posted = await postOrUpdate(env, target, task, taskLinks(context.origin, task.id, task.repo));
    // From here the task agent keeps the message current as the task moves.
    await (await getAgentByName(env.TaskAgent, task.id)).followInSlack(posted, context.origin);
  });

  const runs = command.runs > 1 ? ` (${command.runs} runs)` : "";
  const lines = [`:rocket: Starting task \`${spec.id}\` on \`${escapeMrkdwn(spec.repo)}\`${runs}.`];
  if (command.output) lines.push(`When it succeeds, its change is opened as a ${command.output === "pr" ? "pull request" : "draft pull request"}.`);
  if (env.SLACK_BOT_TOKEN) {
    lines.push(`Progress will be posted in this channel. \`/sortie status ${spec.id}\` · \`/sortie cancel ${spec.id}\``);
    return ephemeral(lines.join("\n"));
  }
  // Without a bot token the progress replaces this very reply through the response_url, so it is shown to the channel.
  return { response_type: "in_channel", text: lines.join("\n") };
}

async function showStatus(env: Cloudflare.Env, id: string, context: CommandContext): Promise<SlackReply> {
  const task = await findTask(env, id);
  if (!task) return ephemeral(`:warning: No task \`${escapeMrkdwn(id)}\`.`);
  return { response_type: "ephemeral", text: taskText(task), blocks: taskBlocks(task, taskLinks(context.origin, task.id, task.repo)) };
}

async function cancelTask(env: Cloudflare.Env, id: string, payload: SlashCommand, context: CommandContext): Promise<SlackReply> {
  const task = await findTask(env, id);
  if (!task) return ephemeral(`:warning: No task \`${escapeMrkdwn(id)}\`.`);
  context.defer("slack.cancel", async () => {
    const agent = await getAgentByName(env.TaskAgent, id);
    const outcome = await agent.cancel(slackActor(payload.team_id, payload.user_id));
    if ("refused" in outcome) {
      await respondToSlack(env, payload.response_url, { response_type: "ephemeral", text: `:warning: ${escapeMrkdwn(outcome.refused.message)}` });
      return;
    }
    const cancelled = outcome.task;
    await respondToSlack(env, payload.response_url, {
      response_type: "ephemeral",
      text: `Cancelled task ${cancelled.id}.`,
      blocks: taskBlocks(cancelled, taskLinks(context.origin, cancelled.id)),
    });
  });
  return ephemeral(`Cancelling task \`${id}\`…`);
}

/** The task with this id, or null if there is none (without waking an agent for an id that was never issued). */
export async function findTask(env: Cloudflare.Env, id: string): Promise<TaskState | null> {
  if (!isTaskId(id)) return null;
  if (!(await taskExists(env.DB, id))) return null;
  return (await getAgentByName(env.TaskAgent, id)).view();
}

export function ephemeral(text: string): SlackReply {
  return { response_type: "ephemeral", text };
}
