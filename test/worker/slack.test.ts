/**
 * The `/sortie` slash command and its buttons, driven the way Slack drives
 * them: signed form posts to /slack/commands and /slack/interactions. Slack's
 * side (chat.postMessage, chat.update, response_url) is the loopback stand-in
 * of test/standins/slack.ts, which records every call and fails closed.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { createHmac } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { buildApp } from "../../src/api/app.ts";
import { postOrUpdate, taskLinks, type SlackBlock } from "../../src/publish/slack.ts";
import type { TaskView } from "../../src/schema.ts";
import { api, countTasks, createTask, getTask, waitForStatus as waitForStatusOfKnown } from "./helpers.ts";

const SECRET = "test-slack-signing-secret";
const SLACK = env.SLACK_API_URL.replace(/\/api$/, "");
const ORIGIN = "https://sortie.test";
const LONG_COMMAND = "node -e 'setTimeout(() => {}, 60000)'";
const script = (steps: unknown[]) => `#!standin ${JSON.stringify(steps)}`;

interface SlackCall {
  method: string;
  path: string;
  body: { channel?: string; ts?: string; text?: string; blocks?: SlackBlock[]; response_type?: string; replace_original?: boolean };
  ts?: string;
}

let serial = 0;
/** Channel ids and response URLs unique to one test, so the stand-in's shared record can be filtered. */
function place() {
  serial += 1;
  const tag = `${Date.now().toString(36)}${serial}`.toUpperCase();
  return { channel: `C${tag}`, responseUrl: `${SLACK}/respond/${tag}` };
}

