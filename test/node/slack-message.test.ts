/** A task as a Slack message: what the blocks say, which buttons they carry, and that user text cannot mention or link. */
import { describe, expect, it } from "vitest";
import { taskBlocks, taskLinks, taskText, type SlackBlock } from "../../src/publish/slack.ts";
import type { RunView, TaskState } from "../../src/schema.ts";

const ID = "0mwt5ijuzb1kbdaxvzl";
const links = taskLinks("https://sortie.example", ID);

function run(index: number, overrides: Partial<RunView> = {}): RunView {
  return {
    index,
    status: "succeeded",
    model: null,
    promptSuffix: null,
    attempts: [],
    phase: null,
    branch: `sortie/${ID}/${index}`,
    sessionId: "s",
    baseCommit: "d39a2881d88f42e994a1984036e6b6cc5d0364ba",
    startedAt: 1000,
    endedAt: 2000,
    durationMs: 65_400,
    numTurns: 2,
    costUsd: 0.00256,
    diff: { files: 2, additions: 5, deletions: 1, bytes: 309 },
    error: null,
    inputTokens: 10,
    outputTokens: 20,
    pendingMessages: 0,
    workspaceUntil: null,
    ...overrides,
  };
}

function task(overrides: Partial<TaskState> = {}): TaskState {
  return {
    id: ID,
    repo: "acme/widgets",
    branch: null,
    prompt: "add a NOTES.md",
    model: null,
    maxTurns: 50,
    timeoutMinutes: 30,
    source: "slack",
    createdBy: "slack:T0ACME:U0ALICE",
    output: "diff",
    publication: null,
    status: "succeeded",
    createdAt: 0,
    startedAt: 1000,
    endedAt: 2000,
    costUsd: 0.5,
    error: null,
    key: null,
    maxCostUsd: 10,
    runs: [run(0)],
    judge: null,
    winner: null,
    ...overrides,
  };
}

const texts = (blocks: SlackBlock[]) =>
  blocks.map((block) => (block.type === "section" ? block.text.text : block.type === "context" ? block.elements.map((e) => e.text).join(" ") : block.type));
const buttonsOf = (blocks: SlackBlock[]) =>
  blocks.flatMap((block) => (block.type === "actions" ? block.elements : block.type === "section" && block.accessory ? [block.accessory] : []));

