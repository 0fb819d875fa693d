/**
 * What Slack posts to Sortie, as zod schemas: the fields each handler reads
 * are required, everything else Slack sends passes through unchecked.
 */
import { z } from "zod";

const SlackId = z.string().regex(/^[A-Z0-9]{1,40}$/, "a Slack id");

/** A slash command invocation (form-encoded). */
export const SlashCommand = z.object({
  team_id: SlackId,
  user_id: SlackId,
  channel_id: SlackId,
  command: z.string(),
  text: z.string().max(20_000),
  response_url: z.url({ protocol: /^https?$/ }),
  trigger_id: z.string().min(1).max(150),
});
export type SlashCommand = z.infer<typeof SlashCommand>;

/** One button press of a `block_actions` interaction. */
export const BlockAction = z.object({
  action_id: z.string(),
  value: z.string().max(2000).optional(),
});

/** A `block_actions` interaction (the JSON inside the form field `payload`). */
export const BlockActions = z.object({
  type: z.literal("block_actions"),
  user: z.object({ id: SlackId, team_id: SlackId.optional() }),
  team: z.object({ id: SlackId }).nullable().optional(),
  container: z
    .object({ type: z.string(), message_ts: z.string().optional(), channel_id: z.string().optional(), is_ephemeral: z.boolean().optional() })
    .optional(),
  channel: z.object({ id: SlackId }).optional(),
  response_url: z.url({ protocol: /^https?$/ }).optional(),
  actions: z.array(BlockAction).min(1),
});
export type BlockActions = z.infer<typeof BlockActions>;

/** Who pressed or typed: the name events and `createdBy` carry. */
export function slackActor(teamId: string, userId: string): string {
  return `slack:${teamId}:${userId}`;
}
