/**
 * Review lanes: a read-only peer reviews each run's change, its findings go
 * back to the coder's own session, and a loop that will not converge
 * escalates. Real Claude Code plays both the coder and the reviewer against
 * the scripted model; the reviewer's verdict goes to $SORTIE_REVIEW_FILE.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { LoggedEvent, TaskView } from "../../src/schema.ts";
import { api, createTask, liveSandboxes, readEvents, scripted, waitForStatus } from "./helpers.ts";

const write = (file: string, content: string) => ({ tool: "Write", input: { file_path: file, content } });
const bash = (command: string) => ({ tool: "Bash", input: { command } });
/** A reviewer's step that writes `verdict` to its verdict file. */
const verdict = (value: unknown) => bash(`cat > "$SORTIE_REVIEW_FILE" <<'JSON'\n${JSON.stringify(value)}\nJSON`);
const changes = (body: string, path = "app.js", line = 1) => verdict({ verdict: "changes", findings: [{ path, line, body, severity: "major" }] });
const approve = verdict({ verdict: "approve", findings: [] });

/** A prompt scripting the coder (`#!standin`) and the reviewer's rounds (`#!standin-review`). */
function lanePrompt(coder: unknown[], rounds: unknown[][]): string {
  return `${scripted(coder, "make app.js compare strictly")}\n#!standin-review ${JSON.stringify(rounds)}`;
}

async function reviewedTask(body: Record<string, unknown>): Promise<{ task: TaskView; events: LoggedEvent[] }> {
  const created = await createTask(body);
  const task = await waitForStatus(created.id, ["succeeded", "failed"], 230_000);
  return { task, events: await readEvents(created.id) };
}

