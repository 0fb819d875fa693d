/**
 * The web viewer in a real browser (Debian's Chromium through playwright-core)
 * against `npm run dev -- --demo`: sign-in, a task's live stream, its diff, a
 * dropped socket and a reload that lose and repeat nothing, the dashboard, and Cancel.
 */
import os from "node:os";
import path from "node:path";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LoggedEvent } from "../../src/schema.ts";
import { serverAndBrowser } from "../support/browser.ts";

const SCREENSHOT = path.join(os.tmpdir(), "sortie-viewer-task.png");
/** A Bash step that keeps the agent busy: Claude Code refuses a bare `sleep`. */
const pause = (ms: number, before = "true") => ({ tool: "Bash", input: { command: `${before} && node -e 'setTimeout(() => {}, ${ms})'` } });

const harness = serverAndBrowser();
const call = harness.call;

async function createTask(steps: unknown[], prompt = "viewer test"): Promise<string> {
  const response = await call("/api/tasks", { method: "POST", body: JSON.stringify({ repo: "acme/widgets", prompt: `${prompt}\n#!standin ${JSON.stringify(steps)}` }) });
  expect(response.status).toBe(202);
  return ((await response.json()) as { id: string }).id;
}

async function taskStatus(id: string): Promise<string> {
  return ((await (await call(`/api/tasks/${id}`)).json()) as { status: string }).status;
}

async function eventLog(id: string): Promise<LoggedEvent[]> {
  return (await (await call(`/api/tasks/${id}/events`)).text()).trim().split("\n").map((line) => JSON.parse(line) as LoggedEvent);
}

/** The seqs of every event the page has drawn, in ascending order. */
async function drawnSeqs(page: Page): Promise<number[]> {
  const seqs = await page.locator("[data-seq]").evaluateAll((items) => items.map((item) => Number(item.getAttribute("data-seq"))));
  return seqs.sort((a, b) => a - b);
}

const signedInPage = () => harness.signedInPage();

