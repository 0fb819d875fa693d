/**
 * Repository memory end to end: real Claude Code (driven by the scripted
 * model stand-in) writes to $SORTIE_LEARNINGS_FILE and reads
 * $SORTIE_MEMORY_FILE in its sandbox; what it learned becomes proposals
 * through the API, and only what a person approved reaches later runs.
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { factOf } from "../../src/agents/memory.ts";
import { buildApp } from "../../src/api/app.ts";
import { MEMORY_SECTION_END, MEMORY_SECTION_START } from "../../src/publish/agents-md.ts";
import type { MemoryEntry, LoggedEvent } from "../../src/schema.ts";
import { recordLearnings } from "../../src/store/memory.ts";
import type { GitHubCall } from "../standins/github.d.mts";
import { ADMIN, api, createTask, inScratchSandbox, readEvents, scripted, waitForStatus } from "./helpers.ts";

const KEY = "sk-ant-api03-pastedKey0123456789abcdef";

/** A Bash step of the scripted agent. */
const bash = (command: string) => ({ tool: "Bash", input: { command, description: "memory step" } });

/** A step that appends these lines to the learnings file. */
const learn = (...lines: string[]) => bash(`printf '%s\\n' ${lines.map((line) => `'${line}'`).join(" ")} >> "$SORTIE_LEARNINGS_FILE"`);

/** A step that copies what the agent was given into its checkout, so the run's diff shows it. */
const reportMemory = bash('{ echo "memory=${SORTIE_MEMORY_FILE:-unset}"; cat "${SORTIE_MEMORY_FILE:-/dev/null}"; } > seen-memory.md');

async function memoryOf(repo: string, status?: string): Promise<MemoryEntry[]> {
  const response = await api(`/api/repos/${repo}/memory${status ? `?status=${status}` : ""}`);
  expect(response.status, await response.clone().text()).toBe(200);
  return ((await response.json()) as { entries: MemoryEntry[] }).entries;
}