// Each round starts a reviewer sandbox and a real Claude Code, twice over with the coder: minutes on a busy machine.
describe("review lanes", { timeout: 240_000 }, () => {
  it("a changes verdict's finding reaches the coder's session and the fixed change is approved in round 2", async () => {
    const finding = "Use === instead of == when comparing the id.";
    const { task, events } = await reviewedTask({
      review: { agent: "claude-code", rounds: 3 },
      prompt: lanePrompt(
        [write("app.js", "if (a == b) run();\n"), { text: "Wrote app.js." }, write("app.js", "if (a === b) run();\n"), { text: "Now strict." }],
        [[changes(finding), { text: "Asked for a change." }], [approve, { text: "Approved." }]],
      ),
    });
    expect(task.status, JSON.stringify(task.runs[0]!.error)).toBe("succeeded");
    const review = task.runs[0]!.review!;
    expect(review.status).toBe("approved");
    expect(review.rounds.map((r) => r.verdict)).toEqual(["changes", "approve"]);
    expect(review.rounds[0]!.findings).toEqual([{ path: "app.js", line: 1, body: finding, severity: "major" }]);
    expect(review.rounds[0]!.reviewer).toEqual({ agent: "claude-code", model: null });
    const feedback = events.find((e) => e.type === "review.feedback")!;
    expect(String(feedback.data.text)).toContain(`app.js:1 [major]\n${finding}`);
    // The coder's follow-up continued its own session; the final diff is the fixed change.
    const inits = events.filter((e) => e.type === "agent.init");
    expect(new Set(inits.map((e) => e.data.sessionId)).size).toBe(1);
    const diff = await (await api(`/api/tasks/${task.id}/runs/0/diff`)).text();
    expect(diff).toContain("+if (a === b) run();");
    // The reviewer's steps are in the task's stream, under its own event types.
    expect(events.some((e) => e.type === "review.tool_call" && e.run === 0)).toBe(true);
    expect(events.filter((e) => e.type === "review.round")).toHaveLength(2);
    expect((await liveSandboxes()).filter((s) => s.startsWith(task.id))).toEqual([]);
  });

  it("the reviewer sees the coder's files but not a planted .env nor a link's target, cannot write into the peer view, nor reach the network beyond the model", async () => {
    const probe = [
      'cd "$SORTIE_PEER_DIR"',
      "cat app.js",
      "test -e .env && echo ENV-VISIBLE || echo env-hidden",
      "test -e secrets/id.pem && echo PEM-VISIBLE || echo pem-hidden",
      "test -e hostname-link && echo LINK-VISIBLE || echo link-hidden",
      "(touch written 2>/dev/null && echo PEER-WRITABLE) || echo peer-readonly",
      `node -e "fetch('${env.GITHUB_API_URL}/').then(() => console.log('NET-OPEN'), () => console.log('net-closed'))"`,
    ].join("; ");
    const { task, events } = await reviewedTask({
      review: { agent: "claude-code", rounds: 1 },
      prompt: lanePrompt(
        [
          write("app.js", "console.log('peer view');\n"),
          write(".env", "API_KEY=planted-env-secret\n"),
          write("secrets/id.pem", "-----BEGIN PRIVATE KEY-----\nplanted\n"),
          bash("ln -s /etc/hostname hostname-link"),
          { text: "Done." },
        ],
        [[bash(probe), approve, { text: "Approved." }]],
      ),
    });
    expect(task.runs[0]!.review?.status, JSON.stringify(task.runs[0]!.review)).toBe("approved");
    const output = events.filter((e) => e.type === "review.tool_result").map((e) => String(e.data.text)).join("\n");
    expect(output).toContain("console.log('peer view');");
    for (const expected of ["env-hidden", "pem-hidden", "link-hidden", "peer-readonly", "net-closed"]) expect(output).toContain(expected);
    for (const escaped of ["ENV-VISIBLE", "PEM-VISIBLE", "LINK-VISIBLE", "PEER-WRITABLE", "NET-OPEN"]) expect(output).not.toContain(escaped);
  });

  it("another CLI reviews too: OpenCode writes its verdict file inside the same walls", async () => {
    const { task, events } = await reviewedTask({
      review: { agent: "opencode", rounds: 2 },
      prompt: lanePrompt([write("app.js", "let x = 1;\n"), { text: "Done." }], [[approve, { text: "Approved." }]]),
    });
    expect(task.runs[0]!.review, JSON.stringify(task.runs[0]!.review)).toMatchObject({ status: "approved", rounds: [{ verdict: "approve", reviewer: { agent: "opencode", model: null } }] });
    expect(events.some((e) => e.type === "review.tool_call")).toBe(true);
  });

  it("at the workspace level the coder's own user packs the peer view: a link it plants in its scratch reaches nothing of root's", async () => {
    // The coder points the name the archive's file list will get at the shared sandbox's base clone HEAD, which is root's.
    const plant = bash('ln -sf "$(cd ../.. && pwd)/base/.git/HEAD" "../../scratch/$(basename "$(pwd)")/peer-view.tar.gz.list"');
    const { task } = await reviewedTask({
      isolation: "workspace",
      review: { agent: "claude-code", rounds: 1 },
      prompt: lanePrompt([write("app.js", "const y = 2;\n"), plant, { text: "Done." }], [[approve]]),
    });
    expect(task.runs[0]!.status).toBe("succeeded");
    // The pack ran as the coder's user, which may not write root's file: the review fails, the base clone is intact.
    expect(task.runs[0]!.review?.status).toBe("failed");
    expect(task.runs[0]!.review?.rounds[0]?.error?.message).toMatch(/could not pack the peer view/);
    const probe = await fetch(`${env.LOCAL_SANDBOX_URL}/v1/sandboxes`, { headers: { authorization: `Bearer ${env.LOCAL_SANDBOX_TOKEN}` } });
    const shared = ((await probe.json()) as { sandboxes: string[] }).sandboxes.find((id) => id.startsWith("ws-acme-widgets"));
    expect(shared).toBeDefined();
    const headers = { authorization: `Bearer ${env.LOCAL_SANDBOX_TOKEN}` };
    const { workdir } = (await (await fetch(`${env.LOCAL_SANDBOX_URL}/v1/sandboxes/${shared}`, { method: "POST", headers })).json()) as { workdir: string };
    const head = await fetch(`${env.LOCAL_SANDBOX_URL}/v1/sandboxes/${shared}/exec`, { method: "POST", headers, body: JSON.stringify({ command: 'cat "$W/base/.git/HEAD"', env: { W: workdir } }) });
    expect(((await head.json()) as { stdout: string }).stdout).toMatch(/^ref: refs\/heads\//);
  });

  it("a finding repeated unchanged escalates to needs_attention after 2 rounds even with rounds: 4", async () => {
    const finding = "The function still lacks input validation.";
    const { task, events } = await reviewedTask({
      review: { agent: "claude-code", rounds: 4 },
      prompt: lanePrompt(
        [write("app.js", "export const f = (x) => x;\n"), { text: "v1" }, write("app.js", "export const f = (x) => x * 1;\n"), { text: "v2" }, write("app.js", "export const f = (x) => x * 2;\n"), { text: "v3" }],
        [[changes(finding, "app.js", 1), { text: "r1" }], [changes(finding, "app.js", 2), { text: "r2" }], [approve], [approve]],
      ),
    });
    expect(task.status).toBe("succeeded");
    const review = task.runs[0]!.review!;
    expect(review.status).toBe("needs_attention");
    expect(review.rounds).toHaveLength(2);
    expect(review.reason).toContain(finding);
    expect(events.filter((e) => e.type === "review.feedback")).toHaveLength(1);
  });

  it("an invalid verdict file is retried once, then only the review fails: the run's own result stands", async () => {
    const { task, events } = await reviewedTask({
      review: { agent: "claude-code", rounds: 2 },
      prompt: lanePrompt(
        [write("app.js", "x\n"), { text: "Done." }],
        [[verdict({ verdict: "maybe" }), { text: "first try" }, bash('echo "not json" > "$SORTIE_REVIEW_FILE"'), { text: "second try" }]],
      ),
    });
    expect(task.status).toBe("succeeded");
    expect(task.runs[0]!.status).toBe("succeeded");
    const review = task.runs[0]!.review!;
    expect(review.status).toBe("failed");
    expect(review.rounds[0]!.error?.code).toBe("invalid_verdict");
    expect(review.rounds[0]!.error?.message).toContain("not JSON");
    // Two reviewer turns: the first, and the retry in the same session told what was wrong.
    expect(events.filter((e) => e.type === "review.result")).toHaveLength(2);
  });

  it("publishing a reviewed run posts the last round's findings on the pull request as comments on their lines", async () => {
    await fetch(`${env.GITHUB_API_URL}/__calls`, { method: "DELETE" });
    const { task } = await reviewedTask({
      output: "pr",
      review: { agent: "claude-code", rounds: 1 },
      prompt: lanePrompt(
        [write("app.js", "const a = 1;\nconst b = 2;\n"), { text: "Wrote app.js." }],
        [[verdict({ verdict: "changes", findings: [{ path: "app.js", line: 2, body: "b is never used.", severity: "minor" }, { path: "README.md", body: "Document app.js." }] }), { text: "Two findings." }]],
      ),
    });
    expect(task.runs[0]!.review?.status).toBe("changes_requested");
    const deadline = Date.now() + 30_000;
    let published = task;
    while (!["succeeded", "failed"].includes(published.publication?.status ?? "") && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      published = (await (await api(`/api/tasks/${task.id}`)).json()) as TaskView;
    }
    expect(published.publication?.status, JSON.stringify(published.publication)).toBe("succeeded");
    const calls = ((await (await fetch(`${env.GITHUB_API_URL}/__calls`)).json()) as { calls: { method: string; path: string; body?: Record<string, unknown> }[] }).calls;
    const number = published.publication!.pullRequest!.number;
    const review = calls.find((c) => c.method === "POST" && c.path === `/repos/acme/widgets/pulls/${number}/reviews`);
    expect(review?.body).toMatchObject({ event: "COMMENT", comments: [{ path: "app.js", line: 2, side: "RIGHT", body: "**minor**: b is never used." }] });
    expect(String(review?.body?.body)).toContain("`README.md`: Document app.js.");
  });

  it("the judge is told each candidate's review", async () => {
    const { judgePrompt, reviewSummary } = await import("../../src/agents/judge.ts");
    const summary = reviewSummary({ status: "needs_attention", reason: null, rounds: [{ verdict: "changes", findings: [{ path: "a.ts", line: 2, body: "Missing test." }], reviewer: { agent: "gemini", model: null }, startedAt: 0, endedAt: 1 }] });
    expect(summary).toBe("needs attention after 1 round; last findings: a.ts:2: Missing test.");
    expect(judgePrompt("task", [{ run: 0, file: "run-0.diff", files: 1, additions: 1, deletions: 0, review: summary }])).toContain(`its reviewer: ${summary}`);
  });

  it("review takes 1 to 5 rounds; an analysis task has nothing to review", async () => {
    for (const review of [{ rounds: 0 }, { rounds: 6 }, { agent: "nope" }, { extra: true }]) {
      const response = await api("/api/tasks", { method: "POST", body: JSON.stringify({ repo: "acme/widgets", prompt: "x", review }) });
      expect(response.status, JSON.stringify(review)).toBe(400);
      expect(((await response.json()) as { error: { code: string } }).error.code).toBeTruthy();
    }
    const analysis = await api("/api/tasks", { method: "POST", body: JSON.stringify({ repo: "acme/widgets", prompt: "x", isolation: "analysis", review: {} }) });
    expect(analysis.status).toBe(422);
  });
});