function sign(body: string, timestamp: number, secret = SECRET) {
  return { "x-slack-request-timestamp": String(timestamp), "x-slack-signature": `v0=${createHmac("sha256", secret).update(`v0:${timestamp}:${body}`).digest("hex")}` };
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

function post(path: string, body: string, headers: Record<string, string>) {
  return exports.default.fetch(new Request(`${ORIGIN}${path}`, { method: "POST", body, headers: { "content-type": "application/x-www-form-urlencoded", ...headers } }));
}

function commandBody(text: string, at: { channel: string; responseUrl: string }, overrides: Record<string, string> = {}) {
  return new URLSearchParams({
    token: "deprecated-verification-token",
    team_id: "T0ACME",
    team_domain: "acme",
    channel_id: at.channel,
    channel_name: "eng",
    user_id: "U0ALICE",
    user_name: "alice",
    command: "/sortie",
    text,
    api_app_id: "A0SORTIE",
    response_url: at.responseUrl,
    trigger_id: `${Date.now()}.${serial}.${crypto.randomUUID()}`,
    ...overrides,
  }).toString();
}

type Reply = { response_type: string; text: string; blocks?: SlackBlock[] };

/** Sends `/sortie <text>` signed with the right secret; returns the reply Slack would show. */
async function slash(text: string, at = place(), overrides: Record<string, string> = {}): Promise<Reply> {
  const body = commandBody(text, at, overrides);
  const response = await post("/slack/commands", body, sign(body, nowSeconds()));
  expect(response.status, await response.clone().text()).toBe(200);
  return (await response.json()) as Reply;
}

function interaction(payload: Record<string, unknown>) {
  const body = new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
  return post("/slack/interactions", body, sign(body, nowSeconds()));
}

function press(actionId: string, value: string, at: { channel: string; responseUrl: string; ts?: string }, user = "U0ALICE") {
  return interaction({
    type: "block_actions",
    user: { id: user, team_id: "T0ACME" },
    team: { id: "T0ACME" },
    api_app_id: "A0SORTIE",
    container: at.ts ? { type: "message", message_ts: at.ts, channel_id: at.channel, is_ephemeral: false } : { type: "message", channel_id: at.channel, is_ephemeral: true },
    channel: { id: at.channel },
    response_url: at.responseUrl,
    trigger_id: "1.2.3",
    actions: [{ action_id: actionId, block_id: "b", value, type: "button", action_ts: "1" }],
  });
}

async function slackRecord(): Promise<{ calls: SlackCall[]; unexpected: unknown[] }> {
  return (await (await fetch(`${SLACK}/_calls`)).json()) as { calls: SlackCall[]; unexpected: unknown[] };
}

/** Waits until the stand-in has recorded calls matching `match`. */
async function waitForCalls(match: (call: SlackCall) => boolean, count = 1, timeoutMs = 20_000): Promise<SlackCall[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = (await slackRecord()).calls.filter(match);
    if (found.length >= count) return found;
    if (Date.now() > deadline) throw new Error(`the Slack stand-in saw ${found.length} of ${count} expected calls`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A task started from Slack exists once the deferred launch has run: wait for it, then for its status. */
async function waitForStatus(id: string, statuses: string[]): Promise<TaskView> {
  const deadline = Date.now() + 10_000;
  while ((await api(`/api/tasks/${id}`)).status === 404) {
    if (Date.now() > deadline) throw new Error(`task ${id} was never created`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return waitForStatusOfKnown(id, statuses);
}

const inChannel = (channel: string, method: string) => (call: SlackCall) => call.method === method && call.body.channel === channel;
const toResponseUrl = (responseUrl: string) => (call: SlackCall) => call.method === "response_url" && `${SLACK}${call.path}` === responseUrl;
const taskIdOf = (reply: Reply) => /task `([a-z0-9]{19})`/.exec(reply.text)?.[1] ?? "";
const textsOf = (blocks: SlackBlock[] = []) =>
  blocks.map((block) => (block.type === "section" ? block.text.text : block.type === "context" ? block.elements.map((e) => e.text).join(" ") : block.type));
const buttonsOf = (blocks: SlackBlock[] = []) =>
  blocks.flatMap((block) => (block.type === "actions" ? block.elements : block.type === "section" && block.accessory ? [block.accessory] : []));

afterEach(async () => {
  // Fail closed: no test may have made a Slack call the stand-in did not expect.
  expect((await slackRecord()).unexpected).toEqual([]);
});

describe("request signatures", () => {
  it("refuses a request signed with another secret, and starts nothing", async () => {
    const before = await countTasks();
    const body = commandBody("acme/widgets add a NOTES.md", place());
    const response = await post("/slack/commands", body, sign(body, nowSeconds(), "not-the-secret"));
    expect(response.status).toBe(401);
    expect(await response.json()).toEqual({ error: { code: "slack_bad_signature", message: "X-Slack-Signature does not match the body" } });
    expect(await countTasks()).toBe(before);
  });

  it("refuses a correctly signed request whose timestamp is more than five minutes old (a replay)", async () => {
    const body = commandBody("help", place());
    const response = await post("/slack/commands", body, sign(body, nowSeconds() - 301));
    expect(response.status).toBe(401);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe("slack_stale_timestamp");
  });

  it("refuses a request without signature headers, and a body changed after signing", async () => {
    const body = commandBody("help", place());
    const bare = await post("/slack/commands", body, {});
    expect(bare.status).toBe(401);
    expect(((await bare.json()) as { error: { code: string } }).error.code).toBe("slack_missing_headers");
    const tampered = await post("/slack/commands", body.replace("U0ALICE", "U0ADMIN"), sign(body, nowSeconds()));
    expect(tampered.status).toBe(401);
  });

  it("verifies interactions too", async () => {
    const body = new URLSearchParams({ payload: JSON.stringify({ type: "block_actions" }) }).toString();
    const response = await post("/slack/interactions", body, sign(body, nowSeconds(), "not-the-secret"));
    expect(response.status).toBe(401);
  });

  it("refuses everything, naming the key, when SLACK_SIGNING_SECRET is not set", async () => {
    const body = commandBody("help", place());
    const ctx = createExecutionContext();
    const response = await buildApp().fetch(
      new Request(`${ORIGIN}/slack/commands`, { method: "POST", body, headers: sign(body, nowSeconds()) }),
      { ...env, SLACK_SIGNING_SECRET: "" },
      ctx,
    );
    await waitOnExecutionContext(ctx);
    expect(response.status).toBe(401);
    const error = ((await response.json()) as { error: { code: string; message: string } }).error;
    expect(error.code).toBe("slack_not_configured");
    expect(error.message).toContain("SLACK_SIGNING_SECRET");
  });
});

describe("/sortie <repo> <prompt>", () => {
  it("answers at once, then the task really runs, and its message is posted to the channel", async () => {
    const at = place();
    const started = Date.now();
    const reply = await slash("acme/widgets add a NOTES.md", at);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(reply.response_type).toBe("ephemeral");
    expect(reply.text).toMatch(/^:rocket: Starting task `[a-z0-9]{19}` on `acme\/widgets`\./);
    expect(reply.text).not.toContain("Pull requests");
    const id = taskIdOf(reply);

    const task = await waitForStatus(id, ["succeeded", "failed"]);
    expect(task).toMatchObject({ status: "succeeded", source: "slack", createdBy: "slack:T0ACME:U0ALICE", prompt: "add a NOTES.md", repo: "acme/widgets" });
    expect(task.runs[0]!.diff).toMatchObject({ files: 1 });

    const [posted] = await waitForCalls(inChannel(at.channel, "chat.postMessage"));
    expect(posted!.body.text).toContain(id);
    expect(textsOf(posted!.body.blocks)[0]).toContain(`task \`${id}\``);
    expect(buttonsOf(posted!.body.blocks).map((b) => [b.action_id, b.value])).toContainEqual(["sortie_cancel", id]);
  });

  it("passes the branch, the number of runs and the output on", async () => {
    const reply = await slash(`acme/widgets@main x2 --draft ${script([{ text: "nothing to change" }])}`);
    expect(reply.text).toContain("(2 runs)");
    expect(reply.text).toContain("opened as a draft pull request");
    const task = await waitForStatus(taskIdOf(reply), ["succeeded", "failed"]);
    expect(task).toMatchObject({ status: "succeeded", branch: "main", output: "draft-pr" });
    expect(task.runs).toHaveLength(2);
  });

  it("never starts a second task for a retried delivery (X-Slack-Retry-Num)", async () => {
    const at = place();
    const body = commandBody("acme/widgets add a RETRY.md", at);
    const first = await post("/slack/commands", body, sign(body, nowSeconds()));
    const id = taskIdOf((await first.json()) as Reply);
    await waitForStatus(id, ["succeeded", "failed"]);
    const before = await countTasks();

    const retry = await post("/slack/commands", body, { ...sign(body, nowSeconds()), "x-slack-retry-num": "1", "x-slack-retry-reason": "http_timeout" });
    expect(retry.status).toBe(200);
    expect(((await retry.json()) as Reply).text).toBe(`This command already started task \`${id}\`.`);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await countTasks()).toBe(before);
    const rows = await env.DB.prepare("SELECT COUNT(*) AS n FROM tasks WHERE prompt = ?").bind("add a RETRY.md").first<{ n: number }>();
    expect(rows?.n).toBe(1);
    expect((await slackRecord()).calls.filter(inChannel(at.channel, "chat.postMessage"))).toHaveLength(1);
  });

  it("answers a malformed command with the reason and the usage, privately, and starts nothing", async () => {
    const before = await countTasks();
    for (const [text, reason] of [
      ["acme/widgets x9 go", "runs must be 1 to 8"],
      ["widgets go", "is not a command or a repository"],
      ["acme/widgets", "Put the prompt after the repository"],
      ["acme/widgets@-bad go", "branch is not a valid git branch name"],
      ["acme/.. go", "repo must be"],
    ] as const) {
      const reply = await slash(text);
      expect(reply.response_type, text).toBe("ephemeral");
      expect(reply.text, text).toContain(reason);
    }
    const help = await slash("help");
    expect(help).toMatchObject({ response_type: "ephemeral" });
    expect(help.text).toContain("/sortie owner/repo[@branch] [xN] [--pr|--draft] [--agent=NAME] [--isolation=LEVEL] [--review[=ROUNDS]] [--preview=\"CMD\" [--port=N]] <prompt>");
    expect(await countTasks()).toBe(before);
  });

  it("refuses a user outside SLACK_ALLOWED_USERS, and lets in a whole allowed team", async () => {
    const before = await countTasks();
    const refused = await slash("acme/widgets add a NOTES.md", place(), { user_id: "U0MALLORY" });
    expect(refused.response_type).toBe("ephemeral");
    expect(refused.text).toContain("not allowed");
    expect(refused.text).toContain("U0MALLORY");
    expect(await countTasks()).toBe(before);

    const teamMate = await slash("status 0000000000000000000", place(), { team_id: "T0FRIENDS", user_id: "U0CAROL" });
    expect(teamMate.text).toContain("No task");
  });
});

describe("/sortie status and cancel", () => {
  it("shows a task's blocks privately, and says so for an unknown id", async () => {
    const created = await createTask({ prompt: script([{ text: "done" }]) });
    await waitForStatus(created.id, ["succeeded"]);
    const reply = await slash(`status ${created.id}`);
    expect(reply.response_type).toBe("ephemeral");
    expect(textsOf(reply.blocks)[0]).toBe(`:white_check_mark: *Succeeded* · \`acme/widgets\` · task \`${created.id}\``);
    expect(textsOf(reply.blocks).some((text) => text.includes(`<${ORIGIN}/tasks/${created.id}|Open the live viewer>`))).toBe(true);
    expect((await slash("status nope")).text).toBe(":warning: No task `nope`.");
  });

  it("cancels a running task on behalf of the Slack user, and refuses to cancel it twice", async () => {
    const created = await createTask({ prompt: script([{ tool: "Bash", input: { command: LONG_COMMAND } }]) });
    const at = place();
    const reply = await slash(`cancel ${created.id}`, at);
    expect(reply).toEqual({ response_type: "ephemeral", text: `Cancelling task \`${created.id}\`…` });
    const task = await waitForStatus(created.id, ["cancelled"]);
    expect(task.error?.message).toBe("cancelled by slack:T0ACME:U0ALICE");
    const [answer] = await waitForCalls(toResponseUrl(at.responseUrl));
    expect(answer!.body).toMatchObject({ response_type: "ephemeral", text: `Cancelled task ${created.id}.` });
    expect(textsOf(answer!.body.blocks)[0]).toContain("*Cancelled*");

    const again = place();
    await slash(`cancel ${created.id}`, again);
    const [refusal] = await waitForCalls(toResponseUrl(again.responseUrl));
    expect(refusal!.body.text).toBe(`:warning: task ${created.id} already ended cancelled`);
  });
});

describe("buttons (POST /slack/interactions)", () => {
  it("Cancel stops the task and updates the message in place", async () => {
    const at = place();
    const reply = await slash(`acme/widgets ${script([{ tool: "Bash", input: { command: LONG_COMMAND } }])}`, at);
    const id = taskIdOf(reply);
    const [posted] = await waitForCalls(inChannel(at.channel, "chat.postMessage"));
    const started = Date.now();
    const response = await press("sortie_cancel", id, { ...at, ts: posted!.ts });
    expect(Date.now() - started).toBeLessThan(3000);
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("");

    const task = await waitForStatus(id, ["cancelled"]);
    expect(task.error?.message).toBe("cancelled by slack:T0ACME:U0ALICE");
    // The task agent keeps the message current as well: take the update that shows the cancel.
    const [updated] = await waitForCalls((call) => inChannel(at.channel, "chat.update")(call) && textsOf(call.body.blocks)[0]!.includes("*Cancelled*"));
    expect(updated!.ts).toBe(posted!.ts);
    expect(buttonsOf(updated!.body.blocks).map((b) => b.action_id)).not.toContain("sortie_cancel");
  });

  it("Pick winner records the Slack user's choice, and the updated message has the finished two-run shape", async () => {
    const at = place();
    const id = taskIdOf(await slash("acme/widgets x2 add a NOTES.md", at));
    const done: TaskView = await waitForStatus(id, ["succeeded", "failed"]);
    expect(done.runs.map((run) => run.status)).toEqual(["succeeded", "succeeded"]);
    const [posted] = await waitForCalls(inChannel(at.channel, "chat.postMessage"));

    const response = await press("sortie_winner", `${id}:1`, { ...at, ts: posted!.ts });
    expect(response.status).toBe(200);
    const [updated] = await waitForCalls((call) => inChannel(at.channel, "chat.update")(call) && textsOf(call.body.blocks).some((text) => text.includes("Winner: run 1")));
    expect((await getTask(id)).winner).toMatchObject({ run: 1, by: "slack:T0ACME:U0ALICE" });

    const blocks = updated!.body.blocks!;
    expect(blocks.map((block) => block.type)).toEqual(["section", "section", "divider", "section", "section", "context", "context", "actions"]);
    const texts = textsOf(blocks);
    expect(texts[0]).toBe(`:white_check_mark: *Succeeded* · \`acme/widgets\` · task \`${id}\``);
    expect(texts[1]).toBe(">add a NOTES.md");
    expect(texts[3]).toMatch(/^:white_check_mark: \*Run 0\*: succeeded · 1 file \+\d+ −0 · \$\d+\.\d+ · \d+(\.\d+)? (ms|s)$/);
    expect(texts[4]).toMatch(/^:trophy: \*Run 1\*: succeeded · 1 file \+\d+ −0 · /);
    expect(texts[5]).toBe(":trophy: Winner: run 1, picked by slack:T0ACME:U0ALICE");
    expect(texts[6]).toMatch(new RegExp(`^<${ORIGIN}/tasks/${id}\\|Open the live viewer> · cost \\$\\d+\\.\\d+ · by slack:T0ACME:U0ALICE$`));
    expect(buttonsOf(blocks).map((b) => [b.action_id, b.value])).toEqual([
      ["sortie_winner", `${id}:0`],
      ["sortie_winner", `${id}:1`],
      ["sortie_open_pr", id],
    ]);

    // A run that does not exist is refused to the presser alone.
    const wrong = place();
    await press("sortie_winner", `${id}:5`, { ...wrong, ts: posted!.ts });
    const [refusal] = await waitForCalls(toResponseUrl(wrong.responseUrl));
    expect(refusal!.body).toMatchObject({ response_type: "ephemeral", replace_original: false });
    expect(refusal!.body.text).toContain("has runs 0 to 1, not 5");
    expect((await getTask(id)).winner).toMatchObject({ run: 1 });
  });

  it("Open PR on an unknown task answers privately", async () => {
    const at = place();
    const response = await press("sortie_open_pr", "0000000000000000000", at);
    expect(response.status).toBe(200);
    const [answer] = await waitForCalls(toResponseUrl(at.responseUrl));
    expect(answer!.body).toMatchObject({ response_type: "ephemeral", replace_original: false });
    expect(answer!.body.text).toContain("No task");
  });

  it("refuses a presser outside SLACK_ALLOWED_USERS without touching the task", async () => {
    const created = await createTask({ prompt: script([{ tool: "Bash", input: { command: LONG_COMMAND } }]) });
    const at = place();
    await press("sortie_cancel", created.id, at, "U0MALLORY");
    const [answer] = await waitForCalls(toResponseUrl(at.responseUrl));
    expect(answer!.body.text).toContain("not allowed");
    expect((await getTask(created.id)).status).not.toBe("cancelled");
    await press("sortie_cancel", created.id, place());
    await waitForStatus(created.id, ["cancelled"]);
  });

  it("acknowledges interactions it does not handle with an empty 200", async () => {
    const response = await interaction({ type: "view_closed", user: { id: "U0ALICE" } });
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("");
  });
});

describe("postOrUpdate", () => {
  it("replaces the command's reply through response_url when no bot token is set", async () => {
    const created = await createTask({ prompt: script([{ text: "done" }]) });
    const task = await waitForStatus(created.id, ["succeeded"]);
    const at = place();
    const target = await postOrUpdate({ ...env, SLACK_BOT_TOKEN: "" }, { channel: at.channel, responseUrl: at.responseUrl }, task, taskLinks(ORIGIN, task.id));
    expect(target).toEqual({ channel: at.channel, responseUrl: at.responseUrl });
    const [call] = await waitForCalls(toResponseUrl(at.responseUrl));
    expect(call!.body).toMatchObject({ response_type: "in_channel", replace_original: true });
    expect(textsOf(call!.body.blocks)[0]).toContain(task.id);
  });

  it("the task agent keeps the posted message current until the task ends", async () => {
    const at = place();
    const id = taskIdOf(await slash("acme/widgets add a PROGRESS.md", at));
    await waitForStatus(id, ["succeeded"]);
    const [posted] = await waitForCalls(inChannel(at.channel, "chat.postMessage"));
    const [finished] = await waitForCalls((call) => inChannel(at.channel, "chat.update")(call) && textsOf(call.body.blocks)[0]!.includes("*Succeeded*"));
    expect(finished!.ts).toBe(posted!.ts);
  });

  it("posts once, then updates the same message, with the ts Slack assigned", async () => {
    const created = await createTask({ prompt: script([{ text: "done" }]) });
    const task = await waitForStatus(created.id, ["succeeded"]);
    const at = place();
    const first = await postOrUpdate(env, { channel: at.channel }, task, taskLinks(ORIGIN, task.id));
    expect(first.ts).toMatch(/^\d+\.\d{6}$/);
    const second = await postOrUpdate(env, first, task, taskLinks(ORIGIN, task.id));
    expect(second).toEqual(first);
    const calls = (await slackRecord()).calls.filter((call) => call.body.channel === at.channel);
    expect(calls.map((call) => [call.method, call.ts])).toEqual([
      ["chat.postMessage", first.ts],
      ["chat.update", first.ts],
    ]);
  });
});

describe("/sortie plan <repo> <spec>", () => {
  it("plans, posts the plan with an Approve button, and the button starts its subtasks", async () => {
    const at = place();
    const plan = { summary: "One part.", subtasks: [{ key: "only", title: "the only part", prompt: `do it\n${script([{ tool: "Write", input: { file_path: "only/o.txt", content: "o\n" } }, { text: "Done." }])}`, owns: ["only/**"] }] };
    const planner = script([{ tool: "Bash", input: { command: `cat > "$SORTIE_PLAN_FILE" <<'JSON'\n${JSON.stringify(plan)}\nJSON` } }, { text: "Planned." }]);
    const reply = await slash(`plan acme/widgets split the work\n${planner}`, at);
    expect(reply.response_type).toBe("ephemeral");
    const id = /Planning `([a-z0-9]{19})`/.exec(reply.text)?.[1] ?? "";
    expect(id).not.toBe("");
    // Once written, the plan's message carries the Approve button with the plan's id.
    const approvable = await waitForCalls((call) => (call.method === "chat.postMessage" || call.method === "chat.update") && call.body.channel === at.channel && buttonsOf(call.body.blocks).some((b) => b.action_id === "sortie_plan_approve"), 1, 60_000);
    const posted = (await slackRecord()).calls.find(inChannel(at.channel, "chat.postMessage"))!;
    expect(buttonsOf(approvable[0]!.body.blocks).find((b) => b.action_id === "sortie_plan_approve")?.value).toBe(id);
    expect(textsOf(approvable[0]!.body.blocks).join("\n")).toContain("*only* the only part");
    expect((await (await api(`/api/plans/${id}`)).json()) as { status: string }).toMatchObject({ status: "awaiting_approval", createdBy: "slack:T0ACME:U0ALICE" });
    const pressed = await press("sortie_plan_approve", id, { ...at, ts: posted.ts! });
    expect(pressed.status).toBe(200);
    await waitForCalls(toResponseUrl(at.responseUrl), 1);
    // The plan runs on to its end; its message is updated in place, without the button.
    const deadline = Date.now() + 120_000;
    let status = "";
    while (!["succeeded", "failed"].includes(status)) {
      if (Date.now() > deadline) throw new Error(`plan ${id} still ${status}`);
      await new Promise((resolve) => setTimeout(resolve, 300));
      status = ((await (await api(`/api/plans/${id}`)).json()) as { status: string }).status;
    }
    expect(status).toBe("succeeded");
    const updates = await waitForCalls((call) => call.method === "chat.update" && call.body.ts === posted.ts && /succeeded/.test(call.body.text ?? ""), 1);
    expect(buttonsOf(updates.at(-1)!.body.blocks)).toEqual([]);
  });
});