async function post(path: string, body?: unknown): Promise<Response> {
  return api(path, { method: "POST", ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
}

/** Runs a task whose agent reports the memory it was given; returns the task id, the report and its events. */
async function runReportingMemory(repo = "acme/widgets"): Promise<{ id: string; report: string; events: LoggedEvent[] }> {
  const created = await createTask({ repo, prompt: scripted([reportMemory, { text: "Reported." }], "report the memory") });
  const task = await waitForStatus(created.id, ["succeeded", "failed"]);
  expect(task.status, JSON.stringify(task.runs[0]?.error)).toBe("succeeded");
  const diff = await (await api(`/api/tasks/${created.id}/runs/0/diff`)).text();
  const report = diff.split("\n").filter((line) => line.startsWith("+") && !line.startsWith("+++")).map((line) => line.slice(1)).join("\n");
  return { id: created.id, report, events: await readEvents(created.id) };
}

describe("repository memory", () => {
  it("turns a run's learnings into proposals with evidence, is not delivered before approval, and delivers approved and human entries only", async () => {
    const created = await createTask({
      prompt: scripted([learn("- Build with `npm run build` before testing.", `- The deploy key is ${KEY}`, "- Generated files live in dist/; never edit them."), { text: "Learned." }], "learn things"),
    });
    const task = await waitForStatus(created.id, ["succeeded", "failed"]);
    expect(task.status).toBe("succeeded");
    expect(task.learnings).toEqual({ proposed: 3, seen: 0 });
    const everyStatus = await api("/api/repos/acme/widgets/memory?status=");
    expect(((await everyStatus.json()) as { entries: unknown[] }).entries).toHaveLength(3);

    const proposed = await memoryOf("acme/widgets", "proposed");
    expect(proposed.map((entry) => entry.text)).toEqual(["Build with `npm run build` before testing.", "The deploy key is [REDACTED]", "Generated files live in dist/; never edit them."]);
    expect(JSON.stringify(proposed)).not.toContain(KEY);
    for (const entry of proposed) {
      expect(entry).toMatchObject({ status: "proposed", seen: 1, createdBy: "agent", evidence: [{ task: created.id, run: 0, succeeded: true, winner: false }] });
      expect(entry.decidedBy).toBeUndefined();
    }
    const events = await readEvents(created.id);
    expect(events.find((e) => e.type === "memory.proposed")?.data.proposed).toHaveLength(3);

    // Proposals are not delivered.
    const before = await runReportingMemory();
    expect(before.report).toContain("memory=unset");
    expect(before.events.some((e) => e.type === "memory.delivered")).toBe(false);

    const [build, key, generated] = proposed as [MemoryEntry, MemoryEntry, MemoryEntry];
    const approved = await post(`/api/repos/acme/widgets/memory/${build.id}/approve`);
    expect(approved.status).toBe(200);
    expect(await approved.json()).toMatchObject({ id: build.id, status: "approved", decidedBy: "admin" });
    expect((await post(`/api/repos/acme/widgets/memory/${key.id}/reject`)).status).toBe(200);
    const added = await post("/api/repos/acme/widgets/memory", { text: "Run the linter with npm run lint." });
    expect(added.status).toBe(201);
    const human = (await added.json()) as MemoryEntry;
    expect(human).toMatchObject({ status: "approved", createdBy: "person", decidedBy: "admin", seen: 0, evidence: [] });

    const after = await runReportingMemory();
    expect(after.report).toMatch(/memory=\/\S+\/sortie-memory\/memory\.md/);
    expect(after.report).toContain("- Build with `npm run build` before testing.");
    expect(after.report).toContain("- Run the linter with npm run lint.");
    expect(after.report).not.toContain("deploy key");
    expect(after.report).not.toContain("Generated files");
    const delivered = after.events.find((e) => e.type === "memory.delivered");
    expect((delivered?.data.entries as { id: string }[]).map((entry) => entry.id).sort()).toEqual([build.id, human.id].sort());
    const runView = (await (await api(`/api/tasks/${after.id}`)).json()) as { runs: { memory?: string[] }[] };
    expect(runView.runs[0]!.memory?.sort()).toEqual([build.id, human.id].sort());
    const used = await memoryOf("acme/widgets", "approved");
    expect(used.every((entry) => typeof entry.lastUsedAt === "number")).toBe(true);
    expect((await memoryOf("acme/widgets", "proposed")).map((entry) => entry.id)).toEqual([generated.id]);

    // Another repository's runs are given none of it.
    const elsewhere = await runReportingMemory("acme/bootstrap");
    expect(elsewhere.report).toContain("memory=unset");
    expect(await memoryOf("acme/bootstrap")).toEqual([]);
  });
});

describe("what runs propose", () => {
  it("makes the same fact from two runs one entry seen twice, with the judge's winner in its evidence", async () => {
    const runScript = (n: number, fact: string) => `#!standin ${JSON.stringify([learn(fact), { tool: "Write", input: { file_path: `run-${n}.md`, content: `run ${n}\n` } }, { text: "Done." }])}`;
    const created = await createTask({
      repo: "acme/bootstrap",
      prompt: "learn the test command",
      runs: 2,
      judge: true,
      variants: [{ prompt_suffix: runScript(0, "- Tests run with npm test.") }, { prompt_suffix: runScript(1, "- tests run with `npm test`") }],
    });
    const task = await waitForStatus(created.id, ["succeeded", "failed"]);
    expect(task.judge?.status, JSON.stringify(task.judge?.error)).toBe("succeeded");
    expect(task.winner?.run).toBe(0);
    const entries = (await memoryOf("acme/bootstrap")).filter((entry) => /tests run/i.test(entry.text));
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ status: "proposed", seen: 2 });
    expect(entries[0]!.evidence.sort((a, b) => a.run - b.run)).toEqual([
      { task: created.id, run: 0, succeeded: true, winner: true },
      { task: created.id, run: 1, succeeded: true, winner: false },
    ]);
    expect(task.learnings).toEqual({ proposed: 1, seen: 1 });
  });

  it("records a failed run's learnings with succeeded: false", async () => {
    const created = await createTask({ repo: "acme/bootstrap", maxTurns: 1, prompt: scripted([learn("- A failed run still learned this."), bash("true"), { text: "never reached" }], "run out of turns") });
    const task = await waitForStatus(created.id, ["succeeded", "failed"]);
    expect(task.runs[0]?.error?.code).toBe("budget");
    const entry = (await memoryOf("acme/bootstrap", "proposed")).find((e) => e.text === "A failed run still learned this.");
    expect(entry?.evidence).toEqual([{ task: created.id, run: 0, succeeded: false, winner: false }]);
  });

  it("takes at most 20 learnings of at most 500 characters from a run and says what it ignored", async () => {
    const lines = Array.from({ length: 22 }, (_, i) => `- Fact number ${i + 1} about the layout.`);
    const created = await createTask({ repo: "acme/bootstrap", prompt: scripted([learn(`- ${"x".repeat(501)}`, ...lines, "not a fact, just prose"), { text: "Learned." }], "learn a lot") });
    expect((await waitForStatus(created.id, ["succeeded", "failed"])).status).toBe("succeeded");
    const entries = (await memoryOf("acme/bootstrap", "proposed")).filter((entry) => entry.evidence.some((e) => e.task === created.id));
    expect(entries.map((entry) => entry.text)).toEqual(lines.slice(0, 20).map((line) => line.slice(2)));
    const ignored = (await readEvents(created.id)).find((e) => e.type === "memory.ignored");
    expect(ignored?.data).toMatchObject({ beyondLimit: 2, tooLong: 1, limit: 20, maxChars: 500 });
  });
});

