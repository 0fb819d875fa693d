/**
 * The GitHub side: the webhook that turns labeled issues and `/sortie`
 * comments into tasks, and what Sortie says to GitHub (tokens, pull requests,
 * comments), against the REST API stand-in (test/standins/github.mjs), which
 * checks app JWTs and token scopes as GitHub does and refuses anything else.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { afterAll, beforeEach, describe, expect, inject, it } from "vitest";
import { buildApp } from "../../src/api/app.ts";
import { SortieError } from "../../src/errors.ts";
import { commentOnIssue, defaultBranch, mintCommentToken, mintPushToken, openPullRequest, pullRequestText } from "../../src/publish/github.ts";
import { scrubText } from "../../src/redact.ts";
import { toPkcs8Pem } from "../../src/publish/pem.ts";
import type { TaskState } from "../../src/schema.ts";
import type { GitHubCall, GitHubFault } from "../standins/github.d.mts";
import { api, countTasks, getTask, scripted, waitForStatus } from "./helpers.ts";

const SECRET = "test-github-webhook-secret";
/** Tasks this file started; each must have ended before the next file runs. */
const started: string[] = [];

beforeEach(async () => {
  await fetch(`${env.GITHUB_API_URL}/__calls`, { method: "DELETE" });
});

afterAll(async () => {
  for (const id of started) {
    const task = await getTask(id);
    if (task.status === "queued" || task.status === "running") await api(`/api/tasks/${id}/cancel`, { method: "POST" });
    await waitForStatus(id, ["succeeded", "failed", "cancelled", "timed_out"]);
  }
});

async function githubCalls(): Promise<GitHubCall[]> {
  const response = await fetch(`${env.GITHUB_API_URL}/__calls`);
  return ((await response.json()) as { calls: GitHubCall[] }).calls;
}

async function failNext(fault: GitHubFault): Promise<void> {
  await fetch(`${env.GITHUB_API_URL}/__faults`, { method: "POST", body: JSON.stringify(fault) });
}

/** Polls the stand-in until a call matches (the webhook's reply is posted after the answer, in waitUntil). */
async function waitForCall(match: (call: GitHubCall) => boolean, timeoutMs = 10_000): Promise<GitHubCall> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = (await githubCalls()).find(match);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no such GitHub call; got ${JSON.stringify(await githubCalls())}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function signature(body: string, secret = SECRET): Promise<string> {
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(body)));
  return `sha256=${Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

let deliveries = 0;

/** A delivery as GitHub sends it: signed with the webhook secret unless `signature` says otherwise. */
async function delivery(event: string, payload: unknown, options: { delivery?: string; signature?: string | null } = {}): Promise<Request> {
  const body = JSON.stringify(payload);
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "x-github-event": event,
    "x-github-delivery": options.delivery ?? `delivery-${Date.now()}-${++deliveries}`,
    "user-agent": "GitHub-Hookshot/standin",
  };
  const signed = options.signature === undefined ? await signature(body) : options.signature;
  if (signed !== null) headers["x-hub-signature-256"] = signed;
  return new Request("https://sortie.test/github/webhook", { method: "POST", headers, body });
}

async function deliver(event: string, payload: unknown, options: { delivery?: string; signature?: string | null } = {}): Promise<Response> {
  return exports.default.fetch(await delivery(event, payload, options));
}

const repository = { full_name: "acme/widgets", name: "widgets", owner: { login: "acme" } };

function labeled(number: number, options: { label?: string; title?: string; body?: string } = {}) {
  return {
    action: "labeled",
    label: { name: options.label ?? "sortie" },
    issue: { number, title: options.title ?? "Widgets crash when empty", body: options.body ?? "Calling widget() on an empty list throws.", user: { login: "carol" } },
    repository,
    sender: { login: "alice" },
  };
}

function commented(number: number, body: string, association: string, options: { pullRequest?: boolean } = {}) {
  return {
    action: "created",
    issue: {
      number,
      title: "Gadget colours are wrong",
      body: "The gadget should be blue.",
      ...(options.pullRequest ? { pull_request: { url: `https://api.github.com/repos/acme/widgets/pulls/${number}` } } : {}),
    },
    comment: { body, user: { login: "bob" }, author_association: association },
    repository,
    sender: { login: "bob" },
  };
}

