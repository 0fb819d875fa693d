/**
 * Previews in a real browser (Debian's Chromium through playwright-core)
 * against `npm run dev -- --demo`: a task of two runs, each serving its own
 * page on port 8080, shown in each run's column and side by side, in frames
 * that never carry a token and cannot read the viewer's storage.
 */
import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TaskView } from "../../src/schema.ts";
import { serverAndBrowser } from "../support/browser.ts";
import { builds } from "../support/preview-app.ts";


const harness = serverAndBrowser();
const call = harness.call;

async function readyPreviews(id: string): Promise<TaskView> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    const task = (await (await call(`/api/tasks/${id}`)).json()) as TaskView;
    if (task.runs.every((run) => run.preview?.status === "ready")) return task;
    if (task.runs.some((run) => run.preview?.status === "failed") || ["failed", "cancelled"].includes(task.status)) throw new Error(`previews did not start: ${JSON.stringify(task.runs.map((r) => r.preview ?? r.error))}`);
    if (Date.now() > deadline) throw new Error(`previews of ${id} not ready: ${JSON.stringify(task.runs.map((r) => r.preview))}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

describe("previews in the viewer", () => {
  it("shows each run's own page in its column and both side by side, and the judge's screenshots, without a token in any URL", async () => {
    const created = await call("/api/tasks", {
      method: "POST",
      body: JSON.stringify({
        repo: "acme/widgets",
        prompt: "build the page",
        runs: 2,
        variants: [{ prompt_suffix: `#!standin ${JSON.stringify(builds("the page of run zero"))}` }, { prompt_suffix: `#!standin ${JSON.stringify(builds("the page of run one"))}` }],
        preview: { command: "node serve.mjs" },
        judge: true,
        keepWorkspaceMinutes: 5,
      }),
    });
    expect(created.status).toBe(202);
    const { id } = (await created.json()) as { id: string };
    const task = await readyPreviews(id);
    expect(task.runs.map((run) => run.preview!.url)).toEqual([`${harness.server.url}/preview/${id}/0/`, `${harness.server.url}/preview/${id}/1/`]);
    expect((await fetch(task.runs[0]!.preview!.url)).status).toBe(401);

    const { page, urls } = await harness.signedInPage();
    await page.goto(`${harness.server.url}/tasks/${id}`);

    for (const [run, text] of [[0, "the page of run zero"], [1, "the page of run one"]] as const) {
      await expect.poll(() => page.locator(`[data-testid=run-preview][data-run="${run}"] [data-testid=preview-status]`).textContent(), { timeout: 20_000 }).toBe("ready");
      const frame = page.frameLocator(`[data-testid=preview-frame][data-run="${run}"]`);
      await expect.poll(() => frame.locator("h1").textContent({ timeout: 10_000 }), { timeout: 20_000 }).toBe(text);
    }
    await page.screenshot({ path: "/tmp/sortie-preview-columns.png" });

    // The compare view: both ready previews in one grid.
    await page.getByTestId("compare-previews").click();
    await expect.poll(() => page.getByTestId("compare-frame").count()).toBe(2);
    for (const [run, text] of [[0, "the page of run zero"], [1, "the page of run one"]] as const) {
      const frame = page.frameLocator(`[data-testid=compare-frame][data-run="${run}"]`);
      await expect.poll(() => frame.locator("h1").textContent({ timeout: 10_000 }), { timeout: 20_000 }).toBe(text);
    }

    // The judge's screenshots, kept with the task, in each run's column.
    for (const run of [0, 1]) {
      const shot = page.locator(`[data-testid=run-preview][data-run="${run}"] [data-testid=preview-screenshot]`);
      await expect.poll(() => shot.evaluate((element) => {
        // The tests' TypeScript has no DOM library: the element is what the browser says it is.
        const img = element as unknown as { hidden: boolean; naturalWidth: number };
        return img.hidden ? 0 : img.naturalWidth;
      }), { timeout: 60_000 }).toBeGreaterThan(0);
    }

    // The app runs in an opaque origin: the viewer's session is out of its reach.
    const inside = page.frames().find((frame) => frame.url().includes(`/preview/${id}/0/`));
    expect(inside).toBeDefined();
    expect(await inside!.evaluate(() => {
      try {
        return `readable: ${sessionStorage.length}`;
      } catch (error) {
        return (error as Error).name;
      }
    })).toBe("SecurityError");

    const session = await page.evaluate(() => sessionStorage.getItem("sortie.session") ?? "");
    const sessionToken = (JSON.parse(session) as { token: string }).token;
    expect(urls.filter((url) => url.includes("/preview/")).length).toBeGreaterThan(0);
    expect(urls.filter((url) => url.includes(harness.server.token) || url.includes(encodeURIComponent(sessionToken)) || url.includes(sessionToken))).toEqual([]);
    await page.close();
  });

  it("the CLI's --preview and --port ask for a preview, and show prints each run's URL", async () => {
    const sortie = (...args: string[]) => {
      // worker-configuration.d.ts types process.env with the Worker's vars; the CLI gets only these.
      const env: Record<string, string> = { PATH: process.env.PATH ?? "", HOME: "/nonexistent", SORTIE_URL: harness.server.url, SORTIE_TOKEN: harness.server.token };
      const result = spawnSync(process.execPath, ["cli/sortie.mjs", ...args], { encoding: "utf8", env: env as NodeJS.ProcessEnv });
      return { code: result.status, stdout: result.stdout, stderr: result.stderr };
    };
    expect(sortie("run", "acme/widgets", "x", "--port", "8181").code).toBe(2);
    const refused = sortie("run", "acme/widgets", "x", "--preview", "node serve.mjs", "--port", "80");
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("preview.port");
    const prompt = `build it\n#!standin ${JSON.stringify(builds("served on 8181"))}`;
    const created = sortie("run", "acme/widgets", prompt, "--preview", "node serve.mjs", "--port", "8181", "--json");
    expect(created.code, created.stderr).toBe(0);
    const { id } = JSON.parse(created.stdout) as { id: string };
    const task = await readyPreviews(id);
    expect(await (await call(new URL(task.runs[0]!.preview!.url).pathname)).text()).toBe("<h1>served on 8181</h1>");
    const events = (await (await call(`/api/tasks/${id}/events`)).text()).trim().split("\n").map((line) => JSON.parse(line) as { type: string; data: Record<string, unknown> });
    expect(events.find((e) => e.type === "preview.starting")?.data).toMatchObject({ command: "node serve.mjs", port: 8181 });
    const shown = sortie("show", id);
    expect(shown.stdout).toContain(`preview ready ${harness.server.url}/preview/${id}/0/`);
  });
});