describe("taskBlocks", () => {
  it("renders a finished task with two runs, a judge's verdict and a winner, with one Pick button per succeeded run", () => {
    const blocks = taskBlocks(
      task({
        branch: "main",
        runs: [run(0), run(1, { diff: { files: 1, additions: 3, deletions: 0, bytes: 90 }, durationMs: 850, model: "claude-sonnet-4-5" })],
        judge: { status: "succeeded", winner: 1, ranking: [1, 0], reasons: "Run 1 is smaller.", costUsd: 0.01, error: null },
        winner: { run: 1, by: "judge", at: 3000 },
      }),
      links,
    );
    expect(blocks.map((block) => block.type)).toEqual(["section", "section", "divider", "section", "section", "context", "context", "context", "actions"]);
    expect(texts(blocks)).toEqual([
      `:white_check_mark: *Succeeded* · \`acme/widgets@main\` · task \`${ID}\``,
      ">add a NOTES.md",
      "divider",
      ":white_check_mark: *Run 0*: succeeded · 2 files +5 −1 · $0.0026 · 1 min 5 s",
      ":trophy: *Run 1* `claude-sonnet-4-5`: succeeded · 1 file +3 −0 · $0.0026 · 850 ms",
      ":scales: The judge picked run 1 (ranking 1 › 0): Run 1 is smaller.",
      ":trophy: Winner: run 1, picked by judge",
      `<https://sortie.example/tasks/${ID}|Open the live viewer> · cost $0.50 · by slack:T0ACME:U0ALICE`,
      "actions",
    ]);
    expect(buttonsOf(blocks).map((b) => [b.action_id, b.value, b.text.text])).toEqual([
      ["sortie_winner", `${ID}:0`, "Pick run 0"],
      ["sortie_winner", `${ID}:1`, "Pick run 1"],
      ["sortie_open_pr", ID, "Open PR"],
    ]);
  });

  it("offers Cancel (with a confirmation) while the task runs, and shows each run's phase or place in the queue", () => {
    const blocks = taskBlocks(
      task({ status: "running", runs: [run(0, { status: "running", phase: "agent", diff: null, durationMs: null, costUsd: 0 }), run(1, { status: "queued", queuePosition: 2, diff: null, durationMs: null, costUsd: 0 })] }),
      links,
    );
    expect(texts(blocks)[3]).toBe(":arrows_counterclockwise: *Run 0*: running (agent)");
    expect(texts(blocks)[4]).toBe(":hourglass_flowing_sand: *Run 1*: queued (#2 in line)");
    const buttons = buttonsOf(blocks);
    expect(buttons.map((b) => b.action_id)).toEqual(["sortie_cancel"]);
    expect(buttons[0]).toMatchObject({ value: ID, style: "danger", confirm: { confirm: { text: "Cancel it" } } });
  });

  it("offers no Pick button for a single run, and none for a run that failed", () => {
    expect(buttonsOf(taskBlocks(task(), links)).map((b) => b.action_id)).toEqual(["sortie_open_pr"]);
    const failed = taskBlocks(
      task({ status: "failed", error: { code: "run_failed", message: "every run failed" }, runs: [run(0, { status: "failed", diff: null, error: { code: "agent", message: "max turns" } }), run(1, { status: "failed", diff: null })] }),
      links,
    );
    expect(buttonsOf(failed)).toEqual([]);
    expect(texts(failed)).toContain(":warning: every run failed");
    expect(texts(failed).some((t) => t.includes("*Run 0*: failed") && t.includes("\n_max turns_"))).toBe(true);
  });

  it("escapes the prompt so it cannot mention the channel or forge a link, and cuts a long one", () => {
    const blocks = taskBlocks(task({ prompt: `<!channel> see <https://evil.example|docs> & ${"x".repeat(1000)}` }), links);
    const prompt = texts(blocks)[1]!;
    expect(prompt.startsWith(">&lt;!channel&gt; see &lt;https://evil.example|docs&gt; &amp; xxx")).toBe(true);
    expect(prompt).not.toContain("<");
    expect(prompt.endsWith("…")).toBe(true);
    expect(prompt.length).toBeLessThan(400);
  });

  it("quotes every line of a multi-line prompt and keeps within Slack's limits for eight runs", () => {
    const blocks = taskBlocks(task({ prompt: "one\ntwo", runs: Array.from({ length: 8 }, (_, i) => run(i)) }), links);
    expect(texts(blocks)[1]).toBe(">one\n>two");
    expect(blocks.length).toBeLessThanOrEqual(50);
    for (const text of texts(blocks)) expect(text.length).toBeLessThanOrEqual(3000);
  });

  it("has a one-line fallback text for notifications", () => {
    expect(taskText(task({ status: "timed_out" }))).toBe(`Sortie task ${ID} timed out: acme/widgets: add a NOTES.md`);
  });
});

describe("learnings in the finish message", () => {
  it("says how many new learnings the task proposed, with a link to review them, once it ended", () => {
    const withMemory = taskLinks("https://sortie.example", ID, "acme/widgets");
    const ended = texts(taskBlocks(task({ learnings: { proposed: 2, seen: 1 } }), withMemory)).join("\n");
    expect(ended).toContain("<https://sortie.example/repos/acme/widgets/memory|2 new learnings proposed>");
    expect(texts(taskBlocks(task({ learnings: { proposed: 1, seen: 0 } }), withMemory)).join("\n")).toContain("|1 new learning proposed>");
    expect(texts(taskBlocks(task({ status: "running", learnings: { proposed: 2, seen: 0 } }), withMemory)).join("\n")).not.toContain("learnings proposed");
    expect(texts(taskBlocks(task({ learnings: { proposed: 0, seen: 3 } }), withMemory)).join("\n")).not.toContain("proposed");
  });
});