describe("the webhook's signature", () => {
  it("refuses a delivery without X-Hub-Signature-256", async () => {
    const before = await countTasks();
    const response = await deliver("issues", labeled(1), { signature: null });
    expect(response.status).toBe(401);
    expect(await response.json()).toEqual({ error: { code: "github_missing_signature", message: "X-Hub-Signature-256 is required" } });
    expect(await countTasks()).toBe(before);
  });

  it("refuses a delivery signed with another secret, or a body changed after signing", async () => {
    const before = await countTasks();
    const wrongSecret = await deliver("issues", labeled(1), { signature: await signature(JSON.stringify(labeled(1)), "not-the-secret") });
    expect(wrongSecret.status).toBe(401);
    expect(((await wrongSecret.json()) as { error: { code: string } }).error.code).toBe("github_bad_signature");

    const tampered = await deliver("issues", labeled(1), { signature: await signature(JSON.stringify(labeled(2))) });
    expect(tampered.status).toBe(401);
    const garbage = await deliver("issues", labeled(1), { signature: "sha256=not-hex" });
    expect(garbage.status).toBe(401);
    expect(await countTasks()).toBe(before);
  });

  it("accepts a valid signature, and answers events Sortie does not act on with 202 ignored", async () => {
    const ping = await deliver("ping", { zen: "Keep it logically awesome.", hook_id: 1 });
    expect(ping.status).toBe(202);
    expect(await ping.json()).toEqual({ ignored: "event ping is not one Sortie acts on" });
    const opened = await deliver("issues", { ...labeled(1), action: "opened" });
    expect(await opened.json()).toEqual({ ignored: "issues.opened is not one Sortie acts on" });
  });

  it("refuses every delivery when GITHUB_WEBHOOK_SECRET is unset, naming it", async () => {
    const ctx = createExecutionContext();
    const response = await buildApp().fetch(await delivery("issues", labeled(1)), { ...env, GITHUB_WEBHOOK_SECRET: "" }, ctx);
    await waitOnExecutionContext(ctx);
    expect(response.status).toBe(401);
    const { error } = (await response.json()) as { error: { code: string; message: string } };
    expect(error.code).toBe("github_webhook_not_configured");
    expect(error.message).toContain("GITHUB_WEBHOOK_SECRET");
  });
});

