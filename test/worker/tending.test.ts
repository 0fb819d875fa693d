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
import { claimTendingKey, endFix, findTendedPull, queueTrigger, recordTendedPull, takeAttempt } from "../../src/store/pull-requests.ts";
import type { GitHubCall } from "../standins/github.d.mts";
import { api, createTask, getTask, inScratchSandbox, readEvents, scripted, waitForStatus } from "./helpers.ts";

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
async function deliver(event: string, payload: unknown, id = `tending-${Date.now()}-${++deliveries}`): Promise<{ tending?: string; reason?: string; task?: string; ignored?: string }> {
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

/**
 * Runs `command` with `vars` in a scratch sandbox of the local host (git against the fixture's bare
 * repositories), as a person at their own machine would: outside the walls, which keep the fixture
 * repositories read-only to sandboxes.
 */
async function shell(command: string, vars: Record<string, string> = {}): Promise<string> {
  const result = await inScratchSandbox(`set -e\ngit clone --quiet "$REPO" repo && cd repo\n${command}`, { REPO: `${env.GIT_BASE_URL}/${REPO}.git`, ...vars }, { bookkeeping: true });
  expect(result.exitCode, result.stderr).toBe(0);
  return result.stdout;
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

describe("the tended pull requests' store", () => {
  it("lets one of two racing triggers take the attempt, and hands the queue to whoever ends the fix", async () => {
    const pull = { repo: "Acme/Race", number: 1, url: "u", branch: "b", base: "main", taskId: "t", prompt: "p", createdBy: "c", origin: "o", headSha: "0".repeat(40) };
    await recordTendedPull(env.DB, pull);
    await recordTendedPull(env.DB, { ...pull, headSha: "1".repeat(40) });
    expect((await findTendedPull(env.DB, "acme/race", 1))?.headSha).toBe("0".repeat(40));
    const taken = await Promise.all([takeAttempt(env.DB, "acme/race", 1, "fix-a", 2), takeAttempt(env.DB, "acme/race", 1, "fix-b", 2)]);
    expect(taken.filter(Boolean)).toHaveLength(1);
    const winner = taken[0] ? "fix-a" : "fix-b";
    const keys = await Promise.all([claimTendingKey(env.DB, "acme/race", 1, "check:x:lint"), claimTendingKey(env.DB, "acme/race", 1, "check:x:lint")]);
    expect(keys.filter(Boolean)).toHaveLength(1);
    await queueTrigger(env.DB, "acme/race", 1, { kind: "command", by: "olga", request: "one" });
    await queueTrigger(env.DB, "acme/race", 1, { kind: "command", by: "olga", request: "two" });
    expect(await endFix(env.DB, "acme/race", 1, "someone-else", null)).toBeNull();
    expect(await endFix(env.DB, "acme/race", 1, winner, "2".repeat(40))).toEqual([
      { kind: "command", by: "olga", request: "one" },
      { kind: "command", by: "olga", request: "two" },
    ]);
    expect(await findTendedPull(env.DB, "acme/race", 1)).toMatchObject({ fixTaskId: null, queued: [], attempts: 1, headSha: "2".repeat(40) });
    expect(await takeAttempt(env.DB, "acme/race", 1, "fix-c", 2)).toBe(true);
    await endFix(env.DB, "acme/race", 1, "fix-c", null);
    expect(await takeAttempt(env.DB, "acme/race", 1, "fix-d", 2)).toBe(false);
  });
});

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
    expect(done.publication!.pullRequest).toEqual(pr.task.publication!.pullRequest);
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

/** The head of `branch` in the fixture's bare repository. */
async function headOf(branch: string): Promise<string> {
  return (await shell('git ls-remote origin "refs/heads/$BRANCH" | cut -f1', { BRANCH: branch })).trim();
}

/** A commit pushed to `branch` by someone other than Sortie. */
async function pushAsPerson(branch: string, file: string, content: string): Promise<string> {
  const out = await shell(
    'git checkout --quiet "$BRANCH" && printf "%s" "$CONTENT" > "$FILE" && git add -A && git -c user.name=Person -c user.email=person@example.com commit --quiet -m "by hand" && git push --quiet origin "HEAD:refs/heads/$BRANCH" && git rev-parse HEAD',
    { BRANCH: branch, FILE: file, CONTENT: content },
  );
  return out.trim().split("\n").at(-1)!;
}

async function tasksFor(number: number): Promise<string[]> {
  const { results } = await env.DB.prepare("SELECT id FROM tasks WHERE prompt LIKE ?").bind(`Sortie opened pull request ${REPO}#${number} %`).all<{ id: string }>();
  return results.map((r) => r.id);
}

describe("what tending does not fix", () => {
  it("a check that also fails on the base branch is skipped with one comment", async () => {
    const pr = await sortiePullRequest(scripted([write("FLAKY.md", "flaky\n")], "document the flaky test"));
    const main = await headOf("main");
    await standin("/__check-runs", { repo: REPO, id: 7101, name: "e2e", head_sha: main, conclusion: "failure" });
    const suite = 5500 + pr.number;
    await standin("/__check-runs", { repo: REPO, id: 7102, name: "e2e", head_sha: pr.head, conclusion: "timed_out", check_suite_id: suite });
    const payload = checkRun(pr.number, pr.head, { id: 7102, name: "e2e", conclusion: "timed_out", output: { title: "e2e timed out", summary: "", text: "" } });
    expect(await deliver("check_run", payload)).toMatchObject({ tending: "skipped_pre_existing" });
    // The same failure reported by its check suite and its workflow run is the same (head, check): nothing new.
    const sender = { login: "github-actions[bot]" };
    expect(
      await deliver("check_suite", { action: "completed", check_suite: { id: suite, head_sha: pr.head, head_branch: pr.branch, conclusion: "failure", pull_requests: [{ number: pr.number }] }, repository, sender }),
    ).toMatchObject({ tending: "deduplicated" });
    expect(
      await deliver("workflow_run", { action: "completed", workflow_run: { id: 1, name: "CI", head_sha: pr.head, head_branch: pr.branch, conclusion: "failure", check_suite_id: suite, pull_requests: [] }, repository, sender }),
    ).toMatchObject({ tending: "deduplicated" });
    // A success asks for nothing.
    expect(await deliver("check_run", checkRun(pr.number, pr.head, { id: 7103, name: "unit", conclusion: "success" }))).toMatchObject({ ignored: expect.any(String) });
    const said = await comments(pr.number);
    expect(said).toHaveLength(1);
    expect(said[0]).toContain("`e2e` also fails on `main`");
    expect(await tasksFor(pr.number)).toEqual([]);
    const events = (await readEvents(pr.task.id)).map((e) => e.type);
    expect(events).toContain("tending.skipped_pre_existing");
  });

  it("a delivery that fails midway is acted on when GitHub delivers it again", async () => {
    const pr = await sortiePullRequest(scripted([write("RETRY.md", "v0\n")], "write the retry notes"));
    await standin("/__check-runs", { repo: REPO, id: 7601, name: "lint", head_sha: pr.head, conclusion: "failure" });
    await fetch(`${env.GITHUB_API_URL}/__faults`, { method: "POST", body: JSON.stringify({ method: "GET", path: `/repos/${REPO}/commits/main/check-runs`, status: 500 }) });
    const body = JSON.stringify(checkRun(pr.number, pr.head, { id: 7601, name: "lint", output: { title: "lint", summary: "", text: scripted([{ text: "nothing" }]) } }));
    const failed = await exports.default.fetch(
      new Request("https://sortie.test/github/webhook", {
        method: "POST",
        headers: { "content-type": "application/json", "x-github-event": "check_run", "x-github-delivery": "retry-1", "x-hub-signature-256": await signature(body) },
        body,
      }),
    );
    expect(failed.status).toBe(502);
    const again = await deliver("check_run", JSON.parse(body), "retry-1");
    expect(again).toMatchObject({ tending: "started" });
    await api(`/api/tasks/${again.task}/cancel`, { method: "POST" });
    await waitForStatus(again.task!, ["cancelled", "succeeded"]);
  });

  it("a push by a person stops tending, said once on the pull request", async () => {
    const pr = await sortiePullRequest(scripted([write("HANDS.md", "hands\n")], "write the hands notes"));
    const human = await pushAsPerson(pr.branch, "HANDS.md", "taken over\n");
    await standin("/__check-runs", { repo: REPO, id: 7201, name: "lint", head_sha: human, conclusion: "failure" });
    expect(await deliver("check_run", checkRun(pr.number, human, { id: 7201, name: "lint" }))).toMatchObject({ tending: "stopped", reason: "human_push" });
    expect(await deliver("check_run", checkRun(pr.number, human, { id: 7202, name: "build" }))).toMatchObject({ ignored: expect.any(String) });
    const said = await comments(pr.number);
    expect(said).toHaveLength(1);
    expect(said[0]).toContain("Someone other than Sortie pushed");
    expect(await tasksFor(pr.number)).toEqual([]);
    expect(await headOf(pr.branch)).toBe(human);
    const watcher = await getAgentByName(env.PullRequestAgent, `${REPO}#${pr.number}`);
    expect(await watcher.polling()).toBe(false);
    const audit = (await (await api(`/api/audit?task=${pr.task.id}`)).json()) as { entries: { action: string; detail: { reason?: string } }[] };
    expect(audit.entries.find((e) => e.action === "pull_request.stopped")?.detail.reason).toBe("human_push");
  });
});

describe("when tending ends", () => {
  it("a push by a person, as GitHub's synchronize event reports it, stops tending at once", async () => {
    const pr = await sortiePullRequest(scripted([write("SYNC.md", "v0\n")], "write the sync notes"));
    const synchronize = (after: string) => ({ action: "synchronize", before: pr.head, after, pull_request: { number: pr.number }, repository, sender: { login: "paul" } });
    expect(await deliver("pull_request", synchronize(pr.head))).toMatchObject({ ignored: "the head is Sortie's" });
    const human = await pushAsPerson(pr.branch, "SYNC.md", "mine\n");
    expect(await deliver("pull_request", synchronize(human))).toMatchObject({ tending: "stopped", reason: "human_push" });
    expect(await deliver("pull_request", synchronize(human))).toMatchObject({ ignored: expect.any(String) });
    expect((await comments(pr.number)).filter((c) => c.includes("Someone other than Sortie pushed"))).toHaveLength(1);
  });

  it("a person's push while a fix runs: the fix is not pushed over it, and tending stops", async () => {
    const pr = await sortiePullRequest(scripted([write("RACE.md", "v0\n")], "write the race notes"));
    const slowFix = scripted([{ tool: "Bash", input: { command: "sleep 4" } }, write("RACE.md", "fixed\n")], "fix RACE.md");
    await standin("/__check-runs", { repo: REPO, id: 7501, name: "lint", head_sha: pr.head, conclusion: "failure" });
    const answer = await deliver("check_run", checkRun(pr.number, pr.head, { id: 7501, name: "lint", output: { title: "lint", summary: "", text: slowFix } }));
    expect(answer).toMatchObject({ tending: "started" });
    const human = await pushAsPerson(pr.branch, "RACE.md", "mine\n");
    await waitForStatus(answer.task!, ["succeeded"]);
    const failed = await waitFor("the refused publication", async () => {
      const task = await getTask(answer.task!);
      return task.publication?.status === "failed" ? task : null;
    });
    expect(failed.publication!.error?.code).toBe("branch_moved");
    expect(await headOf(pr.branch)).toBe(human);
    const said = await comments(pr.number);
    expect(said.filter((c) => c.includes("Someone other than Sortie pushed"))).toHaveLength(1);
    expect(said.join("\n")).toContain("did not push its fix");
    const row = await env.DB.prepare("SELECT state, stop_reason, fix_task_id FROM tended_pulls WHERE repo = ? AND number = ?").bind(REPO, pr.number).first();
    expect(row).toEqual({ state: "stopped", stop_reason: "human_push", fix_task_id: null });
  });

  it("a closed or merged pull request is no longer tended, and its poll stops", async () => {
    const pr = await sortiePullRequest(scripted([write("CLOSE.md", "close\n")], "write the closing notes"));
    const watcher = await getAgentByName(env.PullRequestAgent, `${REPO}#${pr.number}`);
    await standin("/__pulls", { repo: REPO, number: pr.number, state: "closed", merged: true });
    expect(await watcher.poll()).toMatchObject({ decision: "stopped", reason: "merged" });
    expect(await watcher.polling()).toBe(false);
    expect(await deliver("pull_request", { action: "closed", pull_request: { number: pr.number, merged: true }, repository })).toMatchObject({ tending: "stopped" });
    await standin("/__check-runs", { repo: REPO, id: 7401, name: "lint", head_sha: pr.head, conclusion: "failure" });
    expect(await deliver("check_run", checkRun(pr.number, pr.head, { id: 7401, name: "lint" }))).toMatchObject({ ignored: expect.any(String) });
    expect(await comments(pr.number)).toEqual([]);
    expect(await tasksFor(pr.number)).toEqual([]);
  });
});

describe("a fix that changes nothing", () => {
  it("says so on the pull request, and the pull request is free for the next trigger", async () => {
    const pr = await sortiePullRequest(scripted([write("NOOP.md", "noop\n")], "write the noop notes"));
    const request = {
      action: "created",
      issue: { number: pr.number, title: "Sortie: write the noop notes", body: "", pull_request: { url: "x" } },
      comment: { id: 4101, body: `/sortie ${scripted([{ text: "Nothing needs to change." }], "check the notes")}`, user: { login: "olga" }, author_association: "COLLABORATOR" },
      repository,
      sender: { login: "olga" },
    };
    const answer = await deliver("issue_comment", request);
    expect(answer).toMatchObject({ tending: "started" });
    expect(await deliver("issue_comment", request)).toMatchObject({ tending: "deduplicated" });
    await waitForStatus(answer.task!, ["succeeded"]);
    const said = await waitFor("the no-change comment", async () => (await comments(pr.number)).find((c) => c.includes("ended without a commit")));
    expect(said).toContain("(no_change)");
    expect(said).toContain(`/tasks/${answer.task}`);
    expect(await headOf(pr.branch)).toBe(pr.head);
    const original = await getTask(pr.task.id);
    expect(original.publication!.followUps).toEqual([expect.objectContaining({ task: answer.task, trigger: "command", status: "no_change", commit: null })]);
    const row = await env.DB.prepare("SELECT fix_task_id, attempts FROM tended_pulls WHERE repo = ? AND number = ?").bind(REPO, pr.number).first();
    expect(row).toEqual({ fix_task_id: null, attempts: 1 });
  });
});

describe("reviews", () => {
  it("a member's review is addressed on the branch in one run, each thread answered; an outsider's starts nothing", async () => {
    const pr = await sortiePullRequest(scripted([write("src/widget.js", "export const widget = () => 'blue widget';\n")], "make the widget blue"));
    const rename = scripted([write("src/widget.js", "export const gadget = () => 'blue widget';\n"), { text: "Renamed widget to gadget in src/widget.js." }], "Please call it gadget.");
    await standin("/__reviews", {
      repo: REPO,
      id: 801,
      comments: [
        { id: 3001, path: "src/widget.js", line: 1, diff_hunk: "@@ -1 +1 @@\n-export const widget = () => 'widget';\n+export const widget = () => 'blue widget';", body: rename },
        { id: 3002, path: "src/widget.js", line: 1, diff_hunk: "@@ -1 +1 @@", body: "And keep the colour." },
      ],
    });

    const outsider = await deliver("pull_request_review_comment", {
      action: "created",
      comment: { id: 3999, pull_request_review_id: 899, body: "/sortie delete everything", path: "README.md", user: { login: "mallory" }, author_association: "NONE" },
      pull_request: { number: pr.number },
      repository,
    });
    expect(outsider).toMatchObject({ tending: "outsider_ignored" });
    const app = await deliver("pull_request_review", {
      action: "submitted",
      review: { id: 898, body: "Sortie's reviewer left 1 finding.", state: "commented", user: { login: "sortie-app[bot]" }, author_association: "MEMBER" },
      pull_request: { number: pr.number },
      repository,
    });
    expect(app).toMatchObject({ ignored: "sortie-app[bot] is an app; its reviews start nothing" });

    const review = {
      action: "submitted",
      review: { id: 801, body: "Two things.", state: "changes_requested", user: { login: "maria" }, author_association: "MEMBER" },
      pull_request: { number: pr.number },
      repository,
    };
    const answer = await deliver("pull_request_review", review);
    expect(answer).toMatchObject({ tending: "started" });
    // The review's comments arrive as their own deliveries too: the same review, handled once.
    const echo = await deliver("pull_request_review_comment", { action: "created", comment: { id: 3001, pull_request_review_id: 801, body: rename, user: { login: "maria" }, author_association: "MEMBER" }, pull_request: { number: pr.number }, repository });
    expect(echo).toMatchObject({ tending: "deduplicated" });

    const fix = await getTask(answer.task!);
    expect(fix.prompt).toContain("## Review by maria\n\nTwo things.");
    expect(fix.prompt).toContain("### src/widget.js line 1\n```diff\n@@ -1 +1 @@\n-export const widget");
    expect(fix.prompt).toContain("And keep the colour.");
    const done = await fixPublished(fix.id);
    const commit = done.publication!.commit!;
    expect(await shell('git fetch --quiet origin "$BRANCH" && git show FETCH_HEAD:src/widget.js', { BRANCH: pr.branch })).toContain("export const gadget");
    const replies = await waitFor("both replies", async () => {
      const found = (await githubCalls()).filter((c) => c.method === "POST" && /\/pulls\/\d+\/comments\/\d+\/replies$/.test(c.path) && c.status === 201);
      return found.length >= 2 ? found : null;
    });
    expect(replies.map((c) => c.path).sort()).toEqual([`/repos/${REPO}/pulls/${pr.number}/comments/3001/replies`, `/repos/${REPO}/pulls/${pr.number}/comments/3002/replies`]);
    for (const reply of replies) expect(String(reply.body?.body)).toContain(`Changed in \`${commit.slice(0, 12)}\`: Renamed widget to gadget`);
    expect(await tasksFor(pr.number)).toEqual([fix.id]);
  });
});

describe("merge conflicts", () => {
  it("a conflicted pull request gets the base branch merged in and the conflict resolved, as a merge commit on its branch", async () => {
    const pr = await sortiePullRequest(scripted([write("src/widget.js", "export const widget = () => 'blue widget';\n")], "make the widget blue"));
    const main = (
      await shell(
        'printf "export const widget = () => \'red widget\';\\n" > src/widget.js && printf "on main\\n" > MAIN.md && git add -A && git -c user.name=Person -c user.email=person@example.com commit --quiet -m "red on main" && git push --quiet origin HEAD:refs/heads/main && git rev-parse HEAD',
      )
    ).trim();
    const watcher = await getAgentByName(env.PullRequestAgent, `${REPO}#${pr.number}`);
    expect(await watcher.polling()).toBe(true);
    expect(await watcher.poll()).toMatchObject({ decision: "polled", mergeableState: "clean" });

    await standin("/__pulls", { repo: REPO, number: pr.number, mergeable_state: "dirty" });
    const outcome = (await watcher.poll()) as { decision: string; task?: string };
    expect(outcome).toMatchObject({ decision: "started" });
    const fix = await getTask(outcome.task!);
    expect(fix.prompt).toContain("## Merge conflict with `main`");
    // While the fix runs, another poll starts nothing more.
    expect(await watcher.poll()).toMatchObject({ decision: "polled", mergeableState: "dirty" });
    const done = await fixPublished(fix.id);
    const commit = done.publication!.commit!;
    const shown = await shell('git fetch --quiet origin "$BRANCH" && git log --format=%P -1 FETCH_HEAD && git show FETCH_HEAD:src/widget.js && git show FETCH_HEAD:MAIN.md', { BRANCH: pr.branch });
    const [parents, ...files] = shown.split("\n");
    expect(parents).toBe(`${pr.head} ${main}`);
    expect(files.join("\n")).toContain("blue widget");
    expect(files.join("\n")).toContain("on main");
    expect(shown).not.toMatch(/^(<<<<<<<|=======|>>>>>>>)/m);
    expect(await headOf(pr.branch)).toBe(commit);
    expect(await watcher.polling()).toBe(true);
    await shell('git push --quiet origin "$OLD:refs/heads/main" --force', { OLD: (await shell("git rev-parse HEAD~1")).trim() });
  });
});

describe("the budget", () => {
  it("with PR_FIX_MAX_ATTEMPTS=2 a third trigger gets a comment, not a run; a trigger meanwhile waits; /sortie retry grants one more; /sortie stop stops", async () => {
    const pr = await sortiePullRequest(scripted([write("BUDGET.md", "v0\n")], "write the budget notes"));
    const fixWrites = (content: string) => scripted([write("BUDGET.md", content)], "fix BUDGET.md");
    await standin("/__check-runs", { repo: REPO, id: 7301, name: "one", head_sha: pr.head, conclusion: "failure" });
    const first = await deliver("check_run", checkRun(pr.number, pr.head, { id: 7301, name: "one", output: { title: "one", summary: "", text: fixWrites("v1\n") } }));
    expect(first).toMatchObject({ tending: "started" });
    await standin("/__check-runs", { repo: REPO, id: 7302, name: "two", head_sha: pr.head, conclusion: "failure" });
    const second = await deliver("check_run", checkRun(pr.number, pr.head, { id: 7302, name: "two", output: { title: "two", summary: "", text: fixWrites("v2\n") } }));
    expect(second).toMatchObject({ tending: "queued", task: first.task });

    await fixPublished(first.task!);
    const next = await waitFor("the queued fix", async () => (await tasksFor(pr.number)).find((id) => id !== first.task));
    const nextDone = await fixPublished(next);
    expect(nextDone.runs[0]!.baseCommit).toBe((await getTask(first.task!)).publication!.commit);
    const head = nextDone.publication!.commit!;
    expect(await headOf(pr.branch)).toBe(head);

    await standin("/__check-runs", { repo: REPO, id: 7303, name: "three", head_sha: head, conclusion: "failure" });
    expect(await deliver("check_run", checkRun(pr.number, head, { id: 7303, name: "three", output: { title: "three", summary: "", text: fixWrites("v3\n") } }))).toMatchObject({ tending: "budget_spent" });
    expect(await deliver("check_run", checkRun(pr.number, head, { id: 7304, name: "four" }))).toMatchObject({ ignored: expect.any(String) });
    const spent = (await comments(pr.number)).filter((c) => c.includes("PR_FIX_MAX_ATTEMPTS is 2"));
    expect(spent).toHaveLength(1);
    expect(await tasksFor(pr.number)).toHaveLength(2);

    const comment = (id: number, body: string, association = "OWNER") => ({
      action: "created",
      issue: { number: pr.number, title: "Sortie: write the budget notes", body: "", pull_request: { url: "x" } },
      comment: { id, body, user: { login: "olga" }, author_association: association },
      repository,
      sender: { login: "olga" },
    });
    expect(await deliver("issue_comment", comment(4001, "/sortie retry", "NONE"))).toMatchObject({ tending: "outsider_ignored" });
    expect(await deliver("issue_comment", comment(4002, "/sortie retry"))).toMatchObject({ tending: "retry_granted" });
    const watcher = await getAgentByName(env.PullRequestAgent, `${REPO}#${pr.number}`);
    expect(await watcher.polling()).toBe(true);
    const retried = await deliver("issue_comment", comment(4003, `/sortie ${fixWrites("v4\n")}`));
    expect(retried).toMatchObject({ tending: "started" });
    await fixPublished(retried.task!);
    expect(await shell('git fetch --quiet origin "$BRANCH" && git show FETCH_HEAD:BUDGET.md', { BRANCH: pr.branch })).toBe("v4\n");

    expect(await deliver("issue_comment", comment(4004, "/sortie stop"))).toMatchObject({ tending: "stopped", reason: "stop_command" });
    expect(await watcher.polling()).toBe(false);
    const events = (await readEvents(pr.task.id)).map((e) => e.type);
    for (const decision of ["started", "queued", "budget_spent", "outsider_ignored", "retry_granted", "stopped"]) expect(events).toContain(`tending.${decision}`);
    const original = await getTask(pr.task.id);
    expect(original.publication!.followUps!.map((f) => f.status)).toEqual(["pushed", "pushed", "pushed"]);
  }, 240_000);
});
