/**
 * Sortie tends the pull requests it opened: a red check, a trusted review or
 * a merge conflict becomes a fix run that starts from the pull request's
 * branch and pushes a new commit onto it, within one attempt budget. Real
 * Claude Code against the scripted model; GitHub is the REST stand-in
 * (test/standins/github.mjs), whose branch heads are the fixture's bare
 * repositories, so every push here is a real push.
 */
import { env, exports } from "cloudflare:workers";
import { getAgentByName } from "agents";
import { beforeEach, describe, expect, it } from "vitest";
import type { TaskView } from "../../src/schema.ts";
import type { GitHubCall } from "../standins/github.d.mts";
import { api, createTask, getTask, readEvents, scripted, waitForStatus } from "./helpers.ts";

const SECRET = "test-github-webhook-secret";
const REPO = "acme/widgets";
const repository = { full_name: REPO, name: "widgets", owner: { login: "acme" } };
const write = (file: string, content: string) => ({ tool: "Write", input: { file_path: file, content } });

beforeEach(async () => {
  await fetch(`${env.GITHUB_API_URL}/__calls`, { method: "DELETE" });
});

async function githubCalls(): Promise<GitHubCall[]> {
  return ((await (await fetch(`${env.GITHUB_API_URL}/__calls`)).json()) as { calls: GitHubCall[] }).calls;
}

async function standin(path: string, body: unknown): Promise<Record<string, unknown>> {
  const response = await fetch(`${env.GITHUB_API_URL}${path}`, { method: "POST", body: JSON.stringify(body) });
  expect(response.status, await response.clone().text()).toBe(200);
  return (await response.json()) as Record<string, unknown>;
}

