/**
 * The Slack app's endpoints: `POST /slack/commands` (the `/sortie` slash
 * command) and `POST /slack/interactions` (its buttons). Every request is
 * verified against SLACK_SIGNING_SECRET before its body is read; without the
 * secret both refuse everything. Answers go out at once, since Slack gives up
 * after three seconds; the work continues in `waitUntil`.
 */
import { Hono, type Context, type MiddlewareHandler } from "hono";
import { z } from "zod";
import { limitBody, validate } from "../../api/body.ts";
import { SortieError, messageOf } from "../../errors.ts";
import { writeLog } from "../../log.ts";
import { respondToSlack } from "../../publish/slack.ts";
import { handleBlockActions } from "./actions.ts";
import { answerCommand, ephemeral } from "./commands.ts";
import { BlockActions, SlashCommand } from "./payloads.ts";
import { verifySlackRequest } from "./verify.ts";

type SlackEnv = { Bindings: Cloudflare.Env; Variables: { slackBody: string } };

const IsBlockActions = z.object({ type: z.literal("block_actions") });

export const slackRoutes = new Hono<SlackEnv>();

slackRoutes.use("*", limitBody());
slackRoutes.use("*", requireSlackSignature());

slackRoutes.post("/commands", async (c) => {
  const payload = validate(SlashCommand, Object.fromEntries(new URLSearchParams(c.var.slackBody)), "slack_command");
  writeLog("log", { event: "slack.command", team: payload.team_id, user: payload.user_id, retry: c.req.header("x-slack-retry-num") ?? null });
  if (!slackAllows(c.env.SLACK_ALLOWED_USERS, payload.team_id, payload.user_id)) {
    return c.json(ephemeral(refusal(payload.user_id)));
  }
  return c.json(await answerCommand(c.env, payload, { origin: new URL(c.req.url).origin, defer: deferrer(c) }));
});

slackRoutes.post("/interactions", async (c) => {
  const raw = new URLSearchParams(c.var.slackBody).get("payload");
  if (raw === null) throw new SortieError("invalid_slack_interaction", "the body has no payload field");
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (error) {
    throw new SortieError("invalid_slack_interaction", `payload is not JSON: ${messageOf(error)}`);
  }
  // Only buttons are handled; Slack wants a 200 for any other interaction all the same.
  if (!IsBlockActions.safeParse(json).success) return c.body(null, 200);
  const payload = validate(BlockActions, json, "slack_interaction");
  const team = payload.team?.id ?? payload.user.team_id ?? "";
  const defer = deferrer(c);
  if (!slackAllows(c.env.SLACK_ALLOWED_USERS, team, payload.user.id)) {
    const responseUrl = payload.response_url;
    if (responseUrl) defer("slack.refusal", () => respondToSlack(c.env, responseUrl, { response_type: "ephemeral", replace_original: false, text: refusal(payload.user.id) }));
    return c.body(null, 200);
  }
  defer("slack.actions", () => handleBlockActions(c.env, payload, new URL(c.req.url).origin));
  return c.body(null, 200);
});

/**
 * Whether SLACK_ALLOWED_USERS (comma-separated user and team ids) lets this
 * user in, by their own id or their team's. An empty list lets in everyone
 * the signing secret lets in: the workspaces the app is installed in.
 */
export function slackAllows(allowed: string | undefined, teamId: string, userId: string): boolean {
  const ids = (allowed ?? "").split(",").map((id) => id.trim()).filter(Boolean);
  return ids.length === 0 || ids.includes(userId) || (teamId !== "" && ids.includes(teamId));
}

function refusal(userId: string): string {
  return `:no_entry: You are not allowed to use Sortie here. Ask its admin to add your user id \`${userId}\` to SLACK_ALLOWED_USERS.`;
}

/** Verifies Slack's signature over the raw body and keeps the body for the handler. */
function requireSlackSignature(): MiddlewareHandler<SlackEnv> {
  return async (c, next) => {
    const secret = c.env.SLACK_SIGNING_SECRET;
    if (!secret) throw new SortieError("slack_not_configured", "SLACK_SIGNING_SECRET is not set, so the Slack endpoints refuse every request", 401);
    // Slack's bodies are form-encoded ASCII; decoding the bytes ourselves keeps workerd from warning about .text() on a form.
    const body = new TextDecoder().decode(await c.req.arrayBuffer());
    const verdict = await verifySlackRequest(secret, c.req.raw.headers, body);
    if (!verdict.ok) {
      writeLog("warn", { event: "slack.signature_invalid", reason: verdict.reason, path: c.req.path });
      const messages = {
        missing_headers: "X-Slack-Signature and X-Slack-Request-Timestamp are required",
        stale_timestamp: "X-Slack-Request-Timestamp is more than five minutes from now",
        bad_signature: "X-Slack-Signature does not match the body",
      } as const;
      throw new SortieError(`slack_${verdict.reason}`, messages[verdict.reason], 401);
    }
    c.set("slackBody", body);
    await next();
  };
}

/** Work to finish after the answer has gone out; a failure is logged with its name, since nobody waits for it. */
function deferrer(c: Context<SlackEnv>) {
  return (name: string, work: () => Promise<void>) => {
    c.executionCtx.waitUntil(
      work().catch((error: unknown) => {
        writeLog("error", { event: `${name}_failed`, message: messageOf(error) }, c.env);
      }),
    );
  };
}