describe("MEMORY_AUTO_APPROVE_SEEN", () => {
  // The task agents read the deployment's vars, so this drives the store the agents use with N = 2.
  it("approves a proposal once N successful runs made it; failed runs do not count", async () => {
    const record = (task: string, succeeded: boolean) =>
      recordLearnings(env.DB, { repo: "acme/auto", task, run: 0, succeeded, facts: [factOf("Lint with npm run lint.")], autoApproveSeen: 2 });
    await record("t1", true);
    // A run that says the same again (a follow-up turn reads its file again) is still one witness.
    const again = await record("t1", true);
    expect([...again.proposed, ...again.seen]).toEqual([]);
    const failed = await record("t2", false);
    expect(failed.autoApproved).toEqual([]);
    const second = await record("t3", true);
    expect(second.autoApproved.map((entry) => entry.status)).toEqual(["approved"]);
    const [entry] = await memoryOf("acme/auto");
    expect(entry).toMatchObject({ status: "approved", decidedBy: "auto", seen: 3 });
  });
});

describe("confined runs", () => {
  for (const isolation of ["workspace", "analysis"] as const) {
    it(`${isolation === "analysis" ? "an" : "a"} ${isolation} run reads $SORTIE_MEMORY_FILE and leaves learnings as its own user`, async () => {
      const known = (await (await post("/api/repos/acme/widgets/memory", { text: `Known to ${isolation} runs.` })).json()) as MemoryEntry;
      const created = await createTask({
        isolation,
        prompt: scripted([bash(`id -u; cat "$SORTIE_MEMORY_FILE"; printf '%s\\n' '- Learned by a ${isolation} run.' >> "$SORTIE_LEARNINGS_FILE"`), { text: "Done." }], `read and learn as ${isolation}`),
      });
      const task = await waitForStatus(created.id, ["succeeded", "failed"]);
      expect(task.status, JSON.stringify(task.runs[0]?.error)).toBe("succeeded");
      const result = (await readEvents(created.id)).find((e) => e.type === "agent.tool_result");
      const output = String(result?.data.text);
      expect(output).toContain(`- ${known.text}`);
      expect(Number(output.split("\n")[0])).toBeGreaterThanOrEqual(10000);
      const learned = (await memoryOf("acme/widgets", "proposed")).find((entry) => entry.text === `Learned by a ${isolation} run.`);
      expect(learned?.evidence).toEqual([{ task: created.id, run: 0, succeeded: true, winner: false }]);
    });
  }
});