describe("tasks from GitHub", () => {
  it("an issue labeled sortie starts a task keyed to it and gets a comment with the viewer link", async () => {
    const response = await deliver("issues", labeled(7));
    expect(response.status, await response.clone().text()).toBe(202);
    const answer = (await response.json()) as { task: string; key: string; viewer: string };
    started.push(answer.task);
    expect(answer.key).toBe("github:acme/widgets#7");
    expect(answer.viewer).toBe(`https://sortie.test/tasks/${answer.task}`);

    const task = await getTask(answer.task);
    expect(task).toMatchObject({ repo: "acme/widgets", source: "github", createdBy: "github:alice", key: "github:acme/widgets#7" });
    expect(task.prompt.split("\n")[0]).toBe("Widgets crash when empty");
    expect(task.prompt).toContain("Calling widget() on an empty list throws.");

    const comment = await waitForCall((call) => call.method === "POST" && call.path === "/repos/acme/widgets/issues/7/comments");
    expect(comment.status).toBe(201);
    expect(comment.authKind).toBe("installation");
    expect(String(comment.body?.body)).toContain(`https://sortie.test/tasks/${answer.task}`);
    // The reply's token was minted for this one repository, and may not push.
    const mint = (await githubCalls()).find((call) => call.path === "/app/installations/101/access_tokens");
    expect(mint?.body).toEqual({ repositories: ["widgets"], permissions: { issues: "write", pull_requests: "write" } });
    expect((await githubCalls()).filter((call) => call.unexpected)).toEqual([]);
  });

  it("a label other than sortie starts nothing", async () => {
    const before = await countTasks();
    const response = await deliver("issues", labeled(8, { label: "bug" }));
    expect(response.status).toBe(202);
    expect(await response.json()).toEqual({ ignored: "label bug is not sortie" });
    expect(await countTasks()).toBe(before);
  });

  it("`/sortie fix it` from a MEMBER starts a task with the request and the issue as context", async () => {
    const response = await deliver("issue_comment", commented(9, "/sortie fix it", "MEMBER", { pullRequest: true }));
    expect(response.status, await response.clone().text()).toBe(202);
    const { task: id } = (await response.json()) as { task: string };
    started.push(id);
    const task = await getTask(id);
    expect(task).toMatchObject({ source: "github", createdBy: "github:bob", key: "github:acme/widgets#9" });
    expect(task.prompt.split("\n")[0]).toBe("fix it");
    expect(task.prompt).toContain('pull request acme/widgets#9, titled "Gadget colours are wrong"');
    expect(task.prompt).toContain("The gadget should be blue.");
    await waitForCall((call) => call.path === "/repos/acme/widgets/issues/9/comments" && call.status === 201);
  });

  it("`/sortie` from an author with no association starts nothing, and ordinary comments are ignored", async () => {
    const before = await countTasks();
    const stranger = await deliver("issue_comment", commented(10, "/sortie fix it", "NONE"));
    expect(stranger.status).toBe(202);
    expect(((await stranger.json()) as { ignored: string }).ignored).toContain("bob is NONE");
    const chatter = await deliver("issue_comment", commented(10, "thanks, looks good", "OWNER"));
    expect(await chatter.json()).toEqual({ ignored: "the comment is not a /sortie command" });
    expect(await countTasks()).toBe(before);
    expect(await githubCalls()).toEqual([]);
  });

  it("a redelivery of the same X-GitHub-Delivery starts no second task", async () => {
    const before = await countTasks();
    const first = await deliver("issues", labeled(11), { delivery: "72d3162e-cc78-11e3-81ab-4c9367dc0958" });
    expect(first.status).toBe(202);
    const { task: id } = (await first.json()) as { task: string };
    started.push(id);
    const again = await deliver("issues", labeled(11), { delivery: "72d3162e-cc78-11e3-81ab-4c9367dc0958" });
    expect(again.status).toBe(202);
    expect(await again.json()).toEqual({ ignored: "duplicate delivery", task: id });
    expect(await countTasks()).toBe(before + 1);
    await waitForCall((call) => call.path === "/repos/acme/widgets/issues/11/comments" && call.status === 201);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await githubCalls()).filter((call) => call.path === "/repos/acme/widgets/issues/11/comments")).toHaveLength(1);
  });

  it("a second request on an issue whose task is still running is ignored, naming the holder", async () => {
    const busy = scripted([{ tool: "Bash", input: { command: "node -e 'setTimeout(() => {}, 60000)'" } }], "Slow issue");
    const first = await deliver("issues", labeled(12, { body: busy }));
    const { task: holder } = (await first.json()) as { task: string };
    started.push(holder);
    const before = await countTasks();
    const second = await deliver("issue_comment", commented(12, "/sortie try again", "OWNER"));
    expect(second.status).toBe(202);
    expect(await second.json()).toEqual({ ignored: "already running", holder });
    expect(await countTasks()).toBe(before);
    await waitForCall((call) => call.path === "/repos/acme/widgets/issues/12/comments" && call.status === 201);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await githubCalls()).filter((call) => call.path === "/repos/acme/widgets/issues/12/comments")).toHaveLength(1);
    await api(`/api/tasks/${holder}/cancel`, { method: "POST" });
  });
});

