/**
 * `POST /github/webhook`: GitHub's deliveries. Each is verified against
 * GITHUB_WEBHOOK_SECRET before its body is parsed (without the secret every
 * delivery is refused), remembered by its `X-GitHub-Delivery` id so a
 * redelivery never starts a second task, and answered at once; the reply on
 * the issue (the live viewer's link) is posted in `waitUntil`.
 */
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { planTask, startTasks } from "../../agents/launch.ts";
import { validate } from "../../api/body.ts";
import { LIMITS, readConfig } from "../../config.ts";
import { SortieError, messageOf } from "../../errors.ts";
import { writeLog } from "../../log.ts";
import { commentOnIssue, mintCommentToken } from "../../publish/github.ts";
import { CreateTaskBody, type TaskState } from "../../schema.ts";
import { intentOf } from "./events.ts";
import { issueKey } from "./payloads.ts";
import { tendingAnswer } from "./tending.ts";
import { verifyGitHubSignature } from "./verify.ts";

/** The creator under which delivery ids are remembered. */
const DELIVERY_CREATOR = "github-delivery";

export const githubRoutes = new Hono<{ Bindings: Cloudflare.Env }>();

githubRoutes.post(
  "/webhook",
  bodyLimit({
    maxSize: LIMITS.githubWebhookBytes,
    onError: () => {
      throw new SortieError("body_too_large", `the delivery is larger than ${LIMITS.githubWebhookBytes} bytes`, 413);
    },
  }),
  async (c) => {
    const secret = c.env.GITHUB_WEBHOOK_SECRET;
    if (!secret) throw new SortieError("github_webhook_not_configured", "GITHUB_WEBHOOK_SECRET is not set, so POST /github/webhook refuses every delivery", 401);
    const body = await c.req.text();
    const verdict = await verifyGitHubSignature(secret, body, c.req.header("x-hub-signature-256"));
    if (!verdict.ok) {
      writeLog("warn", { event: "github.signature_invalid", reason: verdict.reason, delivery: c.req.header("x-github-delivery") ?? null });
      const message = verdict.reason === "missing_signature" ? "X-Hub-Signature-256 is required" : "X-Hub-Signature-256 does not match the body";
      throw new SortieError(`github_${verdict.reason}`, message, 401);
    }

    const event = c.req.header("x-github-event") ?? "";
    const delivery = c.req.header("x-github-delivery") ?? "";
    let payload: unknown;
    try {
      payload = JSON.parse(body);
    } catch {
      throw new SortieError("invalid_github_payload", "the delivery is not JSON; set the webhook's content type to application/json");
    }
    // A pull request Sortie opened is tended: its checks, reviews and `/sortie` comments are fixes on its branch.
    const tending = await tendingAnswer(c.env, event, payload);
    if (tending) {
      const outcome = "ignored" in tending ? tending.ignored : `tending.${tending.tending}: ${tending.reason}`;
      writeLog("log", { event: "github.delivery", github: event, delivery, outcome });
      return c.json(tending, 202);
    }
    const intent = intentOf(event, payload, readConfig(c.env).githubTriggerAssociations);
    writeLog("log", { event: "github.delivery", github: event, delivery, outcome: intent.kind === "task" ? "task" : intent.reason });
    if (intent.kind === "ignored") return c.json({ ignored: intent.reason }, 202);
    if (!delivery) throw new SortieError("missing_github_delivery", "X-GitHub-Delivery is required, so a redelivery cannot start a second task");

    const key = issueKey(intent.repo, intent.number);
    // A task from an issue ends as a pull request that says `Fixes #N`.
    const request = validate(CreateTaskBody, { repo: intent.repo, prompt: intent.prompt, key, output: "pr" }, "body");
    const spec = planTask(c.env, { body: request, source: "github", createdBy: intent.createdBy, origin: new URL(c.req.url).origin });
    let task: TaskState;
    try {
      const started = await startTasks(c.env, { specs: [spec], starter: { name: intent.createdBy }, idempotency: { owner: DELIVERY_CREATOR, key: delivery } });
      if ("replayed" in started) return c.json({ ignored: "duplicate delivery", task: started.replayed }, 202);
      task = started.tasks[0]!;
    } catch (error) {
      if (error instanceof SortieError && error.code === "claim_conflict") {
        return c.json({ ignored: "already running", holder: error.headers?.["x-sortie-holder"] ?? null }, 202);
      }
      throw error;
    }

    const viewer = `${new URL(c.req.url).origin}/tasks/${task.id}`;
    const reply = `Sortie is on it: task \`${task.id}\` is ${task.status}. [Watch it live](${viewer}).`;
    c.executionCtx.waitUntil(
      replyOnIssue(c.env, intent.repo, intent.number, reply).catch((error: unknown) => {
        writeLog("error", { event: "github.reply_failed", task: task.id, repo: intent.repo, number: intent.number, message: messageOf(error) }, c.env);
      }),
    );
    return c.json({ task: task.id, key, viewer }, 202);
  },
);

async function replyOnIssue(env: Cloudflare.Env, repo: string, number: number, body: string): Promise<void> {
  const { token } = await mintCommentToken(env, repo);
  await commentOnIssue(env, token, { repo, number, body });
}