describe("reviewing", () => {
  it("supersedes an entry with a person's text, keeps the old one's evidence and retires it; deletes an entry", async () => {
    const first = (await (await post("/api/repos/acme/widgets/memory", { text: "CI runs on Node 20." })).json()) as MemoryEntry;
    const replaced = await post(`/api/repos/acme/widgets/memory/${first.id}/supersede`, { text: "CI runs on Node 22." });
    expect(replaced.status).toBe(201);
    const next = (await replaced.json()) as MemoryEntry;
    expect(next).toMatchObject({ text: "CI runs on Node 22.", status: "approved" });
    const old = (await memoryOf("acme/widgets", "superseded")).find((entry) => entry.id === first.id);
    expect(old).toMatchObject({ status: "superseded", supersededBy: next.id });
    expect((await post(`/api/repos/acme/widgets/memory/${first.id}/approve`)).status).toBe(409);

    const removed = await api(`/api/repos/acme/widgets/memory/${next.id}`, { method: "DELETE" });
    expect(removed.status).toBe(200);
    expect((await memoryOf("acme/widgets")).some((entry) => entry.id === next.id)).toBe(false);
    expect((await api(`/api/repos/acme/widgets/memory/${next.id}`, { method: "DELETE" })).status).toBe(404);
  });

  it("expires an approved entry nobody was given for MEMORY_TTL_DAYS, and delivers it no more", async () => {
    const entry = (await (await post("/api/repos/acme/widgets/memory", { text: "The cache lives in .cache/widgets." })).json()) as MemoryEntry;
    await new Promise((resolve) => setTimeout(resolve, 200));
    // The same Worker with a TTL of under a tenth of a second.
    const shortLived = { ...env, MEMORY_TTL_DAYS: "0.000001" } as Cloudflare.Env;
    const response = await buildApp().fetch(new Request("https://sortie.test/api/repos/acme/widgets/memory?status=expired", { headers: { authorization: `Bearer ${ADMIN}` } }), shortLived);
    expect(response.status).toBe(200);
    const expired = ((await response.json()) as { entries: MemoryEntry[] }).entries;
    expect(expired.map((e) => e.id)).toContain(entry.id);
    const later = await runReportingMemory();
    expect(later.report).not.toContain("The cache lives in .cache/widgets.");
  });
});

describe("publishing", () => {
  // The GitHub stand-in outlives this file: what it recorded here must not read as another file's calls.
  afterEach(async () => {
    await fetch(`${env.GITHUB_API_URL}/__calls`, { method: "DELETE" });
  });

  it("opens a pull request whose AGENTS.md carries the approved entries in the managed section", async () => {
    await fetch(`${env.GITHUB_API_URL}/__calls`, { method: "DELETE" });
    expect((await post("/api/repos/acme/widgets/memory", { text: "Releases are tagged vX.Y.Z by CI." })).status).toBe(201);
    const approved = await memoryOf("acme/widgets", "approved");
    expect(approved.length).toBeGreaterThan(0);
    const response = await post("/api/repos/acme/widgets/memory/publish");
    const published = (await response.json()) as { branch: string; pullRequest: { url: string }; entries: string[] };
    expect(response.status, JSON.stringify(published)).toBe(201);
    expect(published.pullRequest.url).toMatch(/\/acme\/widgets\/pull\/\d+$/);
    expect(published.entries.sort()).toEqual(approved.map((entry) => entry.id).sort());

    const agentsMd = await fileOnBranch("acme/widgets", published.branch, "AGENTS.md");
    const section = agentsMd.slice(agentsMd.indexOf(MEMORY_SECTION_START), agentsMd.indexOf(MEMORY_SECTION_END));
    for (const entry of approved) expect(section).toContain(`- ${entry.text}`);
    expect(agentsMd).not.toContain("deploy key");

    const calls = ((await (await fetch(`${env.GITHUB_API_URL}/__calls`)).json()) as { calls: GitHubCall[] }).calls;
    expect(calls.filter((c) => c.unexpected)).toEqual([]);
    const pull = calls.find((c) => c.method === "POST" && c.path === "/repos/acme/widgets/pulls");
    expect(pull?.body).toMatchObject({ head: published.branch, base: "main" });
  });

  it("refuses to publish a repository without approved entries", async () => {
    const response = await post("/api/repos/acme/nothing-here/memory/publish");
    expect(response.status).toBe(409);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe("nothing_to_publish");
  });
});