async function signature(body: string): Promise<string> {
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(SECRET), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(body)));
  return `sha256=${Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

let deliveries = 0;

/** A signed delivery; the same `id` twice is a redelivery. */
async function deliver(event: string, payload: unknown, id = `tending-${Date.now()}-${++deliveries}`): Promise<{ tending: string; reason: string; task?: string }> {
  const body = JSON.stringify(payload);
  const response = await exports.default.fetch(
    new Request("https://sortie.test/github/webhook", {
      method: "POST",
      headers: { "content-type": "application/json", "x-github-event": event, "x-github-delivery": id, "x-hub-signature-256": await signature(body) },
      body,
    }),
  );
  expect(response.status, await response.clone().text()).toBe(202);
  return (await response.json()) as { tending: string; reason: string; task?: string };
}

/** Runs `command` with `vars` in a scratch sandbox of the local host (git against the fixture's bare repositories). */
async function shell(command: string, vars: Record<string, string> = {}): Promise<string> {
  const headers = { authorization: `Bearer ${env.LOCAL_SANDBOX_TOKEN}` };
  const base = `${env.LOCAL_SANDBOX_URL}/v1/sandboxes/probe-${Math.random().toString(36).slice(2, 10)}`;
  await fetch(base, { method: "POST", headers });
  try {
    const response = await fetch(`${base}/exec`, {
      method: "POST",
      headers,
      body: JSON.stringify({ command: `set -e\ngit clone --quiet "$REPO" repo && cd repo\n${command}`, env: { REPO: `${env.GIT_BASE_URL}/${REPO}.git`, ...vars } }),
    });
    const result = (await response.json()) as { stdout: string; stderr: string; exitCode: number };
    expect(result.exitCode, result.stderr).toBe(0);
    return result.stdout;
  } finally {
    await fetch(base, { method: "DELETE", headers });
  }
}

async function waitFor<T>(what: string, probe: () => Promise<T | null | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
}

async function published(id: string): Promise<TaskView> {
  return waitFor(`the publication of ${id}`, async () => {
    const task = await getTask(id);
    if (task.publication?.status === "failed") throw new Error(`publication failed: ${JSON.stringify(task.publication.error)}`);
    return task.publication?.status === "succeeded" ? task : null;
  });
}

/** A pull request Sortie opened: a task with output "pr", run and published. */
async function sortiePullRequest(prompt: string): Promise<{ task: TaskView; number: number; branch: string; head: string }> {
  const created = await createTask({ output: "pr", prompt });
  await waitForStatus(created.id, ["succeeded"]);
  const task = await published(created.id);
  return { task, number: task.publication!.pullRequest!.number, branch: task.publication!.branch, head: task.publication!.commit! };
}

function checkRun(number: number, headSha: string, run: { id: number; name: string; conclusion?: string; output?: Record<string, string> }) {
  return {
    action: "completed",
    check_run: {
      id: run.id,
      name: run.name,
      head_sha: headSha,
      status: "completed",
      conclusion: run.conclusion ?? "failure",
      output: run.output ?? { title: null, summary: null, text: null },
      pull_requests: [{ number, head: { sha: headSha }, base: { ref: "main" } }],
    },
    repository,
    sender: { login: "github-actions[bot]" },
  };
}

async function comments(number: number): Promise<string[]> {
  return (await githubCalls()).filter((c) => c.method === "POST" && c.path === `/repos/${REPO}/issues/${number}/comments` && c.status === 201).map((c) => String(c.body?.body));
}

async function fixPublished(id: string): Promise<TaskView> {
  await waitForStatus(id, ["succeeded", "failed"], 60_000);
  return published(id);
}

describe("a red check on a Sortie pull request", () => {
  it("becomes a new commit on the same branch that does what the check asked, and a comment linking the run", async () => {
    const pr = await sortiePullRequest(scripted([write("src/widget.js", "export const widget = () => 'blue widget';\n")], "make the widget blue"));
    const fixScript = scripted([write("src/widget.js", "export const widget = () => 'blue widget';\n// lint: checked\n"), { text: "Added the lint marker to src/widget.js." }], "lint: src/widget.js must end with the line `// lint: checked`");
    await standin("/__check-runs", {
      repo: REPO,
      id: 7001,
      name: "lint",
      head_sha: pr.head,
      conclusion: "failure",
      output: { title: "Lint failed", summary: "1 error" },
      annotations: [{ path: "src/widget.js", start_line: 1, end_line: 1, annotation_level: "failure", title: "marker", message: "missing `// lint: checked`" }],
    });
    const payload = checkRun(pr.number, pr.head, { id: 7001, name: "lint", output: { title: "Lint failed", summary: "1 error", text: fixScript } });
    const answer = await deliver("check_run", payload, `check-${pr.number}`);
    expect(answer).toMatchObject({ tending: "started" });
    // The same delivery again starts nothing.
    expect(await deliver("check_run", payload, `check-${pr.number}`)).toMatchObject({ tending: "deduplicated" });
    const fix = await getTask(answer.task!);
    expect(fix).toMatchObject({ source: "github", key: `github:${REPO}#pull/${pr.number}`, branch: pr.branch });
    expect(fix.prompt).toContain("### lint (failure)");
    expect(fix.prompt).toContain("Lint failed");
    expect(fix.prompt).toContain("src/widget.js:1: failure: marker: missing `// lint: checked`");
    expect(fix.prompt).toContain("## The original task\n\nmake the widget blue");

    const done = await fixPublished(fix.id);
    expect(done.runs[0]!.baseCommit).toBe(pr.head);
    const commit = done.publication!.commit!;
    expect(done.publication!.branch).toBe(pr.branch);
    // A new commit on top of Sortie's, on the same branch: no force push.
    const log = await shell('git fetch --quiet origin "$BRANCH" && git log --format=%H%x20%P -1 FETCH_HEAD && git show FETCH_HEAD:src/widget.js', { BRANCH: pr.branch });
    expect(log.split("\n")[0]).toBe(`${commit} ${pr.head}`);
    expect(log).toContain("// lint: checked");

    const said = await waitFor("the fix comment", async () => (await comments(pr.number)).find((c) => c.includes(commit.slice(0, 12))));
    expect(said).toContain("fixing the failing check `lint`");
    expect(said).toContain(`https://sortie.test/tasks/${fix.id}`);
    expect((await githubCalls()).filter((c) => c.unexpected)).toEqual([]);

    const original = await waitFor("the follow-up", async () => {
      const task = await getTask(pr.task.id);
      return task.publication?.followUps?.[0]?.status === "pushed" ? task : null;
    });
    expect(original.publication!.followUps).toEqual([expect.objectContaining({ task: fix.id, trigger: "check", status: "pushed", commit })]);
    const events = (await readEvents(pr.task.id)).map((e) => e.type);
    expect(events).toContain("tending.started");
    expect(events).toContain("tending.fix_ended");
    const audit = (await (await api(`/api/audit?task=${pr.task.id}`)).json()) as { entries: { action: string }[] };
    expect(audit.entries.map((e) => e.action)).toEqual(expect.arrayContaining(["pull_request.started", "pull_request.deduplicated"]));
  });
});
