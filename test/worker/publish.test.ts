import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import type { TaskView } from "../../src/schema.ts";
import type { GitHubCall } from "../standins/github.d.mts";
import { api, createTask, readEvents, remoteBranch, scripted, waitForStatus } from "./helpers.ts";

const write = (file: string, content = `${file}\n`) => ({ tool: "Write", input: { file_path: file, content } });

beforeEach(async () => {
  await fetch(`${env.GITHUB_API_URL}/__calls`, { method: "DELETE" });
});

async function githubCalls(): Promise<GitHubCall[]> {
  return ((await (await fetch(`${env.GITHUB_API_URL}/__calls`)).json()) as { calls: GitHubCall[] }).calls;
}

async function waitForPublication(id: string): Promise<TaskView> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const task = (await (await api(`/api/tasks/${id}`)).json()) as TaskView;
    if (task.publication && ["succeeded", "failed"].includes(task.publication.status)) return task;
    if (Date.now() > deadline) throw new Error(`publication of ${id} did not end: ${JSON.stringify(task.publication)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe("publishing a run", () => {
  it("pushes the branch with a token minted for it and opens the pull request", async () => {
    const created = await createTask({ output: "pr", prompt: scripted([write("FEATURE.md"), { text: "Added FEATURE.md with the feature notes." }], "add the feature notes") });
    await waitForStatus(created.id, ["succeeded", "failed"]);
    const task = await waitForPublication(created.id);
    expect(task.publication, JSON.stringify(task.publication?.error)).toMatchObject({ status: "succeeded", output: "pr", run: 0, branch: `sortie/${created.id}/0`, by: "sortie" });
    expect(task.publication!.pullRequest?.url).toMatch(/\/acme\/widgets\/pull\/\d+$/);
    expect(await remoteBranch(`sortie/${created.id}/0`)).toBe(task.publication!.commit);

    const calls = await githubCalls();
    expect(calls.filter((c) => c.unexpected)).toEqual([]);
    const minted = calls.filter((c) => c.path.endsWith("/access_tokens"));
    expect(minted).toHaveLength(1);
    expect(minted[0]!.body).toMatchObject({ repositories: ["widgets"], permissions: { contents: "write", pull_requests: "write" } });
    const pull = calls.find((c) => c.method === "POST" && c.path === "/repos/acme/widgets/pulls")!;
    expect(pull.body).toMatchObject({ head: `sortie/${created.id}/0`, base: "main", draft: false });
    expect(String(pull.body!.title)).toMatch(/^Sortie: add the feature notes/);
    expect(String(pull.body!.body)).toContain("Added FEATURE.md with the feature notes.");
    expect(String(pull.body!.body)).toContain(`/tasks/${created.id}`);

    // The minted token was used, and never appears in anything Sortie shows.
    const token = pull.credential!;
    expect(token).toMatch(/^ghs_/);
    const everything = JSON.stringify(task) + JSON.stringify(await readEvents(created.id)) + (await (await api(`/api/tasks/${created.id}/runs/0/diff`)).text());
    expect(everything).not.toContain(token);
    const row = await env.DB.prepare("SELECT * FROM tasks WHERE id = ?").bind(created.id).first();
    expect(JSON.stringify(row)).not.toContain(token);
  });

  it("mints a new token for every publication, and pushes a branch alone without one to a local remote", async () => {
    const a = await createTask({ output: "pr", prompt: scripted([write("A.md")]) });
    const b = await createTask({ output: "pr", prompt: scripted([write("B.md")]) });
    for (const task of [a, b]) {
      await waitForStatus(task.id, ["succeeded"]);
      expect((await waitForPublication(task.id)).publication?.status).toBe("succeeded");
    }
    const calls = await githubCalls();
    expect(calls.filter((c) => c.path.endsWith("/access_tokens"))).toHaveLength(2);
    const tokens = calls.filter((c) => c.path.endsWith("/pulls")).map((c) => c.credential);
    expect(new Set(tokens).size).toBe(2);

    await fetch(`${env.GITHUB_API_URL}/__calls`, { method: "DELETE" });
    const branchOnly = await createTask({ output: "branch", prompt: scripted([write("C.md")]) });
    await waitForStatus(branchOnly.id, ["succeeded"]);
    const published = await waitForPublication(branchOnly.id);
    expect(published.publication).toMatchObject({ status: "succeeded", pullRequest: null });
    expect(await remoteBranch(`sortie/${branchOnly.id}/0`)).toBe(published.publication!.commit);
    expect(await githubCalls()).toEqual([]);
  });

  it("publishes on request: the winner or a named run, as a draft", async () => {
    const created = await createTask({ prompt: scripted([write("LATER.md")]) });
    await waitForStatus(created.id, ["succeeded"]);
    expect((await api(`/api/tasks/${created.id}/publish`, { method: "POST", body: JSON.stringify({ run: 3 }) })).status).toBe(400);
    const response = await api(`/api/tasks/${created.id}/publish`, { method: "POST", body: JSON.stringify({ output: "draft-pr" }) });
    expect(response.status).toBe(202);
    const task = await waitForPublication(created.id);
    expect(task.publication).toMatchObject({ status: "succeeded", output: "draft-pr", by: "admin" });
    const pull = (await githubCalls()).find((c) => c.path === "/repos/acme/widgets/pulls")!;
    expect(pull.body).toMatchObject({ draft: true });
    const audit = (await (await api(`/api/audit?task=${created.id}`)).json()) as { entries: { action: string }[] };
    expect(audit.entries.map((e) => e.action)).toContain("task.publish");
  });

  it("flags a diff that adds secret-looking files and will not publish it unless allowed", async () => {
    const created = await createTask({ output: "pr", prompt: scripted([write(".env", "API_KEY=1234\n"), write("deploy/id_rsa", "key\n")]) });
    const task = await waitForStatus(created.id, ["succeeded"]);
    expect(task.runs[0]!.secretFiles?.sort()).toEqual([".env", "deploy/id_rsa"]);
    const events = await readEvents(created.id);
    expect(events.find((e) => e.type === "publish.skipped")?.data.code).toBe("secret_files");
    const refused = await api(`/api/tasks/${created.id}/publish`, { method: "POST", body: "{}" });
    expect(refused.status).toBe(409);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("secret_files");
    expect((await githubCalls()).length).toBe(0);

    const allowed = await createTask({ output: "branch", allowSecretFiles: true, prompt: scripted([write(".env.example", "API_KEY=\n")]) });
    await waitForStatus(allowed.id, ["succeeded"]);
    expect((await waitForPublication(allowed.id)).publication?.status).toBe("succeeded");
  });

  it("refuses to publish a run with no changes", async () => {
    const created = await createTask({ prompt: scripted([{ text: "nothing to do" }]) });
    await waitForStatus(created.id, ["succeeded"]);
    const response = await api(`/api/tasks/${created.id}/publish`, { method: "POST", body: "{}" });
    expect(response.status).toBe(409);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe("nothing_to_publish");
  });
});