describe("bad input", () => {
  const cases: [string, string, string, unknown, number, string][] = [
    ["empty text", "POST", "/api/repos/acme/widgets/memory", { text: "  " }, 400, "invalid_body"],
    ["oversized text", "POST", "/api/repos/acme/widgets/memory", { text: "x".repeat(501) }, 400, "invalid_body"],
    ["an unknown field", "POST", "/api/repos/acme/widgets/memory", { text: "x", status: "approved" }, 400, "invalid_body"],
    ["malformed JSON", "POST", "/api/repos/acme/widgets/memory", "{nope", 400, "invalid_json"],
    ["an empty supersede", "POST", "/api/repos/acme/widgets/memory/m000000000000000/supersede", { text: "" }, 400, "invalid_body"],
    ["an unknown status", "GET", "/api/repos/acme/widgets/memory?status=maybe", undefined, 400, "invalid_query"],
    ["an unknown id to approve", "POST", "/api/repos/acme/widgets/memory/m000000000000000/approve", undefined, 404, "not_found"],
    ["an id of no shape to reject", "POST", "/api/repos/acme/widgets/memory/..%2F..%2Fetc/reject", undefined, 404, "not_found"],
    ["an unknown id to delete", "DELETE", "/api/repos/acme/widgets/memory/m000000000000000", undefined, 404, "not_found"],
    ["a repository owner with a bad character", "GET", "/api/repos/ac!me/widgets/memory", undefined, 400, "invalid_repo"],
    ["a repository of three parts", "GET", "/api/repos/acme/widgets/extra/memory", undefined, 400, "invalid_repo"],
    ["a repository of one part", "POST", "/api/repos/widgets/memory", { text: "x" }, 400, "invalid_repo"],
  ];
  for (const [name, method, path, body, status, code] of cases) {
    it(`refuses ${name} with ${status} ${code}`, async () => {
      const before = await memoryOf("acme/widgets");
      const response = await api(path, { method, ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }) });
      expect(response.status).toBe(status);
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe(code);
      expect(await memoryOf("acme/widgets")).toEqual(before);
    });
  }

  it("lets a tasks:read token read memory but not change it, and a memory:write token change it", async () => {
    const mint = async (scopes: string[]) => ((await (await post("/api/tokens", { name: `m-${scopes.join("-").replace(/:/g, "_")}`, scopes })).json()) as { token: string }).token;
    const reader = await mint(["tasks:read"]);
    const writer = await mint(["memory:write"]);
    const as = (token: string, path: string, init: RequestInit = {}) => api(path, { ...init, headers: { authorization: `Bearer ${token}` } });
    const read = await as(reader, "/api/repos/acme/widgets/memory");
    expect(read.status, await read.clone().text()).toBe(200);
    expect((await as(reader, "/api/repos/acme/widgets/memory", { method: "POST", body: JSON.stringify({ text: "x y z" }) })).status).toBe(403);
    expect((await as(writer, "/api/repos/acme/widgets/memory")).status).toBe(403);
    const added = await as(writer, "/api/repos/acme/widgets/memory", { method: "POST", body: JSON.stringify({ text: "Written with a memory:write token." }) });
    expect(added.status).toBe(201);
    expect(await added.json()).toMatchObject({ decidedBy: "token:m-memory_write" });
  });
});

/** A file as a branch of the fixture's bare repository has it, read with git in a scratch sandbox. */
async function fileOnBranch(repo: string, branch: string, file: string): Promise<string> {
  const { stdout, exitCode, stderr } = await inScratchSandbox('git clone -q --depth 1 --branch "$BRANCH" "$REPO" probe && cat "probe/$FILE"', { REPO: `${env.GIT_BASE_URL}/${repo}.git`, BRANCH: branch, FILE: file });
  expect(exitCode, stderr).toBe(0);
  return stdout;
}
