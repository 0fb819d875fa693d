/**
 * The buttons of a task's message: Cancel, Pick winner, Open PR. Slack wants
 * only a quick 200 for a button press, so these run after it and answer
 * through the interaction's `response_url` or by updating the message.
 */
import { getAgentByName } from "agents";
import { escapeMrkdwn, postOrUpdate, respondToSlack, SLACK_ACTIONS, taskBlocks, taskLinks, taskText } from "../../publish/slack.ts";
import { isTaskId } from "../../ids.ts";
import type { PlanState } from "../../plan-schema.ts";
import type { TaskState } from "../../schema.ts";
import { planExists } from "../../store/plans.ts";
import { findTask } from "./commands.ts";
import { slackActor, type BlockActions } from "./payloads.ts";
import { writeLog } from "../../log.ts";

type Outcome = { task: TaskState } | { plan: PlanState } | { refused: { message: string } } | { note: string };

/** Carries out each pressed button and tells the presser what happened. */
export async function handleBlockActions(env: Cloudflare.Env, payload: BlockActions, origin: string): Promise<void> {
  const actor = slackActor(payload.team?.id ?? payload.user.team_id ?? "unknown", payload.user.id);
  for (const action of payload.actions) {
    const outcome = await perform(env, action.action_id, action.value ?? "", actor);
    if (!outcome) continue;
    await report(env, payload, origin, outcome);
  }
}

async function perform(env: Cloudflare.Env, actionId: string, value: string, actor: string): Promise<Outcome | null> {
  switch (actionId) {
    case SLACK_ACTIONS.cancel: {
      const task = await findTask(env, value);
      if (!task) return { refused: { message: `No task ${value}.` } };
      return (await getAgentByName(env.TaskAgent, task.id)).cancel(actor);
    }
    case SLACK_ACTIONS.winner: {
      const match = /^([a-z0-9]+):(\d{1,3})$/.exec(value);
      const task = match ? await findTask(env, match[1]!) : null;
      if (!match || !task) return { refused: { message: `No task run ${value}.` } };
      return (await getAgentByName(env.TaskAgent, task.id)).pickWinner(Number(match[2]), actor);
    }
    case SLACK_ACTIONS.openPr: {
      const task = await findTask(env, value);
      if (!task) return { refused: { message: `No task ${value}.` } };
      return (await getAgentByName(env.TaskAgent, task.id)).publish(undefined, "pr", actor);
    }
    case SLACK_ACTIONS.approvePlan: {
      if (!isTaskId(value) || !(await planExists(env.DB, value))) return { refused: { message: `No plan ${value}.` } };
      return (await getAgentByName(env.PlanAgent, value)).approve(undefined, actor);
    }
    default:
      // A button of another app feature (or a link button): nothing to do, the 200 was the answer.
      writeLog("log", { event: "slack.action_ignored", actionId });
      return null;
  }
}

async function report(env: Cloudflare.Env, payload: BlockActions, origin: string, outcome: Outcome): Promise<void> {
  const responseUrl = payload.response_url;
  if ("plan" in outcome) {
    // The plan agent keeps its own message current; the presser is told it went through.
    if (responseUrl) await respondToSlack(env, responseUrl, { response_type: "ephemeral", replace_original: false, text: `Approved plan \`${outcome.plan.id}\`: its subtasks are starting.` });
    return;
  }
  if ("task" in outcome) {
    const task = outcome.task;
    const links = taskLinks(origin, task.id, task.repo);
    const container = payload.container;
    const channel = container?.channel_id ?? payload.channel?.id;
    // A public message is updated in place; an ephemeral one (a `status` reply) can only be replaced through its response_url.
    if (channel && container?.message_ts && !container.is_ephemeral) {
      await postOrUpdate(env, { channel, ts: container.message_ts, responseUrl }, task, links);
    } else if (responseUrl) {
      await respondToSlack(env, responseUrl, { replace_original: true, text: taskText(task), blocks: taskBlocks(task, links) });
    }
    return;
  }
  const text = "note" in outcome ? outcome.note : `:warning: ${escapeMrkdwn(outcome.refused.message)}`;
  if (responseUrl) await respondToSlack(env, responseUrl, { response_type: "ephemeral", replace_original: false, text });
}