describe("tokens", () => {
  it("mintPushToken scopes a fresh app token to the one repository, with contents and pull_requests write", async () => {
    const first = await mintPushToken(env, "acme/widgets");
    const second = await mintPushToken(env, "acme/widgets");
    expect(first.kind).toBe("app");
    expect(first.token).toMatch(/^ghs_/);
    expect(second.token).not.toBe(first.token);
    expect(first.expiresAt).toBeGreaterThan(Date.now() + 50 * 60_000);

    const calls = await githubCalls();
    expect(calls.map((call) => `${call.method} ${call.path} ${call.authKind} ${call.status}`)).toEqual([
      "GET /repos/acme/widgets/installation jwt 200",
      "POST /app/installations/101/access_tokens jwt 201",
      "GET /repos/acme/widgets/installation jwt 200",
      "POST /app/installations/101/access_tokens jwt 201",
    ]);
    for (const call of calls.filter((c) => c.method === "POST")) {
      expect(call.body).toEqual({ repositories: ["widgets"], permissions: { contents: "write", pull_requests: "write" } });
    }
    // The token works on its repository and nowhere else.
    expect(await defaultBranch(env, first.token, "acme/widgets")).toBe("main");
    await expect(defaultBranch(env, first.token, "acme/gadgets")).rejects.toMatchObject({ code: "github_not_found" });
  });

  it("reads the app key as PKCS#8 as well as PKCS#1", async () => {
    // Web Crypto (and so @octokit/auth-app in workerd) takes PKCS#8 only: GitHub's PKCS#1 key is re-framed, byte for byte.
    expect(toPkcs8Pem(env.GITHUB_APP_PRIVATE_KEY!, "GITHUB_APP_PRIVATE_KEY")).toBe(inject("githubAppPrivateKeyPkcs8"));
    const token = await mintPushToken({ ...env, GITHUB_APP_PRIVATE_KEY: inject("githubAppPrivateKeyPkcs8") }, "acme/gadgets");
    expect(token.kind).toBe("app");
    const escaped = await mintPushToken({ ...env, GITHUB_APP_PRIVATE_KEY: env.GITHUB_APP_PRIVATE_KEY!.replace(/\n/g, "\\n") }, "acme/gadgets");
    expect(escaped.kind).toBe("app");
    expect(await defaultBranch(env, token.token, "acme/gadgets")).toBe("trunk");
  });

  it("falls back to GITHUB_TOKEN without an app, and names the missing keys without either", async () => {
    const pat = inject("githubPersonalToken");
    expect(await mintPushToken({ ...env, GITHUB_APP_ID: "", GITHUB_TOKEN: pat }, "acme/widgets")).toEqual({ token: pat, expiresAt: null, kind: "pat" });
    const error = await mintPushToken({ ...env, GITHUB_APP_ID: "", GITHUB_APP_PRIVATE_KEY: "", GITHUB_TOKEN: "" }, "acme/widgets").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SortieError);
    expect(error).toMatchObject({ code: "github_not_configured", status: 422 });
    expect((error as Error).message).toContain("GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY");
    expect((error as Error).message).toContain("GITHUB_TOKEN");
    const halfApp = await mintPushToken({ ...env, GITHUB_APP_PRIVATE_KEY: "", GITHUB_TOKEN: "" }, "acme/widgets").catch((e: unknown) => e);
    expect((halfApp as Error).message).toContain("set GITHUB_APP_PRIVATE_KEY (a GitHub App)");
  });

  it("says so when the app is not installed on the repository, or its key is not a PEM RSA key", async () => {
    await expect(mintPushToken(env, "acme/unlisted")).rejects.toMatchObject({ code: "github_app_not_installed", status: 422 });
    const error = await mintPushToken({ ...env, GITHUB_APP_PRIVATE_KEY: "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n-----END OPENSSH PRIVATE KEY-----" }, "acme/widgets").catch(
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: "github_app_key_invalid" });
    expect((error as Error).message).not.toContain("b3BlbnNzaC1rZXk");
  });

  it("no token ever appears in an error message, even when GitHub echoes it", async () => {
    const { token } = await mintPushToken(env, "acme/widgets");
    await failNext({ method: "POST", path: "/repos/acme/widgets/pulls", status: 500, message: "internal error", echoCredential: true });
    const error = await openPullRequest(env, token, { repo: "acme/widgets", head: "sortie/x/0", base: "main", title: "t", body: "b" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SortieError);
    const failedCall = (await githubCalls()).find((call) => call.path === "/repos/acme/widgets/pulls");
    expect(failedCall?.credential).toBe(token); // the stand-in did echo it
    expect((error as SortieError).message).toContain("(GitHub answered 500)");
    expect((error as SortieError).message).not.toContain(token);
    expect((error as SortieError).message).not.toContain("ghs_");
    expect((error as SortieError).cause).toBeUndefined();

    await failNext({ method: "POST", path: "/app/installations/101/access_tokens", status: 403, message: "suspended", echoCredential: true });
    const mintError = await mintPushToken(env, "acme/widgets").catch((e: unknown) => e);
    expect(mintError).toMatchObject({ code: "github_auth_failed" });
    expect((mintError as Error).message).toContain("suspended");
    expect((mintError as Error).message).not.toMatch(/eyJ[A-Za-z0-9_-]+\./);

    const pat = inject("githubPersonalToken");
    await failNext({ method: "POST", path: "/repos/acme/widgets/issues/3/comments", status: 502, message: "bad gateway", echoCredential: true });
    const commentError = await commentOnIssue(env, pat, { repo: "acme/widgets", number: 3, body: "hi" }).catch((e: unknown) => e);
    expect((commentError as Error).message).not.toContain(pat);
  });

  it("redaction removes every token shape GitHub issues", () => {
    const samples = [
      "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
      "gho_16C7e42F292c6912E7710c838347Ae178B4a",
      "ghu_16C7e42F292c6912E7710c838347Ae178B4a",
      "ghs_16C7e42F292c6912E7710c838347Ae178B4a",
      "ghr_1B4a2e77838347a7E420ce178F2E7c6912E169246c34E1ccbF66C46812d16D5B1A9Dc86A1498",
      "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUV",
      "v1.1f699f1069f60xxx1f699f1069f60xxx1f699f10".replace(/x/g, "a"),
    ];
    for (const sample of samples) {
      expect(scrubText(`push to https://x-access-token:${sample}@github.com/acme/widgets failed`)).toBe(
        "push to https://x-access-token:[REDACTED]@github.com/acme/widgets failed",
      );
    }
    expect(scrubText("a ghost_story and v1.2.3 stay")).toBe("a ghost_story and v1.2.3 stay");
  });
});

