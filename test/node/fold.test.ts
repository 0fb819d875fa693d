/**
 * foldTask in plain Node, over event logs recorded from real tasks (each
 * fixture holds a task's `GET …/events` and the `GET /api/tasks/:id` served
 * after it): the fold gives the state the API served, and no prefix of a log
 * folds into an impossible state.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { TaskEvent, applyEvent, emptyFold, foldTask } from "../../src/events.ts";
import { TaskState, isTerminal, type TaskStatus } from "../../src/schema.ts";

const DIR = join(import.meta.dirname, "../fixtures/task-logs");
const fixtures = readdirSync(DIR)
  .filter((file) => file.endsWith(".json"))
  .map((file) => ({ name: file.replace(/\.json$/, ""), ...(JSON.parse(readFileSync(join(DIR, file), "utf8")) as { events: unknown[]; served: Record<string, unknown> }) }));

/** What is served beside the history: where to watch the task, and queue places. */
function historyOf(task: Record<string, unknown>): unknown {
  const { url: _url, ws: _ws, ...state } = task;
  return JSON.parse(JSON.stringify({ ...state, runs: (state.runs as Record<string, unknown>[]).map(({ queuePosition: _position, ...run }) => run) }));
}

/** What no state may say: each a sentence naming what is wrong, empty when the state is possible. */
function impossibilities(task: TaskState): string[] {
  const wrong: string[] = [];
  const live = (status: TaskStatus) => status === "queued" || status === "running";
  for (const run of task.runs) {
    if (run.status === "succeeded" && run.startedAt === null) wrong.push(`run ${run.index} succeeded but never started`);
    if (run.status === "running" && (run.startedAt === null || run.endedAt !== null)) wrong.push(`run ${run.index} runs with startedAt ${run.startedAt}, endedAt ${run.endedAt}`);
    if (run.endedAt !== null && run.startedAt !== null && run.endedAt < run.startedAt) wrong.push(`run ${run.index} ended before it started`);
    if (run.costUsd < 0 || run.inputTokens < 0 || run.outputTokens < 0 || run.pendingMessages < 0) wrong.push(`run ${run.index} counts below zero`);
    if (isTerminal(task.status) && live(run.status)) wrong.push(`task ${task.status} with run ${run.index} ${run.status}`);
  }
  if (isTerminal(task.status) && task.judge && live(task.judge.status)) wrong.push(`task ${task.status} with the judge ${task.judge.status}`);
  if (task.status === "succeeded" && !task.runs.some((run) => run.status === "succeeded")) wrong.push("task succeeded with no run that did");
  if (task.winner && !task.runs[task.winner.run]) wrong.push(`winner ${task.winner.run} is no run`);
  if (task.endedAt !== null && !isTerminal(task.status)) wrong.push(`task ${task.status} has endedAt`);
  return wrong;
}

describe("foldTask over recorded logs", () => {
  it("has the recorded logs of every kind of task", () => {
    expect(fixtures.map((f) => f.name).sort()).toEqual(
      expect.arrayContaining(["analysis", "budget", "cancel", "follow-up", "judge", "publish", "retry", "timeout", "workspace"]),
    );
  });

  for (const fixture of fixtures) {
    it(`${fixture.name}: every event parses, and the fold is the state the API served`, () => {
      const events = fixture.events.map((event) => TaskEvent.parse(event));
      expect(historyOf(foldTask(events) as unknown as Record<string, unknown>)).toEqual(historyOf(fixture.served));
    });

    it(`${fixture.name}: every prefix folds into a possible state`, () => {
      const events = fixture.events.map((event) => TaskEvent.parse(event));
      let fold = emptyFold();
      for (const [index, event] of events.entries()) {
        fold = applyEvent(fold, event);
        expect(fold.task, `after event ${index + 1}`).not.toBeNull();
        TaskState.parse(fold.task);
        expect(impossibilities(fold.task!), `after event ${index + 1} (${event.type})`).toEqual([]);
      }
    });
  }

  it("a log without its creation folds to no task, and says so", () => {
    const [, ...rest] = fixtures[0]!.events.map((event) => TaskEvent.parse(event));
    expect(() => foldTask(rest)).toThrow(/task\.created/);
  });

  it("an event of an undeclared type does not parse", () => {
    expect(() => TaskEvent.parse({ seq: 1, ts: 1, run: null, type: "task.invented", data: {} })).toThrow();
    expect(() => TaskEvent.parse({ seq: 1, ts: 1, run: 0, type: "run.diff", data: { files: "three" } })).toThrow();
  });

  it("keeps what the task's jobs read back: a run's closing words, a workspace run's user, a planner's plan", () => {
    const fold = (name: string) => {
      let folded = emptyFold();
      for (const event of fixtures.find((f) => f.name === name)!.events.map((e) => TaskEvent.parse(e))) folded = applyEvent(folded, event);
      return folded;
    };
    // Each run's own last result, whatever its judge or reviewer answered after it.
    for (const fixture of fixtures) {
      const events = fixture.events.map((e) => TaskEvent.parse(e));
      const closing: Record<number, string> = {};
      for (const event of events) if (event.type === "agent.result" && event.run !== null) closing[event.run] = (event.data as { text: string }).text;
      expect(fold(fixture.name).summaries, fixture.name).toEqual(closing);
    }
    expect(Object.keys(fold("publish").summaries)).toContain("0");
    const worktree = fixtures.find((f) => f.name === "workspace")!.events.map((e) => TaskEvent.parse(e)).find((e) => e.type === "run.worktree");
    expect((worktree!.data as { uid?: number }).uid).toBeTypeOf("number");
    expect(fold("workspace").users[worktree!.run!]).toBe((worktree!.data as { uid: number }).uid);

    const created = fixtures[0]!.events.map((e) => TaskEvent.parse(e)).find((e) => e.type === "task.created")!;
    const plan = { summary: "Split the work", subtasks: [{ key: "api", title: "API", prompt: "Do the API", owns: ["src/api/**"], dependsOn: [] }] };
    const noted = (seq: number, data: Record<string, unknown>) => TaskEvent.parse({ seq, ts: created.ts + seq, run: 0, type: "run.plan_file", data });
    let planned = applyEvent(emptyFold(), created);
    planned = applyEvent(planned, noted(2, { valid: false, attempt: 1, errors: ["no subtasks"] }));
    expect(planned.writtenPlan).toBeNull();
    planned = applyEvent(planned, noted(3, { valid: true, subtasks: ["api"], plan }));
    expect(planned.writtenPlan).toEqual(plan);
    // Neither changes the task the API serves.
    expect(planned.task).toEqual(applyEvent(emptyFold(), created).task);
  });

  it("the impossibility check finds an impossible state", () => {
    const fixture = fixtures.find((f) => f.name === "judge")!;
    const task = foldTask(fixture.events.map((event) => TaskEvent.parse(event)));
    expect(impossibilities({ ...task, runs: task.runs.map((run) => ({ ...run, status: "running", endedAt: null })) })).toContain(`task ${task.status} with run 0 running`);
  });
});
