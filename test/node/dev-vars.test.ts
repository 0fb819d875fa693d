/**
 * Every setting a user puts in .dev.vars reaches the Worker under `npm run
 * dev`, although wrangler.jsonc's `secrets.required` names only two of them:
 * Slack and GitHub secrets and a var override written into the file alone
 * (nothing of Sortie's in the environment) each take effect, and the start-up
 * report says what is configured without printing a value.
 */
import { createHmac } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDevServer, type DevServer } from "../support/dev-server.ts";

const SETTINGS = {
  SORTIE_ADMIN_TOKEN: "file-admin-token-0123456789",
  // A dollar sign stays a dollar sign: nothing expands it.
  SLACK_SIGNING_SECRET: "file-slack-signing-$ecret-abc",
  GITHUB_WEBHOOK_SECRET: "file-github-webhook-secret-def",
  OPENAI_API_KEY: "file-openai-key-unshaped-ghi",
  MAX_BODY_BYTES: "2000",
};

let server: DevServer;
let dir: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "sortie-dev-vars-"));
  const file = path.join(dir, ".dev.vars");
  const lines = Object.entries(SETTINGS).map(([key, value]) => `${key}="${value}"`);
  fs.writeFileSync(file, ["# written by the test, as a user would", ...lines, "SLACK_BOT_TOKEN=", ""].join("\n"), { mode: 0o600 });
  server = await startDevServer({}, { devVars: file });
});

afterAll(async () => {
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

function slackSignature(body: string, secret: string) {
  const timestamp = Math.floor(Date.now() / 1000);
  return { "x-slack-request-timestamp": String(timestamp), "x-slack-signature": `v0=${createHmac("sha256", secret).update(`v0:${timestamp}:${body}`).digest("hex")}` };
}

describe("settings from .dev.vars under npm run dev", () => {
  it("a Slack command signed with the file's signing secret is accepted, a wrongly signed one is not", async () => {
    const body = new URLSearchParams({
      team_id: "T0TEAM",
      user_id: "U0USER",
      channel_id: "C0CHANNEL",
      command: "/sortie",
      text: "help",
      response_url: "https://hooks.slack.invalid/respond",
      trigger_id: "1.2.3",
    }).toString();
    const headers = { "content-type": "application/x-www-form-urlencoded" };
    const signed = await fetch(`${server.url}/slack/commands`, { method: "POST", body, headers: { ...headers, ...slackSignature(body, SETTINGS.SLACK_SIGNING_SECRET) } });
    expect(signed.status, await signed.clone().text()).toBe(200);
    expect(JSON.stringify(await signed.json())).toContain("/sortie help");
    const forged = await fetch(`${server.url}/slack/commands`, { method: "POST", body, headers: { ...headers, ...slackSignature(body, "some-other-secret") } });
    expect(forged.status).toBe(401);
  });

  it("a GitHub delivery signed with the file's webhook secret is accepted, a wrongly signed one is not", async () => {
    const body = JSON.stringify({ zen: "Keep it logically awesome.", hook_id: 1 });
    const sign = (secret: string) => `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
    const headers = { "content-type": "application/json", "x-github-event": "ping", "x-github-delivery": "delivery-1" };
    const signed = await fetch(`${server.url}/github/webhook`, { method: "POST", body, headers: { ...headers, "x-hub-signature-256": sign(SETTINGS.GITHUB_WEBHOOK_SECRET) } });
    expect(signed.status, await signed.clone().text()).toBe(202);
    const forged = await fetch(`${server.url}/github/webhook`, { method: "POST", body, headers: { ...headers, "x-hub-signature-256": sign("some-other-secret") } });
    expect(forged.status).toBe(401);
  });

  it("the file's var override is in force and its admin token is the one the API takes", async () => {
    const auth = { authorization: `Bearer ${SETTINGS.SORTIE_ADMIN_TOKEN}` };
    const large = await fetch(`${server.url}/api/tasks`, { method: "POST", headers: auth, body: JSON.stringify({ repo: "acme/widgets", prompt: "x".repeat(3000) }) });
    expect(large.status).toBe(413);
    const small = await fetch(`${server.url}/api/tasks?limit=1`, { headers: auth });
    expect(small.status).toBe(200);
  });

  it("the start-up report names what is configured and what is off, never a value", () => {
    const output = server.output();
    expect(output).toMatch(/Slack: signing secret yes \(file\), bot token no/);
    expect(output).toMatch(/GitHub: off, webhook secret yes \(file\)/);
    expect(output).toMatch(/Codex \(OPENAI_API_KEY\): yes \(file\)/);
    expect(output).toMatch(/Gemini CLI \(GEMINI_API_KEY\): no/);
    expect(output).toMatch(/settings passed on: .*MAX_BODY_BYTES/);
    for (const value of Object.values(SETTINGS).filter((v) => v.length > 8)) expect(output).not.toContain(value);
  });
});