describe("pull requests", () => {
  it("openPullRequest sends the title, body, base, head and draft flag", async () => {
    const { token } = await mintPushToken(env, "acme/widgets");
    const opened = await openPullRequest(env, token, { repo: "acme/widgets", head: "sortie/abc/0", base: "main", title: "Sortie: fix it", body: "Fixes #4", draft: true });
    expect(opened.url).toBe(`https://github.com/acme/widgets/pull/${opened.number}`);
    const call = (await githubCalls()).find((c) => c.path === "/repos/acme/widgets/pulls");
    expect(call).toMatchObject({ method: "POST", authKind: "installation", status: 201 });
    expect(call?.body).toEqual({ head: "sortie/abc/0", base: "main", title: "Sortie: fix it", body: "Fixes #4", draft: true });
  });

  it("pullRequestText titles by the prompt's first line and says Fixes #N for an issue of the same repository", () => {
    const task = taskFixture({ key: "github:acme/widgets#12", prompt: `${"Make the widget list handle empty input gracefully ".repeat(3)}\n\nmore detail @carol` });
    const { title, body } = pullRequestText(task, 0, { viewer: "https://sortie.test/tasks/t1" }, "Handled the empty list; fixes #99 too. Thanks @dave.");
    expect(title.startsWith("Sortie: Make the widget list handle empty input")).toBe(true);
    expect(title.length).toBeLessThanOrEqual("Sortie: ".length + 72);
    expect(title.endsWith("…")).toBe(true);
    expect(body).toContain("Handled the empty list");
    expect(body).toContain("2 files changed, +10 −3");
    expect(body).toContain("cost $0.42");
    expect(body).toContain("[Watch the run in Sortie's viewer](https://sortie.test/tasks/t1)");
    expect(body).toContain("more detail @carol"); // verbatim, inside a code block
    expect(body.trimEnd().endsWith("Fixes #12")).toBe(true);
    // Text from the agent cannot close other issues or ping people.
    expect(body).not.toMatch(/fixes #99/i);
    expect(body).not.toContain("@dave");

    expect(pullRequestText(taskFixture({ key: "github:acme/other#12" }), 0, { viewer: "v" }, "").body).not.toContain("Fixes #");
    expect(pullRequestText(taskFixture({ key: null }), 0, { viewer: "v" }, "").body).toContain("_The agent left no summary._");
  });
});

function taskFixture(overrides: Partial<TaskState>): TaskState {
  return {
    id: "t1",
    repo: "acme/widgets",
    branch: null,
    prompt: "fix it",
    model: null,
    maxTurns: 50,
    timeoutMinutes: 30,
    source: "github",
    createdBy: "github:alice",
    status: "succeeded",
    createdAt: 0,
    startedAt: 0,
    endedAt: 1,
    costUsd: 0.42,
    error: null,
    key: null,
    maxCostUsd: 10,
    judge: null,
    winner: null,
    output: "diff",
    publication: null,
    runs: [
      {
        index: 0,
        status: "succeeded",
        model: null,
        promptSuffix: null,
        attempts: [],
        phase: null,
        branch: "sortie/t1/0",
        sessionId: null,
        baseCommit: null,
        startedAt: 0,
        endedAt: 1,
        durationMs: 1,
        numTurns: 3,
        costUsd: 0.42,
        diff: { files: 2, additions: 10, deletions: 3, bytes: 400 },
        error: null,
        inputTokens: 0,
        outputTokens: 0,
        pendingMessages: 0,
        workspaceUntil: null,
      },
    ],
    ...overrides,
  };
}