describe("the web viewer", () => {
  it("signs in with the admin token but keeps only a session token, and asks again when the session is refused", async () => {
    const page = await harness.browser.newPage();
    await page.goto(`${harness.server.url}/`);
    await page.getByTestId("login-token").fill("not-the-token");
    await page.getByTestId("login-submit").click();
    await expect.poll(() => page.getByTestId("login-error").textContent()).toContain("refused");

    await page.getByTestId("login-token").fill(harness.server.token);
    await page.getByTestId("login-submit").click();
    await page.getByTestId("task-table").waitFor();
    const stored = await page.evaluate(() => JSON.stringify(sessionStorage));
    expect(stored).toMatch(/session\.\d+\./);
    expect(stored).not.toContain(harness.server.token);

    await page.evaluate(() => sessionStorage.setItem("sortie.session", JSON.stringify({ token: "session.9999999999.forged", expiresAt: Date.now() + 3_600_000 })));
    await page.reload();
    await page.getByTestId("login-form").waitFor();
    await page.close();
  });

  it("draws the task from its own fold of the events: with every state frame withheld it still follows the task to its end", async () => {
    const { page } = await signedInPage();
    let withheld = 0;
    await page.routeWebSocket(/\/api\/tasks\/[^/]+\/ws/, (ws) => {
      const server = ws.connectToServer();
      server.onMessage((message) => {
        if (String(message).startsWith('{"type":"cf_agent_state"')) withheld++;
        else ws.send(message);
      });
      ws.onMessage((message) => server.send(message));
    });
    const id = await createTask([pause(1500, "echo waiting"), { tool: "Write", input: { file_path: "FOLD.md", content: "folded\n" } }, { text: "Done." }], "write FOLD.md");
    await page.goto(`${harness.server.url}/tasks/${id}`);
    await expect.poll(() => page.getByTestId("task-status").locator("[data-status]").getAttribute("data-status"), { timeout: 60_000 }).toBe("succeeded");
    await page.locator(".d2h-file-name", { hasText: "FOLD.md" }).first().waitFor({ timeout: 15_000 });
    expect(withheld).toBeGreaterThan(0);
  });

  it("streams a task live, draws its diff, and loses or repeats no event across a dropped socket and a reload", async () => {
    const { page, urls } = await signedInPage();
    const sockets: { url: string; drop: () => Promise<void> }[] = [];
    await page.routeWebSocket(/\/api\/tasks\/[^/]+\/ws/, (ws) => {
      const upstream = ws.connectToServer();
      sockets.push({ url: ws.url(), drop: async () => { await upstream.close(); await ws.close({ code: 4000, reason: "dropped by the test" }); } });
    });

    const id = await createTask([
      pause(2500, "echo first"),
      { tool: "Write", input: { file_path: "NOTES.md", content: "# Notes\n\nwritten while you watched\n" } },
      pause(2500, "printf '\\033[32mgreen\\033[0m\\n'"),
      pause(2500, "echo third"),
      { text: "All done." },
    ], "write NOTES.md slowly");
    await page.goto(`${harness.server.url}/tasks/${id}`);
    await expect.poll(() => page.getByTestId("task-repo").textContent()).toBe("acme/widgets");
    // Which CLI runs it and how it is isolated are on the run's column.
    await expect.poll(() => page.getByTestId("run-agent").first().textContent()).toBe("claude-code");
    await expect.poll(() => page.getByTestId("run-isolation").first().textContent()).toBe("sandbox");
    expect(await page.getByTestId("run-isolation").first().getAttribute("title")).toBe("isolation sandbox: the default");
    await expect(page.getByTestId("open-pr").getAttribute("title")).resolves.toBe("not configured");
    expect(await page.getByTestId("open-pr").isDisabled()).toBe(true);

    // Live: a tool call is on the page while the task is still running.
    await page.locator('[data-testid=run-events] [data-type="agent.tool_call"]').first().waitFor({ timeout: 30_000 });
    expect(await taskStatus(id)).toBe("running");
    await expect.poll(() => page.getByTestId("task-status").locator("[data-status]").getAttribute("data-status")).toBe("running");

    // The connection drops mid-run; the viewer comes back asking only for what it has not seen.
    expect(sockets).toHaveLength(1);
    await sockets[0]!.drop();
    await expect.poll(() => sockets.length, { timeout: 15_000 }).toBe(2);
    expect(Number(new URL(sockets[1]!.url).searchParams.get("after"))).toBeGreaterThan(0);

    await expect.poll(() => page.getByTestId("task-status").locator("[data-status]").getAttribute("data-status"), { timeout: 60_000 }).toBe("succeeded");
    const file = page.locator(".d2h-file-wrapper", { has: page.locator(".d2h-file-name", { hasText: "NOTES.md" }) });
    await file.waitFor({ timeout: 15_000 });
    expect(await file.locator(".d2h-ins .d2h-code-line-ctn").allTextContents()).toContain("written while you watched");
    expect(await page.locator(".ansi-green-fg", { hasText: "green" }).count()).toBe(1);

    const events = await eventLog(id);
    await expect.poll(() => drawnSeqs(page), { timeout: 15_000 }).toEqual(events.map((e) => e.seq));
    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    await page.reload();
    await page.getByTestId("connection").filter({ hasText: "live" }).waitFor();
    await expect.poll(() => drawnSeqs(page)).toEqual((await eventLog(id)).map((e) => e.seq));

    await page.goto(`${harness.server.url}/`);
    const row = page.locator(`[data-testid=task-row][data-task-id="${id}"]`);
    await row.waitFor();
    expect(await row.getAttribute("data-status")).toBe("succeeded");
    await row.getByRole("link").click();
    await page.waitForURL(`${harness.server.url}/tasks/${id}`);

    expect(urls.filter((url) => url.includes(harness.server.token))).toEqual([]);
    await page.close();
  });

  it("Cancel ends a long-running task cancelled", async () => {
    const { page } = await signedInPage();
    const id = await createTask([pause(90_000, "echo long"), { text: "never reached" }], "a long task");
    await page.goto(`${harness.server.url}/tasks/${id}`);
    await page.locator('[data-testid=run-events] [data-type="agent.tool_call"]').first().waitFor({ timeout: 30_000 });
    await page.getByTestId("cancel").click();
    await expect.poll(() => page.getByTestId("task-status").locator("[data-status]").getAttribute("data-status"), { timeout: 30_000 }).toBe("cancelled");
    expect(await taskStatus(id)).toBe("cancelled");
    expect(await page.getByTestId("cancel").isDisabled()).toBe(true);

    await page.goto(`${harness.server.url}/?status=cancelled`);
    await page.locator(`[data-testid=task-row][data-task-id="${id}"]`).waitFor();
    await page.close();
  });

  it("reviews a repository's memory (evidence, approve, edit) and shows on a task page which entries its run was given", async () => {
    const learn = { tool: "Bash", input: { command: `printf '%s\\n' '- The viewer test approves this.' '- The viewer test edits this.' >> "$SORTIE_LEARNINGS_FILE"` } };
    const learner = await createTask([learn, { text: "Learned." }], "learn for the viewer");
    await expect.poll(() => taskStatus(learner), { timeout: 60_000 }).toBe("succeeded");

    const { page } = await signedInPage();
    await page.goto(`${harness.server.url}/repos/acme/widgets/memory`);
    const entry = (text: string) => page.locator("[data-testid=memory-entry]", { has: page.getByTestId("memory-text").filter({ hasText: text }) });
    await entry("The viewer test approves this.").waitFor();
    expect(await entry("The viewer test approves this.").getAttribute("data-status")).toBe("proposed");
    expect(await entry("The viewer test approves this.").getByTestId("memory-evidence").textContent()).toContain(`task ${learner} run 0 · succeeded`);

    await entry("The viewer test approves this.").getByTestId("memory-approve").click();
    await expect.poll(() => entry("The viewer test approves this.").getAttribute("data-status")).toBe("approved");
    await entry("The viewer test edits this.").getByTestId("memory-edit").click();
    await entry("The viewer test edits this.").getByTestId("memory-edit-text").fill("The viewer test edited this.");
    await entry("The viewer test edits this.").getByTestId("memory-save").click();
    await expect.poll(() => entry("The viewer test edited this.").getAttribute("data-status")).toBe("approved");
    expect(await entry("The viewer test edits this.").getAttribute("data-status")).toBe("superseded");

    const reader = await createTask([{ tool: "Bash", input: { command: 'cat "$SORTIE_MEMORY_FILE" > given.md' } }, { text: "Read it." }], "read the memory");
    await page.goto(`${harness.server.url}/tasks/${reader}`);
    const given = page.locator("[data-testid=run-events] [data-testid=memory-delivered]");
    await given.waitFor({ timeout: 60_000 });
    const texts = await given.locator("li").allTextContents();
    expect(texts).toContain("The viewer test approves this.");
    expect(texts).toContain("The viewer test edited this.");
    expect(texts).not.toContain("The viewer test edits this.");
    await expect.poll(() => page.getByTestId("run-facts").first().textContent(), { timeout: 60_000 }).toMatch(/given \d+ memory entr/);
    await page.close();
  });
});
