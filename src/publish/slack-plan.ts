/** A plan's Slack message: its status, each subtask's, and while it waits for approval an Approve button. */
import type { PlanState } from "../plan-schema.ts";
import { SLACK_ACTIONS, button, escapeMrkdwn, mrkdwn, type SlackBlock, type SlackMessage } from "./slack.ts";

const MARK: Record<string, string> = { succeeded: ":white_check_mark:", failed: ":x:", cancelled: ":no_entry_sign:", blocked: ":no_entry_sign:", running: ":hourglass_flowing_sand:", pending: ":white_circle:" };

export function planMessage(plan: PlanState, origin: string): SlackMessage {
  const headline = `Plan \`${plan.id}\` on \`${escapeMrkdwn(plan.repo)}\`: *${plan.status.replace("_", " ")}*`;
  const blocks: SlackBlock[] = [{ type: "section", text: mrkdwn(`${headline}\n<${origin}/plans/${plan.id}|Open the plan in Sortie>`) }];
  if (plan.plan) blocks.push({ type: "section", text: mrkdwn(escapeMrkdwn(plan.plan.summary).slice(0, 2000)) });
  if (plan.subtasks.length > 0) {
    const lines = plan.subtasks.map((s) => `${MARK[s.status] ?? ""} *${escapeMrkdwn(s.key)}* ${escapeMrkdwn(s.title)}${s.dependsOn.length ? ` (after ${s.dependsOn.map(escapeMrkdwn).join(", ")})` : ""}: ${s.status}`);
    blocks.push({ type: "section", text: mrkdwn(lines.join("\n").slice(0, 2900)) });
  }
  if (plan.error) blocks.push({ type: "context", elements: [mrkdwn(`${escapeMrkdwn(plan.error.code)}: ${escapeMrkdwn(plan.error.message).slice(0, 500)}`)] });
  if (plan.integration?.pullRequest) blocks.push({ type: "section", text: mrkdwn(`<${plan.integration.pullRequest.url}|Pull request #${plan.integration.pullRequest.number}>`) });
  if (plan.status === "awaiting_approval") blocks.push({ type: "actions", elements: [button("Approve", SLACK_ACTIONS.approvePlan, plan.id, "primary")] });
  return { text: `Plan ${plan.id} on ${plan.repo}: ${plan.status}`, blocks };
}
